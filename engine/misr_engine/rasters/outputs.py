"""Output files: checked before a run, committed atomically after it (both appear, or neither),
never replacing a file that was not meant to be replaced.

* Identity: an output is compared with every input and the other outputs by resolved file
  (real path, and device and inode when it exists), so links to files or folders and hard
  links are seen through.
* Commit without a race: each temporary is hard-linked into place, which fails if something
  appeared at the output path during the run; only `overwrite` replaces, and only a regular
  file (never a device, FIFO or socket).
* Partial files are named `.<output name>.misr-<host>-<pid>-<token>.partial<suffix>`; a later
  run on the same output removes those of processes that are gone (killed runs).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .. import signals
from ..errors import MisrError
from ..files import check_name_length, identity, kind_of, same_file

HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
"""Partial files carry the host, so that a run never removes those of a live run elsewhere (NFS)."""
PARTIAL = ".partial"
BACKUP = ".old"
SIDECARS = (".aux.xml", ".ovr")
"""GDAL files beside a raster that describe it (statistics, overviews): stale once it is replaced."""
_WORK = re.compile(r"\.misr-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-z]+(?P<kind>\.partial|\.old)")


def check_outputs(paths: Sequence[str], inputs: Sequence[str], overwrite: bool) -> list[str]:
    """Check every output (`check_output_path`) and that no two are one file; the partial files
    of killed runs on them are removed first. Returns a note per output cleaned."""
    for index, path in enumerate(paths):
        for other in paths[:index]:
            if same_file(path, other):
                raise MisrError(f"{path}: --output and --uncertainty are the same file ({other})")
    notes = []
    for path in paths:
        check_output_path(path, inputs, overwrite)
        removed = remove_stale_work_files(path)
        if removed:
            notes.append(f"{path}: removed {len(removed)} partial file(s) of an interrupted run")
    return notes


def check_output_path(path: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse an output in a missing or unwritable directory, with a name too long, equal to an
    input, a directory or special file, or existing without overwrite."""
    check_name_length(path)
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise MisrError(f"{path}: output directory {target.parent} does not exist")
    if target.is_dir():
        raise MisrError(f"{path}: is a directory; give an output file name")
    if any(same_file(target, p) for p in inputs):
        raise MisrError(f"{path}: output would overwrite an input file")
    if os.path.lexists(path):
        _check_replaceable(path, target, overwrite)
    try:  # the only portable test that the directory is writable: write there
        with signals.deferred():  # an interruption must not leave the probe behind
            handle, probe = tempfile.mkstemp(prefix=".misr-", suffix=".probe", dir=target.parent)
            os.close(handle)
            os.remove(probe)
    except OSError as exc:
        raise MisrError(f"{path}: cannot write in {target.parent} ({exc.strerror or exc})") from None


def _check_replaceable(label: str | Path, target: Path, overwrite: bool) -> None:
    """An existing output may be replaced only with `overwrite`, and only if it is a regular file."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None  # a dangling link: replacing it creates the file it names
    if mode is not None and not stat.S_ISREG(mode):
        raise MisrError(f"{label}: is a {kind_of(mode)}; outputs replace regular files only")
    if not overwrite:
        raise MisrError(f"{label}: already exists (use --overwrite to replace it)")


def work_stem(target: Path) -> str:
    """The start of the names of `target`'s partial files (long names shortened, with a hash)."""
    name = target.name
    if len(os.fsencode(name)) > 120:
        name = name[:80] + "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    return f".{name}.misr-"


def remove_stale_work_files(path: str) -> list[str]:
    """Remove the partial files that dead processes of this host left for `path` (a killed run);
    a backup of the old output that a killed commit left is put back if the output is missing."""
    target = Path(os.path.realpath(path))
    stem, removed = work_stem(target), []
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(stem)]
    except OSError:
        return removed
    for name in sorted(names):
        found = _WORK.match(name, len(stem) - len(".misr-"))
        if not found or found["host"] != HOST or _alive(int(found["pid"])):
            continue
        leftover = target.parent / name
        try:
            if found["kind"] == BACKUP and not os.path.lexists(target):
                os.link(leftover, target)  # the killed commit had moved the old output aside
            os.remove(leftover)
            removed.append(name)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _work_path(target: Path, kind: str) -> Path:
    """A new, unique partial (or backup) file name beside `target`."""
    suffix = target.suffix if kind == PARTIAL and len(target.suffix) <= 8 else ""
    return target.parent / f"{work_stem(target)}{HOST}-{os.getpid()}-{secrets.token_hex(4)}{kind}{suffix}"


