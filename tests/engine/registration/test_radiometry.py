"""Radiometric normalisation: one robust gain and offset per frame, for the whole scene."""

from __future__ import annotations

import numpy as np
import pytest
from misr_engine.imaging.resample import shift_image
from misr_engine.registration.radiometry import (
    MAX_GAIN_ERROR,
    Radiometry,
    fit_radiometry,
    gain_error,
    robust_line,
    stack_radiometry,
)
from misr_engine.registration.stack import centre_shifts

from tests.engine.registration.change_study_scenes import SCENE_43, SCENE_62, change_study_scene
from tests.rasters import HOLDOUT_HR


def real_texture() -> np.ndarray:
    from misr_engine.rasters.bands import read_band
    image = read_band(str(HOLDOUT_HR))[0][:192, :192]
    return image.reshape(64, 3, 64, 3).mean(axis=(1, 3))  # a real 30 m scene, 64 x 64


def test_a_robust_line_ignores_a_changed_minority():
    rng = np.random.default_rng(0)
    x = rng.uniform(100, 3000, 4000)
    y = 1.08 * x - 40 + rng.normal(0, 5, x.size)
    y[:600] += 1500  # 15% of the blocks changed: not radiometry
    gain, offset = robust_line(x, y)
    assert abs(gain - 1.08) < 0.01 and abs(offset + 40) < 10


def test_frames_are_mapped_onto_the_frames_median_radiometry_and_a_changed_field_stays():
    scene = real_texture().astype(np.float64)
    gains, offsets = np.array([1.0, 0.9, 1.12, 1.05, 0.95]), np.array([0.0, 35.0, -60.0, 10.0, 20.0])
    frames = np.stack([g * scene + o for g, o in zip(gains, offsets)])
    frames[1:3, 20:40, 20:40] += 1200  # a field changed in two frames
    masks = np.ones(frames.shape, bool)
    mapped = stack_radiometry(frames.astype(np.float32), masks, 0, np.zeros((len(frames), 2))).apply(frames, masks)
    # the median radiometry: the median gain, and at the scene's level the median of the frames' values
    typical = np.median(scene)
    level = np.median(gains) * (scene - typical) + np.median(gains * typical + offsets)
    outside = np.ones(scene.shape, bool)
    outside[20:40, 20:40] = False
    assert np.abs(mapped[:, outside] - level[outside]).max() < 0.01 * level.mean()
    assert (mapped[1:3, 25:35, 25:35] - level[25:35, 25:35]).mean() > 1000  # the change is kept


@pytest.mark.parametrize("offset", [1000.0, -300.0])
def test_numbers_offset_by_a_constant_are_mapped_to_the_same_surface_offset_by_it(offset):
    """A product that adds a constant to its numbers (Sentinel-2 L2A: +1000 since baseline 04.00)
    shows the same surface: the mapped frames move by exactly that constant (with the median of
    the offsets, the maps' values at 0, they moved by 10 DN more or less here)."""
    scene = real_texture().astype(np.float64)
    gains, offsets = np.array([1.0, 0.9, 1.12, 1.05, 0.95]), np.array([0.0, 35.0, -60.0, 10.0, 20.0])
    frames = np.stack([g * scene + o for g, o in zip(gains, offsets)])
    masks = np.ones(frames.shape, bool)
    mapped = [stack_radiometry(f.astype(np.float32), masks, 0, np.zeros((len(f), 2))).apply(f, masks) for f in (frames, frames + offset)]
    np.testing.assert_allclose(mapped[1] - mapped[0], offset, atol=0.05)


def test_a_field_changed_in_half_the_frames_moves_no_frames_fit():
    """Fitted against the frames' per-block median, not one reference frame: a change in some
    frames (which may make another frame the sharpest) leaves every fit where it was."""
    scene = real_texture().astype(np.float64)
    gains = np.array([1.0, 0.9, 1.1, 1.05, 0.95, 1.02, 0.97, 1.08])
    offsets = np.array([0.0, 30.0, -20.0, 10.0, -5.0, 25.0, -15.0, 5.0])
    frames = np.stack([g * scene + o for g, o in zip(gains, offsets)])
    changed = frames.copy()
    changed[::2, 20:40, 20:40] += 1500
    masks = np.ones(frames.shape, bool)
    before, after = (stack_radiometry(f.astype(np.float32), masks, reference, np.zeros((len(f), 2))) for f, reference in ((frames, 1), (changed, 0)))
    np.testing.assert_allclose(after.gains, before.gains, rtol=2e-3)
    np.testing.assert_allclose(after.offsets, before.offsets, atol=0.003 * scene.mean())


