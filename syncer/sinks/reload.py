"""The reload strategy: render upstream.conf, test it with ``nginx -t``, reload nginx.

Order matters. The candidate goes to the live path atomically (nginx -t must see it in
place of the old one, where nginx.conf includes it); if nginx refuses it, the previous
bytes are put back at once and nginx is not reloaded, so the running config and the
file on disk stay the last good ones. Unchanged bytes mean no write and no reload.
"""

from __future__ import annotations

import contextlib
import difflib

import structlog

from syncer.config import ReloadSettings
from syncer.effects import files
from syncer.effects.commands import Runner, run_command
from syncer.model import Desired, Upstream
from syncer.planning.diff import diff
from syncer.routing.files import RoutingRenderError, routing_files
from syncer.sinks.base import ApplyResult
from syncer.sinks.render import Renderer, RenderError

log = structlog.get_logger("syncer.reload")


class ReloadSink:
    mode = "reload"

    def __init__(self, settings: ReloadSettings, runner: Runner = run_command) -> None:
        self.settings = settings
        self.output = settings.output
        self.renderer = Renderer(settings.template)
        self._run = runner
        self._applied: dict[str, Upstream] = {}  # what the running nginx was last given
        # Exists from just before the file is rewritten until nginx has reloaded it. An
        # agent killed in between (during nginx -t, say) leaves it behind: the file on disk
        # may then be ahead of the running nginx, and untested, so the next agent tests and
        # reloads it even when the bytes it renders are the same. Not named *.conf, so an
        # `include conf.d/*.conf` never picks it up.
        self._marker = self.output.with_name(f".{self.output.name}.unapplied")
        self._untested = self._marker.exists()
        self._reload_pending = self._untested  # the file is ahead of nginx (failed reload, crash)

    def _test(self) -> tuple[bool, str]:
        result = self._run(self.settings.resolved_test_command(), self.settings.command_timeout)
        return result.ok, result.describe()

    def _reload(self) -> tuple[bool, str]:
        result = self._run(self.settings.resolved_reload_command(), self.settings.command_timeout)
        return result.ok, result.describe()

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        changes = tuple(diff(self._applied, desired.upstreams))
        try:
            rendered = self.renderer.render(desired).encode()
        except RenderError as exc:
            return ApplyResult("rejected", changes, f"render failed, previous file kept: {exc}")
        try:
            # the routing files (docs/routing.md) go beside the upstreams, tested and reloaded with them
            wanted = {self.output: rendered, **routing_files(self.output.parent, desired.routing)}
        except RoutingRenderError as exc:
            return ApplyResult("rejected", changes, f"routing render failed, previous files kept: {exc}")
        before = {path: files.read_bytes(path) for path in wanted}
        changed = [path for path, data in wanted.items() if before[path] != data]
        if not changed and not self._reload_pending:
            self._applied = dict(desired.upstreams)
            return ApplyResult("unchanged", changes)
        steps: list[tuple[str, str]] = []
        if changed or self._untested:
            if changed:
                try:
                    self._marker.touch()
                    for path in changed:
                        files.atomic_write(path, wanted[path])
                except OSError as exc:
                    for path in changed:
                        files.restore(path, before[path])
                    return ApplyResult("failed", changes, f"cannot write {self.output}: {exc}")
            ok, detail = self._test()
            steps.append(("nginx_test", "ok" if ok else "refused"))
            if not ok:
                if changed:
                    for path in changed:
                        files.restore(path, before[path])
                    detail = f"nginx -t refused the new file, previous kept: {detail}"
                else:
                    detail = f"nginx -t refused {self.output}, left by an interrupted sync: {detail}"
                if not self._reload_pending:
                    self._clear_marker()  # the file is again what nginx runs
                return ApplyResult("rejected", changes, detail, tuple(steps))
            self._untested = False
        ok, detail = self._reload()
        steps.append(("reload", "ok" if ok else "failed"))
        if not ok:
            # nginx still runs the old config; retry the reload later without rewriting.
            self._reload_pending = True
            return ApplyResult("failed", changes, f"reload failed: {detail}", tuple(steps))
        self._reload_pending = False
        self._clear_marker()
        self._applied = dict(desired.upstreams)
        return ApplyResult("reloaded", changes, steps=tuple(steps))

    def _clear_marker(self) -> None:
        with contextlib.suppress(OSError):  # left behind, it only costs one extra reload
            self._marker.unlink()

    def needs_reconcile(self) -> bool:
        return False  # every apply compares with the file on disk anyway

    def preview(self, desired: Desired) -> str:
        rendered = self.renderer.render(desired)
        previous = files.read_bytes(self.output)
        old_text = previous.decode(errors="replace") if previous is not None else ""
        upstreams = desired.sorted()
        servers = sum(len(u.servers) for u in upstreams)
        lines = [
            f"# syncer dry run (reload mode): would write {self.output}",
            rendered.rstrip("\n"),
            "",
            f"# summary: {len(upstreams)} upstream(s), {servers} server(s)",
        ]
        if previous is None:
            lines.append(f"# {self.output} does not exist: it would be created and nginx reloaded")
        elif old_text == rendered:
            lines.append(f"# {self.output} is unchanged: no write, no reload")
        else:
            delta = list(
                difflib.unified_diff(
                    old_text.splitlines(), rendered.splitlines(), str(self.output), "rendered", lineterm="", n=1
                )
            )
            added = sum(1 for d in delta if d.startswith("+") and not d.startswith("+++"))
            removed = sum(1 for d in delta if d.startswith("-") and not d.startswith("---"))
            lines.append(f"# {self.output} would change (+{added} -{removed} lines) and nginx be reloaded:")
            lines.extend(f"# {d}" for d in delta)
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        pass
