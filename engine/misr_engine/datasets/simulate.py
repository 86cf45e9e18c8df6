"""Semi-simulated LR time series from real HR imagery.

Each LR frame is the HR image seen through a realistic acquisition, all in the Fourier domain
(exact sub-pixel shifts, no interpolation artefacts):

    LR_t = decimate_x3( shift_t( PSF_t * HR_t ) ) * gain_t + offset_t + noise_t, then clouds_t

* HR_t: the surface on date t: the HR image, plus (in some stacks) a real change: a smooth field
  brighter or darker in some of the frames (a harvest, a flood);
* shift_t: misregistration, uniform in [-max_shift, max_shift] LR pixels per axis;
* PSF_t: anisotropic Gaussian (random sigmas and orientation), sometimes with a wide halo
  (straylight, adjacency), times the 3x3 pixel-integration box, different for every frame;
* gain/offset: radiometric drift between dates;
* noise: Gaussian sensor noise;
* clouds: smooth random shapes, bright, with their mask (most frames nearly clear, some
  partly cloudy, a few mostly cloudy).

The decimation follows the engine's pixel-area convention: LR pixel i is centred on HR pixel
3i + 1. `reference_target` gives what the SR of a registered stack should show: the
clear-temporal-mean surface on the engine's output grid, in its output radiometry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from .. import SCALE
from ..registration.radiometry import central_line


@dataclass(frozen=True)
class Degradation:
    """Ranges of the simulated acquisition conditions (HR pixels unless stated). The defaults are
    the training ranges (`TRAINING` adds stacks of less contrast): wider than Sentinel-2's own,
    since users bring other sensors."""

    max_shift_lr: float = 1.5  # per axis, LR pixels, per frame (pairwise up to 2x this)
    psf_sigma: tuple[float, float] = (0.5, 2.4)  # Gaussian sigma range per axis, HR pixels
    halo_probability: float = 0.3  # chance that a frame's PSF has a wide halo
    halo_weight: tuple[float, float] = (0.05, 0.25)  # share of the energy in the halo
    halo_scale: tuple[float, float] = (2.5, 5.0)  # halo sigma / core sigma
    gain: tuple[float, float] = (0.85, 1.15)
    offset_fraction: float = 0.05  # std of the offset, as a fraction of the mean level
    noise_fraction: tuple[float, float] = (0.001, 0.02)  # noise std / mean level
    cloud_probability: float = 0.5  # chance that a frame has clouds at all
    cloud_cover: tuple[float, float] = (0.02, 0.7)  # cover of a cloudy frame
    full_cloud_probability: float = 0.03  # chance that a frame is entirely cloudy
    change_probability: float = 0.3  # chance that a stack shows a real surface change
    change_amplitude: tuple[float, float] = (0.15, 0.8)  # |change| / mean level (sign random)
    change_cover: tuple[float, float] = (0.03, 0.2)  # area of the changed field
    change_frames: tuple[float, float] = (0.2, 0.6)  # share of the frames that show it
    contrast: tuple[float, float] = (1.0, 1.0)  # factor on the scene's contrast about its mean level
    contrast_probability: float = 1.0  # chance that a stack's contrast is scaled (when `contrast` is not (1, 1))


SENTINEL2 = Degradation(max_shift_lr=1.0, psf_sigma=(0.7, 1.8), halo_probability=0.0, gain=(0.92, 1.08),
                        offset_fraction=0.03, noise_fraction=(0.002, 0.012), change_probability=0.0)
"""The narrower conditions of Sentinel-2-like stacks without change (the embedded sample scene)."""
TRAINING = replace(Degradation(), contrast=(0.35, 1.0), contrast_probability=0.3)
"""The training stacks' conditions: the defaults, and 30% of the stacks with 0.35-1 of their
contrast (the noise still relative to the level), so that the network meets fainter detail against
the same noise; the low-contrast evaluation set (0.1-0.3) stays beyond it."""
OUT_OF_RANGE = replace(Degradation(), max_shift_lr=2.5, psf_sigma=(2.4, 3.2), noise_fraction=(0.02, 0.04),
                       halo_probability=0.5, halo_weight=(0.2, 0.35), change_probability=0.0)
"""Stronger blur, more noise and larger shifts than any training stack (evaluation only)."""
SURFACE_CHANGE = replace(Degradation(), change_probability=1.0)
"""Every stack shows a changed field (evaluation of how change is rendered)."""
LOW_CONTRAST = replace(Degradation(), contrast=(0.1, 0.3))
"""Scenes with a tenth to a third of their contrast (water, desert, snow, haze), the noise still
relative to the level: less detail against the same noise than any training stack (evaluation only)."""
SHARP_SENSOR = replace(Degradation(), psf_sigma=(0.01, 0.01), halo_probability=0.0)
"""One sensor whose frames are blurred by their pixels alone (the 3 x 3 box; imagery downsampled
by averaging pixels looks so): sharper than any training stack (evaluation only)."""
BLURRED_SENSOR = replace(Degradation(), psf_sigma=(1.8, 2.4), halo_probability=0.0)
"""A blurry sensor: every frame blurred by 1.8-2.4 HR px (MTF 0.04-0.10 at the input's Nyquist; a
product resampled to pixels finer than the sensor's looks so), the top of the training range
(evaluation only)."""
STRONG_CHANGE = replace(SURFACE_CHANGE, change_amplitude=(0.8, 1.5), change_frames=(0.3, 0.5))
"""A field 0.8-1.5 times the scene's level brighter or darker in 30-50% of the frames (a harvest,
a flood): beyond the training range, for validating how registration copes with change."""


@dataclass
class SimulatedStack:
    frames: np.ndarray  # (T, h, w) float32
    masks: np.ndarray  # (T, h, w) bool, True = clear
    shifts: np.ndarray  # (T, 2) LR pixels (dy, dx)
    psf_sigmas: np.ndarray  # (T, 2) HR pixels
    hr: np.ndarray  # (SCALE*h, SCALE*w) float32, aligned with the LR grid (the unchanged surface)
    gains: np.ndarray  # (T,)
    offsets: np.ndarray  # (T,)
    change: np.ndarray  # (SCALE*h + 2*margin, SCALE*w + 2*margin) the change field, HR with margin
    changed: np.ndarray  # (T,) bool: the frames that show the change
    margin: int = 12


def transfer_function(shape: tuple[int, int], sigma: tuple[float, float], angle: float,
                      shift: tuple[float, float], halo: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Fourier transfer function of a rotated anisotropic Gaussian (with a share `halo[0]` of its
    energy in a `halo[1]` times wider Gaussian) x pixel box x shift (HR px)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    fu, fv = cos * fx + sin * fy, -sin * fx + cos * fy

    def gaussian(scale: float) -> np.ndarray:
        return np.exp(-2 * np.pi ** 2 * ((scale * sigma[1] * fu) ** 2 + (scale * sigma[0] * fv) ** 2))
    weight, scale = halo
    psf = (1 - weight) * gaussian(1.0) + (weight * gaussian(scale) if weight else 0.0)
    box = np.sinc(SCALE * fy) * np.sinc(SCALE * fx)
    return psf * box * shift_phase(shape, shift)


def shift_phase(shape: tuple[int, int], shift: tuple[float, float]) -> np.ndarray:
    """The Fourier factor that moves an image's content by `shift` (dy, dx) pixels."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))


