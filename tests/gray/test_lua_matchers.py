"""lua/syncer/ipmatch.lua and hostmatch.lua inside a real nginx's LuaJIT."""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterator

import pytest

from syncer.routing.kv import AddressList, Target
from syncer.routing.kv_net import Net, parse_network
from syncer.routing.kv_payload import gray_payload
from syncer.routing.kv_rules import EntryRules, address_ranges, lookup
from syncer.routing.kv_table import gray_table
from tests.endpoint.helpers import NEEDS_NGINX
from tests.endpoint.test_lua_units import LuaRunner

pytestmark = NEEDS_NGINX


@pytest.fixture(scope="module")
def lua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LuaRunner]:
    runner = LuaRunner(tmp_path_factory.mktemp("lua-gray"))
    runner.nginx.start(wait_port=runner.port)
    yield runner
    runner.nginx.stop()


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "1::",
        "2001:db8::8a2e:370:7334",
        "2001:DB8:0:0:1:0:0:1",
        "fe80::1:2",
        "1:2:3:4:5:6:7:8",
        "::ffff:10.1.2.3",
        "64:ff9b::192.0.2.33",
        "1:2:3:4:5:6:1.2.3.4",
    ],
)
def test_parse6_agrees_with_python(lua: LuaRunner, address: str) -> None:
    got = lua.run(f'return require("syncer.ipmatch").parse6("{address}") or "nil"')
    assert got == f"{int(ipaddress.IPv6Address(address)):032x}"


@pytest.mark.parametrize(
    "address",
    [
        ":::",
        "1:::2",
        "1::2::3",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "12345::",
        "g::1",
        ":1::",
        "1::2:",
        "::1.2.3",
        "1.2.3.4::",
        "::256.1.1.1",
        "",
        "1:2:3:4:5:6:7:8::",
    ],
)
def test_parse6_refuses_malformed(lua: LuaRunner, address: str) -> None:
    assert lua.run(f'return require("syncer.ipmatch").parse6("{address}") or "nil"') == "nil"


@pytest.mark.parametrize("address", ["1.2.3", "256.0.0.1", "1.2.3.4.5", "01234.1.1.1", " 1.2.3.4", "a.b.c.d"])
def test_parse4_refuses_malformed(lua: LuaRunner, address: str) -> None:
    assert lua.run(f'return require("syncer.ipmatch").parse4("{address}") or "nil"') == "nil"


