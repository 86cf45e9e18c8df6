"""Which frames a run uses: every file once, identical frames once, no fully cloudy frame, the
`max_frames` clearest. Decided from per-frame counts and digests that `stack.open_stack`
gathers streaming through the files one at a time, so that only the frames used are held open."""

from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

import numpy as np

from ..errors import MisrError
from ..files import identity

DEFAULT_MAX_FRAMES = 15
"""At most this many (the clearest) frames are super-resolved together."""


def unique_inputs(frame_paths: Sequence[str], mask_paths: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """Indices of the frames to read (the first of each file given more than once, with the same
    mask: by device and inode, so links count), and a warning for each repeated one."""
    keys = [(identity(frame) or os.path.realpath(frame),
             (identity(mask_paths[i]) or os.path.realpath(mask_paths[i])) if mask_paths else None)
            for i, frame in enumerate(frame_paths)]
    times = Counter(keys)
    keep, seen, warnings = [], set(), []
    for index, key in enumerate(keys):
        if key in seen:
            continue
        seen.add(key)
        keep.append(index)
        if times[key] > 1:
            same_mask = " (with the same mask)" if mask_paths else ""
            warnings.append(f"{frame_paths[index]}: given {times[key]} times{same_mask}; used once")
    return keep, warnings


def cloudy_selection(paths: Sequence[str], clear: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Which frames have a clear pixel (booleans), a warning for each that has none; a MisrError
    when no frame has one."""
    keep = np.asarray(clear) > 0
    if not keep.any():
        raise MisrError("every frame is fully cloudy or nodata (or NaN, or beyond +-1e30): nothing to super-resolve "
                        f"({', '.join(paths)})")
    return keep, [f"{p}: fully cloudy or nodata, dropped" for p, k in zip(paths, keep) if not k]


def duplicate_selection(paths: Sequence[str], digests: Sequence[bytes]) -> tuple[np.ndarray, list[str]]:
    """Frames with the same pixels and clear masks as another (copies of one file, one file
    under two names): the first of each is kept, a warning for the others."""
    keep = np.ones(len(paths), bool)
    kept_for: dict[bytes, int] = {}
    for index in range(len(paths)):
        if digests[index] in kept_for:
            keep[index] = False
        else:
            kept_for[digests[index]] = int(index)
    return keep, [f"{paths[i]}: same pixels and mask as {paths[kept_for[digests[i]]]}; dropped"
                  for i in np.flatnonzero(~keep)]


def clearest_selection(paths: Sequence[str], clear: np.ndarray, max_frames: int,
                       required: int | None = None, clearest: str = "clearest") -> tuple[np.ndarray, list[str]]:
    """Indices (in order) of the `max_frames` clearest frames, frame `required` among them
    whatever its clear share (it takes the least clear one's place), and a warning naming the
    others (`clearest`: how the warning says what was kept)."""
    if len(paths) <= max_frames:
        return np.arange(len(paths)), []
    order = np.argsort(-np.asarray(clear), kind="stable")
    if required is not None:
        order = np.concatenate([[required], order[order != required]])
    keep = np.sort(order[:max_frames])
    dropped = [paths[i] for i in sorted(order[max_frames:])]
    return keep, [f"{len(dropped)} frame(s) beyond the {max_frames} {clearest} not used: {', '.join(dropped)}"]
