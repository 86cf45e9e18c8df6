"""Fuzzing `misr super-resolve` with damaged inputs: truncated GeoTIFFs, bit-flipped GeoTIFFs
(fixed seeds) and random garbage, given as a frame, as a mask, or as the only frame; and with
hostile weights files (configs asking for huge or malformed networks, tensor tables that do not fit).

Every run must end in one of two ways: a clean error (exit 2, one line naming the damaged file,
no traceback, no GDAL chatter, no file left), or, when GDAL still reads a valid raster of the
right grid, a valid output. Runs are in-process (`misr_engine.cli.main`, with capfd so GDAL's
C-level stderr is caught too); a few go through a real subprocess.
"""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.cli import main
from misr_engine.models.registry import model_spec
from misr_engine.models.weights import read_metadata
from tests.engine.cli.helpers import assert_clean_error, run_cli
from tests.rasters import GEOTRANSFORM, make_raster, textured

SIZE = 8  # LR pixels: one small tile, so the runs that succeed are quick
CUTS = [0, 4, 8, 16, 64, 200, "half", -16, -1]
FLIP_SEEDS = range(20)
GARBAGE = [("random", 1), ("random", 7), ("random", 64), ("random", 1000),
           ("tiff", 7), ("tiff", 64), ("tiff", 1000), ("bigtiff", 64)]
VARIANTS = ([("cut", cut) for cut in CUTS] + [("flip", seed) for seed in FLIP_SEEDS]
            + [("garbage", kind_size) for kind_size in GARBAGE])
MAGIC = {"random": b"", "tiff": b"II*\x00", "bigtiff": b"II+\x00\x08\x00\x00\x00"}


def variant_id(variant) -> str:
    kind, parameter = variant
    return f"{kind}-{'-'.join(map(str, parameter)) if isinstance(parameter, tuple) else parameter}"


