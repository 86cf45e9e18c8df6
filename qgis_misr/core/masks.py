"""Mask kinds as the engine reads them (``misr super-resolve --mask-kind``), for the dialog to
show and let people change: what each kind is, which pixels it treats as unusable, and the
engine's auto-detection from a mask's values (``misr_engine.rasters.masks``; held to the same
answers by tests/plugin/test_plugin_mask_kinds.py).

The plugin reads at most MAX_SIDE x MAX_SIDE pixels of a mask (GDAL picks them, or an
overview) to detect its kind: a whole-tile SCL would take seconds.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

AUTO = "auto"
KINDS = ("binary", "scl", "qa_pixel", "fmask")
"""The engine's mask kinds, in the order its detection prefers them."""
LABELS = {"binary": "Binary (0 = cloud)", "scl": "Sentinel-2 SCL", "qa_pixel": "Landsat QA_PIXEL",
          "fmask": "Fmask"}
UNUSABLE = {
    "binary": "0 is cloud or invalid, any other value clear",
    "scl": "unusable: 0 no data, 1 saturated, 3 cloud shadow, 8-9 cloud, 10 cirrus "
           "(2 dark area and 11 snow on request)",
    "qa_pixel": "unusable: fill, dilated cloud, cirrus, cloud, cloud shadow bits (snow on request)",
    "fmask": "unusable: 2 cloud shadow, 4 cloud, 255 no data (3 snow on request)",
}
MAX_SIDE = 1024
SCL_CLASSES = 12
FMASK_CODES = (0, 1, 2, 3, 4, 255)
QA_FILL, QA_DILATED, QA_CLOUD, QA_CLEAR = 1, 2, 8, 64
MAX_DISTINCT = 4096


def candidate_kinds(counts: Dict[float, int], non_integer: bool = False) -> List[str]:
    """The kinds a mask with these value counts can be, the most plausible first (the engine's
    ``candidate_kinds``)."""
    values = set(counts)
    if non_integer or len(values) > MAX_DISTINCT or any(v < 0 for v in values):
        return ["binary"]
    found = []
    if len(values - {0.0}) <= 1:
        found.append("binary")
    binary_codes = values <= {0.0, 1.0}
    scl = values <= set(map(float, range(SCL_CLASSES))) and not binary_codes
    fmask = values <= set(map(float, FMASK_CODES)) and not binary_codes
    total = sum(counts.values())
    zeros_and_ones = (counts.get(0.0, 0) + counts.get(1.0, 0)) / total if total else 0.0
    if scl and fmask and zeros_and_ones > 0.5:
        found += ["fmask", "scl"]
    else:
        found += (["scl"] if scl else []) + (["fmask"] if fmask else [])
    if values and 255 < max(values) <= 0xFFFF and all(
            int(v) == QA_FILL or int(v) & (QA_CLEAR | QA_CLOUD | QA_DILATED) for v in values):
        found.append("qa_pixel")
    return found


def resolve(candidates: Sequence[List[str]]) -> List[Tuple[str, List[str]]]:
    """For each mask's candidate kinds: (the kind the engine takes for ``auto``, the other kinds
    its values fit). An ambiguous mask takes the kind the unambiguous ones were found to be."""
    settled = {kinds[0] for kinds in candidates if len(kinds) == 1}
    answers = []
    for kinds in candidates:
        agreed = [k for k in kinds if k in settled]
        chosen = (agreed or kinds or ["binary"])[0]
        answers.append((chosen, [k for k in kinds if k != chosen]))
    return answers


def detect_kinds(paths: Sequence[Optional[str]]) -> List[Tuple[str, List[str]]]:
    """(detected kind, other fitting kinds) of each mask file, as a set (``binary`` when a file
    cannot be read)."""
    return resolve([mask_candidates(path) if path else ["binary"] for path in paths])


def mask_candidates(path: str) -> List[str]:
    """The kinds the values of the mask at `path` fit (cached while the file is unchanged)."""
    try:
        stamp = os.stat(path).st_mtime_ns if not path.startswith("/vsi") else 0
    except OSError:
        return ["binary"]
    return list(_candidates(path, stamp))


@lru_cache(maxsize=256)
def _candidates(path: str, _stamp: int) -> Tuple[str, ...]:
    counts, non_integer = _value_counts(path)
    return tuple(candidate_kinds(counts, non_integer)) if counts is not None else ("binary",)


def _value_counts(path: str) -> Tuple[Optional[Dict[float, int]], bool]:
    """The value counts of (at most MAX_SIDE x MAX_SIDE pixels of) band 1, and whether a value is
    not an integer; (None, False) when GDAL cannot read it."""
    import numpy as np
    from osgeo import gdal

    previous = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        dataset = gdal.Open(path)
        width, height = dataset.RasterXSize, dataset.RasterYSize
        step = max(1, -(-max(width, height) // MAX_SIDE))
        values = dataset.GetRasterBand(1).ReadAsArray(buf_xsize=max(1, width // step),
                                                      buf_ysize=max(1, height // step))
    except (RuntimeError, AttributeError):
        return None, False
    finally:
        if not previous:
            gdal.DontUseExceptions()
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    non_integer = bool(values.size and values.dtype.kind == "f" and np.any(values != np.round(values)))
    if non_integer:
        return {}, True
    found, count = np.unique(values, return_counts=True)
    return {float(v): int(c) for v, c in zip(found, count)}, False


def kind_summary(kinds: Iterable[str]) -> str:
    """The kinds in words, for notes."""
    return ", ".join(LABELS.get(kind, kind) for kind in kinds)
