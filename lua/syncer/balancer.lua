-- balancer_by_lua: pick a peer for one upstream; log_by_lua: account for it.
--
-- Hot path per attempt: one shared-dict get (the upstream's change counter)
-- and a pick from a per-worker picker. The picker is rebuilt only when the
-- stored version changed; when only health marks changed it just reloads them,
-- keeping the round-robin state. No timer sits between a PUT and the next
-- request: every worker compares the counter on every request.
--
-- Per-request state lives in nginx itself where possible: peers already tried
-- by this request are read back from $upstream_addr on a retry (rare), so the
-- first attempt needs no ngx.ctx table.

local state = require "syncer.state"
local validate = require "syncer.validate"
local wrr = require "syncer.wrr"
local chash = require "syncer.chash"
local health = require "syncer.health"
local json = require "syncer.json"
local ngx_balancer = require "ngx.balancer"

local ngx = ngx
local ngx_var = ngx.var
local now = ngx.now
local crc32 = ngx.crc32_long
local log, ERR = ngx.log, ngx.ERR
local set_current_peer = ngx_balancer.set_current_peer
local set_more_tries = ngx_balancer.set_more_tries
local get_last_failure = ngx_balancer.get_last_failure
local gmatch, match = string.gmatch, string.match
local ceil = math.ceil
local pairs, ipairs = pairs, ipairs

-- ngx.exit(502) in balancer_by_lua becomes a 500 (the status-code patch is
-- OpenResty-only). NGX_BUSY makes nginx itself answer 502 "no live upstreams".
local NGX_BUSY = -3

local _M = {}

local dict              -- the shared dict, set by init()
local track_conns       -- log() runs, so max_conns slots can be released
local pickers = {}      -- name -> picker (this worker)
local applied = {}      -- name -> version this worker serves
local inflight = {}     -- "<name> <ip:port>" -> requests this worker has in flight (max_conns)
local outstanding = 0   -- sum of inflight, lets log() skip the lookup when zero
local dirty = false     -- `applied` changed since record() last wrote it
local seen_seq = nil    -- the dict's change sequence the timer last walked

function _M.init()
    dict = state.dict
    track_conns = state.conf.log_phase
end

-- What this worker serves, for GET /status (expires if the worker dies).
-- Written by the timer only: with thousands of upstreams the record is tens of
-- KB, too much to rewrite on the request path after every change.
local function record()
    local id = ngx.worker.id()
    if not id or not dict then
        return
    end
    dirty = false
    local ttl = math.max(10, 5 * (state.conf.refresh_interval or 1))
    dict:safe_set("w:" .. id, json.encode({
        pid = ngx.worker.pid(), applied = applied, seen_at = now(),
    }), ttl)
end

-- Timer: the new ring of an upstream whose picker still uses its previous ring.
local function build_ring(premature, name, version)
    local p = pickers[name]
    if premature or not p or p.version ~= version or not p.ring_stale then
        return
    end
    p.ring = chash.new(p.primary.peers, crc32)
    p.ring_stale = nil
end

-- `previous`: this worker's picker for the older version. With consistent hashing
-- the new ring (up to 16,384 points, milliseconds) is built by a zero-delay timer,
-- off the request path; until then requests use the previous ring, mapped onto the
-- new servers: keys of a removed server go to the next one on the ring (what the
-- new ring does too), a new server gets its keys once its ring is in.
local function build(name, u, chg, previous)
    local primaries, backups, by_name = {}, {}, {}
    local workers = ngx.worker.count()
    for _, s in ipairs(u.servers) do
        local pname, host = validate.peer_name(s.address, s.port)
        local peer = {
            name = pname, host = host, port = s.port, weight = s.weight,
            max_fails = s.max_fails, fail_timeout = s.fail_timeout,
            -- max_conns is split evenly across workers; each counts its own
            -- in-flight requests (approximate, but nothing leaks if a worker dies)
            max_conns = s.max_conns, limit = ceil(s.max_conns / workers),
            backup = s.backup, down = s.down,
            ckey = name .. " " .. pname,
            hkey = "h:" .. name .. " " .. pname,
            fkey = "f:" .. name .. " " .. pname,
        }
        by_name[pname] = peer
        if not s.down then
            if s.backup then
                backups[#backups + 1] = peer
            else
                primaries[#primaries + 1] = peer
            end
        end
    end
    local p = {
        name = name, version = u.version, chg = chg, ckey = "c:" .. name,
        by_name = by_name, hash_on = u.hash_on,
        primary = wrr.new(primaries),
        backup = #backups > 0 and wrr.new(backups) or nil,
        tries = #primaries + #backups,
    }
    if u.hash_on and #primaries > 0 then
        if previous and previous.ring and previous.hash_on == u.hash_on and ngx.get_phase() == "balancer" then
            p.ring, p.ring_stale = previous.ring, true
            local ok, err = ngx.timer.at(0, build_ring, name, u.version)
            if not ok then
                log(ERR, 'syncer: upstream "', name, '": cannot schedule the ring rebuild: ', err)
                p.ring, p.ring_stale = chash.new(primaries, crc32), nil
            end
        else
            p.ring = chash.new(primaries, crc32)
        end
    end
    p.single = p.tries == 1
    return p
end

local function refresh(name, chg)
    local p = pickers[name]
    if chg == nil then
        -- never defined: do not cache anything for arbitrary names
        if p then
            pickers[name] = nil
            applied[name] = nil
            dirty = true
        end
        return nil
    end
    local u = state.get(name)
    if not u then
        -- deleted: remember the counter so that later requests stay cheap
        pickers[name] = { missing = true, chg = chg, ckey = "c:" .. name }
        if applied[name] then
            applied[name] = nil
            dirty = true
        end
        return pickers[name]
    end
    if not p or p.missing or p.version ~= u.version then
        p = build(name, u, chg, p and not p.missing and p or nil)
        pickers[name] = p
    end
    p.chg = chg
    health.load(p)
    if applied[name] ~= u.version then
        applied[name] = u.version
        dirty = true
    end
    return p
end

local function pick(p, tried)
    -- without health marks every peer's down_until is 0: skip the clock
    local t = p.marked and now() or 0
    local peer
    if p.ring then
        local key = ngx_var[p.hash_on] or ""
        peer = p.ring:pick(crc32(key), t, tried, inflight, p.ring_stale and p.by_name)
    else
        peer = p.primary:pick(t, tried, inflight)
    end
    if not peer and p.backup then
        peer = p.backup:pick(t, tried, inflight)
    end
    return peer
end

-- Peers this request already tried, from $upstream_addr ("a:1, b:2 : " while
-- connecting); the last one is the attempt that just ended.
local function tried_peers(p)
    local addrs = ngx_var.upstream_addr
    local tried, last = {}, nil
    if addrs then
        for token in gmatch(addrs, "[^%s,]+") do
            if token ~= ":" then
                last = token
                local peer = p.by_name[token]
                if peer then
                    tried[peer] = true
                end
            end
        end
    end
    return tried, last and p.by_name[last]
end

local function fail(name, _retry, reason)
    log(ERR, 'syncer: upstream "', name or "", '": ', reason, " (502)")
    return ngx.exit(NGX_BUSY)
end

local function no_peer(p, tried, retry)
    local t = now()
    local down = 0
    for _, peer in pairs(p.by_name) do
        if peer.down then
            down = down + 1
        end
    end
    local unhealthy, busy, ntried = 0, 0, 0
    for _, list in ipairs({ p.primary.peers, p.backup and p.backup.peers or {} }) do
        for _, peer in ipairs(list) do
            if tried and tried[peer] then
                ntried = ntried + 1
            elseif peer.down_until > t then
                unhealthy = unhealthy + 1
            elseif peer.max_conns > 0 and (inflight[peer.ckey] or 0) >= peer.limit then
                busy = busy + 1
            end
        end
    end
    local reason = "no live peer: " .. (p.tries + down) .. " server(s), " .. down .. " down, "
        .. unhealthy .. " unhealthy, " .. busy .. " at max_conns, " .. ntried .. " already tried"
    if unhealthy > 0 then
        health.recover(p)
        reason = reason .. "; unhealthy marks cleared so the next request probes again"
    end
    return fail(p.name, retry, reason)
end

-- In-flight slots (max_conns) are kept per request id, not in ngx.ctx: a failed
-- request ends in the error_page location, and an internal redirect empties ngx.ctx.
local slots = {}        -- request key -> { "<name> <ip:port>", ... }

-- Stable for one request across internal redirects ($request_id is not: Lua reads
-- of a variable nginx.conf never names produce a new random id each time).
local function request_key()
    return ngx_var.connection .. "#" .. ngx_var.connection_requests
end

local function track(peer)
    local key = peer.ckey
    inflight[key] = (inflight[key] or 0) + 1
    outstanding = outstanding + 1
    local id = request_key()
    local list = slots[id]
    if not list then
        list = {}
        slots[id] = list
    end
    list[#list + 1] = key
end

-- `name`: the upstream to balance. nginx.conf passes it as a constant when
-- each service has its own `upstream` block (cheapest: no variable lookup);
-- without it the name comes from $syncer_upstream (one shared upstream block).
function _M.balance(name)
    if not name then
        name = ngx_var.syncer_upstream
    end
    if not dict then
        return fail(name, false, 'syncer.init.setup() was not called in init_by_lua')
    end
    if not name or name == "" then
        return fail(name, false, "no upstream selected ($syncer_upstream is empty)")
    end
    local p = pickers[name]
    local chg = dict:get(p and p.ckey or "c:" .. name)
    if not p or p.chg ~= chg then
        p = refresh(name, chg)
    end
    if not p or p.missing then
        return fail(name, false, "unknown upstream")
    end

    local failure = get_last_failure()
    local tried
    if failure then
        local last
        tried, last = tried_peers(p)
        if failure == "failed" and last then
            health.failed(p, last)
        end
    end

    local peer = pick(p, tried)
    if not peer then
        return no_peer(p, tried, failure ~= nil)
    end
    local ok, err = set_current_peer(peer.host, peer.port)
    if not ok then
        return fail(name, failure ~= nil, "cannot use " .. peer.name .. ": " .. tostring(err))
    end
    -- allow one attempt per usable server; proxy_next_upstream_tries caps it
    if not failure and p.tries > 1 then
        set_more_tries(p.tries - 1)
    end
    -- in-flight slots are released in log(); without it max_conns is ignored
    if peer.max_conns > 0 and track_conns then
        track(peer)
    end
end

local function release()
    local id = request_key()
    local list = slots[id]
    if not list then
        return
    end
    for _, key in ipairs(list) do
        local n = (inflight[key] or 1) - 1
        inflight[key] = n > 0 and n or nil
        outstanding = outstanding - 1
    end
    slots[id] = nil
end

-- log_by_lua (only needed for max_conns): releases this request's slots.
function _M.log()
    if outstanding > 0 then
        release()
    end
end

-- The error_page location for 502/504 that nginx generated itself (no answer
-- from the last server: refused, reset, timed out, invalid header): counts that
-- final attempt as a failure. Earlier attempts were counted by balance() on the
-- retry. Only failed requests come here, so passive health costs the
-- successful ones nothing (no log phase on the hot path).
function _M.failed_final()
    if outstanding > 0 then
        release()
    end
    local status = ngx.status
    if status ~= 502 and status ~= 504 then
        status = 502
    end
    -- the upstream block's name (one block per service), else $syncer_upstream
    local p = pickers[ngx_var.proxy_host or ""]
    if not p then
        local name = ngx_var.syncer_upstream
        p = name and pickers[name]
    end
    local addrs, times = ngx_var.upstream_addr, ngx_var.upstream_header_time
    if p and not p.missing and addrs and times and match(times, "([^%s,:]+)%s*$") == "-" then
        -- "a:1, a:1": the last attempt found no peer (NGX_BUSY reuses the previous
        -- name) and that previous failure is already counted
        local prev, last
        for token in gmatch(addrs, "[^%s,]+") do
            if token ~= ":" then
                prev, last = last, token
            end
        end
        local peer = last and prev ~= last and p.by_name[last]
        if peer then
            health.failed(p, peer)
        end
    end
    return ngx.exit(status)
end

-- Timer: apply changes in idle workers too, so /status converges without
-- traffic, and keep this worker's record fresh. O(1) while nothing changed (one
-- read of the dict's change sequence); after a change, one pass over the names.
local function walk()
    local seen = {}
    for _, name in ipairs(state.names()) do
        seen[name] = true
        local p = pickers[name]
        local chg = dict:get("c:" .. name)
        if not p or p.chg ~= chg then
            refresh(name, chg)
        end
    end
    local gone = {}
    for name, p in pairs(pickers) do
        if not seen[name] and p.chg ~= dict:get(p.ckey) then
            gone[#gone + 1] = name
        end
    end
    for _, name in ipairs(gone) do
        refresh(name, dict:get("c:" .. name))
    end
end

local last_record = 0

local function tick(premature)
    if premature or not dict then
        return
    end
    local ok, err = pcall(function()
        local seq = state.seq()
        if seq ~= seen_seq then
            seen_seq = seq
            walk()
        end
        -- the record expires after a few intervals: rewrite it before it does
        local t = now()
        if dirty or t - last_record >= 2 * (state.conf.refresh_interval or 1) then
            last_record = t
            record()
        end
    end)
    if not ok then
        log(ERR, "syncer: refresh timer: ", err)
    end
end

function _M.start_timer()
    if not dict or ngx.worker.id() == nil then
        return
    end
    local interval = state.conf.refresh_interval or 1
    local ok, err = ngx.timer.every(interval, tick)
    if not ok then
        log(ERR, "syncer: cannot start the refresh timer: ", err)
    end
    ngx.timer.at(0, tick)
end

return _M
