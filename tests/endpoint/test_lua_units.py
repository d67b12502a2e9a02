"""The pure Lua modules (wrr, chash, validate, json), run inside a real nginx's LuaJIT.

A test-only nginx runs posted Lua chunks with the shipped lua/ folder on its
package path and answers with their JSON-encoded result.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer import resources
from syncer.testing.nginx import LUA_MODULES, NginxProcess
from syncer.testing.ports import free_port

from .helpers import NEEDS_NGINX

pytestmark = NEEDS_NGINX


class LuaRunner:
    def __init__(self, prefix: Path) -> None:
        self.port = free_port()
        conf = f"""{LUA_MODULES}
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    lua_package_path "{resources.lua_dir()}/?.lua;;";
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 1m;
        client_body_buffer_size 1m;
        location = /run {{
            content_by_lua_block {{
                ngx.req.read_body()
                local chunk, err = loadstring(ngx.req.get_body_data(), "=test")
                if not chunk then
                    ngx.status = 500
                    return ngx.say(err)
                end
                local ok, result = pcall(chunk)
                if not ok then
                    ngx.status = 500
                    return ngx.say(tostring(result))
                end
                ngx.say(require("syncer.json").encode(result))
            }}
        }}
    }}
}}
"""
        self.nginx = NginxProcess(prefix, conf)

    def run(self, code: str) -> Any:
        response = requests.post(f"http://127.0.0.1:{self.port}/run", data=code.encode(), timeout=30)
        assert response.status_code == 200, response.text
        return json.loads(response.text)


@pytest.fixture(scope="module")
def lua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LuaRunner]:
    runner = LuaRunner(tmp_path_factory.mktemp("lua"))
    runner.nginx.start(wait_port=runner.port)
    yield runner
    runner.nginx.stop()


# --- smooth weighted round robin --------------------------------------------------------


def test_wrr_matches_nginx_sequence(lua: LuaRunner) -> None:
    """Weights 5,1,1 give nginx's documented smooth sequence a a b a c a a."""
    picks = lua.run("""
        local wrr = require "syncer.wrr"
        local w = wrr.new({ {name = "a", weight = 5}, {name = "b", weight = 1}, {name = "c", weight = 1} })
        local out = {}
        for i = 1, 14 do out[i] = w:pick(0).name end
        return out
    """)
    assert "".join(picks) == "aabacaa" * 2


@pytest.mark.parametrize("weights", [[1, 2, 3, 4], [5, 3, 2], [1, 1, 1, 97], [7], [65535, 1, 300]])
def test_wrr_distribution_within_2_percent_over_10000_picks(lua: LuaRunner, weights: list[int]) -> None:
    """Each peer's share of 10,000 picks is within 2% of weight / total weight."""
    counts = lua.run(f"""
        local wrr = require "syncer.wrr"
        local peers = {{}}
        for i, w in ipairs({{ {", ".join(map(str, weights))} }}) do
            peers[i] = {{ name = "p" .. i, weight = w }}
        end
        local picker = wrr.new(peers)
        local counts = {{}}
        for _ = 1, 10000 do
            local p = picker:pick(0)
            counts[p.name] = (counts[p.name] or 0) + 1
        end
        return counts
    """)
    total = sum(weights)
    for i, weight in enumerate(weights, start=1):
        share = counts.get(f"p{i}", 0) / 10000
        assert abs(share - weight / total) <= 0.02 * (weight / total) + 1e-4, (weights, counts)


def test_wrr_skips_unhealthy_tried_and_full_peers(lua: LuaRunner) -> None:
    """Unhealthy (down_until in the future), already-tried and max_conns-full peers are skipped."""
    result = lua.run("""
        local wrr = require "syncer.wrr"
        local a = {name = "a", weight = 1}
        local b = {name = "b", weight = 1, down_until = 100}
        local c = {name = "c", weight = 1, max_conns = 1, limit = 1, ckey = "c"}
        local picker = wrr.new({a, b, c})
        local out = {}
        for i = 1, 4 do out[#out + 1] = picker:pick(50, nil, {c = 1}).name end
        out[#out + 1] = picker:pick(50, {[a] = true}, {c = 0}).name
        out[#out + 1] = tostring(picker:pick(50, {[a] = true}, {c = 1}))
        out[#out + 1] = picker:pick(150, {[a] = true, [c] = true}, {}).name
        return out
    """)
    assert result == ["a", "a", "a", "a", "c", "nil", "b"]


def test_wrr_failure_penalty_recovers(lua: LuaRunner) -> None:
    """A failure lowers the effective weight by weight/max_fails; it climbs back one per pick."""
    result = lua.run("""
        local wrr = require "syncer.wrr"
        local a = {name = "a", weight = 4, max_fails = 2}
        local b = {name = "b", weight = 4, max_fails = 2}
        local picker = wrr.new({a, b})
        wrr.failed(a)
        local before = a.effective
        local out = {}
        for i = 1, 8 do out[i] = picker:pick(0).name end
        return {before = before, after = a.effective, picks = table.concat(out)}
    """)
    assert result["before"] == 2
    assert result["after"] == 4
    # the penalised peer loses the first pick it would otherwise have won (ties go first)
    assert result["picks"] == "babababa"


# --- consistent hashing ----------------------------------------------------------------------