def smooth_field(shape: tuple[int, int], cover: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field thresholded to the requested cover; True inside."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(shape) / rng.uniform(6, 16))
    return field > np.quantile(field, 1.0 - cover)


cloud_mask = smooth_field  # a cloud is a smooth random shape


def _change_field(shape: tuple[int, int], level: float, conditions: Degradation,
                  rng: np.random.Generator) -> np.ndarray:
    """A field of changed surface (HR, with margin): a smooth shape with soft edges, +- amplitude."""
    if rng.random() >= conditions.change_probability:
        return np.zeros(shape)
    inside = smooth_field(shape, rng.uniform(*conditions.change_cover), rng).astype(float)
    soft = ndimage.gaussian_filter(inside, 1.0)
    return soft * rng.choice([-1.0, 1.0]) * rng.uniform(*conditions.change_amplitude) * level


def with_contrast(hr: np.ndarray, conditions: Degradation, rng: np.random.Generator) -> np.ndarray:
    """The HR image with its contrast about its mean level scaled by a factor drawn from
    `conditions.contrast`; unchanged, and nothing drawn, at the default (1, 1), so the scenes of
    every other set stay the same draws; with `conditions.contrast_probability` below 1, only
    that share of the stacks (one more draw)."""
    if tuple(conditions.contrast) == (1.0, 1.0):
        return hr
    if conditions.contrast_probability < 1.0 and rng.random() >= conditions.contrast_probability:
        return hr
    level = float(hr.mean())
    return level + rng.uniform(*conditions.contrast) * (hr - level)


def degrade(hr_with_margin: np.ndarray, n_frames: int, rng: np.random.Generator,
            conditions: Degradation = Degradation(), margin: int = 12) -> SimulatedStack:
    """Simulate `n_frames` LR frames of the HR image (cropped by `margin` HR px on each side)."""
    hr_with_margin = hr_with_margin.astype(np.float64)
    height, width = hr_with_margin.shape
    h, w = (height - 2 * margin) // SCALE, (width - 2 * margin) // SCALE
    level = float(hr_with_margin.mean())
    change = _change_field((height, width), max(level, 0.0), conditions, rng)
    changed = np.zeros(n_frames, bool)
    if change.any():
        count = max(1, int(round(rng.uniform(*conditions.change_frames) * n_frames)))
        changed[rng.permutation(n_frames)[:count]] = True
    spectra = {False: np.fft.fft2(hr_with_margin), True: np.fft.fft2(hr_with_margin + change)}
    frames, masks, shifts, sigmas, gains, offsets = [], [], [], [], [], []
    for index in range(n_frames):
        shift = rng.uniform(-conditions.max_shift_lr, conditions.max_shift_lr, size=2)
        sigma = rng.uniform(*conditions.psf_sigma, size=2)
        angle = rng.uniform(0, np.pi)
        halo = ((rng.uniform(*conditions.halo_weight), rng.uniform(*conditions.halo_scale))
                if rng.random() < conditions.halo_probability else (0.0, 1.0))
        blurred = np.fft.ifft2(spectra[bool(changed[index])] * transfer_function(
            (height, width), tuple(sigma), angle, tuple(shift * SCALE), halo)).real
        lr = blurred[margin + 1:margin + SCALE * h:SCALE, margin + 1:margin + SCALE * w:SCALE]
        gain, offset = rng.uniform(*conditions.gain), rng.normal(0, conditions.offset_fraction) * level
        lr = lr * gain + offset
        lr = lr + rng.normal(0, rng.uniform(*conditions.noise_fraction) * level, size=lr.shape)
        clouds = np.zeros(lr.shape, bool)
        if rng.random() < conditions.full_cloud_probability:
            clouds[:] = True
        elif rng.random() < conditions.cloud_probability:
            clouds = cloud_mask(lr.shape, rng.uniform(*conditions.cloud_cover), rng)
        lr = np.where(clouds, level * rng.uniform(2.5, 5.0) + 0.1 * level * rng.standard_normal(lr.shape), lr)
        frames.append(lr)
        masks.append(~clouds)
        shifts.append(shift)
        sigmas.append(sigma)
        gains.append(gain)
        offsets.append(offset)
    hr = hr_with_margin[margin:margin + SCALE * h, margin:margin + SCALE * w]
    return SimulatedStack(np.asarray(frames, np.float32), np.asarray(masks), np.asarray(shifts),
                          np.asarray(sigmas), hr.astype(np.float32), np.asarray(gains), np.asarray(offsets),
                          change.astype(np.float32), changed, margin)


def change_share(masks: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """At every LR pixel, the share of the frames clear there (all frames where none is) that
    show the change: (T, h, w) masks, (T,) changed flags -> (h, w)."""
    clear = np.asarray(masks, np.float64)
    count = clear.sum(axis=0)
    shown = (clear * np.asarray(changed, np.float64)[:, None, None]).sum(axis=0)
    return np.where(count > 0, shown / np.maximum(count, 1), np.mean(changed) if len(changed) else 0.0)


def upsampled_share(masks: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """`change_share` on the HR grid (each LR pixel's value on its 3 x 3 HR pixels)."""
    return np.kron(change_share(masks, changed), np.ones((SCALE, SCALE)))


def mean_state(hr_with_margin: np.ndarray, stack: SimulatedStack) -> np.ndarray:
    """The clear-temporal-mean surface (HR, with margin): the HR image plus the change field
    weighted, at every pixel, by the share of the frames clear there that show the change
    (`change_share`). This is what the SR of a changing stack should show."""
    if not stack.changed.any():
        return hr_with_margin.astype(np.float64)
    share = np.pad(upsampled_share(stack.masks, stack.changed), stack.margin, mode="edge")
    return hr_with_margin + stack.change * share


def on_grid(image_with_margin: np.ndarray, stack: SimulatedStack, shift_lr: np.ndarray) -> np.ndarray:
    """An HR image (with margin) moved by `shift_lr` (dy, dx) LR pixels, as a frame with that
    shift sees the scene (without margin, float64)."""
    moved = np.fft.ifft2(np.fft.fft2(image_with_margin)
                         * shift_phase(image_with_margin.shape, tuple(np.asarray(shift_lr) * SCALE))).real
    m = stack.margin
    height, width = stack.hr.shape
    return moved[m:m + height, m:m + width]


@dataclass(frozen=True)
class OutputFrame:
    """Where and in what radiometry the engine puts a registered stack's SR: on the grid of a frame
    shifted by `shift_lr` (LR px, absolute: the simulated frames' frame of reference), in the
    radiometry gain * HR + offset (HR digital numbers)."""

    shift_lr: np.ndarray
    gain: float
    offset: float


def output_frame(stack: SimulatedStack, reference: int, registered_shift: np.ndarray,
                 reference_gain: float, reference_offset: float) -> OutputFrame:
    """The `OutputFrame` of a stack registered with the engine: frame `reference` was measured
    at `registered_shift` on the output grid, and the engine maps it with (x - offset) / gain."""
    true_shift = stack.shifts[reference]
    gain = stack.gains[reference] / reference_gain
    return OutputFrame(true_shift - np.asarray(registered_shift), float(gain),
                       float((stack.offsets[reference] - reference_offset) / reference_gain))


def central_target(state: np.ndarray, stack: SimulatedStack) -> np.ndarray:
    """A surface (HR numbers) in the stack's central radiometry (``radiometry.central_line`` on the true
    gains and offsets, at the surface's median): what the SR of its unregistered frames should show."""
    gain, offset = central_line(stack.gains, stack.offsets, float(np.median(state)))
    return state * gain + offset


def reference_target(hr_with_margin: np.ndarray, stack: SimulatedStack, output: OutputFrame) -> np.ndarray:
    """What the SR of the registered stack should be, pixel for pixel: the `mean_state` on the
    output grid, in the output radiometry. Float32, without margin."""
    state = on_grid(mean_state(hr_with_margin, stack), stack, output.shift_lr)
    return (state * output.gain + output.offset).astype(np.float32)


def reference_change(stack: SimulatedStack, output: OutputFrame) -> np.ndarray:
    """The change field on the output grid, in its radiometry (x its gain), float32: for a subset
    of the frames, the target is the unchanged surface's target plus this times
    `upsampled_share` of the subset."""
    return (on_grid(stack.change, stack, output.shift_lr) * output.gain).astype(np.float32)
