-- Gray stages 1-4 of an entry (issue 11), compiled once per version:
--   1. override header  (always -> canary, never -> primary or "stop")
--   2. override cookie  (the same)
--   3. client-address ranges (syncer.ipmatch)
--   4. Host map (syncer.hostmatch)
-- decide() returns a pool name, or nil when Consul's chain (stages 5-7) decides.
-- Header and cookie are read through ngx.var ($http_x_canary, $cookie_name), the
-- very variables reload mode's maps read, so both modes see the same value (the
-- first header of that name). The client address is $binary_remote_addr, i.e.
-- what the realip module left there (the same address geo reads).
--
-- spec (JSON pushed by syncer, built by syncer/routing/kv_payload.py):
--   { "header_var": "http_x_canary"?, "cookie_var": "cookie_canary"?,
--     "canary": "web.canary"?, "primary": "web.stable"?,
--     "ranges": [["10.0.0.0", "10.0.0.255", "web.pre"], ...],
--     "hosts": {"exact": {...}, "wildcard": {...}, "default": "web"?}? }

local ipmatch = require "syncer.ipmatch"
local hostmatch = require "syncer.hostmatch"
local validate = require "syncer.validate"

local ngx = ngx
local type, pairs = type, pairs

local _M = {}

local function opt_string(spec, field, pattern)
    local v = spec[field]
    if v == nil or v == ngx.null then
        return true, nil
    end
    if type(v) ~= "string" or (pattern and not v:match(pattern)) or v == "" then
        return false, field .. " is invalid"
    end
    return true, v
end

-- every pool a stage can answer must be a plain upstream name
local function pools_ok(c)
    local list, n = {}, 0
    local function add(pool)
        if pool ~= nil then
            n = n + 1
            list[n] = pool
        end
    end
    add(c.canary)
    add(c.primary)
    if c.ranges then
        for _, fam in pairs({ c.ranges[4], c.ranges[6] }) do
            for i = 1, fam.n do
                add(fam.pool[i])
            end
        end
    end
    if c.hosts then
        add(c.hosts.default)
        for _, t in pairs({ c.hosts.exact, c.hosts.wildcard }) do
            for _, pool in pairs(t) do
                add(pool)
            end
        end
    end
    for i = 1, n do
        local ok, err = validate.name(list[i])
        if not ok then
            return nil, err
        end
    end
    return true
end

function _M.compile(spec)
    if type(spec) ~= "table" then
        return nil, "gray rules must be an object"
    end
    local c = {}
    local ok, v
    ok, v = opt_string(spec, "header_var", "^http_[a-z0-9_]+$")
    if not ok then return nil, v end
    c.header_var = v
    ok, v = opt_string(spec, "cookie_var", "^cookie_[A-Za-z0-9_]+$")
    if not ok then return nil, v end
    c.cookie_var = v
    ok, v = opt_string(spec, "canary")
    if not ok then return nil, v end
    c.canary = v
    ok, v = opt_string(spec, "primary")
    if not ok then return nil, v end
    c.primary = v
    if (c.header_var or c.cookie_var) and not c.canary then
        return nil, "an override needs a canary pool"
    end
    if spec.ranges ~= nil and spec.ranges ~= ngx.null then
        local m, err = ipmatch.compile(spec.ranges)
        if not m then
            return nil, "ranges: " .. err
        end
        if ipmatch.size(m) > 0 then
            c.ranges = m
        end
    end
    if spec.hosts ~= nil and spec.hosts ~= ngx.null then
        local m, err = hostmatch.compile(spec.hosts)
        if not m then
            return nil, "hosts: " .. err
        end
        c.hosts = m
    end
    local ok_pools, perr = pools_ok(c)
    if not ok_pools then
        return nil, perr
    end
    return c
end

local STOP = false

local function override(c, var)
    local value = ngx.var[var]
    if value == "always" then
        return c.canary
    elseif value == "never" then
        return c.primary or STOP
    end
    return nil
end

function _M.decide(c)
    local pool
    if c.header_var then
        pool = override(c, c.header_var)
        if pool ~= nil then
            return pool or nil
        end
    end
    if c.cookie_var then
        pool = override(c, c.cookie_var)
        if pool ~= nil then
            return pool or nil
        end
    end
    if c.ranges then
        pool = ipmatch.lookup_binary(c.ranges, ngx.var.binary_remote_addr)
        if pool then
            return pool
        end
    end
    if c.hosts then
        return hostmatch.lookup(c.hosts, ngx.var.host)
    end
    return nil
end

return _M
