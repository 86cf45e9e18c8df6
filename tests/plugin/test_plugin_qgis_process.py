"""`qgis_process run misr:superresolve` as docs/install-in-qgis.md documents it: the plugin
installed in a fresh QGIS profile (a copy, as from the zip), enabled with `qgis_process plugins
enable`, the engine found from the file the dialog writes for every profile (no MISR_ENGINE, no
setting in that profile), or a one-line message naming MISR_ENGINE when there is none.

Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which qgis_process itself
refuses ("Command --noversioncheck not known!"): these tests run qgis_process.bin, as the doc
says to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .engine_stub import fake_engine, writes_rasters

QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process is not installed (Debian package 'qgis', "
                                                    "which scripts/setup.sh installs)"),
    pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX stand-in engine"),
]


@pytest.fixture()
def fresh_user(tmp_path):
    """A user with a new QGIS profile holding a copy of the plugin, enabled; returns the
    environment for qgis_process."""
    home = tmp_path / "home"
    plugins = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copytree(REPO / "qgis_misr", plugins / "qgis_misr", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder, target in (("resources/icons", "icons"), ("resources/styles", "styles")):
        shutil.copytree(REPO / folder, plugins / "qgis_misr" / target)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("XDG_", "MISR_", "QGIS_", "PYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local" / "share"),
               QT_QPA_PLATFORM="offscreen", PATH="/usr/bin:/bin")
    enable = _qgis_process(["plugins", "enable", "qgis_misr"], env)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    return env


def _qgis_process(args, env, timeout=300):
    return subprocess.run([QGIS_PROCESS] + list(args), capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=env["HOME"])


def _frames(tmp_path):
    from osgeo import gdal
    from tests.rasters import make_raster
    import numpy as np
    rng = np.random.default_rng(0)
    return [str(make_raster(tmp_path / f"frame_{i}.tif", rng.random((1, 20, 30), dtype=np.float32),
                            gdal.GDT_Float32, (500000.0, 30.0, 0.0, 4e6, 0.0, -30.0), 32618)) for i in (1, 2, 3)]


def test_qgis_process_finds_the_engine_the_dialog_set_for_every_profile(fresh_user, tmp_path):
    engine = fake_engine(tmp_path / "engine", run_body=writes_rasters())
    config = Path(fresh_user["XDG_CONFIG_HOME"]) / "qgis-misr" / "engine.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"engine": str(engine)}))  # what the dialog writes (core.userfiles)
    frames = _frames(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = _qgis_process(["run", "misr:superresolve", "--"] + [f"FRAMES={path}" for path in frames]
                           + [f"OUTPUT={out / 'sr.tif'}", f"UNCERTAINTY={out / 'unc.tif'}"], fresh_user)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (out / "sr.tif").is_file() and (out / "unc.tif").is_file()
    assert str(engine) in result.stdout  # the command line it ran


def test_qgis_process_without_an_engine_says_how_to_give_one(fresh_user, tmp_path):
    frames = _frames(tmp_path)
    result = _qgis_process(["run", "misr:superresolve", "--"] + [f"FRAMES={path}" for path in frames]
                           + [f"OUTPUT={tmp_path / 'sr.tif'}"], fresh_user)
    assert result.returncode != 0
    assert "MISR engine not found" in result.stdout + result.stderr
    assert "MISR_ENGINE" in result.stdout + result.stderr
    assert not (tmp_path / "sr.tif").exists()
