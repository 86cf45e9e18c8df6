"""Classical MISR pipelines (no learning), for comparison tables and as fall-backs.

Each takes LR `frames` (T, H, W) float32 and `masks` (T, H, W) bool (True = clear) and
returns an SR image (SCALE*H, SCALE*W) float32, NaN where no frame was clear. The registered
pipelines prepare the stack exactly as the engine does before its network (``engine_prepared``):
shifts estimated onto the reference frame (the clearest, then sharpest), frames moved by whole
LR pixels with their masks, then mapped onto the reference frame's radiometry (robust
gain/offset per frame over the whole scene, ``registration.radiometry``); only the sub-pixel
phase is left, applied on the HR grid. So they and the network start from the same frames.
Cloudy pixels are filled with the temporal mean of the clear frames before interpolation, so
interpolation never spreads cloud radiance next to a cloud edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import SCALE
from ..imaging.compositing import fill_masked, masked_mean
from ..imaging.deconvolution import WIENER_BALANCE, WIENER_SIGMA, wiener_deconvolve
from ..imaging.resample import forward_model, gaussian_blur, shift_image, upsample
from ..inference.detail_gate import frame_weights
from ..inference.normalisation import Normalisation
from ..registration.prepare import prepare_stack
from ..registration.reference import clearest_frame
from ..registration.shift import shift_mask
from ..registration.stack import align_stack, subpixel_phase

IBP_SIGMA = 1.2
"""Gaussian sensor PSF (HR px, before the 3x3 area integration) assumed by `ibp`: best
with `simulate.Degradation()` stacks, 0.1 dB below the true 1.0 on sigma-1.0 stacks."""
IBP_ITERATIONS = 10

Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Prepared:
    """A stack as the engine hands it to its network: registered by whole LR pixels and in the
    frames' median radiometry."""

    frames: np.ndarray  # (T, H, W) float32, 0 where not clear
    masks: np.ndarray  # (T, H, W) bool, clear after the move
    phases: np.ndarray  # (T, 2) sub-pixel remainder of every shift, LR px in [-0.5, 0.5]
    reference: int  # the frame the others were registered onto


def engine_prepared(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray | None = None) -> Prepared:
    """`frames` registered and normalised as the engine does before its network
    (``registration.prepare.prepare_stack``, as training samples are): shifts estimated on the
    registration window and centred on the frames' central position (unless given: `shifts`
    (T, 2), LR px, as from ``register_stack``), every frame moved by the whole-pixel part of its
    shift, then mapped onto the frames' median radiometry; cloudy pixels 0."""
    frames = np.asarray(frames, np.float32)
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    frames = np.where(masks, frames, 0.0).astype(np.float32)
    prepared = prepare_stack(frames, masks, shifts)
    return Prepared(prepared.frames, prepared.masks, subpixel_phase(prepared.shifts), prepared.reference)


