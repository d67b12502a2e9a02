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
import threading
from collections.abc import Callable
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


class LatestWriter:
    """Writes the latest bytes submitted for one path, atomically, on its own thread.

    For state files that only need to be recent (the api snapshot): the caller never
    waits for the disk (fsync can stall for hundreds of ms on a busy disk), and when
    submissions outpace the disk the intermediate ones are skipped.
    """

    def __init__(self, path: Path, default_mode: int = 0o644, on_error: Callable[[OSError], None] | None = None):
        self.path = path
        self._mode = default_mode
        self._on_error = on_error
        self._pending: bytes | None = None
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"writer {path.name}", daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> None:
        with self._cond:
            self._pending = data
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                data, self._pending, self._busy = self._pending, None, True
            try:
                atomic_write(self.path, data, self._mode)
            except OSError as exc:
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is on disk; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)


def private_file_problem(path: Path) -> str | None:
    """Why a secret's file is not private to its owner, or None when it is (or is missing:
    reading it reports that). nginx's side of the admin token refuses the same modes."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check its permissions: {exc.strerror or exc}"
    if mode & 0o066:
        return f"readable or writable by group or others (mode {mode:04o}); chmod 600 it"
    return None