def test_identity_radiometry_changes_nothing_but_cloudy_pixels():
    frames = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    masks = frames > 3
    np.testing.assert_array_equal(Radiometry.identity(1).apply(frames, masks), np.where(masks, frames, 0))


def test_shifts_are_centred_on_the_frames_median_position_whatever_the_reference():
    shifts_from_a = np.array([[0.0, 0.0], [0.4, -1.2], [1.1, 0.3], [-0.2, 0.5]])
    shifts_from_c = shifts_from_a - shifts_from_a[2]  # the same frames measured against frame 2
    masks = np.ones((4, 5, 5), bool)
    np.testing.assert_allclose(centre_shifts(shifts_from_a, masks), centre_shifts(shifts_from_c, masks))


def test_on_the_real_sample_a_field_changed_in_half_the_frames_leaves_the_other_frames_fits(sample_stack):
    """The sample's 8 usable frames, a field raised by 1500 DN in 4 of them (which also makes
    another frame the reference): fitted against one reference frame, an unchanged frame's gain
    went from 1.06 to 0.76; against the mapped frames' median it stays."""
    from misr_engine.rasters.stack import Stack
    from misr_engine.registration.streamed import (
        RegisteredRows,
        scene_radiometry,
        stack_registration,
    )

    keep = sample_stack.clear_fraction > 0
    frames, masks = sample_stack.frames[keep], sample_stack.masks[keep]
    changed = frames.copy()
    changed[::2, 50:80, 60:90] += 1500
    fits = []
    for stack in (Stack.in_memory(frames, masks), Stack.in_memory(changed, masks)):
        shifts, reference = stack_registration(stack)
        fits.append(scene_radiometry(RegisteredRows(stack, shifts), reference))
    unchanged = slice(1, None, 2)
    np.testing.assert_allclose(fits[1].gains[unchanged], fits[0].gains[unchanged], rtol=0.01)
    level = float(frames[masks].mean())
    np.testing.assert_allclose(fits[1].offsets[unchanged], fits[0].offsets[unchanged], atol=0.005 * level)


def test_a_frame_cloudy_over_the_whole_scene_does_not_move_the_others():
    """Its gain and offset are placeholders (no clear block to fit): they do not vote in the
    frames' median radiometry (before, its gain 1 and offset 0 moved every frame's map)."""
    scene = real_texture().astype(np.float64)
    gains, offsets = np.array([1.0, 0.9, 1.12, 1.05]), np.array([0.0, 35.0, -60.0, 10.0])
    frames = np.stack([g * scene + o for g, o in zip(gains, offsets)] + [scene]).astype(np.float32)
    masks = np.ones(frames.shape, bool)
    masks[-1] = False
    alone = stack_radiometry(frames[:-1], masks[:-1], 0, np.zeros((4, 2)))
    with_cloudy = stack_radiometry(frames, masks, 0, np.zeros((5, 2)))
    np.testing.assert_allclose(with_cloudy.gains[:-1], alone.gains, rtol=1e-9)
    np.testing.assert_allclose(with_cloudy.offsets[:-1], alone.offsets, atol=1e-6)


def test_frames_between_the_others_samples_get_the_gain_they_were_given():
    """Frames registered to whole pixels still sit up to half a pixel apart: fitted on block means
    of the frames as they are, gains were off by up to 1.7% here; moved by their phases onto one
    grid first, by 0.23%."""
    scene = real_texture().astype(np.float64)
    gains, offsets = np.array([1.0, 0.9, 1.12, 1.05, 0.95, 1.08]), np.array([0.0, 35.0, -60.0, 10.0, 20.0, -5.0])
    phases = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 2))
    phases[0] = 0.0
    frames = np.stack([g * shift_image(scene, dy, dx) + o for g, o, (dy, dx) in zip(gains, offsets, phases)])
    masks = np.ones(frames.shape, bool)
    fits = stack_radiometry(frames.astype(np.float32), masks, 0, phases)
    np.testing.assert_allclose(fits.gains, gains / np.median(gains), rtol=0.005)


