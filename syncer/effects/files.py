"""Atomic file replacement: temp file in the same directory, fsync, rename.

Readers (nginx -t, a reload) see either the old bytes or the new bytes, never a partial
file, even if the agent is killed mid-write. Mode and owner of the file being replaced
are kept, so an operator's permissions survive.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def atomic_write(path: Path, data: bytes, default_mode: int = 0o644) -> None:
    directory = path.parent
    try:
        current = path.stat()
    except FileNotFoundError:
        current = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            if current is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(current.st_mode))
                with contextlib.suppress(PermissionError):  # only root may give files away
                    os.fchown(handle.fileno(), current.st_uid, current.st_gid)
            else:
                os.fchmod(handle.fileno(), default_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def restore(path: Path, previous: bytes | None) -> None:
    """Put back what was there before: the old bytes, or no file at all."""
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        atomic_write(path, previous)
