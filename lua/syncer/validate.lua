-- Strict validation of admin payloads and snapshot entries.
--
-- Pure module (no `ngx`), so it can be exercised on its own. Every error names
-- the field and the offending value, because the caller is a program (the
-- Python syncer) whose operator has to find the bad Consul entry from a log line.

local json = require "syncer.json"
local limits = require "syncer.limits"

local type, pairs, ipairs, tonumber, tostring = type, pairs, ipairs, tonumber, tostring
local floor, huge = math.floor, math.huge
local find, match, sub, format = string.find, string.match, string.sub, string.format
local gmatch = string.gmatch
local concat = table.concat

local _M = {}

local SERVER_FIELDS = {
    address = true, port = true, weight = true, max_fails = true,
    fail_timeout = true, max_conns = true, backup = true, down = true,
}
local BODY_FIELDS = { servers = true, hash_on = true, allow_empty = true }
local SNAPSHOT_UPSTREAM_FIELDS = { servers = true, hash_on = true, version = true }

-- Every limit below comes from limits.json, the contract the Python side reads too.
local DEFAULTS = limits.defaults
local NAME_PATTERN = "^[" .. limits.name.first .. "][" .. limits.name.rest .. "]*$"
local NAME_MAX = limits.name.max_length
local HASH_ON_PATTERN = "^[" .. limits.hash_on.chars .. "]+$"
local HASH_ON_MAX = limits.hash_on.max_length

_M.MAX_SERVERS = limits.max_servers
_M.limits = limits

-- A short JSON rendering of a bad value for error messages.
local function show(v)
    local ok, text = pcall(json.encode, v)
    if not ok then
        text = tostring(v)
    end
    if #text > 64 then
        text = sub(text, 1, 61) .. "..."
    end
    return text
end
_M.show = show

local function is_int(v, lo, hi)
    return type(v) == "number" and v == floor(v) and v >= lo and v <= hi
end

-- A table decoded from a JSON object (not an array). An empty table is ambiguous
-- after decoding (cjson gives `{}` for both) and is accepted as an object.
local function is_object(v)
    if type(v) ~= "table" or getmetatable(v) == json.array_mt then
        return false
    end
    return v[1] == nil
end

-- A table decoded from a JSON array: keys exactly 1..n.
local function is_array(v)
    if type(v) ~= "table" then
        return false
    end
    local n, count = #v, 0
    for _ in pairs(v) do
        count = count + 1
    end
    return count == n
end

