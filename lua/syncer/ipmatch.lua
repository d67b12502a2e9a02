-- Client-address matching for the gray lists (issue 11): sorted, non-overlapping
-- address ranges and a binary search, so 10,000 CIDRs cost ~14 comparisons.
--
-- syncer flattens the lists (precedence, overlaps) before it pushes them, so this
-- module only checks that the ranges are sorted and disjoint (once per version)
-- and looks a client up:
--
--   local m, err = ipmatch.compile({ {4, 167772160, 167772415, "web.pre"},
--                                    {6, "20010db8000000000000000000000000",
--                                        "20010db8ffffffffffffffffffffffff", "web.pre"} })
--   local pool = ipmatch.lookup(m, ngx.var.remote_addr)   -- nil: no list names it
--
-- Keys, as pushed and as compared: IPv4 as a number (exact in a double); IPv6 as 32
-- lowercase hex digits, so plain string comparison is numeric order. A client's
-- address is parsed into the same key; an IPv4-mapped IPv6 client (::ffff:a.b.c.d)
-- is looked up as IPv4, as nginx's geo does.

local tonumber, type, floor = tonumber, type, math.floor
local byte, sub, find, format, gmatch = string.byte, string.sub, string.find, string.format, string.gmatch

local _M = {}

local MAX_RANGES = 100000

local function parse4(s)
    local a, b, c, d = s:match("^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
    if not a then
        return nil
    end
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    if a > 255 or b > 255 or c > 255 or d > 255 then
        return nil
    end
    return ((a * 256 + b) * 256 + c) * 256 + d
end
_M.parse4 = parse4

-- groups of one side of "::" (16-bit numbers); the last may be a dotted IPv4
local function groups_of(part, out, last_side)
    if part == "" then
        return true
    end
    local pieces = {}
    for g in gmatch(part .. ":", "([^:]*):") do
        pieces[#pieces + 1] = g
    end
    for i, g in ipairs(pieces) do
        if last_side and i == #pieces and find(g, ".", 1, true) then
            local v4 = parse4(g)
            if not v4 then
                return false
            end
            out[#out + 1] = floor(v4 / 65536)
            out[#out + 1] = v4 % 65536
        else
            if not g:match("^%x%x?%x?%x?$") then
                return false
            end
            out[#out + 1] = tonumber(g, 16)
        end
    end
    return true
end

-- 32 lowercase hex digits, or nil
local function parse6(s)
    if #s > 45 or find(s, "[^%x:%.]") then
        return nil
    end
    local head, tail = s, nil
    local dc = find(s, "::", 1, true)
    if dc then
        head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
        if find(tail, "::", 1, true) then
            return nil
        end
    end
    local left, right = {}, {}
    if not groups_of(head, left, tail == nil) then
        return nil
    end
    if tail and not groups_of(tail, right, true) then
        return nil
    end
    local n = #left + #right
    if (tail and n > 7) or (not tail and n ~= 8) then
        return nil
    end
    local out = {}
    for i = 1, #left do
        out[#out + 1] = format("%04x", left[i])
    end
    for _ = 1, 8 - n do
        out[#out + 1] = "0000"
    end
    for i = 1, #right do
        out[#out + 1] = format("%04x", right[i])
    end
    return table.concat(out)
end
_M.parse6 = parse6

local MAPPED = "00000000000000000000ffff"

-- (4, number) or (6, hex string) or nil
local function key_of(addr)
    if type(addr) ~= "string" then
        return nil
    end
    if find(addr, ":", 1, true) then
        local hex = parse6(addr)
        if not hex then
            return nil
        end
        if sub(hex, 1, 24) == MAPPED then
            return 4, tonumber(sub(hex, 25), 16)
        end
        return 6, hex
    end
    local v4 = parse4(addr)
    if v4 then
        return 4, v4
    end
    return nil
end
_M.key_of = key_of

local function key_ok(family, v)
    if family == 4 then
        return type(v) == "number" and v >= 0 and v <= 4294967295 and v == floor(v)
    end
    return type(v) == "string" and #v == 32 and not find(v, "[^0-9a-f]")
end

function _M.compile(ranges)
    if type(ranges) ~= "table" then
        return nil, "ranges must be an array"
    end
    if #ranges > MAX_RANGES then
        return nil, "more than " .. MAX_RANGES .. " ranges"
    end
    local m = {
        [4] = { first = {}, last = {}, pool = {}, n = 0 },
        [6] = { first = {}, last = {}, pool = {}, n = 0 },
    }
    for i, r in ipairs(ranges) do
        local family = type(r) == "table" and r[1]
        local t = (family == 4 or family == 6) and m[family]
        if not t or not key_ok(family, r[2]) or not key_ok(family, r[3]) or type(r[4]) ~= "string"
            or r[4] == "" then
            return nil, "range " .. i .. " must be [4, first, last, pool] (integers) or [6, hex32, hex32, pool]"
        end
        local first, last = r[2], r[3]
        if first > last then
            return nil, "range " .. i .. ": first address above the last"
        end
        if t.n > 0 and first <= t.last[t.n] then
            return nil, "range " .. i .. " is not above the previous one: ranges must be sorted and disjoint"
        end
        t.n = t.n + 1
        t.first[t.n], t.last[t.n], t.pool[t.n] = first, last, r[4]
    end
    return m
end

-- binary search: the last range whose first address is <= key
local function search(t, key)
    local lo, hi = 1, t.n
    local first = t.first
    while lo <= hi do
        local mid = floor((lo + hi) / 2)
        if first[mid] <= key then
            lo = mid + 1
        else
            hi = mid - 1
        end
    end
    if hi >= 1 and key <= t.last[hi] then
        return t.pool[hi]
    end
    return nil
end

function _M.lookup(m, addr)
    local family, key = key_of(addr)
    if not family then
        return nil
    end
    local t = m[family]
    if t.n == 0 then
        return nil
    end
    return search(t, key)
end

local HEX16 = string.rep("%02x", 16)
local MAPPED_BIN = string.rep("\0", 10) .. "\255\255"

-- The same lookup from $binary_remote_addr (4 or 16 bytes, realip applied): no text
-- to parse on the request path.
function _M.lookup_binary(m, bin)
    local key, t
    local len = bin and #bin
    if len == 4 or (len == 16 and sub(bin, 1, 12) == MAPPED_BIN) then
        local b1, b2, b3, b4 = byte(bin, len - 3, len)
        key, t = ((b1 * 256 + b2) * 256 + b3) * 256 + b4, m[4]
    elseif len == 16 then
        key, t = format(HEX16, byte(bin, 1, 16)), m[6]
    else
        return nil -- a unix socket peer has no address
    end
    if t.n == 0 then
        return nil
    end
    return search(t, key)
end

function _M.size(m)
    return m[4].n + m[6].n
end

return _M