@pytest.mark.slow
def test_on_low_contrast_scenes_no_gain_is_fitted_to_noise():
    """32 low-contrast stacks (4 crops of the sample's real image x 8 seeds, the evaluation's
    low-contrast conditions, changed fields included): every clear frame's gain within 30% of
    the one it was given. Gains fitted wherever a line could be drawn were off by a factor of up
    to 4.7 (3 of 32 stacks beyond 30%); kept only where the blocks determine them
    (MAX_GAIN_ERROR), at most 26% (the others keep gain 1 and get an offset)."""
    from misr_engine import SCALE
    from misr_engine.datasets.samples import MARGIN
    from misr_engine.datasets.simulate import LOW_CONTRAST, degrade, with_contrast
    from misr_engine.inference.tiled import prepare_scene
    from misr_engine.rasters.bands import read_band
    from misr_engine.rasters.stack import Stack
    from misr_engine.resources import sample_dir

    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float64)
    side = SCALE * 48 + 2 * MARGIN
    worst = 0.0
    for seed in range(8):
        for row, col in ((138, 0), (69, 69), (100, 100), (250, 100)):
            rng = np.random.default_rng(seed)
            stack = degrade(with_contrast(hr[row:row + side, col:col + side], LOW_CONTRAST, rng), 9, rng,
                            LOW_CONTRAST, MARGIN)
            rows = prepare_scene(Stack.in_memory(stack.frames, stack.masks))[0]
            clear = stack.masks.any(axis=(1, 2))
            given = stack.gains / np.median(stack.gains)
            worst = max(worst, float(np.abs(np.log(rows.radiometry.gains[clear] / given[clear])).max()))
    assert worst < np.log(1.3), f"a gain off by a factor of {np.exp(worst):.2f}"


def test_a_gain_fades_out_around_the_bound_instead_of_jumping():
    """A frame whose gain is barely determined takes part of its line: as the noise on its blocks
    grows past the gain error bound its gain goes from the fitted 0.9 to 1 in small steps. With a
    hard bound it jumped by 0.1 at once, and a thousandth of a pixel of registration moved every
    frame's map (the SR by 3.4% of the level on a validation scene)."""
    rng = np.random.default_rng(3)
    x = real_texture()[::4, ::4].ravel().astype(np.float64)  # 256 blocks of real texture
    noise = rng.normal(0, 1, x.size) * np.std(x)
    frame_gains, errors = [], []
    for share in np.linspace(0.1, 0.9, 161):  # noise from a tenth to nine tenths of the texture's spread
        y = 0.9 * x + 25 + share * noise
        values = np.stack([x, x, y])
        frame_gains.append(fit_radiometry(values, np.ones(values.shape, bool), 0).gains[2])
        errors.append(gain_error(x, y, *robust_line(x, y)))
    assert min(errors) < MAX_GAIN_ERROR / 2 and max(errors) > 2 * MAX_GAIN_ERROR  # the bound is crossed
    assert abs(frame_gains[0] - 0.9) < 0.02 and frame_gains[-1] == 1.0
    assert np.abs(np.diff(frame_gains)).max() < 0.02


def _engine_fits(frames: np.ndarray, masks: np.ndarray, references: list[int] | None = None) -> list[Radiometry]:
    """The scene's radiometric fits as the engine makes them (``streamed.scene_radiometry`` after
    ``stack_registration``, registered once), against each of `references` (default: the one chosen)."""
    from misr_engine.rasters.stack import Stack
    from misr_engine.registration.streamed import RegisteredRows, scene_radiometry, stack_registration

    stack = Stack.in_memory(frames, masks)
    shifts, chosen = stack_registration(stack)
    rows = RegisteredRows(stack, shifts)
    return [scene_radiometry(rows, reference) for reference in ([chosen] if references is None else references)]


def _maps_at_the_level(frames: np.ndarray, masks: np.ndarray, level: float,
                       references: list[int] | None = None) -> np.ndarray:
    """(R, T) what each frame's value `level` becomes in the scene's radiometry (`_engine_fits`)."""
    return np.stack([(level - fit.offsets) / fit.gains for fit in _engine_fits(frames, masks, references)])


@pytest.mark.xfail(strict=True, reason="issue 14 not resolved: Tukey's IRLS from the spread ratio alone ends on a "
                   "wrong line here; several starts lost on validation (docs/evaluation/radiometry_starts_rule.md)")
