"""The input is streamed too: `misr super-resolve` reads the stack window by window
(`rasters.stack.open_stack`), and its results equal the in-memory path's (`read_stack`, then
`super_resolve`), with --align, fully cloudy frames and --max-frames; bad pixel data found in a
later window is still a one-line error naming the file, leaving no output."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from osgeo import gdal

from misr_engine import SCALE
from misr_engine.cli import main
from misr_engine.errors import MisrError
from misr_engine.inference.finetune import TTF_WINDOW
from misr_engine.inference.normalisation import Normalisation
from misr_engine.inference.tiled import super_resolve, super_resolve_strips
from misr_engine.registration.streamed import RegisteredRows, stack_registration
from misr_engine.registration.stack import register
from misr_engine.rasters.stack import Stack, open_stack, read_stack, select_frames

gdal.UseExceptions()
CPU = torch.device("cpu")
TILE = 48  # 140 x 140 LR sample: three rows of tiles


def read_output(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def assert_same(streamed: np.ndarray, in_memory: np.ndarray) -> None:
    """Same NaN pixels and values within 1e-5 of the data range."""
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(in_memory))
    span = float(np.nanmax(in_memory) - np.nanmin(in_memory))
    assert np.nanmax(np.abs(streamed - in_memory)) <= 1e-5 * span


def run_cli(tmp_path, frames, masks, *extra: str) -> tuple[np.ndarray, np.ndarray]:
    sr, uncertainty = tmp_path / "sr.tif", tmp_path / "unc.tif"
    status = main(["super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(sr),
                   "--uncertainty", str(uncertainty), "--device", "cpu", "--tile-size", str(TILE),
                   "--progress", "none", "--overwrite", *extra])
    assert status == 0
    return read_output(sr), read_output(uncertainty)


def in_memory(frames, masks, max_frames: int = 15, align: bool = False) -> tuple[np.ndarray, np.ndarray]:
    stack, _ = select_frames(read_stack(frames, masks, align=align), max_frames)
    assert isinstance(stack, Stack)
    sr, uncertainty = super_resolve(stack, _model(), CPU, tile_size=TILE)
    return np.clip(sr, 0, 65535), uncertainty  # the CLI clips the SR of uint16 frames to their range


def _model():
    from misr_engine.models.weights import load_model
    return load_model("piunet").model


def test_the_streamed_cli_equals_the_in_memory_path_on_the_real_sample(tmp_path, sample_paths):
    sr, uncertainty = run_cli(tmp_path, *sample_paths)
    reference_sr, reference_uncertainty = in_memory(*sample_paths)
    assert_same(sr, reference_sr)
    assert_same(uncertainty, reference_uncertainty)


def test_streamed_equals_in_memory_with_align_a_cloudy_frame_and_max_frames(tmp_path, sample_paths):
    frames, masks = list(sample_paths[0]), list(sample_paths[1])
    frames[1], masks[1] = _off_grid(frames[1], tmp_path / "off_frame.tif", "bilinear"), \
        _off_grid(masks[1], tmp_path / "off_mask.tif", "near")
    masks[2] = copy_raster(masks[2], tmp_path / "cloudy_mask.tif", fill=0)
    lazy = open_stack(frames, masks, align=True)
    assert sample_paths[0][2] not in lazy.paths and any("--align" in w for w in lazy.warnings)
    sr, uncertainty = run_cli(tmp_path, frames, masks, "--align", "--max-frames", "5")
    reference_sr, reference_uncertainty = in_memory(frames, masks, max_frames=5, align=True)
    assert_same(sr, reference_sr)
    assert_same(uncertainty, reference_uncertainty)


def copy_raster(path: str, target, options: list[str] | None = None, fill: float | None = None) -> str:
    """A GeoTIFF copy of `path` (creation `options`), every pixel set to `fill` if given."""
    gdal.Translate(str(target), path, creationOptions=options or [])
    if fill is not None:
        dataset = gdal.Open(str(target), gdal.GA_Update)
        band = dataset.GetRasterBand(1)
        band.WriteArray(np.full((dataset.RasterYSize, dataset.RasterXSize), fill))
        dataset = band = None
    return str(target)


def _off_grid(path: str, target, resampling: str) -> str:
    """`path` warped onto a grid shifted by (0.3, -0.4) pixels: off the sample's grid."""
    dataset = gdal.Open(path)
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    bounds = (x0 + 0.3 * dx, y0 + (height - 0.4) * dy, x0 + (width + 0.3) * dx, y0 - 0.4 * dy)
    gdal.Warp(str(target), dataset, outputBounds=bounds, width=width, height=height, resampleAlg=resampling)
    return str(target)


