"""Send each logged request to the primary, the candidate and (optionally) the secondary,
safely: only GET and HEAD unless side effects are allowed, at a bounded rate and with a
bounded number of requests in flight. Ctrl-C stops sending; requests already in flight
finish (within ``timeout``) and what was counted so far makes a partial report.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO

import requests

from syncer.compare.fields import Captured, flatten
from syncer.compare.logformat import LogEntry
from syncer.compare.noise import Tally
from syncer.compare.routes import route_of
from syncer.compare.targets import Target

SAFE_METHODS = frozenset({"GET", "HEAD"})
USER_AGENT = "syncer-compare"


@dataclass(frozen=True)
class ReplayOptions:
    rate: float = 20.0
    """Logged requests started per second (each goes to two or three targets)."""
    concurrency: int = 4
    """Logged requests in flight at once."""
    timeout: float = 10.0
    max_body: int = 1024 * 1024
    """Bytes of each answer's body kept; a longer body is compared by its first bytes and flagged."""
    headers: tuple[str, ...] = ("content-type", "location")
    ignore: tuple[str, ...] = ()
    allow_side_effects: bool = False


def select(
    entries: Iterable[LogEntry], allow_side_effects: bool, hosts: Collection[str] = ()
) -> tuple[list[LogEntry], collections.Counter[str]]:
    """The entries to replay, and why the others are skipped. ``hosts``: keep only requests
    logged for these (nginx's ``$host``; one nginx often fronts several services)."""
    chosen: list[LogEntry] = []
    skipped: collections.Counter[str] = collections.Counter()
    wanted = {h.lower() for h in hosts}
    for entry in entries:
        if entry.kind != "replay":
            skipped["mirror log entry (not a request to replay)"] += 1
        elif wanted and entry.host not in wanted:
            skipped["another host (--host)"] += 1
        elif entry.method not in SAFE_METHODS and not allow_side_effects:
            skipped[f"{entry.method}: side effects (use --allow-side-effects)"] += 1
        elif entry.body_missing:
            skipped["body larger than the logged bound"] += 1
        else:
            chosen.append(entry)
    return chosen, skipped


class Pacer:
    """Start at most ``rate`` requests per second, evenly spaced (no burst)."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next is not None and self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


class Progress:
    """One self-rewriting line on a terminal: done/total, rate, differing so far."""

    def __init__(self, total: int, stream: TextIO | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._shown = 0.0
        self._lock = threading.Lock()
        self.done = 0
        self.differing = 0

    def step(self, differed: bool) -> None:
        with self._lock:
            self.done += 1
            self.differing += differed
            now = self._clock()
            if self._stream is not None and (now - self._shown >= 0.1 or self.done == self.total):
                self._shown = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        assert self._stream is not None
        share = self.done / self.total if self.total else 1.0
        filled = int(share * 30)
        rate = self.done / max(now - self._started, 1e-6)
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {share:4.0%} "
            f"{rate:6.1f} req/s  differing {self.differing}"
        )
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None and self.done:
            self._stream.write("\n")
            self._stream.flush()


class Sender:
    """HTTP to the targets, one connection pool per worker thread."""

    def __init__(self, options: ReplayOptions) -> None:
        self._options = options
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.trust_env = False  # a proxy from the environment would change what is compared
            self._local.session = session
        return session

    def send(self, target: Target, entry: LogEntry) -> Captured:
        url = target.pick() + entry.uri
        try:
            response = self._session().request(
                entry.method,
                url,
                headers=dict(entry.headers),
                data=entry.body,
                timeout=self._options.timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                limit = self._options.max_body
                body = response.raw.read(limit + 1, decode_content=True) if entry.method != "HEAD" else b""
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Captured(response.status_code, headers, body[:limit], truncated=len(body) > limit)
            finally:
                response.close()
        except requests.RequestException as exc:
            return Captured(None, {}, b"", error=type(exc).__name__)
        except OSError as exc:  # urllib3 surfaces some socket errors unwrapped while streaming
            return Captured(None, {}, b"", error=type(exc).__name__)


@dataclass(frozen=True)
class Outcome:
    interrupted: bool
    started: int
    failures: tuple[str, ...]


class Replayer:
    def __init__(
        self,
        primary: Target,
        candidate: Target,
        secondary: Target | None,
        options: ReplayOptions,
        tally: Tally,
        progress: Progress | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.primary, self.candidate, self.secondary = primary, candidate, secondary
        self.options = options
        self.tally = tally
        self.progress = progress
        self.pacer = pacer or Pacer(options.rate)
        self.sender = Sender(options)
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def _one(self, entry: LogEntry, fanout: ThreadPoolExecutor) -> None:
        try:
            headers, ignore = self.options.headers, self.options.ignore
            # the three copies leave together, as in Diffy: sent one after the other, the
            # candidate would always answer last and time-dependent fields would differ more
            # against it than against the secondary, which reads as a real difference
            sent_secondary = fanout.submit(self.sender.send, self.secondary, entry) if self.secondary else None
            sent_candidate = fanout.submit(self.sender.send, self.candidate, entry)
            primary = flatten(self.sender.send(self.primary, entry), headers, ignore)
            secondary = flatten(sent_secondary.result(), headers, ignore) if sent_secondary is not None else None
            candidate = flatten(sent_candidate.result(), headers, ignore)
            differed = self.tally.add(route_of(entry.method, entry.uri), entry, primary, candidate, secondary)
            if self.progress is not None:
                self.progress.step(differed)
        except Exception as exc:  # a bug must show in the report, not vanish inside a future
            with self._lock:
                self._failures.append(f"line {entry.line}: {type(exc).__name__}: {exc}")

    def run(self, entries: Sequence[LogEntry]) -> Outcome:
        slots = threading.BoundedSemaphore(self.options.concurrency)
        pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="compare")
        fanout = ThreadPoolExecutor(max_workers=2 * self.options.concurrency, thread_name_prefix="compare-fanout")
        interrupted = False
        started = 0
        try:
            for entry in entries:
                self.pacer.wait()
                slots.acquire()
                future = pool.submit(self._one, entry, fanout)
                started += 1
                future.add_done_callback(lambda _f: slots.release())
        except KeyboardInterrupt:
            interrupted = True
        try:
            # interrupted: drop what is queued, let what is in flight finish
            pool.shutdown(wait=True, cancel_futures=interrupted)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for requests in flight
            interrupted = True
            pool.shutdown(wait=False, cancel_futures=True)
        fanout.shutdown(wait=not interrupted, cancel_futures=True)
        if self.progress is not None:
            self.progress.close()
        with self._lock:
            return Outcome(interrupted, started, tuple(self._failures))


def progress_stream(force: bool | None) -> TextIO | None:
    """stderr when it is a terminal (or ``force``), else None."""
    if force is False:
        return None
    if force or sys.stderr.isatty():
        return sys.stderr
    return None
