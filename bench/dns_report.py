"""The report's DNS section: reload, api and Consul DNS side by side on the talk's three claims.

The talk (方案二) holds against DNS: an extra resolution on the request path, DNS caching
that keeps traffic on a removed instance until the cache expires, and ports that cannot
change. Each claim gets its measured figures here; the scenario tables above carry the
DNS variants as columns too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bench.analysis import ModeSummary, Spread
from bench.dns_move import NEW, MoveResult
from bench.dns_outage import OutageResult
from bench.dns_run import DnsResult

TITLE = "## DNS strategy: Consul DNS and nginx's resolver"
CHURN = ("steady", "rolling", "high")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _spread(s: Spread) -> str:
    if not s.n:
        return "n/a"
    unseen = f"; {s.n - s.observed} of {s.n} never seen" if s.observed < s.n else ""
    return f"{_ms(s.p50)} / {_ms(s.p99)} / {_ms(s.max)}{unseen}"


def _baseline_rps(m: ModeSummary) -> float | None:
    w = m.windows.get("baseline")
    return float(w.wrk["rps"]) if w else None


def _churn_failures(m: ModeSummary) -> int:
    return sum(m.windows[k].failed_total for k in CHURN if k in m.windows)


def _deregister_cell(m: ModeSummary) -> str:
    if m.mode == "dns-static":
        # resolved once: a removed instance keeps its traffic until nginx restarts; its "last
        # request" is only the end of the run
        return "never: until nginx restarts"
    return _spread(m.propagation["deregister"])


def _move_cell(move: MoveResult | None) -> str:
    if move is None:
        return "not run (as dns: the port is the one in the config)"
    failed = sum(move.failed.values())
    first = "never" if move.first_new_ms is None else f"after {_ms(move.first_new_ms)} ms"
    return (
        f"{move.new_share * 100:.0f} % of {move.requests:,} reached it ({first}); "
        f"{failed} failed; {move.refused_connects} refused connects"
    )


def _outage_cell(outage: OutageResult | None) -> str:
    if outage is None:
        return "not run (keeps what it resolved at start)"
    return f"{outage.ok:,} / {sum(outage.failed.values()):,} in {outage.seconds:g} s"


def comparison_table(modes: list[ModeSummary], dns: DnsResult) -> list[str]:
    static = next((m for m in modes if m.mode == "dns-static"), None)
    static_rps = _baseline_rps(static) if static else None
    moves = {m.strategy: m for m in dns.moves}
    outages = {o.strategy: o for o in dns.outages}
    rows: list[tuple[str, Callable[[ModeSummary], str]]] = [
        ("register → first request, p50 / p99 / max ms", lambda m: _spread(m.propagation["register"])),
        ("deregister → last request, p50 / p99 / max ms", _deregister_cell),
        (
            "requests sent to instances after their deregistration (instances)",
            lambda m: (
                f"{dns.strays[m.mode].requests:,} ({dns.strays[m.mode].instances} of "
                f"{dns.strays[m.mode].deregistrations})"
                if m.mode in dns.strays
                else "n/a"
            ),
        ),
        ("failed requests under churn, all clients", lambda m: str(_churn_failures(m))),
        (
            "baseline requests/s (vs dns-static)",
            lambda m: (
                f"{_baseline_rps(m) or 0:,.0f}"
                + (f" ({(_baseline_rps(m) or 0) / static_rps * 100:.0f} %)" if static_rps else "")
            ),
        ),
        (
            "baseline wrk latency p50 / p99 ms",
            lambda m: (
                f"{m.windows['baseline'].wrk['latency_ms']['p50']:.2f} / "
                f"{m.windows['baseline'].wrk['latency_ms']['p99']:.2f}"
                if "baseline" in m.windows
                else "n/a"
            ),
        ),
        ("DNS queries dev-consul answered", lambda m: f"{dns.queries[m.mode]:,}" if m.mode in dns.queries else "none"),
        ("instance moved to another port", lambda m: _move_cell(moves.get(m.mode))),
        ("Consul stopped: requests answered / failed", lambda m: _outage_cell(outages.get(m.mode))),
    ]
    lines = ["| | " + " | ".join(f"**{m.mode}**" for m in modes) + " |", "|---|" + "---|" * len(modes)]
    lines += [f"| {label} | " + " | ".join(cell(m) for m in modes) + " |" for label, cell in rows]
    return lines


def hotpath_table(dns: DnsResult) -> list[str]:
    hp = dns.hotpath
    forms = ("dns", "static-no-keepalive", "static-keepalive")
    heads = ("resolver, variable `proxy_pass`", "resolved at start, no keep-alive", "resolved at start, `keepalive 32`")
    return [
        f"Hot path, no churn: wrk only against three nginx with the same {dns.settings.instances} instances, "
        f"{len(hp.rounds)} round(s) of {hp.seconds:g} s each (medians of rounds).",
        "",
        "| | " + " | ".join(heads) + " |",
        "|---|---|---|---|",
        "| requests/s | " + " | ".join(f"{hp.median_rps(f):,.0f}" for f in forms) + " |",
        "| vs resolved at start with `keepalive 32` | "
        + " | ".join(f"{hp.ratio(f, 'static-keepalive') * 100:.0f} %" for f in forms)
        + " |",
        "| per-round range of that ratio | " + " | ".join(hp.ratio_range(f, "static-keepalive") for f in forms) + " |",
        "| latency p99 ms | " + " | ".join(f"{hp.median_p99(f):.2f}" for f in forms) + " |",
        "| failed requests | " + " | ".join(str(hp.failed(f)) for f in forms) + " |",
    ]


def findings(modes: list[ModeSummary], dns: DnsResult) -> list[str]:
    by = {m.mode: m for m in modes}
    s = dns.settings
    out: list[str] = []
    d, st = by.get("dns"), by.get("dns-static")
    hp = dns.hotpath
    if d and st and hp.rounds:
        out.append(
            f"- **Resolution on the request path.** Without churn (the hot-path table above) the resolver form "
            f"served {hp.ratio('dns', 'static-keepalive') * 100:.0f} % of the requests/s of the names resolved "
            f"at start with `keepalive 32`, and {hp.ratio('dns', 'static-no-keepalive') * 100:.0f} % of the same "
            "without keep-alive. The second ratio is what resolving per request costs: the name parsed from the "
            "variable, a resolver cache lookup, a peer set built for the request, and every "
            f"{s.dns_valid:g} s per worker one request that waits for Consul's answer "
            f"({dns.queries.get('dns', 0):,} DNS queries during the scenarios, UDP and the TCP retry after TC). "
            "The rest is keep-alive: a peer set resolved per request cannot keep idle connections, so every "
            "request opens a new connection to its backend."
        )
    if d and st:
        dereg = d.propagation["deregister"]
        strays = dns.strays.get("dns")
        out.append(
            f"- **Caching.** A deregistered instance kept receiving traffic for p50 {_ms(dereg.p50)} ms, "
            f"p99 {_ms(dereg.p99)} ms after the write (`valid={s.dns_valid:g}s`; with no `valid=` nginx caches for "
            f"the record's TTL, {s.dns_service_ttl:g} s here as in Consul's default, and resolves again at the "
            "next second at the earliest)"
            + (
                f": {strays.requests:,} requests went to instances already removed from Consul. Had they been "
                "down rather than deregistered, nginx would have tried them, failed and retried elsewhere "
                "(`proxy_next_upstream error`) until the cache expired."
                if strays
                else "."
            )
            + f" `dns-static` never follows at all: "
            f"{st.propagation['register'].n - st.propagation['register'].observed} of "
            f"{st.propagation['register'].n} new instances never got a request."
        )
    moved = next((m for m in dns.moves if m.strategy == "dns"), None)
    if moved is not None:
        others = ", ".join(
            f"{m.strategy} {m.new_share * 100:.0f} %" + (f" after {_ms(m.first_new_ms)} ms" if m.first_new_ms else "")
            for m in dns.moves
            if m.strategy != "dns"
        )
        out.append(
            f"- **Ports.** After `{NEW}` took over on a new port, {moved.new_share * 100:.0f} % of "
            f"{moved.requests:,} requests through the DNS nginx reached it in {moved.seconds:g} s (reload and api: "
            f"{others}). The A record still names the IP, nginx adds the port written in its config, and the old "
            f"port refuses: nginx logged {moved.refused_connects:,} refused connections and retried each on the "
            f"other instance ({sum(moved.failed.values())} requests failed). SRV records carry the port, but "
            "open-source nginx 1.22 cannot use them (`resolve`/`service=` are NGINX Plus features)."
        )
    down = next((o for o in dns.outages if o.strategy == "dns"), None)
    if down is not None:
        kept = ", ".join(
            f"{o.strategy} answered {o.ok:,} and failed {sum(o.failed.values())}" for o in dns.outages if o is not down
        )
        out.append(
            f"- **Consul unreachable.** With the dev Consul stopped, the DNS nginx answered {down.ok:,} requests and "
            f"failed {sum(down.failed.values()):,} in {down.seconds:g} s ({kept}): once a worker's cached answer "
            "expires, nginx 1.22 has no stale answer to fall back on, so each request waits `resolver_timeout` "
            "(2 s here) and gets a 502. syncer's agents keep the state they last applied."
        )
    limit = dns.answer_limit
    out.append(
        "- **How many instances nginx sees.** Consul cuts UDP answers without EDNS to 3 records "
        "(`udp_answer_limit`, at most 8) and by default does not say so; nginx's resolver sends no EDNS. "
        f"Measured with {s.instances} instances, batches of requests on one connection (one worker): with "
        f"Consul's defaults a batch reached {limit.get('defaults', 0)} instances, with `enable_truncate = true` "
        f"{limit.get('enable_truncate', 0)} (Consul sets TC and nginx asks again over TCP). This run's scenarios "
        f"use `enable_truncate = {str(s.dns_enable_truncate).lower()}`."
    )
    return out


def section(modes: list[ModeSummary], dns: DnsResult) -> list[str]:
    s = dns.settings
    return [
        TITLE,
        "",
        "The talk's second answer: no agent and no Lua, nginx asks Consul's DNS interface itself "
        "(dev-consul answers it like an agent, see docs/dns.md). Two forms, the only ones open-source nginx 1.22 "
        f"has: `dns` — `resolver 127.0.0.1:<dns port> valid={s.dns_valid:g}s` with a variable "
        "`proxy_pass http://$dns_upstream` (`web.service.consul:<port>`), re-resolved when a worker's cached "
        "answer expires; `dns-static` — `upstream web.service.consul { server ...; keepalive 32; }` as "
        "`server web.service.consul:<port>` resolves once when nginx starts. Instances have their own loopback "
        "IP and one shared port (an A record has no port); the load, churn script, prober and long-lived "
        "connections are the ones of the scenarios above, where both variants are columns too. "
        f"dev-consul `dns_config`: `service_ttl` {s.dns_service_ttl:g} s, "
        f"`enable_truncate = {str(s.dns_enable_truncate).lower()}`.",
        "",
        *comparison_table(modes, dns),
        "",
        *hotpath_table(dns),
        "",
        "Propagation cells: the backends' request log, as in the scenario tables, over every churn scenario. "
        "In the scenario tables, `dns-static`'s deregister figures are the time until the run ended: its "
        "traffic to a removed instance never stops by itself. "
        "The port move runs on its own small setup per strategy (two instances of `web`; one moves to a new "
        f"port on the same IP and its old process stops; {s.dns_move_seconds:g} s of back-to-back requests); "
        "so does the outage (two instances, then the dev Consul stops, HTTP and DNS).",
        "",
        *findings(modes, dns),
    ]


def to_json(dns: DnsResult) -> dict[str, Any]:
    return {
        "queries": dns.queries,
        "strays": {mode: asdict(s) for mode, s in dns.strays.items()},
        "moves": [{**asdict(m), "new_share": m.new_share} for m in dns.moves],
        "hotpath": [{form: run.to_dict() for form, run in r.items()} for r in dns.hotpath.rounds],
        "answer_limit": dns.answer_limit,
        "outages": [asdict(o) for o in dns.outages],
    }
