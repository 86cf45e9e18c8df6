"""Supervised training of a MISR network on stacks built by ``dataset.build_samples``.

Each step draws random samples, a random number of frames (t_min..t_max) in a random order,
a random crop and a random flip/rotation, normalises them like the engine does per scene
(with jittered statistics, so the network does not depend on the exact normalisation), and
minimises a registration- and brightness-compensated loss. Checkpoints make it resumable.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .. import SCALE
from ..datasets.samples import load_samples
from ..datasets.simulate import upsampled_share
from ..errors import MisrError
from ..evaluation.figures import plot_training_curves
from ..evaluation.metrics import cpsnr
from ..models.config_bounds import Bound, OneOf
from ..models.registry import MODELS, build_model
from ..models.weights import read_metadata, read_state_dict, save_weights
from ..registration.stack import subpixel_phase
from .losses import LOSSES, PixelLoss, aligned_loss, compensated_loss
from .runs import start_run

CHECKPOINT = "checkpoint.pt"
AUTOCAST_TYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
"""A training config's precisions besides "auto" (bf16 / fp16 on CUDA, fp32 on CPU) and their autocast types."""
SUPERVISED_KEYS = ("frames", "masks", "norm", "hr")
"""The arrays a supervised run reads from a samples file (others where present)."""
FRAME_COUNT_DRAWS = ("uniform", "inverse")
"""How a training step draws its number of frames (``TrainConfig.frame_counts``)."""
BEST = "best.safetensors"
"""The weights of the step with the best validation cPSNR, beside the last ones."""


@dataclass
class TrainConfig:
    train_data: str
    val_data: str
    out_dir: str
    model: str = "piunet"
    model_config: dict = field(default_factory=lambda: {"n_feat": 32, "n_tefa": 4, "bottleneck": 4})
    steps: int = 2000
    batch_size: int = 8
    patch_lr: int = 32
    t_min: int = 3
    t_max: int = 12
    frame_counts: str = "uniform"  # how t_min..t_max is drawn: uniform, or "inverse" (P(t) ~ 1/t, `draw_frame_count`)
    learning_rate: float = 5e-4
    l1_warmup_steps: int = 300
    loss: str = "nll"  # after the L1 warm-up: l1, mse, nll or udl
    eu_warmup_steps: int = 0  # with udl: steps of L_EU (the Laplace NLL) between L1 and UDL
    init_weights: str | None = None  # start from these weights (tensors of matching shape)
    init_skip: list[str] = field(default_factory=list)  # parameter prefixes not taken from them
    precision: str = "auto"  # auto (bf16/fp16 autocast on CUDA, fp32 on CPU), fp32, fp16, bf16
    grad_clip: float = 15.0
    val_every: int = 200
    val_frames: int = 9
    data_range: float = 10000.0  # Sentinel-2 L1C digital numbers per unit reflectance
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    max_seconds: float = 0.0  # stop (checkpoint, weights) once this much training time has passed; 0 = none
    phase_wrap: float = 0.0  # frames within this of +-0.5 px (per axis) shown half the time the other way (`wrap_phases`)
    phase_jitter: float = 0.0  # LR px: std of the error added to the phases the network is told (`jitter_phases`)
    edge_context: int = 0  # LR px of mirrored context around every patch, as tiles get at inference (`with_context`)

    BOUNDS = {  # what ``training.run.load_config`` accepts (a class attribute, not a field: ``config_bounds``)
        "model": OneOf(tuple(MODELS)), "steps": Bound(1, 10 ** 7), "batch_size": Bound(1, 4096),
        "patch_lr": Bound(8, 1024), "t_min": Bound(1, 64), "t_max": Bound(1, 64),
        "frame_counts": OneOf(FRAME_COUNT_DRAWS), "learning_rate": Bound(1e-9, 1.0),
        "l1_warmup_steps": Bound(0, 10 ** 7), "loss": OneOf(tuple(LOSSES)),
        "eu_warmup_steps": Bound(0, 10 ** 7), "precision": OneOf(("auto", *AUTOCAST_TYPES)),
        "grad_clip": Bound(1e-6, 1e9), "val_every": Bound(1, 10 ** 7), "val_frames": Bound(1, 64),
        "data_range": Bound(1e-6, 1e9), "seed": Bound(0, 2 ** 32 - 1), "threads": Bound(0, 4096),
        "max_seconds": Bound(0, 1e9), "phase_wrap": Bound(0, 0.5), "phase_jitter": Bound(0, 0.5),
        "edge_context": Bound(0, 8)}

    def __post_init__(self) -> None:
        if self.t_min > self.t_max:
            raise ValueError(f"t_min {self.t_min} is above t_max {self.t_max}")




