"""Self-supervised training from LR stacks only (Impieri, Valsesia, Bianchi and Magli, IGARSS
2024): no HR image is read.

Scale invariance: a network that recovers LR frames from coarser ones (CR, a third of their
resolution) recovers HR from LR. Every training sample is a registered LR stack (frames, clear
masks, sub-pixel phases, as the engine prepares a scene); each step, per sample:

* some of its frames are drawn in random order, one mostly clear frame among them is the target,
  and all are cropped, rotated and flipped alike (``trainer.augment``: the phases follow);
* cloudy pixels are filled with the clear temporal mean, then every frame is blurred by its own
  kernel from the FKP prior (``models.kernel_prior``: a bank of ``kernel_bank`` kernels drawn
  once, seeded), integrated over 3 x 3 pixels starting at a random offset of -1, 0 or +1 pixel
  per axis (so the CR frames sample the scene at different phases, as acquisitions do), and
  given Gaussian noise;
* the CR masks are clear where no cloudy LR pixel lies under the kernel's support;
* each CR frame's phase against the target's grid is (p_t - p_k - o_t) / 3 CR pixels (p: LR
  phases, o: the integration offsets), so the target, the target frame's own pixels, is on
  the SR's grid (``cr_stack``; checked in the tests with a delta kernel);
* the loss is the pixel loss against the target on its clear pixels (``losses.aligned_loss``).

Validation is self-supervised as well: the same CR -> LR task on fixed CR stacks of the
validation LR stacks (``val_cpsnr`` is the cPSNR of the recovered LR frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import SCALE
from ..datasets.samples import load_samples
from ..evaluation.metrics import cpsnr
from ..models.config_bounds import Bound, OneOf
from ..models.kernel_prior import load_kernel_prior
from ..models.sampling import masked_temporal_mean
from ..registration.stack import subpixel_phase
from .losses import PixelLoss, aligned_loss
from .trainer import TrainConfig, augment, draw_frame_count, train

SELF_SUPERVISED = "self_supervised"
LR_KEYS = ("frames", "masks", "shifts", "norm")
"""The arrays a self-supervised run reads from a samples file (never ``hr``; ``counts`` if there)."""


@dataclass
class SelfSupervisedConfig(TrainConfig):
    """A `TrainConfig` whose `train_data` / `val_data` are registered LR stacks (``hr`` unused)
    and whose `patch_lr` is the CR patch (the network's input; its target is 3x as large)."""

    objective: str = SELF_SUPERVISED
    patch_lr: int = 24
    kernel_bank: int = 4096  # kernels drawn once from the prior
    kernel_prior: str | None = None  # the prior's weights (default: the shipped one)
    noise: tuple[float, float] = (0.0, 0.05)  # CR noise std, uniform in this range x the scene's spread
    min_target_clear: float = 0.9  # a target frame is at least this clear over the crop (else the clearest)

    BOUNDS = {**TrainConfig.BOUNDS, "objective": OneOf((SELF_SUPERVISED,)), "kernel_bank": Bound(1, 10 ** 6),
              "noise": Bound(0, 1), "min_target_clear": Bound(0, 1)}


def crop_size(patch: int, kernel: int) -> int:
    """LR pixels a CR patch of `patch` pixels is made from (kernel support, the -1..+1 offsets)."""
    return SCALE * patch + kernel + 1


def cr_stack(frames: np.ndarray, masks: np.ndarray, phases: np.ndarray, target: int, kernels: torch.Tensor,
             offsets: np.ndarray, patch: int) -> tuple[np.ndarray, ...]:
    """CR frames and masks (T,patch,patch) and phases (T,2) from LR frames and masks (T,L,L)
    (L = ``crop_size``), their LR phases (T,2), the target's index, one kernel per frame
    (T,1,K,K) and integration offsets (T,2) in {-1,0,1}; and the target (3 patch, 3 patch) and
    its mask on the SR's grid."""
    count, size = frames.shape[0], frames.shape[-1]
    k = kernels.shape[-1]
    clear = masks.astype(bool)
    filled = np.where(clear, frames, masked_temporal_mean(torch.from_numpy(frames)[None], torch.from_numpy(
        clear.astype(np.float32))[None], dim=1)[0].numpy()[None])
    blurred = F.conv2d(torch.from_numpy(filled.astype(np.float32))[None], kernels.float(), groups=count)[0]
    # a CR pixel is clear where no cloudy LR pixel is under the kernel
    support = -F.max_pool2d(-torch.from_numpy(clear.astype(np.float32))[None], k, stride=1)[0]
    cr_frames, cr_masks = [], []
    for t in range(count):
        y0, x0 = 1 + int(offsets[t, 0]), 1 + int(offsets[t, 1])
        window = (slice(y0, y0 + SCALE * patch), slice(x0, x0 + SCALE * patch))
        cr_frames.append(F.avg_pool2d(blurred[t:t + 1][(slice(None), *window)], SCALE)[0])
        cr_masks.append(-F.max_pool2d(-support[t:t + 1][(slice(None), *window)], SCALE)[0] > 0.5)
    half = k // 2 + 1
    target_window = (slice(half, half + SCALE * patch), slice(half, half + SCALE * patch))
    if size < crop_size(patch, k):
        raise ValueError(f"a CR patch of {patch} needs {crop_size(patch, k)} LR pixels, got {size}")
    cr_phases = (phases - phases[target] - offsets) / SCALE
    return (torch.stack(cr_frames).numpy(), torch.stack(cr_masks).numpy(), cr_phases.astype(np.float32),
            frames[target][target_window], clear[target][target_window])


def integration_offsets(lr_phases: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Per frame and axis, an offset in {-1, 0, 1} drawn among those that keep its CR phase
    within half a CR pixel (0 always does: LR phases differ by at most 1 pixel)."""
    difference = lr_phases - lr_phases[target]
    offsets = np.zeros(lr_phases.shape, np.int64)
    for index in np.ndindex(*lr_phases.shape):
        allowed = [o for o in (-1, 0, 1) if abs(difference[index] - o) <= SCALE / 2]
        offsets[index] = allowed[int(rng.integers(len(allowed)))]
    return offsets


class SelfSupervisedTask:
    """Batches of CR stacks made from LR stacks, with an LR frame as the target (module doc)."""

    def __init__(self, config: SelfSupervisedConfig, device: torch.device):
        self.config, self.device = config, device
        self.train_data = _lr_stacks(config.train_data)
        self.val_data = _lr_stacks(config.val_data)
        prior = load_kernel_prior(config.kernel_prior)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            self.kernels = torch.cat([prior.sample(256, generator) for _ in range(-(-config.kernel_bank // 256))])
        self.kernel = self.kernels.shape[-1]
        self.description = (f"self-supervised: CR stacks from LR stacks, {len(self.kernels)} kernels from the "
                            "prior; loss against the target LR frame (aligned)")
        self.validation = self._validation_set()

    def _sample(self, data: dict[str, np.ndarray], index: int, order: np.ndarray, patch: int,
                rng: np.random.Generator, crop: tuple[int, int] | None, augmented: bool) -> tuple[np.ndarray, ...]:
        """One CR stack of sample `index`'s frames `order`, normalised (module doc)."""
        size = crop_size(patch, self.kernel)
        if crop is None:
            crop = tuple(int(v) for v in rng.integers(0, data["frames"].shape[-1] - size + 1, size=2))
        window = (slice(crop[0], crop[0] + size), slice(crop[1], crop[1] + size))
        frames = data["frames"][index, order][(slice(None), *window)]
        masks = data["masks"][index, order][(slice(None), *window)]
        phases = data["phases"][index, order]
        if augmented:
            (frames, masks), phases = augment([frames, masks], phases, rng)
        target = _target_frame(masks, self.config.min_target_clear, rng)
        kernels = self.kernels[torch.from_numpy(rng.integers(0, len(self.kernels), len(order)))]
        offsets = integration_offsets(phases, target, rng)
        centre, spread = data["norm"][index]
        if augmented:
            spread = spread * float(np.exp(rng.uniform(-0.4, 0.4)))
            centre = centre + rng.normal(0, 0.2) * spread
        normalised = np.where(masks, (frames - centre) / spread, 0.0).astype(np.float32)
        cr_frames, cr_masks, cr_phases, target_lr, target_mask = cr_stack(
            normalised, masks, phases, target, kernels, offsets, patch)
        noise = rng.uniform(*self.config.noise, size=(len(order), 1, 1))
        cr_frames = cr_frames + noise * rng.standard_normal(cr_frames.shape)
        return (np.where(cr_masks, cr_frames, 0.0), cr_masks, cr_phases, target_lr, target_mask,
                np.array([centre, spread]))

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        data, config = self.train_data, self.config
        n = len(data["frames"])
        t = draw_frame_count(config, int(data["counts"].max()), rng)
        parts = [self._sample(data, int(i), rng.permutation(data["counts"][i])[:t], config.patch_lr, rng, None, True)
                 for i in rng.integers(0, n, config.batch_size)]
        frames, masks, phases, target, target_mask = (
            torch.from_numpy(np.stack([p[i] for p in parts]).astype(np.float32)).to(self.device) for i in range(5))
        return frames, masks, phases, target[:, None], target_mask[:, None]

    def loss(self, pixel_loss: PixelLoss, mean: torch.Tensor, log_scale: torch.Tensor, target: torch.Tensor,
             target_mask: torch.Tensor) -> torch.Tensor:
        return aligned_loss(pixel_loss, mean, log_scale, target, target_mask)

    def _validation_set(self) -> list[tuple[np.ndarray, ...]]:
        """One fixed CR stack per validation LR stack: its first `val_frames` frames, the
        largest patch that fits, no augmentation."""
        data = self.val_data
        rng = np.random.default_rng(self.config.seed + 10_000)
        size = data["frames"].shape[-1]
        patch = (size - crop_size(0, self.kernel)) // SCALE
        return [self._sample(data, index, np.arange(min(self.config.val_frames, data["counts"][index])), patch, rng,
                             (0, 0), False) for index in range(len(data["frames"]))]

    @torch.inference_mode()
    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Mean cPSNR (dB) of the recovered target LR frames of the validation CR stacks."""
        model.eval()
        scores = []
        for frames, masks, phases, target, target_mask, (centre, spread) in self.validation:
            inputs = (torch.from_numpy(a.astype(np.float32))[None].to(self.device) for a in (frames, masks, phases))
            mean, _ = model(*inputs)
            sr = mean[0, 0].float().cpu().numpy() * spread + centre
            scores.append(cpsnr(sr / self.config.data_range, (target * spread + centre) / self.config.data_range,
                                target_mask))
        model.train()
        return {"val_cpsnr": float(np.mean(scores))}


def _target_frame(masks: np.ndarray, min_clear: float, rng: np.random.Generator) -> int:
    """A random frame at least `min_clear` clear, else the clearest."""
    clear = masks.reshape(len(masks), -1).mean(axis=1)
    candidates = np.flatnonzero(clear >= min_clear)
    return int(rng.choice(candidates)) if len(candidates) else int(np.argmax(clear))


def _lr_stacks(path: str) -> dict[str, np.ndarray]:
    """The LR arrays of a samples file (``LR_KEYS``: never its HR), phases from its shifts."""
    data = load_samples(path, required=LR_KEYS)
    stacks = {key: data[key] for key in LR_KEYS}
    stacks["phases"] = subpixel_phase(stacks["shifts"])
    # stacks of different lengths are padded with fully cloudy frames: the first `counts` are real
    stacks["counts"] = data["counts"] if "counts" in data else np.full(len(data["frames"]), data["frames"].shape[1])
    return stacks


def train_self_supervised(config: SelfSupervisedConfig, log: Callable[[str], None] = print,
                          on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume) a network self-supervised (module doc); returns the weights' path."""
    return train(config, log=log, on_step=on_step, make_task=SelfSupervisedTask)
