"""Real LR/HR stacks laid out as the Proba-V Kelvins challenge: one folder per scene.

    ROOT/[GROUP/]SCENE/LR000.png LR001.png ...  LR frames (16-bit, h x w)
                       QM000.png QM001.png ...  their quality maps (nonzero = clear)
                       HR.png                   the HR target (16-bit, 3h x 3w)
                       SM.png                   its status map (nonzero = clear)

``.tif`` (or ``.tiff``) files are read in place of ``.png``. Every scene keeps its clearest
frames (at most ``max_frames``; frames without a clear pixel are dropped), is registered with
``preprocess.register`` exactly as the engine registers a stack, and is padded with fully
masked zero frames to the frame count T shared by all scenes. The result has the keys of
``dataset.build_samples`` plus ``hr_mask``.
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np

from .. import SCALE
from ..errors import MisrError
from ..registration.reference import canonical_order
from ..registration.stack import register, subpixel_phase
from ..rasters.bands import open_raster, read_band

SUFFIXES = (".png", ".tif", ".tiff")
DEFAULT_MAX_FRAMES = 12
FRAME_STEM = re.compile(r"^LR(\d+)$")
SCENE_STEMS = re.compile(r"^(LR\d+|QM\d+|HR|SM)$")

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class SceneFiles:
    """The files of one scene, checked (present, one band, consistent sizes), pixels not read."""

    folder: str
    frames: tuple[str, ...]  # LR files, in index order
    qualities: tuple[str, ...]  # the QM file of each frame
    hr: str
    status: str  # SM file
    lr_shape: tuple[int, int]  # (height, width)


@dataclass
class Scene:
    """One scene's selected frames (clearest first), registered, with its HR target."""

    frames: np.ndarray  # (t, h, w) float32
    masks: np.ndarray  # (t, h, w) bool, True = clear
    shifts: np.ndarray  # (t, 2) sub-pixel phases of the registered frames (zeros, unregistered)
    hr: np.ndarray  # (3h, 3w) float32
    hr_mask: np.ndarray  # (3h, 3w) bool, True = clear


