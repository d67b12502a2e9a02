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
        return "not run"
    failed = sum(move.failed.values())
    first = "never" if move.first_new_ms is None else f"after {_ms(move.first_new_ms)} ms"
    return (
        f"{move.new_share * 100:.0f} % of {move.requests:,} reached it ({first}); "
        f"{failed} failed; {move.refused_connects} refused connects"
    )


def comparison_table(modes: list[ModeSummary], dns: DnsResult) -> list[str]:
    static = next((m for m in modes if m.mode == "dns-static"), None)
    static_rps = _baseline_rps(static) if static else None
    moves = {m.strategy: m for m in dns.moves}
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
    ]
    lines = ["| | " + " | ".join(f"**{m.mode}**" for m in modes) + " |", "|---|" + "---|" * len(modes)]
    lines += [f"| {label} | " + " | ".join(cell(m) for m in modes) + " |" for label, cell in rows]
    return lines


def findings(modes: list[ModeSummary], dns: DnsResult) -> list[str]:
    by = {m.mode: m for m in modes}
    s = dns.settings
    out: list[str] = []
    d, st = by.get("dns"), by.get("dns-static")
    if d and st:
        d_rps, st_rps = _baseline_rps(d) or 0.0, _baseline_rps(st) or 0.0
        dl, sl = d.windows["baseline"].wrk["latency_ms"], st.windows["baseline"].wrk["latency_ms"]
        out.append(
            f"- **Resolution on the request path.** With the resolver the baseline served {d_rps:,.0f} requests/s "
            f"against {st_rps:,.0f} for the same backends resolved once at start "
            f"({d_rps / st_rps * 100 if st_rps else 0:.0f} %), latency p99 {dl['p99']:.2f} ms against "
            f"{sl['p99']:.2f} ms. Two costs are mixed here, both inherent to the variable `proxy_pass`: each worker "
            f"re-asks Consul every {s.dns_valid:g} s and the request that finds the answer expired waits for it "
            f"({dns.queries.get('dns', 0):,} queries during the scenarios, UDP and the TCP retry after TC), and a "
            "resolved peer set is built per "
            "request, so there is no upstream keep-alive: every request opens a new connection to its backend."
        )
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
    out.append(
        "- **How many instances nginx sees.** Consul cuts UDP answers without EDNS to 3 records "
        "(`udp_answer_limit`, at most 8) and by default does not say so; nginx's resolver sends no EDNS, so it "
        "would spread traffic over 3 random instances per answer and worker. This run sets "
        f"`enable_truncate = {str(s.dns_enable_truncate).lower()}`"
        + (
            ": Consul sets TC, and nginx asks again over TCP and gets every instance."
            if s.dns_enable_truncate
            else " (Consul's default): every answer holds 3 instances."
        )
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
        "Propagation cells: the backends' request log, as in the scenario tables, over every churn scenario. "
        "The port move runs on its own small setup per strategy (two instances of `web`; one moves to a new "
        f"port on the same IP and its old process stops; {s.dns_move_seconds:g} s of back-to-back requests).",
        "",
        *findings(modes, dns),
    ]


def to_json(dns: DnsResult) -> dict[str, Any]:
    return {
        "queries": dns.queries,
        "strays": {mode: asdict(s) for mode, s in dns.strays.items()},
        "moves": [{**asdict(m), "new_share": m.new_share} for m in dns.moves],
    }
