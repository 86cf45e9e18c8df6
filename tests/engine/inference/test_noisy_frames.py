"""A frame far noisier than the others (a hazy or dark date, another sensor) is named in the run's
warnings (``Normalisation.noisy_frames``) and, from LEAVE_OUT_RATIO times the median frame's noise
on, left out of the run unless kept as asked (``tiled.leave_out_noisy``), on the real sample scene."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from misr_engine import SCALE
from misr_engine.datasets.samples import MARGIN
from misr_engine.datasets.simulate import Degradation, central_target, degrade
from misr_engine.evaluation.adaptation import scene_score
from misr_engine.inference.normalisation import (
    LEAVE_OUT_RATIO,
    NOISY_FRAME_RATIO,
    Normalisation,
)
from misr_engine.inference.tiled import (
    leave_out_noisy,
    noisy_in_every_band,
    super_resolve,
)
from misr_engine.pipeline import SuperResolveRequest, frames_used, super_resolve_files
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.masks import MaskOptions
from misr_engine.rasters.stack import Stack, open_stack
from misr_engine.resources import sample_dir
from osgeo import gdal

from tests.engine.reporting import Recorder
from tests.rasters import make_raster

CROP = (slice(20, 68), slice(30, 78))  # LR px of the sample
NOISY = 3  # the frame made noisy (0-based)


def _warnings_of(stack: Stack, model: torch.nn.Module, **options) -> list[str]:
    heard: list[str] = []
    super_resolve(stack, model, torch.device("cpu"), on_warning=heard.append, **options)
    return [message for message in heard if "times as noisy" in message]


def _with_noisy_frame(frames: np.ndarray, masks: np.ndarray, times: float, seed: int = 0) -> np.ndarray:
    """`frames` with frame NOISY given noise `times` the median frame's own (measured on the clear blocks)."""
    frame_noise = Normalisation.of_blocks([(frames, masks)]).frame_noise
    noisy = np.array(frames, np.float32)
    rng = np.random.default_rng(seed)
    noisy[NOISY] += rng.normal(0.0, times * np.median(frame_noise), size=noisy[NOISY].shape).astype(np.float32)
    return noisy


def _files(folder, names: list[str], frames: np.ndarray, masks: np.ndarray) -> tuple[list[str], list[str]]:
    """`frames` ((T, H, W), or (T, bands, H, W)) written as float GeoTIFFs named `names`, and `masks` as binary masks."""
    paths = [str(make_raster(folder / name, frame, gdal.GDT_Float32)) for name, frame in zip(names, frames)]
    masks_written = [str(make_raster(folder / f"mask_{index}.tif", mask.astype(np.uint8), gdal.GDT_Byte))
                     for index, mask in enumerate(masks)]
    return paths, masks_written


def test_a_frame_far_noisier_than_the_others_is_named_and_no_other(sample_stack, shipped_model):
    frames, masks = sample_stack.frames[(slice(None), *CROP)], sample_stack.masks[(slice(None), *CROP)]
    clean = Stack(frames, masks, sample_stack.grid, list(sample_stack.paths))
    assert _warnings_of(clean, shipped_model) == []  # the real frames: none far noisier than the others

    paths = list(sample_stack.paths)
    for added, outcome in ((0.5 * (NOISY_FRAME_RATIO + LEAVE_OUT_RATIO), "kept (frames from"),
                           (2 * LEAVE_OUT_RATIO, "left out of this run")):
        noisy = _with_noisy_frame(frames, masks, added)
        warnings = _warnings_of(Stack(noisy, masks, sample_stack.grid, paths), shipped_model)
        assert len(warnings) == 1 and warnings[0].startswith("frame_04.tif is ") and outcome in warnings[0]
        times = float(warnings[0].split(" is ")[1].split(" times")[0])
        assert 0.75 * added < times < 1.5 * added
    kept = _warnings_of(Stack(noisy, masks, sample_stack.grid, paths), shipped_model, keep_noisy_frames=True)
    assert len(kept) == 1 and kept[0].startswith("frame_04.tif is ") and "kept as asked" in kept[0]


