"""Output files: checked before a run, committed atomically after it (both appear, or neither)."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import MisrError

def check_output_path(path: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse an output in a missing or unwritable directory, equal to an input, a directory,
    or existing without overwrite."""
    target = Path(path).resolve()
    if not target.parent.is_dir():
        raise MisrError(f"{path}: output directory {target.parent} does not exist")
    if target.is_dir():
        raise MisrError(f"{path}: is a directory; give an output file name")
    if any(target == Path(p).resolve() or _same_file(target, p) for p in inputs):
        raise MisrError(f"{path}: output would overwrite an input file")
    if target.exists() and not overwrite:
        raise MisrError(f"{path}: already exists (use --overwrite to replace it)")
    try:  # the only portable test that the directory is writable: write there
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise MisrError(f"{path}: cannot write in {target.parent} ({exc.strerror or exc})") from None


def _same_file(target: Path, other: str) -> bool:
    try:
        return target.exists() and os.path.samefile(target, other)
    except OSError:
        return False


SIDECARS = (".aux.xml", ".ovr")
"""GDAL files beside a raster that describe it (statistics, overviews): stale once it is replaced."""


@contextmanager
def atomic_outputs(paths: Sequence[str]) -> Iterator[list[str]]:
    """Yield temporary paths beside `paths`; move them all onto `paths` only if the block succeeds.

    On failure or interruption no temporary file remains and existing files are untouched.
    The moves happen together at the end with SIGINT/SIGTERM deferred; if one fails, the
    outputs already moved are rolled back to the files they replaced.
    """
    targets = [Path(p).resolve() for p in paths]
    temporaries: list[str] = []
    try:
        for target in targets:
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial.tif",
                                                 dir=target.parent)
            os.close(handle)
            temporaries.append(temporary)
        yield list(temporaries)
        with _signals_deferred():
            _commit(temporaries, targets)
    finally:
        with _signals_deferred():
            for temporary in temporaries:
                for leftover in (temporary, temporary + ".aux.xml"):
                    if os.path.exists(leftover):
                        os.remove(leftover)


def _commit(temporaries: Sequence[str], targets: Sequence[Path]) -> None:
    """Move each temporary onto its target, keeping the old targets until all moves succeed."""
    mode = 0o666 & ~_umask()
    backups: list[list] = []  # [backup path, target, whether the backup now holds the old target]
    moved: list[Path] = []
    current = targets[0] if targets else None
    try:
        for temporary, current in zip(temporaries, targets):
            os.chmod(temporary, mode)  # mkstemp makes files private; outputs get the usual mode
            if current.exists():
                handle, backup = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".old",
                                                  dir=current.parent)
                os.close(handle)
                backups.append([backup, current, False])
                os.replace(current, backup)
                backups[-1][2] = True
            os.replace(temporary, current)
            moved.append(current)
    except BaseException as exc:
        for target in moved:
            os.remove(target)
        for backup, target, holding in backups:
            if holding:
                os.replace(backup, target)
            else:
                os.remove(backup)
        if isinstance(exc, OSError):
            raise MisrError(f"{current}: cannot replace it ({exc.strerror or exc}); "
                            "existing files kept") from None
        raise
    for backup, _, _ in backups:
        os.remove(backup)
    for target in moved:
        for sidecar in SIDECARS:
            if os.path.isfile(str(target) + sidecar):
                os.remove(str(target) + sidecar)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    with ExitStack() as restore:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(number, lambda signum, frame: received.append(signum))
            restore.callback(signal.signal, number, previous)
        yield
    for signum in received[:1]:
        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)
