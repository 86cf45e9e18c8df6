"""The memory estimate that refuses a run up front (issue 20) is measured: an upper bound of the
peak RSS of rows of tiles and of one tile's forward pass, without being absurdly high; the budget
comes from an option, an environment variable, or the memory the process may use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from misr_engine.errors import MisrError
from misr_engine.inference import budget
from misr_engine.pipeline import SuperResolveRequest, check_resources
from misr_engine.rasters.grid import Grid
from misr_engine.rasters.stack import plan_stack

from tests.rasters import sparse_raster

GRID = Grid("", (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), 6000, 300)

PEAK = """
import re
def status_bytes(key):
    return 1024 * int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""
"""Linux's current (VmRSS) and peak (VmHWM, reset through clear_refs) resident memory."""

STRIPS = PEAK + textwrap.dedent("""
    import json, sys
    import numpy as np
    from osgeo import gdal
    from tests.rasters import make_raster, textured
    import torch  # as in a run
    from misr_engine import SCALE
    from misr_engine.inference import budget, consistency
    from misr_engine.inference.tiled import super_resolve_strips
    consistency.CONSISTENCY_STEPS = 0  # a per-tile step like the network (the tile test below), minutes beside the stand-in
    from misr_engine.rasters.stack import plan_stack, open_planned
    from misr_engine.rasters.writer import write_strips
    from misr_engine.registration.screening import screen_stack
    folder, width, height, count, tile, screened = sys.argv[1], *map(int, sys.argv[2:7])
    frames = [str(make_raster(f"{folder}/f{i}.tif", textured(height, width, i), options=["TILED=YES"])) for i in range(count)]
    masks = None if screened else [str(make_raster(f"{folder}/m{i}.tif", np.ones((height, width), np.uint8), gdal.GDT_Byte, options=["TILED=YES"]))
             for i in range(count)]
    class MeanRunner:  # a pointwise stand-in for the network: the rows of tiles are measured, not the tiles
        default_batch = 1
        def __call__(self, frames, masks, phases):
            mean = (frames * masks).sum(1, keepdims=True) / np.maximum(masks.sum(1, keepdims=True), 1e-3)
            mean = mean.repeat(SCALE, -2).repeat(SCALE, -1)
            return np.concatenate([mean, np.zeros_like(mean)], 1)
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS: the imports' peak is not the run's
    base = status_bytes("VmRSS")
    plan = plan_stack(frames, masks)
    stack = screen_stack(open_planned(plan)) if screened else open_planned(plan)
    write_strips(super_resolve_strips(stack, MeanRunner(), tile_size=tile), [f"{folder}/sr.tif", f"{folder}/unc.tif"],
                 stack.grid.refined(SCALE), [{}, {}], ["", ""])
    peak = status_bytes("VmHWM") - base
    estimate = budget.estimate(plan.grid, count, tile, cache_bytes=plan.cache_bytes(count), registered=count,
                               screened=count if screened else 0)
    print(json.dumps({"peak": peak, "estimate": estimate.total - budget.ENGINE_BYTES}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("width,height,count,tile,screened", [(6000, 300, 4, 64, 0), (6000, 300, 8, 128, 0),
                                                              (6000, 300, 8, 128, 1), (2000, 600, 4, 128, 0)])
def test_the_rows_of_tiles_estimate_bounds_the_measured_peak(tmp_path, width, height, count, tile, screened):
    """A raster read, registered, blended and written as a run does (fresh process), with masks or
    screened for clouds without them (the screening's temporaries raised the peak from 600 to
    871 MB, above the estimate without them: 629 MB); the registration window's memory
    adds to them (2000 x 600: 260 MB against 177 MB for the rows of tiles)."""
    result = subprocess.run([sys.executable, "-c", STRIPS, str(tmp_path), str(width), str(height), str(count),
                             str(tile), str(screened)],
                            capture_output=True, text=True, timeout=900, cwd=str(_repository()))
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["peak"] <= measured["estimate"] <= 2.5 * measured["peak"], measured


TILE = PEAK + textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from misr_engine.models.weights import load_model
    model = load_model("piunet").model
    frames, side = int(sys.argv[1]), int(sys.argv[2])
    x = torch.randn(1, frames, side, side); m = (torch.rand(1, frames, side, side) > 0.2).float()
    p = torch.rand(1, frames, 2) - 0.5
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS: loading's peak is not the pass's
    before = status_bytes("VmRSS")
    with torch.inference_mode():
        model(x, m, p)
    peak = status_bytes("VmHWM") - before
    print(json.dumps({"peak": peak, "estimate": model.config.tile_bytes(frames, side * side)}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("frames,side", [(9, 68), (15, 100)])
def test_the_tile_estimate_bounds_the_measured_peak_of_a_forward_pass(frames, side):
    """The same pass in three fresh processes: its peak varies by up to 2x between them (where
    the allocator reuses freed blocks or maps new ones), so the estimate bounds the highest and is
    not absurdly above it."""
    runs = [subprocess.run([sys.executable, "-c", TILE, str(frames), str(side)], capture_output=True, text=True,
                           timeout=900, env={"OMP_NUM_THREADS": "1", "PATH": ""}) for _ in range(3)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    measured = [json.loads(run.stdout.strip().splitlines()[-1]) for run in runs]
    peak, estimate = max(m["peak"] for m in measured), measured[0]["estimate"]
    assert peak <= estimate <= 3 * peak, measured


def _repository():
    from pathlib import Path
    return Path(__file__).resolve().parents[3]


def test_a_run_over_budget_names_the_largest_part_and_how_to_raise_the_budget():
    estimated = budget.estimate(GRID, 15, 128, cache_bytes=0, network_bytes=10 ** 6, tile_bytes=10 ** 8)
    with pytest.raises(MisrError, match=r"needs about .* \(rows of tiles: .*\) and the budget is 1.0 MB \(test\); "
                                        r"the raster is 6000 pixels wide.*--memory-budget or MISR_MEMORY_BUDGET"):
        budget.check_memory(estimated, 2 ** 20, "test", GRID)
    budget.check_memory(estimated, estimated.total, "test", GRID)  # exactly enough passes


def test_rows_of_tiles_grow_with_the_width_frames_and_tile_never_with_the_height():
    tall = Grid("", GRID.geotransform, GRID.width, 10 ** 6)
    assert budget.strip_bytes(tall, 9, 128) == budget.strip_bytes(Grid("", GRID.geotransform, 6000, 10 ** 4), 9, 128)
    wide = Grid("", GRID.geotransform, 2 * GRID.width, GRID.height)
    assert budget.strip_bytes(wide, 9, 128) == pytest.approx(2 * budget.strip_bytes(GRID, 9, 128), abs=1)
    assert budget.strip_bytes(GRID, 15, 128) > budget.strip_bytes(GRID, 9, 128) > budget.strip_bytes(GRID, 9, 64)


def test_align_onto_a_rotated_grid_counts_whole_warped_frames():
    assert budget.warp_bytes(GRID, 6, rotated=True) == 6 * 4 * GRID.width * GRID.height
    assert budget.warp_bytes(GRID, 6, rotated=False) == budget.WARP_BYTES
    estimated = budget.estimate(GRID, 3, 128, warp=budget.warp_bytes(Grid("", GRID.geotransform, 40000, 40000), 6, True))
    with pytest.raises(MisrError, match="--align onto a rotated grid holds every warped frame in memory"):
        budget.check_memory(estimated, 8 * 2 ** 30, "test", GRID)


@pytest.mark.parametrize("text,expected", [("1000", 1000), ("800M", 800 * 2 ** 20), ("6G", 6 * 2 ** 30),
                                           ("1.5g", int(1.5 * 2 ** 30)), ("2 GiB", 2 * 2 ** 30), ("512kb", 512 * 1024)])
def test_sizes_are_read_with_units(text, expected):
    assert budget.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-5G", "0", "6X"])
def test_a_size_that_is_not_one_is_one_line(text):
    with pytest.raises(MisrError, match="--memory-budget"):
        budget.parse_size(text)


def test_the_budget_comes_from_the_option_then_the_environment_then_the_machine(monkeypatch):
    monkeypatch.setenv(budget.ENVIRONMENT, "3G")
    assert budget.memory_budget("1G") == (2 ** 30, "--memory-budget 1G")
    assert budget.memory_budget(None) == (3 * 2 ** 30, "MISR_MEMORY_BUDGET 3G")
    monkeypatch.delenv(budget.ENVIRONMENT)
    available, what = budget.memory_available()
    assert budget.memory_budget(None) == (available // 2, f"half of {what}")


def test_ulimit_v_lowers_the_memory_available():
    script = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (6 * 2 ** 30, resource.RLIM_INFINITY)); "
              "from misr_engine.inference.budget import memory_available; print(memory_available()[1])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("the address space left by ulimit -v"), result.stderr


def test_a_run_without_masks_counts_its_cloud_screening(tmp_path):
    """The screening's temporaries span the width: 15 frames 200,000 px wide need more without
    masks than with them, and that part is named with what brings it down."""
    frames = [str(sparse_raster(tmp_path / f"f{i}.tif", 200_000, 64)) for i in range(15)]
    masks = [str(sparse_raster(tmp_path / f"m{i}.tif", 200_000, 64)) for i in range(15)]
    needs = {}
    for given in (masks, None):
        request = SuperResolveRequest(frames=frames, masks=given, output=str(tmp_path / "sr.tif"), memory_budget="1M")
        with pytest.raises(MisrError) as refused:
            check_resources(request, plan_stack(frames, given))
        needs[given is None] = str(refused.value)
    assert "cloud screening" not in needs[False]
    assert "(cloud screening: " in needs[True] and "give cloud masks or fewer --max-frames" in needs[True]
    with_masks, without = (float(needs[key].split("needs about ")[1].split(" GB")[0]) for key in (False, True))
    expected = budget.screening_bytes(Grid("", (0, 1, 0, 0, 0, -1), 200_000, 64), 15)
    assert without - with_masks == pytest.approx(expected / 2 ** 30, abs=0.3), needs  # less the masks' cache
