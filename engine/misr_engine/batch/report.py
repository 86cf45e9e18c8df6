"""The batch's summary report, beside its outputs: `<manifest>_report.csv` (one row per scene)
and `<manifest>_report.json` (the same rows, the counts and how the batch ran)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Sequence

from .outcome import DONE, FAILED, INVALID, INTERRUPTED, SKIPPED, SceneOutcome

COLUMNS = [item.name for item in fields(SceneOutcome)
           if item.name not in ("warnings", "loaded_model", "peak_rss_mb")]
"""The CSV's columns: scene, status, seconds, device, worker, attempts, output, output_sha256, ..."""
STATUSES = (DONE, SKIPPED, FAILED, INVALID, INTERRUPTED)


def report_paths(folder: str | os.PathLike, manifest: str | os.PathLike) -> tuple[Path, Path]:
    """Where the CSV and JSON reports of `manifest` go in `folder`."""
    stem = Path(manifest).stem
    return Path(folder) / f"{stem}_report.csv", Path(folder) / f"{stem}_report.json"


def counts(outcomes: Sequence[SceneOutcome]) -> dict[str, int]:
    """How many scenes ended in each status (every status listed)."""
    found = Counter(outcome.status for outcome in outcomes)
    return {status: found.get(status, 0) for status in STATUSES}


def write_report(outcomes: Sequence[SceneOutcome], folder: str | os.PathLike, manifest: str | os.PathLike,
                 about: dict[str, Any]) -> tuple[Path, Path]:
    """Write both reports atomically (a reader never sees half of one); returns their paths."""
    csv_path, json_path = report_paths(folder, manifest)
    table = io.StringIO()
    writer = csv.DictWriter(table, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for outcome in outcomes:
        writer.writerow({key: "" if value is None else value for key, value in asdict(outcome).items()})
    document = {"manifest": os.path.abspath(manifest), **about, "counts": counts(outcomes),
                "scenes": [asdict(outcome) for outcome in outcomes]}
    _write_atomic(csv_path, table.getvalue())
    _write_atomic(json_path, json.dumps(document, indent=1) + "\n")
    return csv_path, json_path


def _write_atomic(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
