"""The pure parts of `syncer compare`: route folding, log parsing, field flattening,
Diffy's noise rule, pacing, target syntax and the nginx hook's validation."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from syncer.compare import logformat, nginx_hook, noise
from syncer.compare.fields import Captured, differing, flatten
from syncer.compare.logformat import LogEntry, parse_lines
from syncer.compare.noise import Tally, Thresholds, is_real
from syncer.compare.replay import Pacer, Progress, select
from syncer.compare.routes import fold_path, route_of
from syncer.compare.shadow import compare_logs, percentile
from syncer.compare.targets import TargetError, parse_consul, resolve


def test_fold_path_as_seed_000() -> None:
    assert fold_path("/api/user/100/10/post.json?x=1") == "/api/user/{num}/{num}/post.json"
    assert fold_path("/api/user/10.json") == "/api/user/{num}.json"  # the seed's /%d+ rule
    assert fold_path("/v2/items") == "/v2/items"
    assert route_of("HEAD", "/a/7") == "HEAD /a/{num}"


def _replay_line(**overrides: object) -> bytes:
    obj: dict[str, object] = {
        "v": logformat.REPLAY_VERSION,
        "id": "0f3a",
        "method": "GET",
        "uri": "/api/users/1?x=1",
        "status": "200",
        "urt": "0.004",
        "clen": "",
        "h": {"accept": "application/json", "user-agent": ""},
    }
    obj.update(overrides)
    return json.dumps(obj).encode()


def test_parse_replay_mirror_and_plain_lines() -> None:
    body = '{"a":"é\\"x"}'.encode()
    lines = [
        _replay_line(),
        # a POST whose body nginx logged (raw UTF-8 passes escape=json unchanged)
        _replay_line(id="b1", method="POST", uri="/api/orders", clen=str(len(body)), body="BODY").replace(
            b'"BODY"', b'"' + body.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        ),
        _replay_line(id="b2", method="POST", uri="/api/orders", clen="99999", body=""),  # over the bound
        json.dumps(
            {"v": logformat.MIRROR_VERSION, "id": "0f3a", "method": "GET", "uri": "/", "status": "504"}
        ).encode(),
        b"# a comment",
        b"/plain/1",
        b"HEAD /plain/2",
        b"",
    ]
    parsed = parse_lines(lines)
    assert parsed.rejected == 0, parsed.examples
    first, post, big, mirror, plain, head = parsed.entries
    assert first.headers == (("accept", "application/json"),)  # empty = not sent
    assert (first.status, first.upstream_time, first.body, first.host) == (200, 0.004, None, "")
    assert post.body == body
    assert not post.body_missing
    assert big.body_missing
    assert (mirror.kind, mirror.status) == ("mirror", 504)
    assert (plain.method, plain.uri, plain.id) == ("GET", "/plain/1", "line-6")
    assert (head.method, head.uri) == ("HEAD", "/plain/2")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (_replay_line(v="other-1"), "unknown format version"),
        (_replay_line(method="G ET"), "not an HTTP method"),
        (_replay_line(uri="http://evil/"), "must start with '/'"),
        (_replay_line(uri="/a b"), "space or a control"),
        (_replay_line(h={"x-a": "1\r\nInjected: yes"}), "control character"),
        (_replay_line(h={"host": "other"}), "refused"),
        (_replay_line(id="x" * 200), "request id"),
        (_replay_line(status="abc"), "not an HTTP status"),
        (_replay_line(host="a b"), "not a host name"),
        (b"GET /a extra", "expected 'URI' or 'METHOD URI'"),
    ],
)
def test_malformed_lines_are_rejected_with_a_reason(line: bytes, reason: str) -> None:
    parsed = parse_lines([_replay_line(), line])
    assert len(parsed.entries) == 1
    assert parsed.rejected == 1
    assert reason in parsed.examples[0]
    assert parsed.examples[0].startswith("line 2:")


def _json_answer(value: object, status: int = 200) -> Captured:
    return Captured(status, {"content-type": "application/json"}, json.dumps(value).encode())


def test_json_is_canonical_and_arrays_fold_in_field_names() -> None:
    a = flatten(_json_answer({"b": 1, "a": {"x": [1, 2]}, "items": [{"ts": 1}, {"ts": 2}]}), ["content-type"])
    b = flatten(_json_answer({"items": [{"ts": 1}, {"ts": 3}], "a": {"x": [1, 2]}, "b": 1}), ["content-type"])
    assert differing(a, b) == {"body.items[].ts"}
    assert "header.content-type" in a
    c = flatten(_json_answer({"b": 1, "a": {"x": [1]}, "items": []}), [])
    assert differing(a, c) >= {"body.a.x[#]", "body.a.x[]", "body.items[#]", "body.items[].ts"}


def test_ignore_globs_and_hashed_bodies() -> None:
    a = flatten(_json_answer({"meta": {"at": 1}, "v": 1}), [], ignore=["body.meta.*"])
    b = flatten(_json_answer({"meta": {"at": 2}, "v": 1}), [], ignore=["body.meta.*"])
    assert differing(a, b) == set()
    text1 = flatten(Captured(200, {"content-type": "text/plain"}, b"ok 1"), [])
    text2 = flatten(Captured(200, {"content-type": "text/plain"}, b"ok 2"), [])
    assert differing(text1, text2) == {"body"}
    assert "sha256:" in text1["body"].value
    broken = flatten(Captured(200, {"content-type": "application/json"}, b"{oops"), [])
    assert "sha256:" in broken["body"].value  # not JSON after all: compared as bytes
    failed = flatten(Captured(None, {}, b"", error="ConnectTimeout"), [])
    assert differing(failed, text1) == {"error", "status", "body"}


def test_diffy_thresholds() -> None:
    t = Thresholds(relative=20, absolute=0.03)
    assert not is_real(10, 10, 10, t)  # as noisy against the secondary: noise
    assert is_real(10, 0, 10, t)
    assert not is_real(100, 90, 1000, t)  # relative 5% < 20%
    assert not is_real(1, 0, 10_000, t)  # absolute 0.01% < 0.03%
    assert not is_real(3, 5, 10, t)  # fewer than the noise


def test_tally_subtracts_noise_per_field() -> None:
    tally = Tally()
    entry = LogEntry("replay", "id", "GET", "/a/1", 1)

    for n in range(10):
        p = flatten(_json_answer({"ts": n, "v": 1}), [])
        s = flatten(_json_answer({"ts": n + 100, "v": 1}), [])
        c = flatten(_json_answer({"ts": n + 200, "v": 2 if n < 5 else 1}), [])
        tally.add("GET /a/{num}", entry, p, c, s)
    (route,) = tally.verdicts(Thresholds(), max_diff=0)
    assert (route.raw_rate, route.noise_rate, route.real_rate) == (100.0, 100.0, 50.0)
    assert {f.name for f in route.fields if f.real} == {"body.v"}
    assert route.differs
    assert {e.field for e in route.examples} == {"body.v"}
    (lenient,) = tally.verdicts(Thresholds(), max_diff=50)
    assert not lenient.differs


def test_pacer_spaces_requests_evenly() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()
    assert sum(slept) == pytest.approx(0.4)


def test_only_get_and_head_by_default() -> None:
    entries = [
        LogEntry("replay", "1", "GET", "/", 1),
        LogEntry("replay", "2", "POST", "/", 2),
        LogEntry("replay", "3", "DELETE", "/", 3),
        LogEntry("replay", "4", "HEAD", "/", 4),
        LogEntry("replay", "5", "PUT", "/", 5, body_missing=True),
        LogEntry("mirror", "6", "GET", "/", 6),
    ]
    chosen, skipped = select(entries, allow_side_effects=False)
    assert [e.id for e in chosen] == ["1", "4"]
    assert sum(skipped.values()) == 4
    chosen, _ = select(entries, allow_side_effects=True)
    assert [e.id for e in chosen] == ["1", "2", "3", "4"]
    hosted = [LogEntry("replay", "a", "GET", "/", 1, host="web"), LogEntry("replay", "b", "GET", "/", 2, host="api")]
    chosen, skipped = select(hosted, allow_side_effects=False, hosts=["WEB"])
    assert [e.id for e in chosen] == ["a"]
    assert skipped == {"another host (--host)": 1}


def test_target_syntax() -> None:
    sub = parse_consul('consul:web?filter=Service.Meta.version == "2"&tag=canary&warning=1')
    assert sub.service == "web"
    assert sub.filter == '(Service.Meta.version == "2") and "canary" in Service.Tags'
    assert sub.include_warning
    assert parse_consul("consul:web").filter is None
    for bad in ("consul:we b", "consul:web?colour=red", "consul:web?tag=a;b", "consul:web?filter="):
        with pytest.raises(TargetError):
            parse_consul(bad)
    assert resolve("http://127.0.0.1:8080/prefix/", None).base_urls == ("http://127.0.0.1:8080/prefix",)
    for bad in ("ftp://x", "http://127.0.0.1:8080/?a=1", "127.0.0.1:80", "http://h:99999"):
        with pytest.raises(TargetError):
            resolve(bad, None)


def test_shadow_join_and_percentiles() -> None:
    originals = [LogEntry("replay", f"r{i}", "GET", f"/a/{i}", i, status=200, upstream_time=0.01) for i in range(4)]
    mirrors = [
        LogEntry("mirror", "r0", "GET", "/a/0", 1, status=200, upstream_time=0.02),
        LogEntry("mirror", "r1", "GET", "/a/1", 2, status=504, upstream_time=0.3),
        LogEntry("mirror", "zz", "GET", "/a/9", 3, status=200, upstream_time=0.02),
    ]
    summary = compare_logs(originals, mirrors, max_diff=10)
    assert (summary.originals, summary.mirrors, summary.joined, summary.unmatched_mirrors) == (4, 3, 2, 1)
    (route,) = summary.routes
    assert (route.status_mismatch, route.mirror_timeouts, route.differs) == (1, 1, True)
    assert route.mirror_status == {"200": 1, "504": 1}
    assert not route.slower
    slow = compare_logs(originals, mirrors[:1], max_diff=10, max_latency_ratio=1.5).routes[0]
    assert slow.slower  # 20 ms against 10 ms
    assert slow.differs
    assert not compare_logs(originals, mirrors[:1], max_diff=10, max_latency_ratio=3).routes[0].differs
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0


@pytest.mark.parametrize(
    ("replay", "mirror", "message"),
    [
        (nginx_hook.ReplayLog("logs/a;b.log"), None, "path may hold only"),
        (nginx_hook.ReplayLog("logs/a.log", headers=("x-a$b",)), None, "header name"),
        (nginx_hook.ReplayLog("logs/a.log", headers=("Host",)), None, "hop-by-hop"),
        (nginx_hook.ReplayLog("logs/a.log", body_bytes=10**9), None, "body bound"),
        (None, nginx_hook.Mirror("http://a;b:80"), "neither an IP"),
        (None, nginx_hook.Mirror("http://127.0.0.1:80/path"), "only scheme, host and port"),
        (None, nginx_hook.Mirror("gopher://127.0.0.1"), "expected http"),
        (None, nginx_hook.Mirror("http://127.0.0.1:8", share=0), "share"),
        (None, nginx_hook.Mirror("http://127.0.0.1:8", share=10.001), "share"),
        (None, nginx_hook.Mirror("http://127.0.0.1:8", timeout="1h"), "duration"),
        (None, nginx_hook.Mirror("http://127.0.0.1:8", log="x{y"), "path may hold only"),
    ],
)
def test_hook_refuses_values_that_would_inject_nginx_syntax(
    replay: nginx_hook.ReplayLog | None, mirror: nginx_hook.Mirror | None, message: str
) -> None:
    conf = "http {\n    server {\n        location / {\n        }\n    }\n}\n"
    with pytest.raises(nginx_hook.HookError, match=message):
        nginx_hook.decorate(conf, replay, mirror)


def test_hook_places_directives() -> None:
    conf = "http {\n    access_log off;\n    server {\n        location / {\n        }\n    }\n}\n"
    out = nginx_hook.decorate(
        conf, nginx_hook.ReplayLog("logs/r.log"), nginx_hook.Mirror("http://[::1]:81", share=12.5), "logs/a.log"
    )
    assert "log_format syncer_replay escape=json" in out
    assert 'split_clients "${request_id}" $syncer_mirror_pick { 12.5% 1; * ""; }' in out
    assert 'if ($syncer_mirror_go = "") { return 204; }' in out  # sampled and GET/HEAD only
    everything = nginx_hook.decorate(conf, None, nginx_hook.Mirror("http://127.0.0.1:81", all_methods=True))
    assert "if (" not in everything
    assert "server [::1]:81 max_fails=0;" in out
    server_part = out.split("    server {", 1)[1]
    assert server_part.index("access_log logs/r.log syncer_replay;") < server_part.index("location / {")
    assert "access_log logs/a.log;" in server_part  # the ordinary log survives the server-level one
    assert "location / {\n            mirror /_syncer_mirror;" in out


def test_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    now = [0.0]
    progress = Progress(4, stream, clock=lambda: now[0])
    for differed in (False, True, False, True):
        now[0] += 0.5
        progress.step(differed)
    progress.close()
    lines = stream.getvalue().split("\r")
    assert lines[-1].startswith("[" + "#" * 30 + "] 4/4 100%")
    assert lines[-1].rstrip().endswith("differing 2")
    silent = Progress(4, None)
    silent.step(True)
    silent.close()  # no stream: nothing drawn, nothing raised


def test_fields_per_route_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(noise, "MAX_FIELDS", 3)
    tally = Tally()
    entry = LogEntry("replay", "id", "GET", "/a", 1)
    for n in range(5):  # every answer keyed by a new id: field names without end
        p = flatten(_json_answer({f"k{n}": 1, "v": 1}), [])
        c = flatten(_json_answer({f"k{n}": 2, "v": 2}), [])
        tally.add("GET /a", entry, p, c, None)
    (route,) = tally.verdicts(Thresholds(), max_diff=0)
    assert {f.name for f in route.fields} == {"body.k0", "body.k1", "body.v", noise.OTHER_FIELDS}


def test_syncer_run_does_not_load_the_compare_command() -> None:
    probe = (
        "import sys; from syncer import cli; cli.build_parser().parse_args(['run', '--service', 'web']); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('syncer.compare'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    # nginx-example's parser holds the replay-log/mirror options (two small stdlib-only modules)
    assert set(loaded) <= {"syncer.compare", "syncer.compare.nginx_hook", "syncer.compare.logformat"}