def transform_shifts(shifts: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Shifts (..., 2) = (dy, dx) of images rotated by ``np.rot90(k)`` then flipped left-right."""
    dy, dx = shifts[..., 0], shifts[..., 1]
    for _ in range(k % 4):
        dy, dx = -dx, dy
    return np.stack([dy, -dx if flip else dx], axis=-1)


def augment(arrays: list[np.ndarray], shifts: np.ndarray,
            rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """The same random rotation by a multiple of 90 degrees and flip of every (..., H, W) array,
    and of the shifts between them."""
    k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    def transform(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a[..., ::-1] if flip else a)
    return [transform(a) for a in arrays], transform_shifts(shifts, k, flip)


def wrap_phases(phases: np.ndarray, margin: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Phases (T, 2) within `margin` of +-0.5 LR px put, half the time, on the other side of the
    half pixel, and the whole-pixel moves (T, 2) that go with them.

    A frame half a pixel off arrives in two ways that show the same scene: moved by m with phase
    +0.5 - e, or by m + 1 with phase -0.5 - e. Registration picks one by rounding, so a shift that
    moves by a thousandth of a pixel across the half (a change elsewhere in the scene does that)
    switches the way; trained on both with the same target, the network learns that nothing
    changed (scripts/phase_flip_study.py). The phases returned reach 0.5 + `margin`."""
    near = np.abs(phases) > 0.5 - margin
    moves = np.where(near & (rng.random(phases.shape) < 0.5), np.sign(phases), 0.0).astype(int)
    return (phases - moves).astype(np.float32), moves


def jitter_phases(phases: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Phases (T, 2) as a registration that errs by `std` LR px (Gaussian, per frame and axis)
    would tell them, the frames and the target unmoved; meant to make the network lean less on a
    frame's exact phase, which a changed field elsewhere in the scene moves. Continuations with 0.03
    and 0.1 did not lower issue 14's change-away figure (docs/evaluation/phase_jitter_validation.log)."""
    return (phases + rng.normal(0.0, std, phases.shape)).astype(np.float32)


def with_context(model: torch.nn.Module, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                 context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's mean and log-scale on frames and masks (B,T,h,w) mirrored by `context` LR px
    on every side, cropped back to (B,1,3h,3w): what tiled inference gives it (``inference.tiled.
    EDGE_CONTEXT``), so that the outer pixels are trained as they are run (the loss then counts them)."""
    if not context:
        return model(frames, masks, phases)
    mode = "reflect" if min(frames.shape[-2:]) > context else "replicate"
    padded = [torch.nn.functional.pad(a, (context,) * 4, mode=mode) for a in (frames, masks.float())]
    mean, log_scale = model(padded[0], padded[1], phases)
    crop = context * SCALE
    return mean[..., crop:-crop, crop:-crop], log_scale[..., crop:-crop, crop:-crop]


def crop_frames(frames: np.ndarray, masks: np.ndarray, corner: tuple[int, int], size: int,
                moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, size, size) crops of (T, H, W) frames and masks at `corner`, each frame's crop moved by
    its whole-pixel move (T, 2), as registration moving it one pixel further would give it."""
    y, x = corner
    windows = [(t, slice(y + dy, y + dy + size), slice(x + dx, x + dx + size)) for t, (dy, dx) in enumerate(moves)]
    return np.stack([frames[w] for w in windows]), np.stack([masks[w] for w in windows])


def sample_batch(data: dict[str, np.ndarray], config: TrainConfig, rng: np.random.Generator,
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """A normalised training batch: frames, masks (B,T,p,p), phases (B,T,2), HR, HR mask (B,1,3p,3p)."""
    n, t_all, size = data["frames"].shape[:3]
    t = draw_frame_count(config, t_all, rng)
    p = config.patch_lr
    wrap = config.phase_wrap if size - p >= 2 else 0.0  # a frame moved one pixel further must stay inside
    room = 1 if wrap else 0
    batch: list[list[np.ndarray]] = [[], [], [], [], []]
    for index in rng.integers(0, n, config.batch_size):
        order = rng.permutation(t_all)[:t]
        y, x = rng.integers(room, size - p + 1 - room, size=2)
        hr_window = (index, slice(SCALE * y, SCALE * (y + p)), slice(SCALE * x, SCALE * (x + p)))
        phases = _phases(data)[index, order]
        moves = np.zeros(phases.shape, int)
        if wrap:
            phases, moves = wrap_phases(phases, wrap, rng)
        if config.phase_jitter:
            phases = jitter_phases(phases, config.phase_jitter, rng)
        (frames, masks, hr, hr_mask), phases = augment(
            [*crop_frames(data["frames"][index, order], data["masks"][index, order], (y, x), p, moves),
             target(data, index, order)[hr_window[1:]], _hr_mask(data)[hr_window]], phases, rng)
        centre, spread = data["norm"][index]
        spread = spread * float(np.exp(rng.uniform(-0.4, 0.4)))
        centre = centre + rng.normal(0, 0.2) * spread
        for part, value in zip(batch, (np.where(masks, (frames - centre) / spread, 0.0), masks,
                                       phases, (hr - centre) / spread, hr_mask)):
            part.append(value)
    frames, masks, phases, hr, hr_mask = (torch.from_numpy(np.stack(b).astype(np.float32)).to(device) for b in batch)
    return frames, masks, phases, hr[:, None], hr_mask[:, None]


def draw_frame_count(config: TrainConfig, available: int, rng: np.random.Generator) -> int:
    """A step's number of frames in t_min..min(t_max, available): uniform, or with "inverse" in proportion
    to 1/t, so stacks of 2-3 frames (what a cloudy archive leaves) come about 2.5 times as often."""
    counts = np.arange(config.t_min, min(config.t_max, available) + 1)
    if config.frame_counts == "uniform":
        return int(rng.integers(counts[0], counts[-1] + 1))
    weights = 1.0 / counts
    return int(rng.choice(counts, p=weights / weights.sum()))


def target(data: dict[str, np.ndarray], index: int, frames: np.ndarray) -> np.ndarray:
    """The HR target (3h, 3w) of sample `index` super-resolved from its frames `frames` (indices):
    where the surface changed in some frames (``change``), the target is the clear-temporal-mean
    surface of those frames (``simulate.upsampled_share``)."""
    hr = data["hr"][index]
    if "change" not in data or not data["changed"][index, frames].any():
        return hr
    share = upsampled_share(data["masks"][index, frames], data["changed"][index, frames])
    return (hr + data["change"][index] * share).astype(np.float32)


def _phases(data: dict[str, np.ndarray]) -> np.ndarray:
    """The frames' sub-pixel phases (N,T,2); zeros for stacks stored without them."""
    return subpixel_phase(data["shifts"]) if "shifts" in data else np.zeros((*data["frames"].shape[:2], 2), np.float32)


def _hr_mask(data: dict[str, np.ndarray]) -> np.ndarray:
    """Clear HR pixels (N,3h,3w): the stored status map (e.g. Proba-V's SM), else all clear."""
    return data["hr_mask"] if "hr_mask" in data else np.ones(data["hr"].shape, bool)


@torch.inference_mode()
def validate(model: torch.nn.Module, data: dict[str, np.ndarray], config: TrainConfig,
             device: torch.device) -> dict[str, float]:
    """Mean cPSNR (dB) and compensated L1 on the first `val_frames` frames of every sample."""
    model.eval()
    scores = []
    for index in range(len(data["frames"])):
        frames = data["frames"][index, :config.val_frames]
        masks = data["masks"][index, :config.val_frames]
        centre, spread = data["norm"][index]
        inputs = (np.where(masks, (frames - centre) / spread, 0.0), masks, _phases(data)[index, :config.val_frames])
        mean, _ = with_context(model, *(torch.from_numpy(a.astype(np.float32))[None].to(device) for a in inputs),
                               config.edge_context)
        sr = mean[0, 0].float().cpu().numpy() * spread + centre
        hr = target(data, index, np.arange(min(config.val_frames, data["frames"].shape[1])))
        scores.append(cpsnr(sr / config.data_range, hr / config.data_range, _hr_mask(data)[index]))
    model.train()
    return {"val_cpsnr": float(np.mean(scores))}


def learning_rate_at(step: int, config: TrainConfig, seconds: float = 0.0) -> float:
    """Cosine decay from `learning_rate` to 1/20 of it over `steps` (stateless, so resuming is
    exact), or over `max_seconds` of training when that comes first (a time-boxed GPU run)."""
    low = config.learning_rate / 20
    progress = min(step, config.steps) / config.steps
    if config.max_seconds:
        progress = max(progress, min(1.0, seconds / config.max_seconds))
    return float(low + (config.learning_rate - low) * 0.5 * (1 + np.cos(np.pi * progress)))


def loss_at(step: int, config: TrainConfig) -> str:
    """The loss of a step: L1 warm-up, then (for UDL) L_EU = the Laplace NLL, then `loss`."""
    if step < config.l1_warmup_steps:
        return "l1"
    if config.loss == "udl" and step < config.l1_warmup_steps + config.eu_warmup_steps:
        return "nll"
    return config.loss


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of a `precision` on `device` (None: plain fp32)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AUTOCAST_TYPES[precision]


def warm_start(model: torch.nn.Module, path: str, skip: list[str], log: Callable[[str], None]) -> None:
    """Copy the tensors of a weights file whose name and shape match; a first layer with fewer
    input channels fills the first ones (the new ones stay zero). Parameters named with a
    prefix in `skip` keep their initialisation."""
    own = model.state_dict()
    taken, widened = 0, []
    for name, tensor in read_state_dict(path).items():
        if name not in own or any(name.startswith(prefix) for prefix in skip):
            continue
        target = own[name]
        if target.shape == tensor.shape:
            target.copy_(tensor)
            taken += 1
        elif target.dim() == tensor.dim() >= 2 and target.shape[0] == tensor.shape[0] and target.shape[2:] == tensor.shape[2:]:
            target.zero_()
            target[:, :tensor.shape[1]].copy_(tensor)
            widened.append(name)
    log(f"warm start from {path}: {taken} tensors copied, widened {widened or 'none'}")


class Task(Protocol):
    """What a training run learns from: its batches, how they are scored, its validation."""

    description: str  # one line for the log

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """Normalised frames, masks (B,T,p,p), phases (B,T,2), target and its clear mask (B,1,3p,3p)."""

    def loss(self, pixel_loss: PixelLoss, mean: torch.Tensor, log_scale: torch.Tensor, target: torch.Tensor,
             target_mask: torch.Tensor) -> torch.Tensor: ...

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """At least ``val_cpsnr`` (dB)."""


class SupervisedTask:
    """Simulated stacks and their HR targets (``datasets.samples``)."""

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        self.train_data, self.val_data = (load_samples(path, required=SUPERVISED_KEYS)
                                         for path in (config.train_data, config.val_data))
        # targets on the SR's grid and in its radiometry (simulated stacks) are compared directly
        aligned = bool(self.train_data.get("aligned", False))
        # with mirrored context (`edge_context`) the outer pixels see what they see at inference: counted
        self.objective = (compensated_loss if not aligned
                          else partial(aligned_loss, border=0) if config.edge_context else aligned_loss)
        self.description = ("loss applied " + ("directly (aligned targets)" if aligned
                                               else "with shift and brightness compensation"))

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        return sample_batch(self.train_data, self.config, rng, self.device)

    def loss(self, pixel_loss: PixelLoss, mean: torch.Tensor, log_scale: torch.Tensor, target: torch.Tensor,
             target_mask: torch.Tensor) -> torch.Tensor:
        return self.objective(pixel_loss, mean, log_scale, target, target_mask)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        return validate(model, self.val_data, self.config, self.device)


def train(config: TrainConfig, log: Callable[[str], None] = print,
          on_step: Callable[[int, float], None] | None = None,
          make_task: Callable[[TrainConfig, torch.device], Task] = SupervisedTask) -> Path:
    """Train, resuming from `out_dir`/checkpoint.pt if present. Returns the final weights path;
    the weights of the best validation step are kept beside them (`BEST`).

    `log` hears the validation lines, `on_step` every step's number and loss (progress bars);
    `make_task` gives the batches and the validation (default: supervised, simulated stacks)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = make_task(config, device)  # reads (and checks) the data before the run folder is made
    out = start_run(config)
    model = build_model(config.model, config.model_config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step = 0
    if (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        log(f"resumed at step {step}")
    elif config.init_weights:
        warm_start(model, config.init_weights, config.init_skip, log)
    rng = np.random.default_rng(config.seed + step)
    log(task.description)
    model.train()
    started, running = time.perf_counter(), []
    with open(out / "log.csv", "a", newline="") as log_file:
        writer = csv.writer(log_file)
        while step < config.steps and not (config.max_seconds and time.perf_counter() - started >= config.max_seconds):
            frames, masks, phases, hr, hr_mask = task.batch(rng)
            with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                mean, log_scale = with_context(model, frames, masks, phases, config.edge_context)
            loss_name = loss_at(step, config)
            loss = task.loss(LOSSES[loss_name], mean.float(), log_scale.float(), hr, hr_mask)
            if hasattr(model, "auxiliary_loss"):  # a network's own term (DeepSUM: RegNet's filters)
                loss = loss + model.auxiliary_loss()
            for group in optimiser.param_groups:
                group["lr"] = learning_rate_at(step, config, time.perf_counter() - started)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimiser)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimiser)
            scaler.update()
            step += 1
            running.append(loss.item())
            if on_step:
                on_step(step, running[-1])
            out_of_time = bool(config.max_seconds) and time.perf_counter() - started >= config.max_seconds
            if step % config.val_every == 0 or step == config.steps or out_of_time:
                scores = task.validate(model)
                row = [step, loss_name, float(np.mean(running)), scores["val_cpsnr"],
                       round(time.perf_counter() - started, 1)]
                writer.writerow(row)
                log_file.flush()
                log(f"step {step}: {loss_name} loss {row[2]:.4f}, val cPSNR {row[3]:.2f} dB, {row[4]} s")
                running = []
                if scores["val_cpsnr"] > best_score(out):  # chosen on validation: the best so far
                    save_weights(model, out / BEST, {"training": asdict(config), "device": str(device),
                                                     "torch": torch.__version__, "step": step,
                                                     "val_cpsnr": scores["val_cpsnr"]})
                torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                            "scaler": scaler.state_dict(), "step": step}, out / CHECKPOINT)
    plot_training_curves(out / "log.csv", out / "curves.png")
    weights = out / f"{config.model}.safetensors"
    save_weights(model, weights, {"training": asdict(config), "device": str(device),
                                  "torch": torch.__version__})
    return weights


def best_score(out: Path) -> float:
    """The validation cPSNR of the best weights saved in `out` so far (-inf if none)."""
    try:
        return float(read_metadata(out / BEST)["val_cpsnr"])
    except (MisrError, KeyError, ValueError):
        return float("-inf")
