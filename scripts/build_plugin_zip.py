#!/usr/bin/env python3
"""Build the installable QGIS plugin: dist/qgis_misr-<version>.zip (run by `make plugin-zip`).

The zip has one top folder, qgis_misr/, holding the plugin's code, metadata.txt (the top-level
file's content: qgis_misr/metadata.txt is only a link to it in the repository), LICENSE, the
icons (from resources/icons/), the layer styles (from resources/styles/) and the engine's wheel
(qgis_misr/engine/misr_engine-<version>-py3-none-any.whl, built by `pip wheel --no-deps ./engine`,
with its weights and sample scene), which the dialog's engine set-up installs into the engine's
own environment together with PyTorch; no compiled Python, no __pycache__, no VCS files.
"""

from __future__ import annotations

import argparse
import configparser
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, List, Tuple

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "qgis_misr"
MAX_BYTES = 25 * 1024 * 1024  # the limit of plugins.qgis.org
REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
            "tracker", "repository")
EXCLUDED_DIRS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}
RESOURCES = (("resources/icons", "icons", {".svg", ".png"}), ("resources/styles", "styles", {".qml"}))
WHEEL_FOLDER = "engine"  # qgis_misr.core.engine_setup.ENGINE_WHEEL_FOLDER


def read_metadata(path: Path) -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the keys' case
    parser.read(path, encoding="utf-8")
    return dict(parser["general"])


def check_metadata(repo: Path = REPO) -> dict:
    """The plugin's metadata (the top-level metadata.txt; qgis_misr/metadata.txt links to it),
    after checking it is complete."""
    path = repo / "metadata.txt"
    metadata = read_metadata(path)
    missing = [key for key in REQUIRED if not metadata.get(key, "").strip()]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    return metadata


def _wanted(path: Path) -> bool:
    return (not any(part in EXCLUDED_DIRS or part.startswith(".") for part in path.parts)
            and path.suffix not in EXCLUDED_SUFFIXES and path.name != ".DS_Store")


def plugin_files(repo: Path = REPO) -> List[Tuple[Path, str]]:
    """(source file, name in the zip) for every file the plugin ships."""
    files = [(repo / "metadata.txt", f"{PLUGIN}/metadata.txt")]  # the file itself, not the link
    root = repo / PLUGIN
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and _wanted(relative) and relative != Path("metadata.txt"):
            files.append((path, f"{PLUGIN}/{relative.as_posix()}"))
    for source, target, suffixes in RESOURCES:
        for path in sorted((repo / source).glob("*")):
            if path.is_file() and path.suffix in suffixes:
                files.append((path, f"{PLUGIN}/{target}/{path.name}"))
    names = [name for _path, name in files]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"files shipped twice: {sorted(duplicates)}")
    return files


def build_engine_wheel(folder: Path, repo: Path = REPO) -> Path:
    """`pip wheel --no-deps` of the engine, from a clean copy of engine/ (no stale build/ or
    egg-info), into `folder`; returns the wheel."""
    with tempfile.TemporaryDirectory(prefix="misr-engine-") as tmp:
        source = Path(tmp) / "engine"
        shutil.copytree(repo / "engine", source, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                   "--disable-pip-version-check", "-q", "-w", str(folder), str(source)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise SystemExit(f"building the engine wheel failed: {tail[0]}")
    wheels = sorted(folder.glob("misr_engine-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one engine wheel in {folder}, found {len(wheels)}")
    return wheels[0]


def build(output_dir: Path = REPO / "dist", repo: Path = REPO) -> Path:
    """Write the zip (with the engine's wheel) and return its path."""
    metadata = check_metadata(repo)
    files = plugin_files(repo)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{PLUGIN}-{metadata['version']}.zip"
    temporary = target.with_suffix(".zip.part")
    with tempfile.TemporaryDirectory(prefix="misr-wheel-") as wheel_dir:
        wheel = build_engine_wheel(Path(wheel_dir), repo)
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, name in files:
                archive.write(path, name)
            archive.write(wheel, f"{PLUGIN}/{WHEEL_FOLDER}/{wheel.name}")
    size = temporary.stat().st_size
    if size > MAX_BYTES:
        temporary.unlink()
        raise SystemExit(f"{target.name}: {size / 2**20:.1f} MB, over the 25 MB limit")
    temporary.replace(target)
    return target


def main(argv: Iterable[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="default: dist/")
    args = parser.parse_args(list(argv) if argv is not None else None)
    target = build(args.output_dir)
    with zipfile.ZipFile(target) as archive:
        count = len(archive.namelist())
    print(f"wrote {target} ({count} files, {target.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
