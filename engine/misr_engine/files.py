"""What a path is, checked before GDAL or safetensors open it: a FIFO must not hang a run, a
device must be neither read nor replaced, an over-long name is one line, and two paths are the
same file when they resolve to the same inode (links to files or directories, hard links)."""

from __future__ import annotations

import errno
import os
import stat

from .errors import MisrError

NAME_MAX = 255
"""Bytes in a file name where the file system does not say (`pathconf`)."""


def kind_of(mode: int) -> str:
    """'regular file', 'directory', 'FIFO (named pipe)', ... for an `os.stat` st_mode."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def check_input_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """`path` (links followed) exists, is a regular file and is readable, or a one-line MisrError.

    Only `os.stat` looks at it: nothing opens a FIFO (which would block) or a device.
    `what` names what was expected in the messages ("raster", "weights file").
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise MisrError(f"{path}: {'file' if what == 'raster' else what} not found") from None
    except OSError as exc:
        raise MisrError(f"{path}: {reason(exc)}") from None
    if stat.S_ISDIR(status.st_mode):
        raise MisrError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(status.st_mode):
        raise MisrError(f"{path}: is a {kind_of(status.st_mode)}, not a {what} (give a regular file)")
    if not os.access(path, os.R_OK):
        raise MisrError(f"{path}: permission denied")
    return status


def reason(exc: OSError) -> str:
    """An OSError in a few words (the caller names the file)."""
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of the file at `path` (links followed), or None when there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` are one file: the same resolved path, or the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    first = identity(a)
    return first is not None and first == identity(b)


def name_limit(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of `folder` takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def check_name_length(path: str | os.PathLike) -> None:
    """A one-line MisrError when the last part of `path` is longer than its file system allows."""
    folder, name = os.path.split(os.path.abspath(path))
    size, limit = len(os.fsencode(name)), name_limit(folder if os.path.isdir(folder) else "/")
    if size > limit:
        raise MisrError(f"{path}: file name too long ({size} bytes; this file system takes at most {limit})")


OPEN_FILES_MARGIN = 32
"""Descriptors left for Python, torch, GDAL and the outputs beside the input files held open (a run
of the sample holds 8 more than its frames and masks)."""


def ensure_open_files(count: int) -> None:
    """Make room for `count` more files held open: raise the soft limit (`ulimit -n`) up to the
    hard one if needed, or a one-line MisrError saying what to do."""
    try:
        import resource
    except ImportError:  # not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + OPEN_FILES_MARGIN
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise MisrError(f"the frames and masks used need {count} files open at once and the limit is {hard} "
                    f"(ulimit -n): use fewer --max-frames")
