"""The reload sink's decisions, with the subprocess edge replaced by a recorder.

The same paths run against a real nginx in tests/integration; here each failure mode
can be forced exactly.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

from syncer.config import ReloadSettings
from syncer.effects.commands import CommandResult
from syncer.effects.files import LatestWriter
from syncer.model import Desired, Server, make_upstream
from syncer.sinks.reload import ReloadSink


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: dict[str, int | None] = {}

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(argv))
        kind = "test" if "-t" in argv else "reload"
        if kind in self.fail:
            return CommandResult(tuple(argv), self.fail[kind], f"{kind} broke", 0.0)
        return CommandResult(tuple(argv), 0, "", 0.0)

    def kinds(self) -> list[str]:
        return ["test" if "-t" in c else "reload" for c in self.calls]


def state(*ports: int) -> Desired:
    return Desired({"web": make_upstream("web", [Server("10.0.0.1", p) for p in ports])})


def sink(tmp_path: Path, runner: Recorder) -> ReloadSink:
    return ReloadSink(ReloadSettings(output=tmp_path / "upstream.conf"), runner=runner)


def test_first_apply_writes_tests_and_reloads(tmp_path: Path) -> None:
    runner = Recorder()
    result = sink(tmp_path, runner).apply(state(80))
    assert result.action == "reloaded"
    assert runner.kinds() == ["test", "reload"]
    assert "server 10.0.0.1:80;" in (tmp_path / "upstream.conf").read_text()


def test_unchanged_bytes_mean_no_write_and_no_reload(tmp_path: Path) -> None:
    runner = Recorder()
    s = sink(tmp_path, runner)
    s.apply(state(80))
    mtime = (tmp_path / "upstream.conf").stat().st_mtime_ns
    result = s.apply(state(80))
    assert result.action == "unchanged"
    assert runner.kinds() == ["test", "reload"]
    assert (tmp_path / "upstream.conf").stat().st_mtime_ns == mtime


def test_a_failed_test_restores_the_previous_file_and_skips_the_reload(tmp_path: Path) -> None:
    runner = Recorder()
    s = sink(tmp_path, runner)
    s.apply(state(80))
    before = (tmp_path / "upstream.conf").read_bytes()
    runner.fail["test"] = 1
    result = s.apply(state(81))
    assert result.action == "rejected"
    assert "test broke" in result.detail
    assert (tmp_path / "upstream.conf").read_bytes() == before
    assert runner.kinds() == ["test", "reload", "test"]


def test_a_failed_test_on_a_fresh_install_leaves_no_file(tmp_path: Path) -> None:
    runner = Recorder()
    runner.fail["test"] = 1
    assert sink(tmp_path, runner).apply(state(80)).action == "rejected"
    assert not (tmp_path / "upstream.conf").exists()


def test_a_failed_reload_is_retried_without_rewriting(tmp_path: Path) -> None:
    runner = Recorder()
    s = sink(tmp_path, runner)
    runner.fail["reload"] = None  # e.g. a timeout
    first = s.apply(state(80))
    assert first.action == "failed"
    assert first.retryable
    del runner.fail["reload"]
    second = s.apply(state(80))
    assert second.action == "reloaded"
    assert runner.kinds() == ["test", "reload", "reload"]


def test_mode_and_owner_of_the_file_are_kept(tmp_path: Path) -> None:
    output = tmp_path / "upstream.conf"
    output.write_text("old")
    output.chmod(0o600)
    sink(tmp_path, Recorder()).apply(state(80))
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_preview_changes_nothing(tmp_path: Path) -> None:
    runner = Recorder()
    s = sink(tmp_path, runner)
    s.apply(state(80))
    before = (tmp_path / "upstream.conf").read_bytes()
    text = s.preview(state(80, 81))
    assert "server 10.0.0.1:81;" in text
    assert "would change (+1 -0 lines)" in text
    assert (tmp_path / "upstream.conf").read_bytes() == before
    assert runner.kinds() == ["test", "reload"]


def test_latest_writer_writes_the_last_submission_atomically(tmp_path: Path) -> None:
    """The snapshot writer never blocks its caller and ends with the newest bytes on disk."""
    path = tmp_path / "snapshot.json"
    writer = LatestWriter(path, default_mode=0o640)
    for i in range(200):
        writer.submit(f"version {i}".encode())
    assert writer.flush(10)
    assert path.read_text() == "version 199"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    writer.submit(b"final")
    writer.close()
    assert path.read_text() == "final"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
