"""What the official plugin repository and the product layout require: metadata, the zip, and
the plugin's import rules (no torch, no misr_engine, Qt only through qgis.PyQt)."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import stat
import zipfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "qgis_misr"


def _metadata(path: Path) -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return dict(parser["general"])


def _builder():
    spec = importlib.util.spec_from_file_location("build_plugin_zip", REPO / "scripts" / "build_plugin_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugins_metadata_is_a_link_to_the_top_level_file():
    """One metadata.txt: the plugin folder's is a link, so QGIS loading a checkout finds it."""
    inner = PLUGIN / "metadata.txt"
    assert inner.is_symlink() and os.readlink(inner) == "../metadata.txt"
    assert inner.read_bytes() == (REPO / "metadata.txt").read_bytes()


def test_metadata_has_what_the_plugin_repository_requires():
    meta = _metadata(REPO / "metadata.txt")
    for key in ("name", "description", "version", "qgisMinimumVersion", "qgisMaximumVersion", "author",
                "email", "about", "tracker", "repository", "homepage", "changelog", "tags",
                "hasProcessingProvider", "experimental"):
        assert meta.get(key, "").strip(), key
    assert meta["qgisMinimumVersion"] == "3.22" and meta["qgisMaximumVersion"] == "4.99"
    assert meta["repository"] == "https://github.com/qgis-misr/qgis-misr"
    assert meta["tracker"].startswith("https://github.com/qgis-misr/qgis-misr")
    assert meta["hasProcessingProvider"] == "yes"
    assert (PLUGIN / meta["icon"]).is_file() or (REPO / "resources" / meta["icon"]).is_file()


def test_metadata_version_matches_the_engine():
    from misr_engine import __version__
    assert _metadata(REPO / "metadata.txt")["version"] == __version__


def test_zip_has_one_top_folder_with_metadata_icons_styles_and_no_bytecode(tmp_path):
    (PLUGIN / "__pycache__").mkdir(exist_ok=True)
    (PLUGIN / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"\0")
    try:
        target = _builder().build(tmp_path)
    finally:
        (PLUGIN / "__pycache__" / "junk.cpython-311.pyc").unlink()
    assert target.name == f"qgis_misr-{_metadata(REPO / 'metadata.txt')['version']}.zip"
    assert target.stat().st_size < 25 * 1024 * 1024
    archive = zipfile.ZipFile(target)
    names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"qgis_misr"}
    for required in ("qgis_misr/metadata.txt", "qgis_misr/__init__.py", "qgis_misr/LICENSE",
                     "qgis_misr/icons/misr.svg", "qgis_misr/icons/misr.png",
                     "qgis_misr/styles/misr_sr.qml", "qgis_misr/styles/misr_uncertainty.qml"):
        assert required in names, required
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n or "/.git" in n]
    # the metadata itself, a regular file (not the repository's link), exactly once
    metadata = archive.getinfo("qgis_misr/metadata.txt")
    assert names.count("qgis_misr/metadata.txt") == 1 and not stat.S_ISLNK(metadata.external_attr >> 16)
    assert archive.read(metadata) == (REPO / "metadata.txt").read_bytes()
    # the engine's wheel, for the dialog's engine set-up, with the weights and the sample scene
    version = _metadata(REPO / "metadata.txt")["version"]
    wheel_name = f"qgis_misr/engine/misr_engine-{version}-py3-none-any.whl"
    assert wheel_name in names
    import io
    wheel = zipfile.ZipFile(io.BytesIO(archive.read(wheel_name)))
    inside = wheel.namelist()
    assert "misr_engine/cli/__init__.py" in inside
    assert any(n.startswith("misr_engine/data/weights/") and n.endswith(".safetensors") for n in inside)
    assert any(n.startswith("misr_engine/data/sample/") for n in inside)
    assert not [n for n in inside if "__pycache__" in n or n.endswith(".pyc")]


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_plugin_never_imports_torch_the_engine_or_qt_directly():
    offenders = []
    for path in PLUGIN.rglob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in {"torch", "misr_engine", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}:
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_core_package_has_no_qt_or_qgis_imports():
    for path in (PLUGIN / "core").rglob("*.py"):
        roots = {name.split(".")[0] for name in _imports(path)}
        assert not roots & {"qgis", "PyQt5", "PyQt6"}, path


def test_qt_enums_are_fully_scoped():
    """Qt6 removed unscoped enum access (Qt.AlignLeft): use Qt.AlignmentFlag.AlignLeft."""
    unscoped = []
    scoped_holders = {"Qt", "QDialogButtonBox", "QAbstractItemView", "QHeaderView", "QSizePolicy",
                      "QFileDialog", "QMessageBox", "QImage", "QPainter", "QFrame"}
    for path in PLUGIN.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in scoped_holders and node.attr[:1].isupper()
                    and not _is_enum_class(node.value.id, node.attr)):
                unscoped.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert unscoped == []


def _is_enum_class(holder: str, attr: str) -> bool:
    enum_classes = {"AlignmentFlag", "ItemDataRole", "CheckState", "ItemFlag", "TextInteractionFlag",
                    "StandardButton", "ButtonRole", "SelectionBehavior", "SelectionMode",
                    "EditTrigger", "ResizeMode", "Policy", "Option", "Format", "GlobalColor",
                    "Orientation", "WindowType", "CursorShape", "Shape"}
    return attr in enum_classes