def scene_files_by_stem(folder: Path) -> dict[str, Path]:
    """Files of `folder` named like a Proba-V scene (LR000, QM000, HR, SM; .png or .tif), by stem."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SUFFIXES or not SCENE_STEMS.match(path.stem) or not path.is_file():
            continue
        if path.stem in files:
            raise MisrError(f"{path}: {files[path.stem].name} is also there: keep one file per name")
        files[path.stem] = path
    return files


def is_scene_folder(folder: Path) -> bool:
    """Whether `folder` holds Proba-V scene files."""
    return folder.is_dir() and bool(scene_files_by_stem(folder))


def find_scene_folders(root: str | Path) -> list[Path]:
    """Scene folders of `root`: root itself, its sub-folders, or their sub-folders (one level
    of grouping, as train/NIR/imgset0594), in name order."""
    root = Path(root)
    if not root.is_dir():
        raise MisrError(f"{root}: not a folder (give the folder that holds the Proba-V scene folders)")
    if is_scene_folder(root):
        return [root]
    scenes: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_scene_folder(child):
            scenes.append(child)
        else:
            scenes.extend(sorted(p for p in child.iterdir() if is_scene_folder(p)))
    if not scenes:
        raise MisrError(f"{root}: no Proba-V scene folders found (folders with LR000.png, QM000.png, "
                        "..., HR.png, SM.png, or the same as .tif)")
    return scenes


def raster_shape(path: Path) -> tuple[int, int]:
    """(height, width) of a single-band raster, from its header only."""
    dataset = open_raster(path)
    if dataset.RasterCount != 1:
        raise MisrError(f"{path}: has {dataset.RasterCount} bands; Proba-V scene files have exactly one")
    return dataset.RasterYSize, dataset.RasterXSize


def _size_text(shape: tuple[int, int]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _required(files: dict[str, Path], folder: Path, stem: str, what: str) -> Path:
    if stem not in files:
        raise MisrError(f"{folder / (stem + '.png')}: not found ({what}; {stem}.tif is read too)")
    return files[stem]


def inspect_scene(folder: str | Path) -> SceneFiles:
    """Check every file of a scene folder from its header: a QM for every LR frame, HR and SM
    present, frames and quality maps of one size, HR exactly 3x the LR size, SM the HR size."""
    folder = Path(folder)
    files = scene_files_by_stem(folder)
    stems = sorted((stem for stem in files if FRAME_STEM.match(stem)), key=lambda s: int(s[2:]))
    if not stems:
        raise MisrError(f"{folder / 'LR000.png'}: not found (a scene needs LR frames LR000, LR001, ...)")
    hr = _required(files, folder, "HR", "the scene's HR target")
    status = _required(files, folder, "SM", "the status map of HR.png")
    frames = [files[stem] for stem in stems]
    qualities = [_required(files, folder, "QM" + stem[2:], f"the quality map of {files[stem].name}")
                 for stem in stems]
    lr_shape = raster_shape(frames[0])
    for frame, quality in zip(frames, qualities):
        shape = raster_shape(frame)
        if shape != lr_shape:
            raise MisrError(f"{frame}: frame is {_size_text(shape)}, but {frames[0].name} is "
                            f"{_size_text(lr_shape)}: the frames of a scene must share one size")
        quality_shape = raster_shape(quality)
        if quality_shape != shape:
            raise MisrError(f"{quality}: quality map is {_size_text(quality_shape)}, "
                            f"its frame {frame.name} is {_size_text(shape)}")
    hr_shape = raster_shape(hr)
    if hr_shape != (SCALE * lr_shape[0], SCALE * lr_shape[1]):
        raise MisrError(f"{hr}: HR is {_size_text(hr_shape)}, expected exactly {SCALE}x the LR size "
                        f"{_size_text(lr_shape)}, i.e. {SCALE * lr_shape[1]}x{SCALE * lr_shape[0]}")
    status_shape = raster_shape(status)
    if status_shape != hr_shape:
        raise MisrError(f"{status}: status map is {_size_text(status_shape)}, "
                        f"{hr.name} is {_size_text(hr_shape)}")
    return SceneFiles(str(folder), tuple(map(str, frames)), tuple(map(str, qualities)), str(hr),
                      str(status), lr_shape)


def check_common_size(scenes: list[SceneFiles]) -> None:
    """All scenes of a dataset must share one LR size: name the first that does not."""
    for scene in scenes[1:]:
        if scene.lr_shape != scenes[0].lr_shape:
            raise MisrError(f"{scene.folder}: LR frames are {_size_text(scene.lr_shape)}, but "
                            f"{scenes[0].folder} has {_size_text(scenes[0].lr_shape)}: "
                            "all scenes of a dataset must share one LR size")


def read_masked(path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
    """A band (non-finite values set to 0) and its clear pixels: mask nonzero and value finite."""
    values = read_band(path)[0]
    mask_values = read_band(mask_path)[0]
    clear = np.isfinite(values) & np.isfinite(mask_values) & (mask_values != 0)
    return np.where(np.isfinite(values), values, 0).astype(np.float32), clear


def read_scene(files: SceneFiles, max_frames: int = DEFAULT_MAX_FRAMES) -> Scene:
    """Read a scene's pixels and keep its `max_frames` clearest frames, clearest first (ties:
    sharpest first), frames without a clear pixel dropped; not registered (zero shifts)."""
    pairs = [read_masked(frame, quality) for frame, quality in zip(files.frames, files.qualities)]
    frames = np.stack([values for values, _ in pairs])
    masks = np.stack([clear for _, clear in pairs])
    order = canonical_order(frames, masks)
    order = order[masks[order].any(axis=(1, 2))][:max_frames]
    if len(order) == 0:
        raise MisrError(f"{files.folder}: every LR frame is fully cloudy (no nonzero pixel in any QM "
                        "file): nothing to learn from")
    hr, hr_mask = read_masked(files.hr, files.status)
    return Scene(frames[order], masks[order], np.zeros((len(order), 2), np.float32), hr, hr_mask)


def prepare_scene(job: tuple[SceneFiles, int, bool]) -> Scene:
    """Read a scene and, if asked, register it with `preprocess.register` as the engine does."""
    files, max_frames, registered = job
    scene = read_scene(files, max_frames)
    if registered:
        frames, masks, shifts = register(scene.frames, scene.masks)
        scene = Scene(np.asarray(frames, np.float32), np.asarray(masks, bool),
                      subpixel_phase(shifts), scene.hr, scene.hr_mask)
    return scene


def pad_frames(array: np.ndarray, count: int) -> np.ndarray:
    """`array` (t, ...) followed by zeros (False for masks) up to `count` entries."""
    padding = np.zeros((count - len(array), *array.shape[1:]), array.dtype)
    return np.concatenate([array, padding])


def scene_normalisation(scene: Scene) -> tuple[float, float]:
    """(centre, spread) of the scene's clear LR pixels, as the engine normalises a scene."""
    from ..inference.normalisation import Normalisation  # imports torch: only once the scenes are read
    norm = Normalisation.of(scene.frames, scene.masks)
    return norm.centre, norm.spread


def _map(function: Callable[[Item], Result], items: Iterable[Item], workers: int) -> list[Result]:
    """`function` over `items`, in order, in `workers` processes (in this one for workers <= 1)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=max(1, min(16, len(items) // (4 * workers)))))


def load_probav(root: str | Path, max_frames: int = DEFAULT_MAX_FRAMES, workers: int = 2,
                registered: bool = True) -> dict[str, np.ndarray]:
    """Every scene under `root` as the arrays of `dataset.build_samples`, plus `hr_mask`.

    frames, masks (N,T,h,w) float32 / bool; shifts (N,T,2) float32 (sub-pixel phases, as `dataset.build_samples`; absent
    with `registered` False); hr (N,3h,3w) float32; hr_mask (N,3h,3w) bool (from SM); norm (N,2)
    float32: (mean, std) of each scene's clear LR pixels. T is the largest number of frames kept
    in a scene (at most `max_frames`); shorter scenes end with fully masked zero frames. Every
    file's header is checked before any pixel is read.
    """
    if max_frames < 1:
        raise MisrError(f"--max-frames {max_frames}: must be at least 1")
    files = [inspect_scene(folder) for folder in find_scene_folders(root)]
    check_common_size(files)
    scenes = _map(prepare_scene, [(scene, max_frames, registered) for scene in files], workers)
    count = max(len(scene.frames) for scene in scenes)
    samples = {
        "frames": np.stack([pad_frames(s.frames, count) for s in scenes]).astype(np.float32),
        "masks": np.stack([pad_frames(s.masks, count) for s in scenes]),
        "hr": np.stack([s.hr for s in scenes]).astype(np.float32),
        "hr_mask": np.stack([s.hr_mask for s in scenes]),
        "norm": np.asarray([scene_normalisation(s) for s in scenes], np.float32),
    }
    if registered:
        samples["shifts"] = np.stack([pad_frames(s.shifts, count) for s in scenes]).astype(np.float32)
    return samples