def test_the_noisy_frame_is_left_out_and_the_sr_is_better_for_it(shipped_model):
    """Crops of the sample's real 10 m image degraded in the training ranges into 9 frames, one of
    them made 8 times as noisy as the others: the default run is the run on the other 8 frames
    (identical), and it scores above the run that keeps the noisy frame (on 12 validation scenes
    leaving a frame 10 times as noisy out gained 2.3 dB [1.8, 2.8] with 9 frames, 5 times 0.7 dB)."""
    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float64)
    side = SCALE * 40 + 2 * MARGIN
    for seed, (row, col) in enumerate(((138, 0), (100, 100))):
        rng = np.random.default_rng(seed)
        stack = degrade(hr[row:row + side, col:col + side], 9, rng, Degradation(), MARGIN)
        target = central_target(stack.hr, stack)
        frames = _with_noisy_frame(stack.frames, stack.masks, 8.0, seed)
        others = np.arange(len(frames)) != NOISY
        default, kept, without = (
            super_resolve(Stack.in_memory(f, m), shipped_model, torch.device("cpu"), keep_noisy_frames=keep)[0]
            for f, m, keep in ((frames, stack.masks, False), (frames, stack.masks, True),
                               (frames[others], stack.masks[others], False)))
        np.testing.assert_array_equal(default, without)
        assert scene_score(default, target) > scene_score(kept, target) + 0.5


def test_leaving_out_keeps_the_given_registration_of_the_others_and_the_date_shown(sample_stack):
    """A multi-band run's shared registration: the frames kept keep their shifts, the reference and
    the frame whose date is shown are found among them; a left-out reference is estimated again."""
    shifts = np.arange(2 * len(sample_stack.paths), dtype=float).reshape(-1, 2)
    stack, (kept_shifts, reference), state = leave_out_noisy(sample_stack, (shifts, 5), 6, [1, 3])
    assert [p.rsplit("/", 1)[-1] for p in stack.paths] == [p.rsplit("/", 1)[-1] for i, p in
                                                           enumerate(sample_stack.paths) if i not in (1, 3)]
    np.testing.assert_array_equal(kept_shifts, shifts[[0, 2, 4, 5, 6, 7]])
    assert (reference, state) == (3, 4)
    assert leave_out_noisy(sample_stack, (shifts, 3), None, [3])[1:] == (None, None)


def test_a_run_of_files_says_which_frames_it_used_and_which_it_left_out(tmp_path, sample_stack):
    """The outputs' MISR_FRAMES / MISR_FRAME_FILES tags, the done event and its summary line count
    the frames used, not the frames read, and name the one left out (MISR_FRAMES_LEFT_OUT)."""
    frames, masks = sample_stack.frames[(slice(None), *CROP)], sample_stack.masks[(slice(None), *CROP)]
    noisy = _with_noisy_frame(frames, masks, 2 * LEAVE_OUT_RATIO)
    names = [os.path.basename(path) for path in sample_stack.paths]
    paths, mask_paths = _files(tmp_path, names, noisy, masks)
    for keep in (False, True):
        heard = Recorder()
        request = SuperResolveRequest(frames=paths, masks=mask_paths, mask_kind=["binary"],
                                      output=str(tmp_path / f"sr_{keep}.tif"), device="cpu",
                                      keep_noisy_frames=keep)
        result = super_resolve_files(request, heard)
        tags = gdal.Open(request.output).GetMetadata()
        used = [name for name in names if keep or name != "frame_04.tif"]
        assert json.loads(tags["MISR_FRAME_FILES"]) == used and tags["MISR_FRAMES"] == str(len(used))
        assert [os.path.basename(p) for p in result.frames] == used and heard.done["frames"] == len(used)
        if keep:
            assert "MISR_FRAMES_LEFT_OUT" not in tags and "left out" not in heard.done["summary"]
        else:
            assert json.loads(tags["MISR_FRAMES_LEFT_OUT"]) == ["frame_04.tif"] == result.left_out
            assert f"({len(used)} frames, " in heard.done["summary"]
            assert heard.done["summary"].endswith("; left out as too noisy: frame_04.tif)")


