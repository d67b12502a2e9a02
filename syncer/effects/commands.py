"""Running nginx's test and reload commands: argument lists, a timeout, captured output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: did not finish (timeout) or could not start
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        tail = " ".join(self.output.strip().splitlines()[-3:])[:500]
        if self.returncode is None:
            return f"{self.argv[0]} did not complete: {tail}"
        return f"{self.argv[0]} exited {self.returncode}: {tail}"


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult: ...


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    started = time.monotonic()
    try:
        # Its own session (process group), so a timeout kills the whole command: a wrapper
        # script's children (`sleep`, a stuck `systemctl`) would otherwise outlive it.
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(tuple(argv), None, f"cannot run: {exc}", time.monotonic() - started)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        said = _kill_group(proc)
        return CommandResult(tuple(argv), None, f"timed out after {timeout}s {said}", time.monotonic() - started)
    return CommandResult(tuple(argv), proc.returncode, err + out, time.monotonic() - started)


def _kill_group(proc: subprocess.Popen[str]) -> str:
    """Kill the command and everything it started; return what it had printed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=1.0)
    except subprocess.TimeoutExpired:  # a child left the group and still holds our pipes
        proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return ""
    return err + out
