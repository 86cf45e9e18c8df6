"""Scenes for the batch tests: small crops of the embedded sample (real data, 24 x 24 LR pixels,
4 frames with masks, one 16-pixel tile per forward pass), manifests, and `misr batch` run as a
subprocess on a local cluster of 2 one-thread workers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from osgeo import gdal

from tests.engine.cli.helpers import MISR
from tests.rasters import SAMPLE

SIZE, FRAMES = 24, 4
TWO_WORKERS = ["--workers", "2", "--torch-threads", "1", "--dashboard-address", ":0"]
TILE = ["--set", "tile_size=16"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # super-resolve and the workers: the same arithmetic


def make_scenes(folder: Path, count: int) -> list[str]:
    """`count` scenes scene0, scene1, ... (folders of frame_NN.tif / mask_NN.tif), each a
    different 24 x 24 window of the sample; returns their ids."""
    ids = []
    for index in range(count):
        scene = folder / f"scene{index}"
        scene.mkdir(parents=True, exist_ok=True)
        offset = (13 * index) % (140 - SIZE)
        for frame in range(1, FRAMES + 1):
            for kind in ("frame", "mask"):
                name = f"{kind}_{frame:02d}.tif"
                gdal.Translate(str(scene / name), str(SAMPLE / name),
                               srcWin=[offset, 140 - SIZE - offset, SIZE, SIZE]).FlushCache()
        ids.append(f"scene{index}")
    return ids


def write_csv(path: Path, ids: list[str], uncertainty: bool = True) -> Path:
    """A CSV manifest: frames and masks as globs, outputs ID_sr.tif (default) and ID_unc.tif."""
    lines = ["id,frames,masks" + (",uncertainty" if uncertainty else "")]
    for scene in ids:
        lines.append(f"{scene},{scene}/frame_*.tif,{scene}/mask_*.tif" + (f",{scene}_unc.tif" if uncertainty else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def batch(manifest: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`misr batch MANIFEST --progress json ARGS` on a local cluster of 2 workers (or `--scheduler`)."""
    cluster = [] if "--scheduler" in args else TWO_WORKERS
    return subprocess.run([*MISR, "batch", str(manifest), "--progress", "json", *TILE, *cluster, *args],
                          capture_output=True, text=True, timeout=timeout, env=ONE_THREAD)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def report(folder: Path, manifest: str = "scenes") -> dict[str, dict]:
    """The JSON report's scenes by id."""
    document = json.loads((folder / f"{manifest}_report.json").read_text())
    return {scene["scene"]: scene for scene in document["scenes"]}


def file_states(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime_ns, size) of every output in `folder` (hidden files too)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.iterdir() if p.is_file() and p.suffix == ".tif"}