def test_lazy_stack_reads_the_same_pixels_and_clear_fractions_as_read_stack(sample_paths):
    lazy, loaded = open_stack(*sample_paths), read_stack(*sample_paths)
    np.testing.assert_array_equal(lazy.clear_fraction, loaded.clear_fraction)
    assert lazy.paths == loaded.paths and lazy.warnings == loaded.warnings
    frames, masks = lazy.read_rows(30, 77, 10, 100)
    np.testing.assert_array_equal(frames, loaded.frames[:, 30:77, 10:100])
    np.testing.assert_array_equal(masks, loaded.masks[:, 30:77, 10:100])
    selected, warnings = select_frames(lazy, 4)
    expected, expected_warnings = select_frames(loaded, 4)
    assert selected.paths == expected.paths and warnings == expected_warnings


def test_registered_row_blocks_equal_whole_stack_registration(sample_stack):
    """Rows moved by whole pixels window by window = `register` on the whole arrays, and the
    normalisation over row blocks = the one of the whole registered stack."""
    aligned, aligned_masks, shifts = register(sample_stack.frames, sample_stack.masks)
    np.testing.assert_array_equal(stack_registration(sample_stack)[0], shifts)
    shifts = np.array(shifts)
    shifts[1] += (3, -2)  # whole-pixel moves larger than the sample's, in every direction
    shifts[2] -= (4, 1)
    aligned, aligned_masks, _ = register_with(sample_stack, shifts)
    rows = RegisteredRows(sample_stack, shifts)
    blocks = list(rows.blocks(17))
    frames, masks = np.concatenate([b[0] for b in blocks], 1), np.concatenate([b[1] for b in blocks], 1)
    np.testing.assert_array_equal(masks, aligned_masks)
    span = float(np.ptp(sample_stack.frames[sample_stack.masks]))
    assert np.abs(frames - aligned)[masks].max() <= 1e-5 * span
    streamed, whole = Normalisation.of_blocks(iter(blocks)), Normalisation.of(aligned, aligned_masks)
    assert streamed.centre == pytest.approx(whole.centre, rel=1e-9)
    assert streamed.spread == pytest.approx(whole.spread, rel=1e-9)


def register_with(stack: Stack, shifts: np.ndarray):
    """`register`'s whole-stack move (align_stack) for given shifts."""
    from misr_engine.registration.stack import align_stack
    return (*align_stack(stack.frames, stack.masks, np.round(shifts)), shifts)


class Recording(Stack):
    """An in-memory stack that records the rows of every window read from it."""

    reads: list[tuple[int, int]]

    def read_rows(self, row0, row1, col0=0, col1=None):
        self.reads.append((row0, row1))
        return super().read_rows(row0, row1, col0, col1)


class MeanRunner:
    """A pointwise stand-in for the network: the masked temporal mean x3, log-scale 0."""

    default_batch = 1

    def __call__(self, frames, masks, phases):
        mean = (frames * masks).sum(1, keepdims=True) / np.maximum(masks.sum(1, keepdims=True), 1e-3)
        mean = mean.repeat(SCALE, -2).repeat(SCALE, -1)
        return np.concatenate([mean, np.zeros_like(mean)], 1)


