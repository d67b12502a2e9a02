-- Per-request routing in api mode: picks the pool (upstream) for an entry service.
--
--   set $syncer_pool "";
--   rewrite_by_lua_block { require("syncer.router").route("web") }
--   header_filter_by_lua_block { require("syncer.router").header_filter() }
--   proxy_pass http://syncer_routed;   # balancer_by_lua: balance(ngx.var.syncer_pool)
--
-- The decision is a list of stages, first answer wins; the Consul L7 stage (router
-- -> splitter -> resolver, compiled by syncer into a table) is the last one, so
-- stages that must come first (KV overrides) are inserted ahead of it.
--
-- It makes the decision reload mode's maps make: the same nginx variables read
-- through ngx.var, the same PCRE patterns (ngx.re, compiled once per worker with
-- "jo"), and split_clients' own arithmetic (MurmurHash2 of the key, boundaries
-- at units * 0xffffffff / 10000), so a sticky key lands on the same pool in both
-- modes. Per request: one shared-dict read of the table's version; the table is
-- decoded again only when that version moved.

local gray = require "syncer.gray"
local routes = require "syncer.routes"
local state = require "syncer.state"
local bit = require "bit"

local ngx = ngx
local ngx_var = ngx.var
local re_find, re_match = ngx.re.find, ngx.re.match
local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, sub, floor, random = string.byte, string.sub, math.floor, math.random
local ipairs, type = ipairs, type

local _M = {}

local cache = {} -- entry -> { v = version, t = table or false }
local seeded = false

-- 32-bit multiply modulo 2^32 (LuaJIT numbers are doubles: split one factor).
local function mul32(a, b)
    local lo, hi = band(a, 0xffff), rshift(a, 16)
    return tobit(lo * b + tobit(hi * b) * 65536)
end

local M = 0x5bd1e995

-- nginx's ngx_murmur_hash2, as an unsigned number.
local function murmur2(s)
    local len = #s
    local h = tobit(len)
    local i = 1
    while len >= 4 do
        local k = tobit(byte(s, i) + lshift(byte(s, i + 1), 8) + lshift(byte(s, i + 2), 16)
            + lshift(byte(s, i + 3), 24))
        k = mul32(k, M)
        k = bxor(k, rshift(k, 24))
        k = mul32(k, M)
        h = mul32(h, M)
        h = bxor(h, k)
        i, len = i + 4, len - 4
    end
    if len == 3 then
        h = bxor(h, lshift(byte(s, i + 2), 16))
    end
    if len >= 2 then
        h = bxor(h, lshift(byte(s, i + 1), 8))
    end
    if len >= 1 then
        h = bxor(h, byte(s, i))
        h = mul32(h, M)
    end
    h = bxor(h, rshift(h, 13))
    h = mul32(h, M)
    h = bxor(h, rshift(h, 15))
    if h < 0 then
        h = h + 4294967296
    end
    return h
end
_M.murmur2 = murmur2

local function prepare(action)
    local bounds, last = {}, 0
    for i, leg in ipairs(action.legs) do
        last = last + floor(leg.units * 4294967295 / 10000)
        bounds[i] = last
    end
    action.bounds = bounds
    return action
end

local function load(entry, v)
    local t = v and routes.get(entry)
    if type(t) == "table" then
        for _, r in ipairs(t.routes) do
            prepare(r.action)
        end
        prepare(t.default)
        if t.gray then -- KV stages 1-4, compiled once per version (validated when stored)
            t.gray = gray.compile(t.gray) or nil
        end
    else
        t = false
    end
    local c = { v = v, t = t }
    cache[entry] = c
    return c
end

local function pick(action)
    local legs = action.legs
    if #legs == 1 then
        return legs[1].pool
    end
    local h
    local name = action.key
    local key = name ~= "request_id" and ngx_var[name] or nil
    if key == nil or key == "" then
        -- no sticky key: a uniform pick, as split_clients on $request_id (without making one)
        if not seeded then
            math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
            seeded = true
        end
        h = floor(random() * 4294967296)
    else
        h = murmur2(key)
    end
    local bounds = action.bounds
    for i = 1, #legs - 1 do
        if h < bounds[i] then
            return legs[i].pool
        end
    end
    return legs[#legs].pool -- split_clients' "*"
end

local function request_headers(list)
    for _, h in ipairs(list) do
        if h.op == "set" then
            ngx.req.set_header(h.name, h.value)
        elseif h.op == "remove" then
            ngx.req.clear_header(h.name)
        else
            local current = ngx_var["http_" .. h.name:lower():gsub("-", "_")]
            ngx.req.set_header(h.name, (current and current ~= "") and (current .. ", " .. h.value) or h.value)
        end
    end
end

-- The entry's table as of this request: one shared-dict read of its version.
local function current(entry)
    local c = cache[entry]
    local v = state.dict:get("rtv:" .. entry)
    if not c or c.v ~= v then
        c = load(entry, v)
    end
    return c.t
end

-- KV stages 1-4 (issue 11): override header, cookie, client-address lists, Host map.
local function gray_stage(entry)
    local t = current(entry)
    return t and t.gray and gray.decide(t.gray) or nil
end

-- The Consul L7 stage: the first route whose conditions all hold, else the default.
local function consul_stage(entry)
    local t = current(entry)
    if not t then
        return entry -- no table: the entry service's own pool
    end
    local action = t.default
    local values = {} -- each variable is read from nginx once per request
    for _, r in ipairs(t.routes) do
        local ok = true
        for _, cond in ipairs(r.conds) do
            local name = cond.var
            local value = values[name]
            if value == nil then
                value = ngx_var[name] or ""
                values[name] = value
            end
            local hit
            local lit = cond.lit
            if lit == nil then
                hit = re_find(value, cond.re, "jo") ~= nil
            elseif lit == "prefix" then
                hit = sub(value, 1, #cond.text) == cond.text
            elseif lit == "exact" then
                hit = value == cond.text
            elseif lit == "suffix" then
                hit = #value >= #cond.text and sub(value, -#cond.text) == cond.text
            else -- "nonempty"
                hit = value ~= ""
            end
            if hit == cond.invert then
                ok = false
                break
            end
        end
        if ok then
            action = r.action
            break
        end
    end
    local pool = pick(action)
    local rw = action.rewrite
    if rw then
        local m = re_match(ngx_var.uri, rw.re, "jo")
        if m then
            ngx.req.set_uri(rw.to .. (rw.rest and m[1] or ""), false)
        end
    end
    if action.request_headers then
        request_headers(action.request_headers)
    end
    if action.response_headers then
        ngx.ctx.syncer_response_headers = action.response_headers
    end
    return pool
end

-- Stages run in order; each returns a pool name or nil (no opinion).
_M.stages = { gray_stage, consul_stage }

function _M.insert_stage(fn, position)
    table.insert(_M.stages, position or #_M.stages, fn)
end

function _M.route(entry)
    local pool
    for _, stage in ipairs(_M.stages) do
        pool = stage(entry)
        if pool then
            break
        end
    end
    ngx_var.syncer_pool = pool or entry
    return pool
end

function _M.header_filter()
    local list = ngx.ctx.syncer_response_headers
    if not list then
        return
    end
    local header = ngx.header
    for _, h in ipairs(list) do
        if h.op == "set" then
            header[h.name] = h.value
        elseif h.op == "remove" then
            header[h.name] = nil
        else
            local current = header[h.name]
            if current == nil then
                header[h.name] = h.value
            elseif type(current) == "table" then
                current[#current + 1] = h.value
                header[h.name] = current
            else
                header[h.name] = { current, h.value }
            end
        end
    end
end

return _M
