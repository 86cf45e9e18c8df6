"""The plugin's settings (QgsSettings, under ``qgis_misr/``), and the engine path shared by
every profile and ``qgis_process`` (core.userfiles)."""

from __future__ import annotations

import os
from typing import Any, List, Optional

from qgis.core import QgsProject, QgsSettings

from .core import userfiles
from .core.engine import EngineCapabilities, EngineLocation, capabilities, locate_engine
from .resources import PLUGIN_DIR

PREFIX = "qgis_misr/"
ENGINE_KEY = "engine_path"
MODELS_KEY = "engine_models"
WEIGHTS_KEY = "engine_weights"
EXPORT_KEY = "export_folder"


def value(key: str, default: Any = None, type_: Optional[type] = None) -> Any:
    settings = QgsSettings()
    if type_ is None:
        return settings.value(PREFIX + key, default)
    return settings.value(PREFIX + key, default, type=type_)


def set_value(key: str, data: Any) -> None:
    QgsSettings().setValue(PREFIX + key, data)


def configured_engine() -> str:
    """The engine path the user set (environment folder, its Python or `misr`), or ''."""
    return value(ENGINE_KEY, "", str) or ""


def set_configured_engine(path: str) -> Optional[str]:
    """Use the engine at `path` in this profile and, when it is set, in every profile and in
    ``qgis_process`` too (the user's engine file). Returns why that file could not be
    written, or None."""
    set_value(ENGINE_KEY, path or "")
    return userfiles.write_engine_path(path) if path else None


def current_engine(configured: Optional[str] = None) -> Optional[EngineLocation]:
    """The engine to use: settings, then MISR_ENGINE, the repository's .venv, the PATH."""
    return locate_engine(configured_engine() if configured is None else configured,
                         plugin_dir=PLUGIN_DIR)


def probe(location: Optional[EngineLocation], refresh: bool = False) -> EngineCapabilities:
    """core.engine.capabilities (subprocesses: not on the GUI thread), remembering the names of
    the models a successful probe offers (see :func:`known_models`)."""
    caps = capabilities(location, refresh)
    if caps.ok:
        set_value(MODELS_KEY, ",".join(model.name for model in caps.models))
        set_value(WEIGHTS_KEY, ",".join(sorted({c.name for m in caps.models for c in m.weights_options})))
    return caps


def known_models() -> List[str]:
    """The model names of the last successful engine probe, also from earlier sessions
    (the Processing algorithm offers them without starting the engine)."""
    return [name for name in (value(MODELS_KEY, "", str) or "").split(",") if name]


def known_weights() -> List[str]:
    """The names of the shipped weights options of the last successful engine probe."""
    return [name for name in (value(WEIGHTS_KEY, "", str) or "").split(",") if name]


def export_folder(project: Optional[QgsProject] = None) -> str:
    """Where an export's folder picker opens: the last export folder, else the project's
    folder, else the home folder (never QGIS's temporary folder)."""
    last = value(EXPORT_KEY, "", str) or ""
    if last and os.path.isdir(last):
        return last
    project = project or QgsProject.instance()
    home = project.homePath() if project is not None else ""
    return home if home and os.path.isdir(home) else os.path.expanduser("~")


def remember_export_folder(folder: str) -> None:
    set_value(EXPORT_KEY, folder)