def in_reference_radiometry(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames mapped onto the engine's reference frame's radiometry without being moved, and
    their masks (0 where not clear)."""
    prepared = engine_prepared(frames, masks, np.zeros((len(frames), 2)))
    return prepared.frames, prepared.masks


def _upsampled(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bicubic x SCALE of an LR image, NaN on the HR pixels of invalid LR pixels."""
    if not valid.any():
        return np.full((image.shape[0] * SCALE, image.shape[1] * SCALE), np.nan, np.float32)
    filled = np.where(valid, image, image[valid].mean())
    hr_valid = upsample(valid.astype(np.float32), mode="nearest") > 0.5
    return np.where(hr_valid, upsample(filled), np.nan).astype(np.float32)


def bicubic_masked_mean(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bicubic x3 of the per-pixel temporal mean of the clear frames, mapped onto the reference
    frame's radiometry but not registered."""
    mean, any_clear = masked_mean(*in_reference_radiometry(frames, masks))
    return _upsampled(mean, any_clear)


def bicubic_clearest(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bicubic x3 of the clearest frame, its cloudy pixels filled by the other frames' mean."""
    _, any_clear = masked_mean(frames, masks)
    return _upsampled(fill_masked(frames, masks)[clearest_frame(masks, frames)], any_clear)


def _phase_aligned(prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """The prepared frames (filled) bicubic x3 and moved by their sub-pixel phases onto the
    reference frame's HR grid, with their HR masks."""
    hr_frames = upsample(fill_masked(prepared.frames, prepared.masks))
    hr_masks = upsample(prepared.masks.astype(np.float32), mode="nearest") > 0.5
    return align_stack(hr_frames, hr_masks, prepared.phases * SCALE)


def registered_mean(frames: np.ndarray, masks: np.ndarray,
                    shifts: np.ndarray | None = None) -> np.ndarray:
    """Prepared as the engine prepares a stack (`engine_prepared`), bicubic x3, moved by the
    sub-pixel phases onto the reference's HR grid, masked mean.

    `shifts` (T, 2) in LR px as from ``registration.register_stack``, estimated if None.
    """
    mean, any_clear = masked_mean(*_phase_aligned(engine_prepared(frames, masks, shifts)))
    return np.where(any_clear, mean, np.nan).astype(np.float32)


def noise_weighted_mean(frames: np.ndarray, masks: np.ndarray,
                        shifts: np.ndarray | None = None) -> np.ndarray:
    """`registered_mean` with every frame weighed by its inverse noise variance: shift-and-add
    of frames as noisy as their dates made them (each frame's own noise, ``Normalisation.
    frame_noise``, weighed as the detail gate's fallback weighs it, ``detail_gate.frame_weights``)."""
    prepared = engine_prepared(frames, masks, shifts)
    norm = Normalisation.of_registered([(prepared.frames, prepared.masks)], prepared.phases)
    weights = frame_weights(np.asarray(norm.frame_noise), norm.noise) if norm.noise > 0 else None
    mean, any_clear = masked_mean(*_phase_aligned(prepared), weights)
    return np.where(any_clear, mean, np.nan).astype(np.float32)


def registered_mean_wiener(frames: np.ndarray, masks: np.ndarray,
                           psf_sigma: float = WIENER_SIGMA, balance: float = WIENER_BALANCE,
                           shifts: np.ndarray | None = None) -> np.ndarray:
    """`registered_mean` followed by Wiener deconvolution of a Gaussian PSF (sigma in HR px)."""
    return wiener_deconvolve(registered_mean(frames, masks, shifts), psf_sigma, balance)


def ibp(frames: np.ndarray, masks: np.ndarray, psf_sigma: float = IBP_SIGMA,
        iterations: int = IBP_ITERATIONS, shifts: np.ndarray | None = None) -> np.ndarray:
    """Iterative back-projection (Irani & Peleg 1991) started from `registered_mean`.

    The stack is prepared as the engine prepares it (`engine_prepared`: whole-pixel moves, the
    reference's radiometry). Each iteration simulates every LR frame from the estimate
    (``resample.forward_model``: Gaussian PSF, the frame's sub-pixel phase, area decimation)
    and adds the mean over clear frames of the residuals, bicubic-upsampled and moved back
    onto the reference grid.
    """
    prepared = engine_prepared(frames, masks, shifts)
    mean, any_clear = masked_mean(*_phase_aligned(prepared))
    if not any_clear.any():
        return np.where(any_clear, mean, np.nan).astype(np.float32)
    estimate = np.where(any_clear, mean, mean[any_clear].mean()).astype(np.float64)
    phases = prepared.phases
    hr_masks = upsample(prepared.masks.astype(np.float32), mode="nearest") > 0.5
    back_masks = np.stack([shift_mask(m, -SCALE * dy, -SCALE * dx) for m, (dy, dx) in zip(hr_masks, phases)])
    weight = np.maximum(back_masks.sum(axis=0), 1)
    for _ in range(iterations):
        blurred = gaussian_blur(estimate, psf_sigma)
        residuals = np.zeros(prepared.frames.shape, np.float32)
        for t, (frame, mask, (dy, dx)) in enumerate(zip(prepared.frames, prepared.masks, phases)):
            residuals[t] = np.where(mask, frame - forward_model(blurred, dy, dx, psf_sigma=0.0), 0.0)
        back = [shift_image(r, -SCALE * dy, -SCALE * dx) for r, (dy, dx) in zip(upsample(residuals), phases)]
        estimate += np.sum(np.where(back_masks, back, 0.0), axis=0) / weight
    return np.where(any_clear, estimate, np.nan).astype(np.float32)


BASELINES: dict[str, Baseline] = {
    "bicubic_masked_mean": bicubic_masked_mean,
    "registered_mean": registered_mean,
    "noise_weighted_mean": noise_weighted_mean,
    "registered_mean_wiener": registered_mean_wiener,
    "ibp": ibp,
}
"""Name -> pipeline (frames, masks) -> SR, in increasing order of sophistication: the classical
methods of every evaluation."""
STRONGEST_CANDIDATES = ("registered_mean", "noise_weighted_mean", "registered_mean_wiener", "ibp")
"""The registered pipelines of which the best, per scene, is the "strongest classical" baseline."""
