"""Where the plugin's icons and styles are: inside the plugin folder once packaged (icons/,
styles/), or in the repository's resources/ when the plugin runs from a checkout."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def _find(kind: str, name: str) -> Path:
    for folder in (PLUGIN_DIR / kind, PLUGIN_DIR.parent / "resources" / kind):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return PLUGIN_DIR / kind / name


def icon_path(name: str = "misr.svg") -> str:
    """Path of an icon (SVG or PNG) shipped with the plugin."""
    return str(_find("icons", name))


def style_path(name: str) -> str:
    """Path of a .qml layer style shipped with the plugin."""
    return str(_find("styles", name))