local function unknown_field(t, allowed, where)
    local bad = {}
    for k in pairs(t) do
        if not allowed[k] then
            bad[#bad + 1] = tostring(k)
        end
    end
    if #bad > 0 then
        table.sort(bad)
        return where .. "unknown field " .. show(bad[1])
    end
    return nil
end

---------------------------------------------------------------------------
-- Addresses
---------------------------------------------------------------------------

-- Dotted quad, each part 0..255 without leading zeros (some parsers read a
-- leading zero as octal; refusing it keeps the meaning unambiguous).
local function parse_ipv4(s)
    local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then
        return nil
    end
    local out = {}
    for i, part in ipairs({ a, b, c, d }) do
        if #part > 3 or (#part > 1 and sub(part, 1, 1) == "0") then
            return nil
        end
        local n = tonumber(part)
        if n > 255 then
            return nil
        end
        out[i] = n
    end
    return out
end

-- IPv6 literal (RFC 4291 text forms, optional trailing dotted quad) to 16 bytes.
-- No brackets, no zone id ("%eth0"): the balancer needs a plain address.
local function parse_ipv6(s)
    if #s < 2 or #s > 45 or find(s, "[^0-9A-Fa-f:%.]") then
        return nil
    end
    local head, tail = s, nil
    local dbl = find(s, "::", 1, true)
    if dbl then
        if find(s, "::", dbl + 1, true) then
            return nil -- "::" at most once
        end
        head, tail = sub(s, 1, dbl - 1), sub(s, dbl + 2)
    end

    local function groups(part, allow_v4)
        local out = {}
        if part == "" then
            return out
        end
        local fields = {}
        for f in gmatch(part .. ":", "([^:]*):") do
            fields[#fields + 1] = f
        end
        for i, f in ipairs(fields) do
            if allow_v4 and i == #fields and find(f, ".", 1, true) then
                local v4 = parse_ipv4(f)
                if not v4 then
                    return nil
                end
                out[#out + 1] = v4[1] * 256 + v4[2]
                out[#out + 1] = v4[3] * 256 + v4[4]
            elseif match(f, "^%x%x?%x?%x?$") then
                out[#out + 1] = tonumber(f, 16)
            else
                return nil
            end
        end
        return out
    end

    local words
    if dbl then
        local h = groups(head, false)
        local t = groups(tail, true)
        if not h or not t or #h + #t > 7 then
            return nil
        end
        words = {}
        for _, w in ipairs(h) do
            words[#words + 1] = w
        end
        for _ = 1, 8 - #h - #t do
            words[#words + 1] = 0
        end
        for _, w in ipairs(t) do
            words[#words + 1] = w
        end
    else
        words = groups(s, true)
        if not words or #words ~= 8 then
            return nil
        end
    end
    local bytes = {}
    for i, w in ipairs(words) do
        bytes[2 * i - 1] = floor(w / 256)
        bytes[2 * i] = w % 256
    end
    return bytes
end

-- The text nginx prints for an IPv6 address (ngx_inet6_ntop): the longest run
-- (>= 2) of zero words becomes "::", IPv4-mapped/compatible tails are dotted.
-- Needed because $upstream_addr names peers that way, and retries find the
-- previous peer by that name.
local function ipv6_text(p)
    local zero, last, max, n = -1, -1, 1, 0
    for i = 0, 14, 2 do
        if p[i + 1] ~= 0 or p[i + 2] ~= 0 then
            if max < n then
                zero, max = last, n
            end
            n = 0
        else
            if n == 0 then
                last = i
            end
            n = n + 1
        end
    end
    if max < n then
        zero, max = last, n
    end

    local out, limit = {}, 16
    if zero == 0 then
        if (max == 5 and p[11] == 0xff and p[12] == 0xff)
            or max == 6
            or (max == 7 and p[15] ~= 0 and p[16] ~= 1) then
            limit = 12
        end
        out[#out + 1] = ":"
    end
    local i = 0
    while i < limit do
        if i == zero then
            out[#out + 1] = ":"
            i = i + (max - 1) * 2
        else
            out[#out + 1] = format("%x", p[i + 1] * 256 + p[i + 2])
            if i < 14 then
                out[#out + 1] = ":"
            end
        end
        i = i + 2
    end
    if limit == 12 then
        out[#out + 1] = format("%d.%d.%d.%d", p[13], p[14], p[15], p[16])
    end
    return concat(out)
end

-- Returns { family = 4|6, host = <for set_current_peer>, text = <as nginx prints> }
-- or nil, reason.
function _M.address(s)
    if type(s) ~= "string" then
        return nil, "must be a string IP address"
    end
    if parse_ipv4(s) then
        if s == "0.0.0.0" then
            -- as syncer's own validation: nothing can be connected to there
            return nil, "the unspecified address cannot be connected to"
        end
        return { family = 4, host = s, text = s }
    end
    if match(s, "^[%d%.]+:%d+$") or match(s, "^%[.*%]:%d+$") then
        return nil, "must not include a port (use the port field)"
    end
    if find(s, ":", 1, true) then
        local bytes = parse_ipv6(s)
        if bytes then
            local text = ipv6_text(bytes)
            if text == "::" then
                return nil, "the unspecified address cannot be connected to"
            end
            -- set_current_peer parses "[v6]" only; a bare v6 would be read as host:port.
            return { family = 6, host = "[" .. text .. "]", text = "[" .. text .. "]" }
        end
        if find(s, "%", 1, true) then
            return nil, "IPv6 zone ids are not supported"
        end
        return nil, "not a valid IPv6 address"
    end
    if match(s, "^[%d%.]+$") then
        return nil, "not a valid IPv4 address (four 0..255 parts, no leading zeros)"
    end
    return nil, "must be an IPv4 or IPv6 literal (host names are not resolved)"
end

-- "ip:port" exactly as $upstream_addr shows the peer.
function _M.peer_name(address, port)
    local a = _M.address(address)
    if not a then
        return nil
    end
    return a.text .. ":" .. port, a.host
end

---------------------------------------------------------------------------
-- Names and fields
---------------------------------------------------------------------------

function _M.name(s)
    if type(s) ~= "string" or #s < 1 or #s > NAME_MAX or not match(s, NAME_PATTERN) then
        return nil, "invalid upstream name " .. show(s) .. " (1.." .. NAME_MAX
            .. " characters: letters, digits, '_', '.', '-'; starting with a letter or digit)"
    end
    return true
end

function _M.hash_on(v)
    if v == nil or v == json.null then
        return true
    end
    if type(v) ~= "string" or #v > HASH_ON_MAX or not match(v, HASH_ON_PATTERN) then
        return nil, "hash_on: must be null or an nginx variable name without '$' ([a-z0-9_]+), got "
            .. show(v)
    end
    return true
end

local function check_server(s, where)
    if not is_object(s) then
        return nil, where .. ": must be an object, got " .. show(s)
    end
    local err = unknown_field(s, SERVER_FIELDS, where .. ": ")
    if err then
        return nil, err
    end
    local out = {}

    if s.address == nil then
        return nil, where .. ".address: required"
    end
    local addr, why = _M.address(s.address)
    if not addr then
        return nil, where .. ".address: " .. why .. ", got " .. show(s.address)
    end
    out.address = s.address

    local port = limits.port
    if not is_int(s.port, port[1], port[2]) then
        return nil, format("%s.port: must be an integer %d..%d, got %s", where, port[1], port[2], show(s.port))
    end
    out.port = s.port

    local function int_field(key)
        local v = s[key]
        local lo, hi = limits[key][1], limits[key][2]
        if v == nil then
            out[key] = DEFAULTS[key]
            return true
        end
        if not is_int(v, lo, hi) then
            return nil, format("%s.%s: must be an integer %d..%d, got %s", where, key, lo, hi, show(v))
        end
        out[key] = v
        return true
    end
    local ok
    ok, err = int_field("weight")
    if not ok then return nil, err end
    ok, err = int_field("max_fails")
    if not ok then return nil, err end
    ok, err = int_field("max_conns")
    if not ok then return nil, err end

    local ft, ft_lo, ft_hi = s.fail_timeout, limits.fail_timeout[1], limits.fail_timeout[2]
    if ft == nil then
        out.fail_timeout = DEFAULTS.fail_timeout
    elseif type(ft) ~= "number" or ft ~= ft or ft < ft_lo or ft > ft_hi or ft == huge then
        return nil, format("%s.fail_timeout: must be a number of seconds %d..%d, got %s", where, ft_lo, ft_hi,
            show(ft))
    else
        out.fail_timeout = ft
    end

    for _, key in ipairs({ "backup", "down" }) do
        local v = s[key]
        if v == nil then
            out[key] = DEFAULTS[key]
        elseif type(v) ~= "boolean" then
            return nil, where .. "." .. key .. ": must be true or false, got " .. show(v)
        else
            out[key] = v
        end
    end
    return out, addr.text .. ":" .. out.port
end

-- Validates the servers/hash_on part shared by PUT bodies and snapshot entries.
local function check_set(t, allow_empty)
    local servers = t.servers
    if servers == nil then
        return nil, "servers: required"
    end
    if not is_array(servers) then
        return nil, "servers: must be an array, got " .. show(servers)
    end
    if #servers > _M.MAX_SERVERS then
        return nil, "servers: at most " .. _M.MAX_SERVERS .. " entries, got " .. #servers
    end
    if #servers == 0 and not allow_empty then
        return nil, 'servers: empty list refused (send "allow_empty": true to really remove every server)'
    end
    local ok, err = _M.hash_on(t.hash_on)
    if not ok then
        return nil, err
    end

    local out, seen = json.array(), {}
    for i, s in ipairs(servers) do
        local where = "servers[" .. (i - 1) .. "]"
        local server, key = check_server(s, where)
        if not server then
            return nil, key
        end
        if seen[key] then
            return nil, format("%s: duplicate server %s (same as servers[%d])", where, key, seen[key])
        end
        seen[key] = i - 1
        out[#out + 1] = server
    end
    local hash_on = t.hash_on
    if hash_on == json.null then
        hash_on = nil
    end
    return { servers = out, hash_on = hash_on }
end

-- A PUT /upstreams/<name> body (already decoded). Returns the normalised set
-- { servers = [...with defaults filled in...], hash_on = string|nil } or nil, err.
function _M.put_body(t)
    if not is_object(t) then
        return nil, "body must be a JSON object, got " .. show(t)
    end
    local err = unknown_field(t, BODY_FIELDS, "")
    if err then
        return nil, err
    end
    local allow_empty = t.allow_empty
    if allow_empty ~= nil and type(allow_empty) ~= "boolean" then
        return nil, "allow_empty: must be true or false, got " .. show(allow_empty)
    end
    return check_set(t, allow_empty == true)
end

-- One entry of a snapshot's "upstreams" object: like a PUT body plus an
-- optional version; an empty list is accepted (it was accepted when written).
function _M.snapshot_upstream(t)
    if not is_object(t) then
        return nil, "must be an object, got " .. show(t)
    end
    local err = unknown_field(t, SNAPSHOT_UPSTREAM_FIELDS, "")
    if err then
        return nil, err
    end
    if t.version ~= nil and not is_int(t.version, 1, 2 ^ 52) then
        return nil, "version: must be a positive integer, got " .. show(t.version)
    end
    local set
    set, err = check_set(t, true)
    if not set then
        return nil, err
    end
    set.version = t.version
    return set
end

-- Parses an If-Match header value: `"3"`, `3`, `W/"3"` or `*`.
-- Returns a number, "*", or nil, err.
function _M.if_match(v)
    if type(v) == "table" then
        return nil, "If-Match: only one value allowed"
    end
    v = match(v, "^%s*(.-)%s*$")
    if v == "*" then
        return "*"
    end
    local n = match(v, '^W/"(%d+)"$') or match(v, '^"(%d+)"$') or match(v, "^(%d+)$")
    if not n or #n > 15 then
        return nil, "If-Match: expected a version like \"3\", got " .. show(v)
    end
    return tonumber(n)
end

return _M