@contextmanager
def atomic_outputs(paths: Sequence[str], overwrite: bool = False) -> Iterator[list[str]]:
    """Yield temporary paths beside `paths`; move them all onto `paths` only if the block succeeds.

    On failure or interruption no temporary file remains and existing files are untouched.
    The moves happen together at the end with the interrupting signals deferred: each
    temporary is linked into place, so an output that appeared meanwhile is never replaced
    unless `overwrite` (and then only a regular file); if one move fails, those already made
    are undone (replaced files restored).
    """
    targets = [Path(os.path.realpath(p)) for p in paths]
    temporaries: list[str] = []
    try:
        for target in targets:
            temporary = _work_path(target, PARTIAL)
            with signals.deferred():  # created and recorded together: an interruption leaves none
                os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                temporaries.append(str(temporary))
        yield list(temporaries)
        with signals.deferred():
            signals.check()  # a signal whose KeyboardInterrupt a library swallowed: still no output
            _commit(temporaries, targets, [str(p) for p in paths], overwrite)
    finally:
        with signals.deferred():
            for temporary in temporaries:
                for leftover in (temporary, temporary + ".aux.xml"):
                    if os.path.lexists(leftover):
                        os.remove(leftover)


def _commit(temporaries: Sequence[str], targets: Sequence[Path], labels: Sequence[str], overwrite: bool) -> None:
    """Put each temporary at its target, keeping replaced files until all moves succeed."""
    mode = 0o666 & ~_umask()
    placed: list[tuple[Path, tuple[int, int] | None, Path | None]] = []  # target, its new inode, backup
    label = labels[0] if labels else ""
    try:
        for temporary, target, label in zip(temporaries, targets, labels):
            os.chmod(temporary, mode)  # partial files are private; outputs get the usual mode
            new = identity(temporary)
            backup = None
            if os.path.lexists(target):
                if not overwrite:
                    raise MisrError(f"{label}: appeared during the run; kept it (use --overwrite to replace it)")
                _check_replaceable(label, target, overwrite)  # a FIFO or device put there meanwhile neither
                backup = _work_path(target, BACKUP)
                os.rename(target, backup)
            placed.append((target, new, backup))
            if backup is None:
                _link_new(temporary, target, label)
            else:
                os.replace(temporary, target)
    except BaseException as exc:
        _undo(placed)
        if isinstance(exc, OSError):
            raise MisrError(f"{label}: cannot replace it ({exc.strerror or exc}); existing files kept") from None
        raise
    for target, _, backup in placed:
        if backup is not None:
            os.remove(backup)
        for sidecar in SIDECARS:
            if os.path.isfile(str(target) + sidecar):
                os.remove(str(target) + sidecar)


def _link_new(temporary: str, target: Path, label: str) -> None:
    """Link `temporary` at `target`, failing if `target` exists by now (a concurrent writer)."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise MisrError(f"{label}: appeared during the run; kept it (use --overwrite to replace it)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        try:  # a file system without hard links: reserve the name, then rename onto it
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise MisrError(f"{label}: appeared during the run; kept it (use --overwrite to replace it)") from None
        os.replace(temporary, target)
    else:
        os.remove(temporary)


def _undo(placed: Sequence[tuple[Path, tuple[int, int] | None, Path | None]]) -> None:
    """Take back the outputs placed so far (only if they are still ours) and restore replaced files."""
    for target, new, backup in reversed(placed):
        if new is not None and identity(target) == new:
            os.remove(target)
        if backup is not None and os.path.lexists(backup):
            os.replace(backup, target)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
