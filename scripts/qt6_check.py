#!/usr/bin/env python3
"""QGIS's own Qt5-to-Qt6 migration check over the plugin (`make qt6-check`).

QGIS ships scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py, which rewrites a plugin folder in place
for Qt6 (QGIS 4) and warns about what it cannot rewrite. It is a development tool of the QGIS
repository and is not copied into this one: put it at build/tools/pyqt5_to_pyqt6.py (or name it
with PYQT5_TO_PYQT6), and give it a Python with PyQt6, PyQt6-QScintilla and tokenize-rt
(build/qt6-check-venv, which `make qt6-check` creates, or QT6_CHECK_PYTHON).

This script runs it on a copy of qgis_misr/ and passes only when it changes nothing and warns
about nothing. Without QGIS built for Qt6 the tool checks Qt's enums and APIs, not QGIS's own
enums ("only a partial upgrade"): tests/plugin/test_plugin_packaging.py covers those.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
TOOL = Path(os.environ.get("PYQT5_TO_PYQT6") or REPO / "build" / "tools" / "pyqt5_to_pyqt6.py")
PYTHON = Path(os.environ.get("QT6_CHECK_PYTHON") or REPO / "build" / "qt6-check-venv" / "bin" / "python")
TOOL_SOURCE = "the QGIS repository, scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py"


def missing() -> Optional[str]:
    """Why the check cannot run here, or None."""
    if not TOOL.is_file():
        return f"the migration tool is not at {TOOL} (get it from {TOOL_SOURCE}; or set PYQT5_TO_PYQT6)"
    if not PYTHON.is_file():
        return (f"no Python for the tool at {PYTHON} (`make qt6-check` creates it: PyQt6, "
                f"PyQt6-QScintilla, tokenize-rt; or set QT6_CHECK_PYTHON)")
    return None


def run_tool(folder: Path) -> Tuple[int, List[str]]:
    """Run the tool over `folder` (in place): its exit status and its findings (every line of
    its output but the note that QGIS's classes cannot be introspected)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([str(PYTHON), str(TOOL), str(folder)], capture_output=True, text=True, env=env)
    lines = (result.stdout + result.stderr).splitlines()
    findings = [line for line in lines if line.strip() and "not available for introspection" not in line]
    return result.returncode, findings


def check(plugin: Path = REPO / "qgis_misr") -> Tuple[bool, List[str]]:
    """Run the tool on a copy of `plugin`: (clean, report lines)."""
    with tempfile.TemporaryDirectory(prefix="qt6-check-") as tmp:
        copy = Path(tmp) / plugin.name
        shutil.copytree(plugin, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "metadata.txt"))
        status, findings = run_tool(copy)
        report = [f"{TOOL.name} exit status {status}"] + findings
        for path in sorted(copy.rglob("*.py")):
            original = plugin / path.relative_to(copy)
            before, after = original.read_text(encoding="utf-8"), path.read_text(encoding="utf-8")
            if before != after:
                report += difflib.unified_diff(before.splitlines(), after.splitlines(),
                                               str(original), "Qt6", lineterm="")
    clean = status == 0 and not findings and len(report) == 1
    return clean, report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    reason = missing()
    if reason:
        print(f"qt6-check: {reason}", file=sys.stderr)
        return 2
    clean, report = check()
    print("\n".join(report))
    print("qt6-check: clean, no finding" if clean else "qt6-check: findings above")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
