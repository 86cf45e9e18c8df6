"""The batch manifest: one row per scene, in CSV or JSON Lines, read into `SuperResolveRequest`s.

Columns are `id` plus the fields of `SuperResolveRequest` by name (`tile_size` or `tile-size`),
so a field added to the request works in manifests without a change here. Values are converted
from the field's type: lists (`frames`, `masks`) are `;`-separated in CSV and JSON arrays in
JSON Lines, and each item may be a glob; relative input paths are relative to the manifest's
folder, relative outputs to the output folder. `overwrite` and `device` belong to the whole batch.
Every row is read; each bad one gives one line naming the manifest, its line and the problem.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import types
import typing
from collections.abc import Sequence as AbstractSequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Union

from ..errors import MisrError
from ..pipeline import SuperResolveRequest

LIST_SEPARATOR = ";"
"""Separates the items of a list in a CSV cell: `a.tif;b.tif` or `scene1/frame_*.tif`."""
INPUT_FIELDS = ("frames", "masks", "weights", "reference_frame")
"""Request fields naming files to read: relative to the manifest's folder; frames and masks may be globs."""
OUTPUT_FIELDS = ("output", "uncertainty", "kernels_out")
"""Request fields naming files to write: relative to the output folder."""
BATCH_FIELDS = {"overwrite": "--overwrite", "device": "--device"}
"""Request fields set for the whole batch (by these options), not per scene."""
JSON_LINES = (".jsonl", ".ndjson")
"""Manifest suffixes read as JSON Lines; any other is read as CSV."""
DEFAULT_OUTPUT = "{id}_sr.tif"
"""A row without `output` writes this file in the output folder."""


@dataclass(frozen=True)
class Scene:
    """One valid manifest row: where it is, and the run it asks for."""

    id: str
    where: str  # "manifest.csv:3", for messages
    line: int
    request: SuperResolveRequest


@dataclass(frozen=True)
class BadRow:
    """A row that cannot run, and why (one line)."""

    id: str
    where: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.where}: " + (f"scene {self.id}: " if self.id else "") + self.message


def request_fields() -> dict[str, Any]:
    """Each `SuperResolveRequest` field and its type (as the dataclass declares it)."""
    hints = typing.get_type_hints(SuperResolveRequest)
    return {item.name: hints[item.name] for item in fields(SuperResolveRequest)}


def read_manifest(path: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                  defaults: dict[str, Any] | None = None) -> tuple[list[Scene], list[BadRow]]:
    """The scenes of the manifest at `path` (JSON Lines for .jsonl/.ndjson, else CSV), and its
    bad rows. `defaults`: request fields for every row (a row's own value wins); outputs go under
    `output_dir` (default: the manifest's folder). Raises MisrError if the file itself is unusable."""
    manifest = Path(path)
    if not manifest.is_file():
        raise MisrError(f"{manifest}: manifest not found" if not manifest.exists()
                        else f"{manifest}: is not a file")
    output_dir = Path(output_dir).absolute() if output_dir is not None else manifest.resolve().parent
    scenes: list[Scene] = []
    bad: list[BadRow] = []
    seen_ids: dict[str, str] = {}
    seen_outputs: dict[str, str] = {}
    for line, row, problem in _rows(manifest):
        where = f"{manifest}:{line}"
        scene_id = "" if row.get("id") is None else str(row["id"]).strip()
        try:
            if problem:
                raise MisrError(problem)
            if not scene_id:
                raise MisrError("id: missing (every row needs a scene id, unique in the manifest)")
            if scene_id in seen_ids:
                raise MisrError(f"id: also used at line {seen_ids[scene_id]}")
            seen_ids[scene_id] = str(line)
            request = build_request(scene_id, row, manifest.resolve().parent, output_dir, defaults or {})
            for target in request.outputs:
                key = os.path.abspath(target)
                if key in seen_outputs:
                    raise MisrError(f"{target}: also written by scene {seen_outputs[key]}")
                seen_outputs[key] = scene_id
            scenes.append(Scene(scene_id, where, line, request))
        except MisrError as exc:
            bad.append(BadRow(scene_id, where, line, str(exc)))
    if not scenes and not bad:
        raise MisrError(f"{manifest}: no scenes (one row per scene, with at least id and frames)")
    return scenes, bad


