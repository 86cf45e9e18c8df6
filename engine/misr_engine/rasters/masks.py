"""Cloud masks as products ship them: which pixels of each kind are unusable, telling the kinds
apart from their values, and reading a mask as clear / not clear (dilated) window by window.

Kinds (``--mask-kind``):

* ``binary``: nonzero = clear, 0 = cloud or invalid (the engine's own convention).
* ``scl``: Sentinel-2 L2A scene classification (uint8 classes). Unusable: 0 no data,
  1 saturated or defective, 3 cloud shadow, 8 cloud medium probability, 9 cloud high
  probability, 10 thin cirrus; 2 dark area / cast shadow with ``dark_areas``, 11 snow or ice
  with ``snow``. Usable: 4 vegetation, 5 not vegetated, 6 water, 7 unclassified.
* ``qa_pixel``: Landsat Collection 2 ``QA_PIXEL`` bit flags (uint16). Unusable: bit 0 fill,
  1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow (5 snow with ``snow``), and the value 0
  (no flag at all, not even "clear": outside a scene).
* ``fmask``: Fmask (0 clear land, 1 clear water, 2 cloud shadow, 3 snow, 4 cloud, 255 no data).
  Unusable: 2, 4, 255 (3 with ``snow``).

Any other value of a class mask (a code the kind does not define) is unusable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import MisrError
from ..imaging.morphology import disc

if TYPE_CHECKING:  # the mask kinds and their codes need no GDAL (the command line's help reads them)
    from .bands import BandSource

AUTO = "auto"
MASK_KINDS = ("binary", "scl", "qa_pixel", "fmask")
"""The mask kinds, in the order auto-detection prefers them when values fit several."""

SCL_UNUSABLE = (0, 1, 3, 8, 9, 10)
SCL_DARK_AREA, SCL_SNOW, SCL_CLASSES = 2, 11, 12
QA_FILL, QA_DILATED_CLOUD, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR = (1 << bit for bit in range(7))
QA_UNUSABLE_BITS = QA_FILL | QA_DILATED_CLOUD | QA_CIRRUS | QA_CLOUD | QA_SHADOW
FMASK_CLEAR, FMASK_SNOW = (0, 1), 3
FMASK_CODES = (0, 1, 2, 3, 4, 255)

UNUSABLE = {
    "binary": "0 (cloud or invalid), any nonzero value being clear",
    "scl": "0 no data, 1 saturated/defective, 3 cloud shadow, 8-9 cloud, 10 thin cirrus "
           "(2 dark area with --mask-dark-areas, 11 snow with --mask-snow)",
    "qa_pixel": "bits 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow "
                "(5 snow with --mask-snow) and the value 0",
    "fmask": "2 cloud shadow, 4 cloud, 255 no data (3 snow with --mask-snow)",
}
"""What each kind treats as unusable, in words (``misr super-resolve --help``, the README)."""

MAX_DISTINCT = 4096
"""Distinct values counted per mask before it is taken to be a continuous (binary) mask."""


@dataclass(frozen=True)
class MaskOptions:
    """How masks are read: their kinds (one for all, or one per mask; ``auto`` = detected from the
    values), the optional unusable classes, and how far unusable areas grow (pixels)."""

    kinds: tuple[str, ...] = (AUTO,)
    snow: bool = False
    dark_areas: bool = False
    dilation: int = 0

    def kind_of(self, index: int, count: int) -> str:
        """The kind asked for mask `index` of `count`."""
        if len(self.kinds) == 1:
            return self.kinds[0]
        if len(self.kinds) != count:
            raise MisrError(f"{len(self.kinds)} --mask-kind values for {count} masks: "
                            "give one for all masks or one per mask")
        return self.kinds[index]

    def check(self) -> None:
        """Refuse unknown kinds and a negative dilation (one line)."""
        for kind in self.kinds:
            if kind not in MASK_KINDS + (AUTO,):
                raise MisrError(f"--mask-kind {kind}: unknown (choose from {', '.join(MASK_KINDS + (AUTO,))})")
        if self.dilation < 0:
            raise MisrError(f"--mask-dilation {self.dilation}: must be at least 0")


def clear_of(kind: str, values: np.ndarray, snow: bool = False, dark_areas: bool = False) -> np.ndarray:
    """Which pixels of mask `values` (any numeric array) are clear, for a mask of `kind`."""
    values = np.asarray(values)
    finite = np.isfinite(values)
    if kind == "binary":
        return finite & (values != 0)
    codes = np.where(finite, values, -1).astype(np.int64)
    if kind == "scl":
        usable = np.ones(SCL_CLASSES, bool)
        usable[list(SCL_UNUSABLE)] = False
        usable[SCL_DARK_AREA] = not dark_areas
        usable[SCL_SNOW] = not snow
        inside = (codes >= 0) & (codes < SCL_CLASSES)
        return inside & usable[np.clip(codes, 0, SCL_CLASSES - 1)]
    if kind == "qa_pixel":
        unusable = QA_UNUSABLE_BITS | (QA_SNOW if snow else 0)
        return (codes > 0) & (codes <= 0xFFFF) & ((codes & unusable) == 0)
    if kind == "fmask":
        usable = FMASK_CLEAR if snow else FMASK_CLEAR + (FMASK_SNOW,)
        return np.isin(codes, usable)
    raise MisrError(f"unknown mask kind {kind!r}")


@dataclass
class ValueCounts:
    """The distinct values of a mask and how many pixels hold each (accumulated block by block)."""

    counts: dict[float, int] = field(default_factory=dict)
    non_integer: bool = False
    too_many: bool = False

    def add(self, values: np.ndarray) -> None:
        """Count the values of one block (NaN is ignored)."""
        values = np.asarray(values)[np.isfinite(values)]
        if values.size and not self.non_integer and np.any(values != np.round(values)):
            self.non_integer = True
        if self.too_many:
            return
        for value, count in zip(*np.unique(values, return_counts=True)):
            self.counts[float(value)] = self.counts.get(float(value), 0) + int(count)
        if len(self.counts) > MAX_DISTINCT:
            self.too_many = True

    @property
    def values(self) -> set[float]:
        return set(self.counts)

    def share(self, codes: Iterable[float]) -> float:
        """The fraction of counted pixels holding one of `codes`."""
        total = sum(self.counts.values())
        return sum(self.counts.get(float(c), 0) for c in codes) / total if total else 0.0


def candidate_kinds(counts: ValueCounts) -> list[str]:
    """The kinds whose codes can hold these values, the most plausible first.

    A continuous or signed mask, or one of 0 and one other value, fits ``binary``; integers
    0-11 fit ``scl``; the Fmask codes fit ``fmask`` (neither when the values are only 0 and 1); integers above 255 whose every value is a
    consistent QA_PIXEL word (fill, or "clear", "cloud" or "dilated cloud" set) fit
    ``qa_pixel``. Between SCL and Fmask (values 0-4), a mask mostly of 0 and 1 (no data and
    saturated in SCL, clear land and water in Fmask) is taken for Fmask.
    """
    values = counts.values
    if counts.non_integer or counts.too_many or any(v < 0 for v in values):
        return ["binary"]
    found = []
    if len(values - {0.0}) <= 1:
        found.append("binary")
    binary_codes = values <= {0.0, 1.0}  # the engine's own convention: not taken for classes
    scl = values <= set(map(float, range(SCL_CLASSES))) and not binary_codes
    fmask = values <= set(map(float, FMASK_CODES)) and not binary_codes
    if scl and fmask and counts.share((0, 1)) > 0.5:
        found += ["fmask", "scl"]
    else:
        found += (["scl"] if scl else []) + (["fmask"] if fmask else [])
    if values and max(values) > 255 and max(values) <= 0xFFFF and all(
            int(v) == QA_FILL or int(v) & (QA_CLEAR | QA_CLOUD | QA_DILATED_CLOUD) for v in values):
        found.append("qa_pixel")
    return found


def count_values(source: BandSource, rows: int = 256) -> ValueCounts:
    """The value counts of a whole mask band, read `rows` rows at a time."""
    counts = ValueCounts()
    for row0 in range(0, source.grid.height, rows):
        counts.add(source.read_rows(row0, min(source.grid.height, row0 + rows)))
    return counts


def resolve_kinds(paths: Sequence[str], asked: Sequence[str], counts: Sequence[ValueCounts | None]
                  ) -> tuple[list[str], list[str]]:
    """The kind of every mask and the notes saying how auto-detected kinds were chosen (none for
    plain binary masks).

    `asked[i]` is a kind or ``auto``; `counts[i]` the mask's values (needed for ``auto``). An
    auto mask whose values fit several kinds takes the kind the other masks were found to be
    (the unambiguous ones), else the first plausible one, with a note naming the others. A
    mask given an explicit kind its values cannot hold is a one-line error.
    """
    candidates = [candidate_kinds(c) if c is not None else [] for c in counts]
    settled = {kinds[0] for kinds, a in zip(candidates, asked) if a == AUTO and len(kinds) == 1}
    settled |= {a for a in asked if a != AUTO}
    kinds, notes = [], []
    for path, kind, fits in zip(paths, asked, candidates):
        if kind != AUTO:
            if fits and kind not in fits and kind != "binary":
                raise MisrError(f"{path}: values do not fit --mask-kind {kind} "
                                f"(they fit {' or '.join(fits)}); check the mask kind")
            kinds.append(kind)
            continue
        agreed = [k for k in fits if k in settled]
        chosen = (agreed or fits or ["binary"])[0]
        kinds.append(chosen)
        others = [k for k in fits if k != chosen]
        if chosen == "binary" and not others:
            continue  # the engine's own convention, as before kinds existed: nothing to say
        how = "the kind of the other masks" if agreed and len(fits) > 1 else "the values"
        notes.append(f"{path}: mask kind {chosen} (detected from {how}"
                     + (f"; the values also fit {' or '.join(others)}: pass --mask-kind to choose" if others else "")
                     + ")")
    return kinds, merge_notes(notes)


def merge_notes(notes: Sequence[str], noun: str = "masks") -> list[str]:
    """Notes ``<path>: <text>`` with the same text merged into one naming every file (`noun`), in order."""
    groups: dict[str, list[str]] = {}
    for note in notes:
        path, text = note.split(": ", 1)
        groups.setdefault(text, []).append(path)
    return [f"{paths[0]}: {text}" if len(paths) == 1 else
            f"{len(paths)} {noun} ({', '.join(os.path.basename(p) for p in paths)}): {text}"
            for text, paths in groups.items()]


@dataclass
class MaskReader:
    """A mask band on its frame's grid read as clear (True) / not clear, its unusable areas grown
    by `dilation` pixels (a disc)."""

    band: BandSource
    kind: str
    snow: bool = False
    dark_areas: bool = False
    dilation: int = 0

    @property
    def path(self) -> str:
        return self.band.path

    def cache_bytes(self) -> int:
        return self.band.cache_bytes()

    def read_clear(self, row0: int, row1: int, col0: int = 0, col1: int | None = None) -> np.ndarray:
        """Whether each pixel of the window is clear (halo rows and columns read for the dilation)."""
        width, height = self.band.grid.width, self.band.grid.height
        col1 = width if col1 is None else col1
        grow = self.dilation
        top, bottom, left, right = max(0, row0 - grow), min(height, row1 + grow), max(0, col0 - grow), min(width, col1 + grow)
        clear = clear_of(self.kind, self.band.read_rows(top, bottom, left, right), self.snow, self.dark_areas)
        if grow > 0:
            clear = ~ndimage.binary_dilation(~clear, structure=disc(grow))
        return clear[row0 - top:row1 - top, col0 - left:col1 - left]
