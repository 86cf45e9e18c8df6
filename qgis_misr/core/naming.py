"""Reading dates out of layer names, pairing frames with masks by name, naming runs."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)([-_.]?)(\d\d)\2(\d\d)(?!\d)")
_DATETIME_METADATA = re.compile(r"((?:19|20)\d\d)[-:/](\d\d)[-:/](\d\d)")

MASK_WORDS = frozenset({
    "mask", "masks", "msk", "cloud", "clouds", "cloudmask", "cld", "cm", "qa", "qm", "sm",
    "clear", "valid", "validity", "flags", "fmask", "scl",
})
FRAME_WORDS = frozenset({"frame", "frames", "img", "image", "lr", "scene", "band", "data"})
_TOKEN = re.compile(r"[a-z]+|\d+")


def parse_date(text: str) -> Optional[_dt.date]:
    """The first plausible calendar date in `text` (20240517, 2024-05-17, 2024_05_17, 2024.05.17).

    >>> parse_date("LC08_20240517_B4")
    datetime.date(2024, 5, 17)
    >>> parse_date("frame_03") is None
    True
    """
    for match in _DATE.finditer(text or ""):
        try:
            return _dt.date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
        except ValueError:
            continue
    return None


def parse_metadata_date(items: Dict[str, str]) -> Optional[_dt.date]:
    """A date from raster metadata items (TIFFTAG_DATETIME, ACQUISITION_DATE, DATE...)."""
    for key, value in items.items():
        upper = key.upper()
        if "DATE" in upper or "TIME" in upper:
            match = _DATETIME_METADATA.search(str(value)) or _DATE.search(str(value))
            if match:
                groups = [g for g in match.groups() if g and g.isdigit()]
                try:
                    return _dt.date(int(groups[0]), int(groups[1]), int(groups[2]))
                except (ValueError, IndexError):
                    continue
    return None


def _stem(name: str) -> str:
    base = os.path.basename(name)
    root, ext = os.path.splitext(base)
    return root if ext.lower() in {".tif", ".tiff", ".vrt", ".jp2", ".img", ".nc"} else base


def _tokens(name: str) -> List[str]:
    return _TOKEN.findall(_stem(name).lower())


def looks_like_mask(name: str) -> bool:
    """True when a layer name says it is a mask (mask_03, LC08_..._QA, clouds_2024...)."""
    return any(token in MASK_WORDS for token in _tokens(name))


def _key(name: str, drop: frozenset) -> Tuple[str, ...]:
    return tuple(token.lstrip("0") or "0" if token.isdigit() else token
                 for token in _tokens(name) if token not in drop)


def _numbers(name: str) -> Tuple[int, ...]:
    return tuple(int(token) for token in _tokens(name) if token.isdigit())


def match_masks(frame_names: Sequence[str], mask_names: Iterable[str]) -> List[Optional[str]]:
    """For each frame name, the one mask name that belongs to it, or None.

    Tried in turn, each only when it gives a unique answer: the names without their
    frame/mask words (``frame_03`` <-> ``mask_03``, ``LC08_20240517`` <->
    ``LC08_20240517_cloudmask``), the same date, the same numbers (``frame_3`` <-> ``mask_03``).
    A mask is given to at most one frame.
    """
    masks = [name for name in mask_names if name not in frame_names]
    strategies = (
        lambda name, is_mask: _key(name, MASK_WORDS if is_mask else FRAME_WORDS),
        lambda name, is_mask: parse_date(name),
        lambda name, is_mask: _numbers(name),
    )
    result: List[Optional[str]] = [None] * len(frame_names)
    used = set()
    for strategy in strategies:
        for index, frame in enumerate(frame_names):
            if result[index] is not None:
                continue
            key = strategy(frame, False)
            if not key:
                continue
            candidates = [m for m in masks if m not in used and strategy(m, True) == key]
            if len(candidates) == 1:
                frame_keys = [strategy(other, False) for other in frame_names]
                if frame_keys.count(key) == 1:
                    result[index] = candidates[0]
                    used.add(candidates[0])
    return result


def _frames_text(chosen: int, used: Optional[int] = None) -> str:
    """'9 frames', '1 frame', or '8 of 9 frames' when the engine used fewer than were chosen."""
    count = chosen if used is None else used
    noun = "frame" if count == 1 and (used is None or used == chosen) else "frames"
    if used is not None and used != chosen:
        return f"{used} of {chosen} frames"
    return f"{count} {noun}"


_FRAMES_PART = re.compile(r"\((\d+) (?:of (\d+) )?frames?\)")


def run_name(model_label: str, frame_names: Sequence[str], dates: Sequence[Optional[_dt.date]] = (),
             when: Optional[_dt.datetime] = None) -> str:
    """A short human name for a run, used for the layer group and the task: 'MISR PIUnet
    2024-05-17..2024-06-30 (9 frames) 14:05:32'. `model_label` is the engine's label of the model
    ('' when not known). To the second, so that runs started a minute apart differ; see
    :func:`unique_name` for runs started within the same second."""
    known = sorted(d for d in dates if d is not None)
    if known:
        span = known[0].isoformat() if known[0] == known[-1] else f"{known[0]}..{known[-1]}"
    elif frame_names:
        first, last = _stem(frame_names[0]), _stem(frame_names[-1])
        span = first if first == last else f"{first}..{last}"
    else:
        span = "no frames"
    when = when or _dt.datetime.now()
    return " ".join(part for part in ("MISR", model_label, span) if part) + \
        f" ({_frames_text(len(frame_names))}) {when:%H:%M:%S}"


def with_frames_used(name: str, used: Optional[int]) -> str:
    """`name` (from :func:`run_name`) saying how many frames the engine really used (its
    ``start`` event): 'MISR ... (8 of 9 frames) 14:05:32' when it dropped some."""
    match = _FRAMES_PART.search(name)
    if used is None or match is None:
        return name
    chosen = int(match.group(2) or match.group(1))
    return name[:match.start()] + f"({_frames_text(chosen, used)})" + name[match.end():]


def unique_name(name: str, taken: Iterable[str]) -> str:
    """`name`, or `name (2)`, `name (3)`... whichever is not in `taken`."""
    taken = set(taken)
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def safe_file_stem(text: str) -> str:
    """`text` reduced to a clean file name stem: letters, digits and dashes, the rest (spaces,
    dots, colons, brackets) one underscore. 'MISR PIUnet a..b (2 frames) 14:05:32' gives
    'MISR_PIUnet_a_b_2_frames_14_05_32'."""
    stem = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_-")
    return stem or "misr"
