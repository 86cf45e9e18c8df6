"""Shared set-up for the command-line reliability and fuzz tests: scenes of small GeoTIFFs, the
`misr` command line run as a subprocess, and the one-line error check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from tests.rasters import make_raster, textured

MISR = [sys.executable, "-m", "misr_engine.cli"]
FAST = ["--tile-size", "16"]  # the smallest tile: one forward pass per 16 x 16 LR pixels


@dataclass
class Scene:
    frames: list[str]
    masks: list[str]
    folder: Path


def make_scene(folder: Path, count: int = 2, height: int = 16, width: int = 16,
               masks: bool = True, data_type: int = gdal.GDT_UInt16, **raster_options) -> Scene:
    """`count` textured frames (and all-clear masks) of one grid in `folder/inputs`."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    frames, mask_paths = [], []
    for index in range(count):
        frames.append(str(make_raster(inputs / f"frame_{index + 1:02d}.tif", textured(height, width, index),
                                      data_type, **raster_options)))
        if masks:
            mask_paths.append(str(make_raster(inputs / f"mask_{index + 1:02d}.tif",
                                              np.ones((height, width), np.uint8), gdal.GDT_Byte,
                                              **raster_options)))
    return Scene(frames, mask_paths, folder)


def run_main(*args: str) -> int:
    """`misr ARGS` in this process (quick: torch is imported once); read its output with capfd."""
    from misr_engine.cli import main
    return main([str(a) for a in args])


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`misr ARGS` as a subprocess (the real command line: exit status, C-level stderr)."""
    return subprocess.run([*MISR, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def super_resolve(scene_or_frames, output: Path, *extra: str, masks: list[str] | None = None):
    """`misr super-resolve` on a scene (its frames and masks) with JSON progress, one tile."""
    if hasattr(scene_or_frames, "frames"):
        frames, masks = scene_or_frames.frames, masks if masks is not None else scene_or_frames.masks
    else:
        frames = scene_or_frames
    args = ["super-resolve", "--frames", *frames]
    if masks:
        args += ["--masks", *masks]
    return run_cli(*args, "-o", str(output), "--progress", "json", *FAST, *extra)


def assert_ok(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    found = events(result.stdout)
    assert found[-1]["event"] == "done"
    return found


def warnings_of(found: list[dict]) -> list[str]:
    return [event["message"] for event in found if event["event"] == "warning"]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_clean_error(returncode: int, stdout: str, stderr: str, *needles: str) -> str:
    """Exit 2, exactly one stderr line `misr: error: ...` containing every needle, no traceback,
    and (with --progress json) no event but warnings before the error: nothing was run."""
    lines = stderr.strip().splitlines()
    assert returncode == 2, (returncode, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("misr: error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if stdout.strip():
        kinds = [event["event"] for event in events(stdout)]
        assert kinds[-1] == "error" and set(kinds[:-1]) <= {"warning"}, kinds
    return lines[0]


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name -> content), hidden ones included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read(path: Path | str) -> tuple[np.ndarray, gdal.Dataset]:
    dataset = gdal.Open(str(path))
    return dataset.GetRasterBand(1).ReadAsArray().astype(np.float64), dataset


def default_signals() -> None:
    """In a child process: SIGINT and SIGHUP as a terminal delivers them, whatever the test runner
    inherited (a background job ignores SIGINT; `nohup make test` ignores SIGHUP, which the
    engine then keeps ignoring, as it should under nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