CHASH_SETUP = """
    local chash = require "syncer.chash"
    local function peers(n, weights)
        local out = {}
        for i = 1, n do
            out[i] = { name = "10.0.0." .. i .. ":80", weight = weights and weights[i] or 1,
                       down_until = 0, max_conns = 0 }
        end
        return out
    end
    local function place(ring, keys)
        local out = {}
        for i = 1, keys do
            out[i] = ring:pick(ngx.crc32_long("key-" .. i), 0).name
        end
        return out
    end
"""


def test_chash_adding_a_server_moves_about_one_nth(lua: LuaRunner) -> None:
    """10,000 keys over 4 servers, then 5: ~1/5 move, all to the new server; spread is even."""
    result = lua.run(
        CHASH_SETUP
        + """
        local four = place(chash.new(peers(4), ngx.crc32_long), 10000)
        local five_peers = peers(5)
        local five = place(chash.new(five_peers, ngx.crc32_long), 10000)
        local moved, to_new, spread = 0, 0, {}
        for i = 1, 10000 do
            spread[four[i]] = (spread[four[i]] or 0) + 1
            if four[i] ~= five[i] then
                moved = moved + 1
                if five[i] == five_peers[5].name then to_new = to_new + 1 end
            end
        end
        return {moved = moved, to_new = to_new, spread = spread}
    """
    )
    assert result["moved"] == result["to_new"]
    assert 0.15 <= result["moved"] / 10000 <= 0.25, result
    for count in result["spread"].values():
        assert 2000 <= count <= 3000, result["spread"]


def test_chash_respects_weights_and_skips_unusable(lua: LuaRunner) -> None:
    """Weight 3 vs 1 gets ~3x the keys; an unhealthy server's keys go to the next on the ring."""
    result = lua.run(
        CHASH_SETUP
        + """
        local weighted = peers(2, {3, 1})
        local counts = {}
        for _, name in ipairs(place(chash.new(weighted, ngx.crc32_long), 10000)) do
            counts[name] = (counts[name] or 0) + 1
        end
        local ps = peers(3)
        local ring = chash.new(ps, ngx.crc32_long)
        local before = place(ring, 3000)
        ps[2].down_until = 10
        local after = place(ring, 3000)
        local wrong = 0
        for i = 1, 3000 do
            if before[i] ~= ps[2].name and before[i] ~= after[i] then wrong = wrong + 1 end
            if after[i] == ps[2].name then wrong = wrong + 1 end
        end
        local none = tostring(ring:pick(1, 0, {[ps[1]] = true, [ps[3]] = true}))
        return {counts = counts, wrong = wrong, none = none}
    """
    )
    heavy, light = result["counts"]["10.0.0.1:80"], result["counts"]["10.0.0.2:80"]
    assert 2.4 <= heavy / light <= 3.6, result["counts"]
    assert result["wrong"] == 0
    assert result["none"] == "nil"


# --- validation helpers ------------------------------------------------------------------------

IPV6 = [
    "::1",
    "0:0:0:0:0:0:0:1",
    "1::",
    "2001:DB8::1",
    "2001:db8:0:0:1:0:0:1",
    "2001:db8::1:0:0:1",
    "2001:0db8:0000:0000:0000:ff00:0042:8329",
    "fe80::1:2:3:4",
    "1:0:0:2:0:0:0:3",
    "1:2:3:4:5:6:7:8",
    "1:0:3:4:5:6:7:8",
    "::ffff:10.1.2.3",
    "::ffff:a01:203",
    "64:ff9b::10.0.0.1",
]


def nginx_ipv6_text(text: str) -> str:
    """nginx's ngx_inet6_ntop: RFC 5952 except IPv4-mapped addresses keep a dotted tail."""
    address = ipaddress.IPv6Address(text)
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


def test_ipv6_names_match_what_nginx_prints(lua: LuaRunner) -> None:
    """Peers are found again in $upstream_addr by name, so the text must be nginx's."""
    result = lua.run(
        "local v = require 'syncer.validate'\nlocal out = {}\n"
        + "".join(f"out[#out + 1] = v.address({json.dumps(a)}).text\n" for a in IPV6)
        + "return out"
    )
    assert result == [f"[{nginx_ipv6_text(a)}]" for a in IPV6]


@pytest.mark.parametrize(
    "text",
    [
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8:9",
        "12345::",
        ":1",
        "1:",
        "::1::",
        "g::1",
        "::ffff:1.2.3",
        "1.2.3.4::",
        "::",
        "0:0:0:0:0:0:0:0",
        "0.0.0.0",  # unspecified: nothing to connect to (syncer refuses them too)
    ],
)
def test_invalid_ipv6_is_refused(lua: LuaRunner, text: str) -> None:
    """Malformed IPv6 literals are refused."""
    assert lua.run(f"return tostring(require('syncer.validate').address({json.dumps(text)}))") == "nil"


def test_json_encoder(lua: LuaRunner) -> None:
    """Empty arrays stay arrays, keys are sorted, strings are escaped."""
    text = lua.run(r"""
        local json = require "syncer.json"
        return json.encode({ b = json.array(), a = {1, 2}, c = "q\"\n\1", d = json.null, e = 0.5, f = {} })
    """)
    assert text == '{"a":[1,2],"b":[],"c":"q\\"\\n\\u0001","d":null,"e":0.5,"f":{}}'
    assert json.loads(text)["c"] == 'q"\n\x01'