def build_request(scene_id: str, row: dict[str, Any], input_dir: Path, output_dir: Path,
                  defaults: dict[str, Any]) -> SuperResolveRequest:
    """The request of scene `scene_id` from its row (`id` and empty cells left out) over `defaults`."""
    types_ = request_fields()
    values = dict(defaults)
    for column, raw in row.items():
        name = column.strip().replace("-", "_")
        if name == "id" or raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if name in BATCH_FIELDS:
            raise MisrError(f"{column}: set for the whole batch ({BATCH_FIELDS[name]}), not per scene")
        if name not in types_:
            raise MisrError(f"{column}: unknown column (known: id, {', '.join(types_)})")
        values[name] = convert(name, raw, types_[name])
    if not values.get("frames"):
        raise MisrError("frames: missing")
    for name in INPUT_FIELDS:
        if values.get(name):
            values[name] = _inputs(name, values[name], input_dir)
    values.setdefault("output", DEFAULT_OUTPUT.format(id=scene_id))
    for name in OUTPUT_FIELDS:
        if values.get(name):
            values[name] = str(output_dir / values[name])
    return SuperResolveRequest(**values)


def convert(name: str, value: Any, hint: Any) -> Any:
    """`value` (a CSV string or a JSON value) as the type `hint` of field `name`, or a MisrError."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        if len(options) > 1 and isinstance(value, list):  # a JSON array for `bands` (numbers, or "all")
            options = [o for o in options if typing.get_origin(o) in (list, tuple, AbstractSequence)] or options
        hint = options[0] if len(options) == 1 else str
    if typing.get_origin(hint) in (list, tuple, AbstractSequence):
        (item,) = typing.get_args(hint)[:1] or (str,)
        items = value.split(LIST_SEPARATOR) if isinstance(value, str) else value
        if isinstance(items, (int, float)) and not isinstance(items, bool):
            items = [items]  # one number where a list of numbers may stand
        if not isinstance(items, list):
            raise MisrError(f"{name}: {json.dumps(value)} is not a list")
        return [convert(name, entry.strip() if isinstance(entry, str) else entry, item)
                for entry in items if not (isinstance(entry, str) and not entry.strip())]
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise MisrError(f"{name}: {value!r} is not true or false")
    if hint in (int, float):
        try:
            number = hint(value) if not isinstance(value, bool) else None
            if number is None or (hint is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return number
        except (TypeError, ValueError):
            raise MisrError(f"{name}: {value!r} is not {'an integer' if hint is int else 'a number'}") from None
    if isinstance(value, (dict, list)):
        raise MisrError(f"{name}: {json.dumps(value)} is not a single value")
    return str(value).strip()


def _inputs(name: str, value: Any, folder: Path) -> Any:
    """Input path(s) made absolute against `folder`, globs of frames and masks expanded (sorted)."""
    if isinstance(value, str):
        return str(folder / value)
    paths: list[str] = []
    for item in value:
        path = str(folder / item)
        if glob.has_magic(item):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise MisrError(f"{name}: {item!r} matches no file (in {folder})")
            paths.extend(matches)
        else:
            paths.append(path)
    return paths


def _rows(manifest: Path) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    """(line number, row, what is wrong with its syntax or None) of a CSV manifest (the first line
    names the columns) or a JSON Lines one (.jsonl, .ndjson: one object a line, `#` comments)."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            if manifest.suffix.lower() in JSON_LINES:
                yield from _json_rows(handle)
                return
            reader = csv.DictReader(handle)
            columns = [column.strip() for column in reader.fieldnames or []]
            if "frames" not in columns:
                raise MisrError(f"{manifest}: the first line must name the columns, at least id and frames "
                                f"(found: {', '.join(columns) or 'nothing'})")
            for row in reader:
                extra = row.pop(None, None)
                if any(value.strip() for value in extra or []):
                    yield reader.line_num, row, f"{len(columns) + len(extra)} values for {len(columns)} columns"
                elif any((value or "").strip() for value in row.values()):
                    yield reader.line_num, row, None
    except UnicodeDecodeError:
        raise MisrError(f"{manifest}: not a text file (a manifest is CSV or JSON Lines, UTF-8)") from None
    except OSError as exc:
        raise MisrError(f"{manifest}: cannot read it ({exc.strerror or exc})") from None
    except csv.Error as exc:
        raise MisrError(f"{manifest}: not a valid CSV file ({exc})") from None


def _json_rows(handle: Any) -> Iterator[tuple[int, dict[str, Any], str | None]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, {}, f"not JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(row, dict):
            yield line, row, None
        else:
            yield line, {}, f"not a JSON object: {text.strip()[:60]}"