def test_a_noisy_frame_left_out_is_replaced_by_the_next_clearest_when_there_are_more_than_max_frames(
        tmp_path, sample_stack):
    """With more usable frames than --max-frames, the frame left out as far too noisy gives its place
    to the next clearest frame: the run is the run of the other frames, and says so."""
    frames, masks = sample_stack.frames[(slice(None), *CROP)], sample_stack.masks[(slice(None), *CROP)]
    names = [os.path.basename(path) for path in sample_stack.paths]
    paths, mask_paths = _files(tmp_path, names, _with_noisy_frame(frames, masks, 2 * LEAVE_OUT_RATIO), masks)
    clearest = np.argsort(-masks.reshape(len(masks), -1).mean(axis=1), kind="stable")
    max_frames, spare = len(names) - 1, names[clearest[-1]]
    assert NOISY in clearest[:max_frames]  # the noisy frame is among those a run opens first
    heard = Recorder()
    request = SuperResolveRequest(frames=paths, masks=mask_paths, mask_kind=["binary"], max_frames=max_frames,
                                  output=str(tmp_path / "sr.tif"), device="cpu")
    result = super_resolve_files(request, heard)
    others = [index for index in range(len(names)) if index != NOISY]
    assert [os.path.basename(path) for path in result.frames] == [names[i] for i in others]
    tags = gdal.Open(request.output).GetMetadata()
    assert tags["MISR_FRAMES"] == str(max_frames) and json.loads(tags["MISR_FRAMES_LEFT_OUT"]) == ["frame_04.tif"]
    assert heard.done["summary"].endswith(f"({max_frames} frames, cpu, {result.seconds} s; left out as too "
                                          "noisy: frame_04.tif)")
    assert any(w.startswith("frame_04.tif is ") and "left out of this run" in w for w in result.warnings)
    assert any(w.startswith("used in place of the frames left out") and w.endswith(spare) for w in result.warnings)
    assert not any("beyond the" in w for w in result.warnings)  # every usable frame but the noisy one is used

    without = SuperResolveRequest(frames=[paths[i] for i in others], masks=[mask_paths[i] for i in others],
                                  mask_kind=["binary"], output=str(tmp_path / "sr_others.tif"), device="cpu")
    super_resolve_files(without)
    np.testing.assert_array_equal(read_band(request.output)[0], read_band(without.output)[0])


def test_only_a_frame_that_every_band_leaves_out_counts_as_left_out_before_the_run(tmp_path, sample_stack):
    """What decides a replacement in a multi-band run: the frame must be far too noisy in every band."""
    frames, masks = sample_stack.frames[(slice(None), *CROP)], sample_stack.masks[(slice(None), *CROP)]
    noisy, binary = _with_noisy_frame(frames, masks, 2 * LEAVE_OUT_RATIO), MaskOptions(("binary",))
    for name, second in (("one", frames), ("both", noisy)):
        folder = tmp_path / name
        folder.mkdir()
        paths, mask_paths = _files(folder, [f"{index}.tif" for index in range(len(frames))],
                                   np.stack([noisy, second], axis=1), masks)
        found = noisy_in_every_band(open_stack(paths, mask_paths, bands=[1, 2], mask_options=binary))
        if name == "one":  # band 1 alone would leave it out, band 2 keeps it
            first = noisy_in_every_band(open_stack(paths, mask_paths, band=1, mask_options=binary))
            assert found == [] and [index for index, _ in first] == [NOISY]
        else:
            assert [index for index, _ in found] == [NOISY] and found[0][1] >= LEAVE_OUT_RATIO


def test_a_frame_left_out_of_some_bands_only_is_named_with_them():
    used = {0: ["a.tif", "c.tif"], 1: ["a.tif", "b.tif"], 2: ["a.tif"]}
    assert frames_used(["a.tif", "b.tif", "c.tif", "d.tif"], used) == (
        ["a.tif", "b.tif", "c.tif"], ["b.tif (bands 1, 3)", "c.tif (bands 2, 3)", "d.tif"])
    assert frames_used(["a.tif", "b.tif"], {0: ["a.tif", "b.tif"]}) == (["a.tif", "b.tif"], [])
