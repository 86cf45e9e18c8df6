"""The plugin's files outside any QGIS profile: the engine path every profile and
``qgis_process`` read, and where the engine set-up puts the engine's environment.

QGIS keeps plugin settings per profile (QgsSettings), and ``qgis_process`` reads the default
profile only; the engine path is therefore also written to one small JSON file per user
(``~/.config/qgis-misr/engine.json`` on Linux), which :func:`core.engine.locate_engine` reads.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

APP = "qgis-misr"
CONFIG_NAME = "engine.json"


def _base(environ: Mapping[str, str], xdg: str, fallback: str, windows: str, mac: str) -> Path:
    if sys.platform.startswith("win"):
        root = environ.get(windows) or os.path.expanduser("~")
        return Path(root)
    if sys.platform == "darwin":
        return Path(os.path.expanduser(mac))
    return Path(environ.get(xdg) or os.path.expanduser(fallback))


def config_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """This user's qgis-misr configuration folder ($XDG_CONFIG_HOME/qgis-misr, %APPDATA%\\qgis-misr)."""
    environ = os.environ if environ is None else environ
    return _base(environ, "XDG_CONFIG_HOME", "~/.config", "APPDATA", "~/Library/Application Support") / APP


def data_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """This user's qgis-misr data folder ($XDG_DATA_HOME/qgis-misr, %LOCALAPPDATA%\\qgis-misr):
    the engine set-up's default place for the engine."""
    environ = os.environ if environ is None else environ
    return _base(environ, "XDG_DATA_HOME", "~/.local/share", "LOCALAPPDATA", "~/Library/Application Support") / APP


def config_file(environ: Optional[Mapping[str, str]] = None) -> Path:
    return config_dir(environ) / CONFIG_NAME


def read_engine_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """The engine path written by :func:`write_engine_path`, or '' (no file, unreadable file)."""
    try:
        data = json.loads(config_file(environ).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    value = data.get("engine") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def write_engine_path(path: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Remember `path` for every profile and ``qgis_process`` ('' forgets it). Returns why it
    could not be written, or None."""
    target = config_file(environ)
    try:
        if not path:
            if target.exists():
                target.unlink()
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".json.part")
        temporary.write_text(json.dumps({"engine": path}, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        return f"cannot write {target}: {exc.strerror or exc}"
    return None