def damaged(data: bytes, kind: str, parameter) -> bytes:
    """`data` cut at an offset, with 1 to 4 bits flipped (seeded), or replaced by garbage."""
    if kind == "cut":
        return data[:len(data) // 2 if parameter == "half" else parameter]
    if kind == "flip":
        rng = np.random.default_rng(parameter)
        flipped = bytearray(data)
        for _ in range(1 + parameter % 4):
            flipped[int(rng.integers(len(flipped)))] ^= 1 << int(rng.integers(8))
        return bytes(flipped)
    magic, size = MAGIC[parameter[0]], parameter[1]
    return magic + np.random.default_rng(size).bytes(size)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Two frames (DEFLATE: flips break the compressed stream) and two masks (uncompressed:
    flips change values); frame 1's mask is all clear, so a valid output is finite everywhere."""
    folder = tmp_path_factory.mktemp("fuzz_base")
    make_raster(folder / "frame_1.tif", textured(SIZE, SIZE, 0), options=["COMPRESS=DEFLATE"])
    make_raster(folder / "frame_2.tif", textured(SIZE, SIZE, 1), options=["COMPRESS=DEFLATE"])
    make_raster(folder / "mask_1.tif", np.ones((SIZE, SIZE), np.uint8), gdal.GDT_Byte)
    clear = (np.random.default_rng(0).random((SIZE, SIZE)) > 0.2).astype(np.uint8)
    make_raster(folder / "mask_2.tif", clear, gdal.GDT_Byte)
    return folder


def command(base: Path, role: str, damaged_path: Path, output: Path) -> list[str]:
    """frame: damaged frame 2; mask: damaged mask 2; only-frame: the damaged frame alone."""
    if role == "only-frame":
        frames, masks = [damaged_path], []
    else:
        frames = [base / "frame_1.tif", damaged_path if role == "frame" else base / "frame_2.tif"]
        masks = [base / "mask_1.tif", damaged_path if role == "mask" else base / "mask_2.tif"]
    args = ["super-resolve", "--frames", *map(str, frames)]
    if masks:
        args += ["--masks", *map(str, masks)]
    return args + ["-o", str(output), "--tile-size", "16", "--progress", "none"]


def check_outcome(status: int, stderr: str, damaged_path: Path, output: Path, role: str) -> None:
    out_folder = output.parent
    if status == 0:
        assert all(line.startswith(("misr: warning: ", "wrote ")) for line in stderr.strip().splitlines()), stderr
        assert "Traceback" not in stderr
        assert os.listdir(out_folder) == [output.name]  # no temporary left beside it
        dataset = gdal.Open(str(output))
        values = dataset.GetRasterBand(1).ReadAsArray()
        source = gdal.Open(str(damaged_path)) if role == "only-frame" else None
        width, height = (source.RasterXSize, source.RasterYSize) if source else (SIZE, SIZE)
        assert values.shape == (3 * height, 3 * width)
        assert dataset.GetRasterBand(1).DataType == gdal.GDT_Float32
        assert not np.isinf(values).any()
        if role != "only-frame":  # frame 1 is clear everywhere: the output is defined everywhere
            assert np.isfinite(values).all()
            x0, dx, _, y0, _, dy = GEOTRANSFORM
            assert dataset.GetGeoTransform() == pytest.approx((x0, dx / 3, 0, y0, 0, dy / 3))
    else:
        assert_clean_error(status, "", stderr, damaged_path.name)
        assert os.listdir(out_folder) == []


@pytest.mark.parametrize("role", ["frame", "mask", "only-frame"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_a_damaged_input_gives_a_clean_error_or_a_valid_output(base, tmp_path, capfd, role, variant):
    source = base / ("mask_2.tif" if role == "mask" else "frame_2.tif")
    damaged_path = tmp_path / f"damaged_{role}.tif"
    damaged_path.write_bytes(damaged(source.read_bytes(), *variant))
    out = tmp_path / "out"
    out.mkdir()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = main(command(base, role, damaged_path, out / "sr.tif"))
    finally:
        signal.signal(signal.SIGTERM, handler)  # main() installs its own
    stderr = capfd.readouterr().err
    check_outcome(status, stderr, damaged_path, out / "sr.tif", role)


@pytest.mark.parametrize("variant", [("cut", "half"), ("cut", 8), ("flip", 2), ("garbage", ("tiff", 64)),
                                     ("garbage", ("random", 1000))], ids=variant_id)
def test_a_damaged_frame_through_the_real_command_line(base, tmp_path, variant):
    """The same contract for a real process: exit status, and nothing from GDAL on stderr."""
    damaged_path = tmp_path / "damaged_frame.tif"
    damaged_path.write_bytes(damaged((base / "frame_2.tif").read_bytes(), *variant))
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(*command(base, "frame", damaged_path, out / "sr.tif"))
    check_outcome(result.returncode, result.stderr, damaged_path, out / "sr.tif", "frame")


def test_the_fuzz_cases_cover_both_outcomes(base, tmp_path):
    """Sanity of the corpus itself: some damaged files are still readable (the success path is
    exercised) and most are not."""
    readable = 0
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        for variant in VARIANTS:
            path = tmp_path / f"{variant_id(variant)}.tif"
            path.write_bytes(damaged((base / "mask_2.tif").read_bytes(), *variant))
            try:
                gdal.Open(str(path)).ReadAsArray()
                readable += 1
            except (RuntimeError, AttributeError):
                pass
    finally:
        gdal.PopErrorHandler()
    assert 0 < readable < len(VARIANTS)


# ---------------------------------------------------------------------------------------------
# Hostile weights (issue 20): the shipped tensors under a config asking for huge or malformed
# networks, and tensor tables that do not match. Every one must be a one-line error naming the
# file, before any network is built (the process must not grow: a config is not trusted).

SHIPPED = model_spec("piunet").default_weights
HOSTILE_CONFIGS = {
    "huge-features": {"n_feat": 10 ** 6}, "huge-bottleneck": {"bottleneck": 10 ** 7},
    "many-blocks": {"n_tefa": 100_000}, "many-backprojection-steps": {"backprojection_steps": 10 ** 4},
    "huge-kernel": {"deconv_kernel": 100_001}, "even-kernel": {"deconv_kernel": 20},
    "huge-refinement": {"refine_features": 10 ** 6}, "huge-detail": {"detail_features": 10 ** 5, "detail_blocks": 10 ** 4},
    "negative": {"n_feat": -32}, "zero-features": {"n_feat": 0}, "float-count": {"n_tefa": 4.5},
    "string-count": {"n_feat": "32"}, "bool-count": {"n_tefa": True}, "nan-count": {"n_feat": float("nan")},
    "infinite-count": {"refine_features": float("inf")}, "astronomic-int": {"n_feat": 10 ** 40},
    "unknown-key": {"exec": "import os"}, "int-as-bool": {"phase_inputs": 1},
    "steps-without-phases": {"phase_inputs": False},
    "in-bounds-other-network": {"n_feat": 256, "n_tefa": 64},  # valid config, not these tensors
}
RAW_CONFIGS = {"not-json": "{", "json-list": "[32, 4]", "json-null": "null", "json-number": "1e999"}


def hostile_weights(folder: Path, case: str) -> Path:
    """The shipped weights with a hostile config (a key of HOSTILE_CONFIGS or RAW_CONFIGS) or
    tensor table (missing, extra, misshapen, wrong type, NaN, Inf)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file
    tensors, metadata = load_file(str(SHIPPED)), dict(read_metadata(SHIPPED))
    config = json.loads(metadata["config"])
    if case in HOSTILE_CONFIGS:
        metadata["config"] = json.dumps({**config, **HOSTILE_CONFIGS[case]})
    elif case in RAW_CONFIGS:
        metadata["config"] = RAW_CONFIGS[case]
    elif case == "missing-tensor":
        tensors.pop("head.norm_conv.num_batches_tracked")  # torch itself would accept this one missing
    elif case == "extra-tensor":
        tensors["payload"] = torch.zeros(1000)
    elif case == "misshapen-tensor":
        tensors["head.conv.weight"] = tensors["head.conv.weight"][:, :2].contiguous()
    elif case == "integer-tensor":
        tensors["to_mean.weight"] = tensors["to_mean.weight"].to(torch.uint8)
    elif case in ("nan-tensor", "inf-tensor"):
        tensors["to_mean.bias"] = torch.full_like(tensors["to_mean.bias"], float(case[:3]))
    path = folder / f"{case}.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


TENSOR_CASES = {"missing-tensor": "missing tensor 'head.norm_conv.num_batches_tracked'",
                "extra-tensor": "unexpected tensor 'payload'",
                "misshapen-tensor": "tensor 'head.conv.weight' has shape",
                "integer-tensor": "tensor 'to_mean.weight' has type U8",
                "nan-tensor": "non-finite value(s)", "inf-tensor": "non-finite value(s)"}


@pytest.mark.parametrize("case", [*HOSTILE_CONFIGS, *RAW_CONFIGS, *TENSOR_CASES])
def test_hostile_weights_are_a_clean_error_before_any_network_is_built(base, tmp_path, capfd, case):
    weights = hostile_weights(tmp_path, case)
    out = tmp_path / "out"
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = main(command(base, "frame", base / "frame_2.tif", out / "sr.tif") + ["--weights", str(weights)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    line = assert_clean_error(status, "", capfd.readouterr().err, weights.name)
    assert TENSOR_CASES.get(case, "") in line
    if case in HOSTILE_CONFIGS and case not in ("in-bounds-other-network", "steps-without-phases"):
        assert "model config" in line and next(iter(HOSTILE_CONFIGS[case])) in line
    assert os.listdir(out) == [] and grown_mb < 200