def test_each_window_read_is_about_one_tile_row_high_whatever_the_height(monkeypatch):
    """Reads are a tile row high, or a fine-tuning window (the back-projection's PSF width is
    chosen on those windows, ``psf_width``) where that is higher, as here with 32-pixel tiles:
    bounded whatever the raster's height."""
    rng = np.random.default_rng(0)
    height, width, tile, reach = 900, 40, 32, 2
    frames = (100 + rng.standard_normal((3, height, width))).astype(np.float32)
    stack = Recording(frames, rng.random((3, height, width)) > 0.1,
                      Stack.in_memory(frames, frames > 0).grid, ["a", "b", "c"])
    stack.reads = []
    shifts = np.array([[0.0, 0.0], [2.2, -1.0], [-1.4, 0.3]])  # whole-pixel reach: 2 rows
    monkeypatch.setattr("misr_engine.inference.tiled.stack_registration", lambda s: (shifts, 0))
    strips = list(super_resolve_strips(stack, MeanRunner(), tile_size=tile))
    assert sum(len(s.sr) for s in strips) == height * SCALE
    assert max(row1 - row0 for row0, row1 in stack.reads) <= max(tile, TTF_WINDOW) + 2 * reach
    assert stack.reads[-1][1] == height


def test_bad_pixel_data_in_a_later_window_is_one_line_naming_the_file_and_no_output(
        tmp_path, sample_paths, monkeypatch, capsys):
    import misr_engine.rasters.bands as raster_io
    frames, masks = sample_paths
    sources_read = {"count": 0}
    original = raster_io.BandSource.read_rows

    def failing(self, row0, row1, col0=0, col1=None):
        if self.path == frames[3] and row0 >= 60 and sources_read["count"] > 0:
            raise MisrError(f"{self.path}: corrupt or unreadable pixel data (TIFFReadEncodedStrip() failed)")
        return original(self, row0, row1, col0, col1)

    lazy = open_stack(frames, masks)  # the clear fractions read every row: they pass here
    assert lazy.shape == (8, 140, 140)
    sources_read["count"] = 1  # from now on, the rows below 60 of frame 4 are damaged
    monkeypatch.setattr(raster_io.BandSource, "read_rows", failing)
    monkeypatch.setattr("misr_engine.pipeline.open_planned", lambda *args, **kwargs: lazy)
    output = tmp_path / "sr.tif"
    status = main(["super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(output),
                   "--device", "cpu", "--tile-size", str(TILE), "--progress", "none"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert error[-1].startswith(f"misr: error: {frames[3]}: corrupt or unreadable pixel data")
    assert os.listdir(tmp_path) == []


def test_a_damaged_strip_of_a_real_file_is_a_one_line_error_naming_it(tmp_path, sample_paths, capsys):
    frames, masks = list(sample_paths[0]), list(sample_paths[1])
    damaged = copy_raster(frames[0], tmp_path / "damaged.tif", ["COMPRESS=DEFLATE", "BLOCKYSIZE=16"])
    dataset = gdal.Open(str(damaged))
    offset = int(dataset.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_0_6", "TIFF"))
    dataset = None
    with open(damaged, "r+b") as handle:  # garbage in the 7th strip (rows 96-111) only
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    frames[0] = str(damaged)
    with pytest.raises(MisrError, match=f"^{damaged}: corrupt or unreadable pixel data"):
        open_stack(frames, masks)
    output = tmp_path / "out" / "sr.tif"
    output.parent.mkdir()
    status = main(["super-resolve", "--frames", *frames, "--masks", *masks, "-o", str(output),
                   "--device", "cpu", "--progress", "none"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(error) == 1 and error[0].startswith(f"misr: error: {damaged}: ")
    assert os.listdir(output.parent) == []


@pytest.mark.skipif(bool(os.environ.get("GDAL_CACHEMAX")), reason="the user's GDAL_CACHEMAX is kept")
def test_gdal_block_cache_is_bounded_while_streaming_and_restored_after(sample_paths):
    """GDAL caches every block read or written: bounded, it cannot grow with the raster."""
    stack, before = open_stack(*sample_paths), gdal.GetCacheMax()
    assert gdal.GetCacheMax() == before  # restored after the clear-fraction pass
    seen = [gdal.GetCacheMax() for _ in super_resolve_strips(stack, MeanRunner(), tile_size=TILE)]
    assert set(seen) == {min(before, stack.cache_bytes())} and gdal.GetCacheMax() == before
