"""QGIS's Qt5-to-Qt6 migration tool (scripts/qt6_check.py, `make qt6-check`) finds nothing to
change in the plugin. The tool belongs to the QGIS repository and is not copied into this one:
without it (build/tools/pyqt5_to_pyqt6.py or $PYQT5_TO_PYQT6, and a Python with PyQt6) these
tests are skipped, saying so."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("qt6_check", REPO / "scripts" / "qt6_check.py")
qt6_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qt6_check)
pytestmark = pytest.mark.skipif(qt6_check.missing() is not None, reason=f"Qt6 check not run: {qt6_check.missing()}")


def test_the_qt6_migration_tool_finds_nothing_in_the_plugin():
    clean, report = qt6_check.check(REPO / "qgis_misr")
    assert clean, "\n".join(report)


def test_the_check_would_see_an_unscoped_enum_and_exec_(tmp_path):
    plugin = tmp_path / "qgis_misr"
    plugin.mkdir()
    (plugin / "old.py").write_text("from qgis.PyQt.QtCore import Qt\nfrom qgis.PyQt.QtWidgets import QDialog\n"
                                   "flag = Qt.AlignLeft\nQDialog().exec_()\n")
    clean, report = qt6_check.check(plugin)
    assert not clean
    assert "+flag = Qt.AlignmentFlag.AlignLeft" in report and "+QDialog().exec()" in report
