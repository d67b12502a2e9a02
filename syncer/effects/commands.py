"""Running nginx's test and reload commands: argument lists, a timeout, captured output."""

from __future__ import annotations

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
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CommandResult(tuple(argv), None, f"timed out after {timeout}s {out}", time.monotonic() - started)
    except OSError as exc:
        return CommandResult(tuple(argv), None, f"cannot run: {exc}", time.monotonic() - started)
    return CommandResult(tuple(argv), done.returncode, done.stderr + done.stdout, time.monotonic() - started)