def test_a_changed_field_does_not_send_an_unchanged_frames_fit_to_a_wrong_line():
    """The change study's draw 43 (a field raised in 4 of 9 frames): started only from the ratio of
    the robust spreads, Tukey's IRLS sent an unchanged frame's fit from gain 1.25 to 0.88 (residual
    spread 12.4 against 1.7), and every frame's map moved with it (up to 3.4% of the level; the SR
    away from the field by 2.81%). From several starts the unchanged frames' maps stay within 0.1%
    (that candidate lost 1.18 dB on another validation scene: its rule's log)."""
    frames, masks, _, changed = change_study_scene(*SCENE_43)
    level = float(np.median(frames[masks]))
    moved = np.abs(_maps_at_the_level(changed, masks, level) - _maps_at_the_level(frames, masks, level))[0] / level
    unchanged = np.setdiff1d(np.arange(len(frames)), SCENE_43[2])
    assert moved[unchanged].max() < 0.01, (100 * moved).round(2)


@pytest.mark.xfail(strict=True, reason="issue 14 not resolved: a frame whose gain is not determined falls back on "
                   "the reference's; the central gain lost on validation (docs/evaluation/radiometry_fallback_rule.md)")
def test_the_frames_maps_do_not_depend_on_which_clear_frame_is_the_reference():
    """The change study's draw 62, unchanged: a frame whose gain its few clear blocks do not
    determine fell back on gain 1 against a target whose gain the reference sets, so the clear
    frames as references gave maps up to 6.9% of the level apart (a change that moved the
    reference moved the SR away from the field by 11.6%); falling back on the fitted frames'
    central gain, within 0.6% (that candidate moved another scene's SR more: its rule's log)."""
    frames, masks, _, _ = change_study_scene(*SCENE_62)
    level = float(np.median(frames[masks]))
    clear = np.flatnonzero(masks.all(axis=(1, 2)))
    maps = _maps_at_the_level(frames, masks, level, list(clear))
    assert len(clear) >= 3
    assert ((maps.max(axis=0) - maps.min(axis=0)) / level).max() < 0.01, (100 * maps / level).round(2)


def test_the_level_is_voted_by_every_frame_whose_level_is_determined():
    """The output's gain is the median over the frames whose gain is determined (`fitted`), its
    value at the level the median over every frame whose level is (`levelled`); a frame without
    clear blocks (a placeholder, frame 0) votes in neither."""
    gains, offsets = np.array([1.0, 1.1, 0.9, 1.0, 1.0]), np.array([0.0, 5.0, -5.0, 40.0, 0.0])
    radiometry = Radiometry(gains, offsets, level=100.0, fitted=np.array([0, 1, 1, 0, 0], bool),
                            levelled=np.array([0, 1, 1, 1, 1], bool))
    centred = radiometry.centred()
    output_gain = gains / centred.gains  # the output's line on the reference: gain, and value at the level
    output_at_level = (gains * 100.0 + offsets - centred.offsets) / centred.gains
    np.testing.assert_allclose(output_gain, 1.0)  # the median of 1.1 and 0.9 (frames 3 and 4: gain 1 by default)
    np.testing.assert_allclose(output_at_level, np.median([115.0, 85.0, 140.0, 100.0]))  # frames 1-4's values there


@pytest.mark.parametrize("scene", [1, 3])
def test_on_low_contrast_scenes_the_output_level_is_the_frames(scene):
    """Low-contrast validation scenes (the evidence set's draw after 588) where two or three of nine
    frames have a determined gain: with only them voting in the level, the frames' maps sat 7-8% off
    the targets' level (docs/evaluation/radiometry_level_votes_rule.md); with every frame whose level
    is determined, within 2%."""
    from misr_engine.evaluation.adaptation import evidence_scenes

    scenes = evidence_scenes("low-contrast", "validation", scene + 1, 64, skip=588)
    frames, masks, hr = scenes["frames"][scene], scenes["masks"][scene], scenes["hr"][scene]
    mapped = _engine_fits(frames, masks)[0].apply(frames, masks)
    level = np.median([m[c].mean() for m, c in zip(mapped, masks) if c.any()])
    assert abs(level / hr.mean() - 1) < 0.02, (level, hr.mean())
