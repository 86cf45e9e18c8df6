"""`misr adapt`: fine-tune a network on an analyst's own archive of LR stacks, no HR needed: how
a user brings the model to a new sensor.

1. **Scenes** (``find_scenes``): folders whose rasters are one scene's frames (a raster named
   ``<frame stem>_mask.<ext>`` is that frame's mask: nonzero = clear), folders of such
   folders, or JSON manifests ``[{"frames": [...], "masks": [...]}, ...]`` (paths relative
   to the manifest).
2. **Preparation** (``prepare_archive``), exactly as a run prepares a scene (``inference.tiled
   .prepare_scene``: registration, radiometry, normalisation): each scene is cut into windows
   of ``WINDOW`` LR pixels, those with at least three mostly clear frames kept (at most
   ``MAX_WINDOWS`` per scene, seeded), one window in ``VALIDATION_EVERY`` held out for
   validation; stored in the work folder as LR stacks (``lr_train.npz``, ``lr_val.npz``).
3. **Training**: the self-supervised task (``self_supervised``: CR stacks made from the LR
   stacks with kernels from the prior, an LR frame as the target), starting from the given
   weights, resumable from the work folder's checkpoint.
4. **Output**: the new weights, those of the best validation step (the base weights' metadata
   plus ``adaptation``), and a model card ``<output stem>.md`` beside them; `misr super-resolve --weights` and the plugin's
   weights chooser take them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MisrError
from ..inference.tiled import prepare_scene
from ..models.weights import carried_metadata, check_weights, load_model, save_weights
from ..rasters.outputs import atomic_outputs, check_outputs
from ..rasters.selection import DEFAULT_MAX_FRAMES
from ..rasters.stack import open_stack, select_frames
from .self_supervised import SelfSupervisedConfig, SelfSupervisedTask
from .trainer import BEST, train

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
MASK_SUFFIX = "_mask"
WINDOW = 96  # LR pixels per training window (a 24-pixel CR patch needs 88)
MAX_WINDOWS = 48  # per scene
VALIDATION_EVERY = 8  # one window in this many is held out for validation
MIN_CLEAR_FRAMES = 3  # frames at least half clear that a window needs
PREPARED = "prepared.json"

Log = Callable[[str], None]


@dataclass(frozen=True)
class SceneFiles:
    """One scene of the archive: its frames and their masks (empty: nodata marks invalid pixels)."""

    frames: list[str]
    masks: list[str] = field(default_factory=list)


@dataclass
class AdaptRequest:
    """The options of `misr adapt`."""

    scenes: list[str]
    output: str
    model: str = "piunet"
    weights: str | None = None
    steps: int = 300
    learning_rate: float = 1e-4
    batch_size: int = 4
    work_dir: str | None = None
    band: int | None = None
    max_frames: int = DEFAULT_MAX_FRAMES
    seed: int = 0
    threads: int = 0
    overwrite: bool = False

    @property
    def work(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(self.output).with_suffix(".work")

    @property
    def card(self) -> Path:
        return Path(self.output).with_suffix(".md")


def find_scenes(paths: list[str]) -> list[SceneFiles]:
    """The scenes of folders, folders of scene folders and JSON manifests (module doc)."""
    scenes: list[SceneFiles] = []
    for path in paths:
        if os.path.isfile(path) and path.lower().endswith(".json"):
            scenes += _manifest_scenes(path)
        elif os.path.isdir(path):
            own = _folder_scene(Path(path))
            subfolders = [s for s in (_folder_scene(p) for p in sorted(Path(path).iterdir()) if p.is_dir()) if s]
            if not own and not subfolders:
                raise MisrError(f"{path}: no rasters ({', '.join(RASTER_SUFFIXES)}) in it or in its subfolders")
            scenes += ([own] if own else []) + subfolders
        else:
            raise MisrError(f"{path}: not a folder of scenes or a .json manifest")
    return scenes


def _folder_scene(folder: Path) -> SceneFiles | None:
    """The rasters of one folder as a scene, masks paired with their frames by name."""
    rasters = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
    masks = {p.stem[:-len(MASK_SUFFIX)]: str(p) for p in rasters if p.stem.endswith(MASK_SUFFIX)}
    frames = [p for p in rasters if not p.stem.endswith(MASK_SUFFIX)]
    if not frames:
        return None
    if masks and set(masks) != {p.stem for p in frames}:
        unpaired = sorted({p.stem for p in frames} ^ set(masks))
        raise MisrError(f"{folder}: give every frame a mask or none ({unpaired[0]} is unpaired)")
    return SceneFiles([str(p) for p in frames], [masks[p.stem] for p in frames] if masks else [])


def _manifest_scenes(path: str) -> list[SceneFiles]:
    base = Path(path).parent
    try:
        entries = json.loads(Path(path).read_text())
        scenes = [SceneFiles([str(base / f) for f in entry["frames"]], [str(base / m) for m in entry.get("masks") or []])
                  for entry in entries]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MisrError(f"{path}: not a scene manifest ([{{\"frames\": [...], \"masks\": [...]}}, ...]: {exc})") from None
    if not scenes or any(not s.frames for s in scenes):
        raise MisrError(f"{path}: the manifest lists a scene without frames")
    return scenes


def window_stacks(scene: SceneFiles, band: int | None, max_frames: int, rng: np.random.Generator,
                  log: Log) -> list[dict[str, np.ndarray]]:
    """The registered LR windows of one scene (frames in the scene's radiometry, masks, phases,
    the scene's normalisation), at most ``MAX_WINDOWS``, in random order."""
    stack, warnings = select_frames(open_stack(scene.frames, scene.masks or None, band), max_frames)
    for warning in stack.warnings + warnings:
        log(warning)
    count, height, width = stack.shape
    if count < MIN_CLEAR_FRAMES or min(height, width) < WINDOW:
        log(f"{scene.frames[0]}: skipped ({count} frames of {width} x {height}; "
            f"needs {MIN_CLEAR_FRAMES} frames of at least {WINDOW} x {WINDOW})")
        return []
    rows, phases, norm, _ = prepare_scene(stack)
    origins = [(r, c) for r in range(0, height - WINDOW + 1, WINDOW) for c in range(0, width - WINDOW + 1, WINDOW)]
    windows = []
    for index in rng.permutation(len(origins)):
        r, c = origins[index]
        block = rows.read(r, r + WINDOW)
        frames, masks = block.frames[:, :, c:c + WINDOW], block.masks[:, :, c:c + WINDOW]
        if (masks.mean(axis=(1, 2)) >= 0.5).sum() < MIN_CLEAR_FRAMES:
            continue
        windows.append({"frames": frames.astype(np.float32), "masks": masks, "shifts": phases.astype(np.float32),
                        "norm": np.array([norm.centre, norm.spread], np.float32)})
        if len(windows) == MAX_WINDOWS:
            break
    return windows


def stacked(windows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Windows with different frame counts as one set of arrays, padded with fully cloudy
    frames; ``counts`` says how many are real."""
    frames = max(len(w["frames"]) for w in windows)
    def pad(array: np.ndarray) -> np.ndarray:
        return np.concatenate([array, np.zeros((frames - len(array), *array.shape[1:]), array.dtype)])
    return {"frames": np.stack([pad(w["frames"]) for w in windows]), "masks": np.stack([pad(w["masks"]) for w in windows]),
            "shifts": np.stack([pad(w["shifts"]) for w in windows]), "norm": np.stack([w["norm"] for w in windows]),
            "counts": np.array([len(w["frames"]) for w in windows])}


def archive_key(scenes: list[SceneFiles], request: AdaptRequest) -> str:
    """What the prepared data depends on (a later run reuses it only if this is unchanged)."""
    facts = [asdict(s) for s in scenes] + [request.band, request.max_frames, request.seed, WINDOW, MAX_WINDOWS]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def prepare_archive(scenes: list[SceneFiles], request: AdaptRequest, log: Log) -> dict:
    """The LR stacks of the archive in the work folder (reused when already prepared for it)."""
    work = request.work
    work.mkdir(parents=True, exist_ok=True)
    key = archive_key(scenes, request)
    summary_path = work / PREPARED
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("key") != key:
            raise MisrError(f"{work}: holds another archive's adaptation; give another --work-dir or delete it")
        log(f"reusing the prepared windows in {work}")
        return summary
    rng = np.random.default_rng(request.seed)
    train_windows, val_windows = [], []
    for number, scene in enumerate(scenes, 1):
        windows = window_stacks(scene, request.band, request.max_frames, rng, log)
        for index, window in enumerate(windows):
            (val_windows if index % VALIDATION_EVERY == VALIDATION_EVERY - 1 else train_windows).append(window)
        log(f"scene {number}/{len(scenes)}: {len(windows)} windows ({scene.frames[0]})")
    if not train_windows:
        raise MisrError(f"no usable window of {WINDOW} x {WINDOW} LR pixels with {MIN_CLEAR_FRAMES} mostly "
                        "clear frames in the scenes given")
    if not val_windows:  # a tiny archive: validate on one of the training windows
        val_windows = train_windows[-1:]
        log("too few windows to hold some out: validation uses a training window")
    for name, windows in (("lr_train.npz", train_windows), ("lr_val.npz", val_windows)):
        np.savez(work / name, **stacked(windows))
    summary = {"key": key, "scenes": [asdict(s) for s in scenes], "train_windows": len(train_windows),
               "val_windows": len(val_windows), "window": WINDOW}
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def adapt(request: AdaptRequest, log: Log = print, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Adapt the request's weights to its scenes (module doc); returns the new weights' path."""
    for note in check_outputs([request.output, str(request.card)], [], request.overwrite):
        log(note)
    if request.steps < 1:
        raise MisrError(f"--steps {request.steps}: must be at least 1")
    if not request.learning_rate > 0:
        raise MisrError(f"--learning-rate {request.learning_rate}: must be positive")
    base_path, metadata = check_weights(request.model, request.weights)
    scenes = find_scenes(request.scenes)
    started = time.perf_counter()
    summary = prepare_archive(scenes, request, log)
    work = request.work
    config = SelfSupervisedConfig(
        train_data=str(work / "lr_train.npz"), val_data=str(work / "lr_val.npz"), out_dir=str(work),
        model=request.model, model_config=json.loads(metadata.get("config", "{}")), init_weights=str(base_path),
        steps=request.steps, batch_size=request.batch_size, t_min=2, t_max=12, learning_rate=request.learning_rate,
        l1_warmup_steps=0, loss="udl", eu_warmup_steps=0, val_every=max(1, request.steps // 5),
        kernel_bank=1024, seed=request.seed, threads=request.threads)
    import torch
    task = SelfSupervisedTask(config, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    baseline = _baseline_validation(work, task, request.model, base_path, log)
    weights = train(config, log=log, on_step=on_step, make_task=lambda _config, _device: task)
    weights = work / BEST if (work / BEST).is_file() else weights  # the best validation step's
    history = [{"step": 0, "val_cpsnr": baseline}] + _validation_history(work / "log.csv")
    loaded = load_model(request.model, weights)
    record = {"base_weights": base_path.name, "base_sha256": _sha256(base_path), "steps": request.steps,
              "learning_rate": request.learning_rate, "batch_size": request.batch_size,
              "train_windows": summary["train_windows"], "val_windows": summary["val_windows"],
              "scenes": [s["frames"][0] for s in summary["scenes"]], "validation": history,
              "seconds": round(time.perf_counter() - started, 1)}
    kept = carried_metadata(metadata)
    with atomic_outputs([request.output, str(request.card)], request.overwrite) as (temporary, card):
        save_weights(loaded.model, temporary, {**kept, "adaptation": record})
        Path(card).write_text(adaptation_card(request, record, len(scenes)))
    return Path(request.output)


def _baseline_validation(work: Path, task: SelfSupervisedTask, model: str, weights: Path, log: Log) -> float:
    """The starting weights' validation cPSNR (kept in the work folder: a resumed run reuses it)."""
    path = work / "baseline.json"
    if path.is_file():
        return float(json.loads(path.read_text())["val_cpsnr"])
    score = round(task.validate(load_model(model, weights, task.device).model)["val_cpsnr"], 3)
    path.write_text(json.dumps({"val_cpsnr": score}))
    log(f"starting weights: validation cPSNR {score:.2f} dB")
    return score


def _validation_history(log_csv: Path) -> list[dict]:
    """(step, validation cPSNR) of the run's log (``trainer``: step, loss, mean loss, val cPSNR, seconds)."""
    rows = [line.split(",") for line in log_csv.read_text().splitlines()] if log_csv.is_file() else []
    return [{"step": int(r[0]), "val_cpsnr": round(float(r[3]), 3)} for r in rows if len(r) >= 4]


def _sha256(path: Path) -> str:
    from ..models.weights import file_sha256
    return file_sha256(path)


def adaptation_card(request: AdaptRequest, record: dict, scene_count: int) -> str:
    """The model card written beside adapted weights."""
    history = ", ".join(f"{h['val_cpsnr']:.2f} dB (step {h['step']})" for h in record["validation"]) or "none"
    scenes = "\n".join(f"* {path}" for path in record["scenes"][:50])
    more = f"\n* ... and {len(record['scenes']) - 50} more" if len(record["scenes"]) > 50 else ""
    return f"""# Model card: `{Path(request.output).name}` (adapted with `misr adapt`)

Weights of `{request.model}` fine-tuned without HR images on the analyst's own LR stacks
(self-supervised: each LR stack degraded x3 with per-frame blur kernels from the engine's
kernel prior, the network trained to recover the LR frames; Impieri et al., IGARSS 2024).

| | |
|---|---|
| Started from | `{record['base_weights']}` (sha256 `{record['base_sha256'][:12]}...`) |
| Scenes | {scene_count} ({record['train_windows']} training windows of {WINDOW} x {WINDOW} LR pixels, {record['val_windows']} held out) |
| Training | {record['steps']} steps of {record['batch_size']} CR stacks, learning rate {record['learning_rate']:g} (Adam, cosine decay), UDL loss; the weights of the best validation step are kept |
| Time | {record['seconds']:.0f} s |
| Validation (self-supervised: held-out windows, the recovered LR frame's cPSNR) | {history} |

Use: `misr super-resolve --weights {Path(request.output).name} ...`, or choose the file in the
plugin's *Weights* list.

What the validation says: how well the network recovers held-out LR frames of these scenes
from coarser versions of them. It is not a measured HR accuracy: no HR truth was used.
Step 0 is the starting weights: a gain means the network fits this sensor's imagery better at
the coarser scale.

Scenes (first frame of each):

{scenes}{more}
"""