def net(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Net:
    return parse_network(str(network))


def _random_lists(rng: random.Random, count: int) -> list[AddressList]:
    """``count`` random IPv4 /24-/32 and IPv6 /48-/128 networks over three lists."""
    lists = []
    for i, target in enumerate([Target("web", "pre"), Target("web", "office"), Target("web", "x")]):
        nets: list[Net] = []
        for _ in range(count // 3):
            if rng.random() < 0.7:
                nets.append(net(ipaddress.ip_network((rng.getrandbits(32), rng.choice([24, 28, 32])), strict=False)))
            else:
                base = (0x20010DB8 << 96) | rng.getrandbits(96)
                nets.append(net(ipaddress.ip_network((base, rng.choice([48, 64, 128])), strict=False)))
        lists.append(AddressList(f"l{i}", target, i, tuple(nets)))
    return lists


def test_lookup_agrees_with_python_on_10000_entries(lua: LuaRunner) -> None:
    """10,000 networks, 2,000 probes (inside, at the edges, outside): Lua == Python."""
    rng = random.Random(11)
    lists = _random_lists(rng, 10_000)
    ranges = address_ranges(lists, 4) + address_ranges(lists, 6)
    probes: list[str] = []
    for r in rng.sample(ranges, 500):
        first, last = (int(ipaddress.ip_address(a)) for a in r.text())
        make = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
        probes += [str(make(first)), str(make(last)), str(make(max(first - 1, 0))), str(make(rng.randint(first, last)))]
    probes += ["::ffff:" + p for p in probes[:50] if ":" not in p]
    wire = gray_payload(gray_table(EntryRules("web", lists=tuple(lists))))["ranges"]
    packed = [ipaddress.ip_address(p).packed.hex() for p in probes]  # $binary_remote_addr's bytes
    payload = json.dumps({"ranges": wire, "probes": probes, "packed": packed})
    got = lua.run(f"""
        local ipmatch = require "syncer.ipmatch"
        local spec = require("syncer.json").decode([==[{payload}]==])
        local m = assert(ipmatch.compile(spec.ranges))
        local out = {{}}
        for i, p in ipairs(spec.probes) do
            local bin = spec.packed[i]:gsub("..", function(x) return string.char(tonumber(x, 16)) end)
            local text, binary = ipmatch.lookup(m, p) or "", ipmatch.lookup_binary(m, bin) or ""
            out[i] = text == binary and text or ("text " .. text .. " binary " .. binary)
        end
        return out
    """)
    expected = [(t.pool if (t := lookup(ranges, p)) else "") for p in probes]
    assert got == expected


def test_lookup_cost_does_not_grow_linearly(lua: LuaRunner) -> None:
    """100x more ranges costs far less than 100x per lookup (binary search: ~1.5x)."""
    timings = lua.run("""
        local ipmatch = require "syncer.ipmatch"
        local function build(n)
            local ranges = {}
            for i = 1, n do
                local a = 10 * 16777216 + i * 256
                ranges[i] = { 4, a, a + 15, "p" }
            end
            return assert(ipmatch.compile(ranges))
        end
        local out = {}
        for _, n in ipairs({100, 10000}) do
            local m = build(n)
            local best = math.huge
            for _ = 1, 5 do
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, 200000 do ipmatch.lookup(m, "10.0.38.7") end
                ngx.update_time()
                best = math.min(best, ngx.now() - t0)
            end
            out[#out + 1] = best
        end
        return out
    """)
    small, large = timings
    assert large < small * 4, timings


def test_compile_refuses_unsorted_overlapping_and_mixed(lua: LuaRunner) -> None:
    errors = lua.run("""
        local ipmatch = require "syncer.ipmatch"
        local out = {}
        local h = string.rep("0", 31)
        for i, ranges in ipairs({
            { {4, 5, 9, "p"}, {4, 9, 20, "q"} },
            { {4, 5, 1, "p"} },
            { {4, 1, h .. "1", "p"} },
            { {4, 1, 2, ""} },
            { {6, "nope", h .. "2", "p"} },
            { "x" },
            { {4, 1.5, 2, "p"} },
            { {4, 1, 4294967296, "p"} },
            { {6, string.upper("abcdef" .. string.rep("0", 26)), "ff" .. string.rep("0", 30), "p"} },
            { {5, 1, 2, "p"} },
        }) do
            local m, err = ipmatch.compile(ranges)
            out[i] = m and "accepted" or err
        end
        return out
    """)
    assert "accepted" not in errors
    assert "sorted and disjoint" in errors[0]
    assert "above the last" in errors[1]
    assert all("must be [4, first, last, pool]" in e for e in errors[2:]), errors


def test_hostmatch_exact_longest_wildcard_default(lua: LuaRunner) -> None:
    got = lua.run("""
        local hostmatch = require "syncer.hostmatch"
        local m = assert(hostmatch.compile({
            exact = { ["api.example.com"] = "api" },
            wildcard = { [".example.com"] = "wild", [".b.example.com"] = "deep" },
            default = "dflt",
        }))
        local out = {}
        for i, h in ipairs({"api.example.com", "x.example.com", "a.b.example.com", "b.example.com",
                            "example.com", "other.test", ""}) do
            out[i] = hostmatch.lookup(m, h) or "nil"
        end
        local none = assert(hostmatch.compile({ exact = {}, wildcard = {} }))
        out[#out + 1] = hostmatch.lookup(none, "x") or "nil"
        local bad, err = hostmatch.compile({ wildcard = { ["example.com"] = "x" } })
        out[#out + 1] = err
        return out
    """)
    assert got[:8] == ["api", "wild", "deep", "wild", "dflt", "dflt", "dflt", "nil"]
    assert "must start with '.'" in got[8]


def test_gray_compile_refuses_what_the_router_could_not_run(lua: LuaRunner) -> None:
    """Pool names, variable names and an override without a canary are checked once, at compile."""
    errors = lua.run("""
        local gray = require "syncer.gray"
        local out = {}
        for i, spec in ipairs({
            { ranges = { {4, 1, 1, "web;x"} } },
            { hosts = { exact = { ["a.test"] = "bad pool" } } },
            { header_var = "http_X", canary = "web" },
            { cookie_var = "cookie_a-b", canary = "web" },
            { header_var = "http_x_canary" },
            { canary = "web", primary = "$x" },
            { ranges = "nope" },
        }) do
            local c, err = gray.compile(spec)
            out[i] = c and "accepted" or err
        end
        local ok = gray.compile({ header_var = "http_x_canary", canary = "web.canary",
            ranges = { {4, 1, 9, "web.pre"} }, hosts = { exact = {}, wildcard = {}, default = "web" } })
        out[#out + 1] = ok and "accepted" or "refused"
        return out
    """)
    assert errors[-1] == "accepted"
    assert "accepted" not in errors[:-1], errors
    assert "invalid upstream name" in errors[0]
