-- Host -> pool, with nginx's `map $host { hostnames; }` semantics (issue 11):
-- an exact name first, then the longest "*.suffix" wildcard (any depth; the bare
-- suffix itself does not match), then the default. Cost: one table lookup per
-- label of the Host, whatever the size of the map.
--
--   local m, err = hostmatch.compile({ exact = {["a.example.com"] = "web.v2"},
--                                      wildcard = {[".example.com"] = "web.v1"},
--                                      default = "web" })
--   local pool = hostmatch.lookup(m, ngx.var.host)  -- $host: lowercase, no port

local type, pairs, find, sub, lower = type, pairs, string.find, string.sub, string.lower

local _M = {}

local MAX_NAMES = 20000

local function copy_table(src, what, wildcard)
    local out, n = {}, 0
    if src == nil then
        return out, 0
    end
    if type(src) ~= "table" then
        return nil, what .. " must be an object"
    end
    for name, pool in pairs(src) do
        if type(name) ~= "string" or type(pool) ~= "string" or pool == "" then
            return nil, what .. " maps names to pool names"
        end
        if wildcard and sub(name, 1, 1) ~= "." then
            return nil, what .. " key " .. name .. " must start with '.'"
        end
        out[lower(name)] = pool
        n = n + 1
    end
    return out, n
end

function _M.compile(spec)
    if type(spec) ~= "table" then
        return nil, "host map must be an object"
    end
    local exact, n1 = copy_table(spec.exact, "exact")
    if not exact then
        return nil, n1
    end
    local wildcard, n2 = copy_table(spec.wildcard, "wildcard", true)
    if not wildcard then
        return nil, n2
    end
    if n1 + n2 > MAX_NAMES then
        return nil, "more than " .. MAX_NAMES .. " names"
    end
    local default = spec.default
    if default ~= nil and (type(default) ~= "string" or default == "") then
        default = nil
        if spec.default ~= ngx.null then
            return nil, "default must be a pool name or null"
        end
    end
    return { exact = exact, wildcard = wildcard, default = default, size = n1 + n2 }
end

function _M.lookup(m, host)
    if type(host) ~= "string" or host == "" then
        return m.default
    end
    local pool = m.exact[host]
    if pool then
        return pool
    end
    local wildcard = m.wildcard
    local dot = find(host, ".", 1, true)
    while dot do  -- ".b.example.com" before ".example.com": the longest suffix wins
        pool = wildcard[sub(host, dot)]
        if pool then
            return pool
        end
        dot = find(host, ".", dot + 1, true)
    end
    return m.default
end

return _M
