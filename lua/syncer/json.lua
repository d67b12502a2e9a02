-- JSON for syncer: strict decoding through cjson, deterministic encoding in Lua.
--
-- Pure module (no `ngx`). Why not cjson.encode: Debian's lua-cjson 2.1.0 encodes
-- an empty Lua table as `{}` and has no way to mark a table as an array, so an
-- empty server list would come out as an object. The encoder below writes tables
-- that carry `json.array_mt` (or are non-empty sequences) as arrays and sorts
-- object keys, so equal content always encodes to equal bytes — `admin` relies
-- on that to detect "unchanged" PUTs without bumping the version.

local cjson = require "cjson.safe"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local concat, sort = table.concat, table.sort
local format, gsub, byte, find, sub = string.format, string.gsub, string.byte, string.find, string.sub
local floor, huge = math.floor, math.huge

local _M = {}

-- A private decoder instance: the settings below do not leak into other users
-- of cjson in the same VM.
local decoder = cjson.new()
decoder.decode_invalid_numbers(false) -- refuse NaN, Infinity, hex numbers
decoder.decode_max_depth(32)

_M.null = cjson.null
_M.array_mt = { __jsontype = "array" }

function _M.array(t)
    return setmetatable(t or {}, _M.array_mt)
end

-- Returns value or nil, err. cjson reports positions ("at character 11"),
-- which is what a caller fixing a payload needs.
function _M.decode(text)
    if type(text) ~= "string" then
        return nil, "body is not a string"
    end
    local value, err = decoder.decode(text)
    if value == nil and err then
        return nil, err
    end
    return value
end

local escapes = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_char(c)
    return escapes[c] or format("\\u%04x", byte(c))
end

-- Bytes that are not UTF-8 (a request path or header can carry any byte) become
-- U+FFFD, so everything this module writes is valid JSON, error messages quoting
-- such input included.
local REPLACEMENT = "\239\191\189"

local function continuation(s, i, n, lo, hi)
    -- n continuation bytes from i; the first one within lo..hi (overlong/surrogate rules)
    local b = byte(s, i)
    if not b or b < lo or b > hi then
        return false
    end
    for k = i + 1, i + n - 1 do
        b = byte(s, k)
        if not b or b < 0x80 or b > 0xBF then
            return false
        end
    end
    return true
end

local function utf8_clean(s)
    if not find(s, "[\128-\255]") then
        return s
    end
    local out, i, len, start = {}, 1, #s, 1
    while i <= len do
        local b = byte(s, i)
        local size, lo, hi = 1, 0x80, 0xBF
        if b < 0x80 then
            size = 0
        elseif b >= 0xC2 and b <= 0xDF then
            size = 1
        elseif b == 0xE0 then
            size, lo = 2, 0xA0
        elseif (b >= 0xE1 and b <= 0xEC) or b == 0xEE or b == 0xEF then
            size = 2
        elseif b == 0xED then
            size, hi = 2, 0x9F
        elseif b == 0xF0 then
            size, lo = 3, 0x90
        elseif b >= 0xF1 and b <= 0xF3 then
            size = 3
        elseif b == 0xF4 then
            size, hi = 3, 0x8F
        else
            size = -1
        end
        if size == 0 then
            i = i + 1
        elseif size > 0 and continuation(s, i + 1, size, lo, hi) then
            i = i + 1 + size
        else
            out[#out + 1] = sub(s, start, i - 1)
            out[#out + 1] = REPLACEMENT
            i = i + 1
            start = i
        end
    end
    out[#out + 1] = sub(s, start)
    return concat(out)
end
_M.utf8_clean = utf8_clean

local function encode_string(s)
    return '"' .. gsub(utf8_clean(s), '[%c"\\]', escape_char) .. '"'
end

local function is_sequence(t)
    local n = #t
    if n == 0 then
        return false
    end
    local count = 0
    for _ in pairs(t) do
        count = count + 1
    end
    return count == n
end

local encode_value

local function encode_table(t, out)
    if getmetatable(t) == _M.array_mt or is_sequence(t) then
        out[#out + 1] = "["
        for i, v in ipairs(t) do
            if i > 1 then
                out[#out + 1] = ","
            end
            encode_value(v, out)
        end
        out[#out + 1] = "]"
        return
    end
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = tostring(k)
    end
    sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
        if i > 1 then
            out[#out + 1] = ","
        end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        local v = t[k]
        if v == nil then
            v = t[tonumber(k)]
        end
        encode_value(v, out)
    end
    out[#out + 1] = "}"
end

encode_value = function(v, out)
    local tv = type(v)
    if tv == "string" then
        out[#out + 1] = encode_string(v)
    elseif tv == "number" then
        if v ~= v or v == huge or v == -huge then
            out[#out + 1] = "null"
        elseif floor(v) == v and v > -1e15 and v < 1e15 then
            out[#out + 1] = format("%d", v)
        else
            out[#out + 1] = format("%.14g", v)
        end
    elseif tv == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif tv == "table" then
        encode_table(v, out)
    elseif v == nil or v == cjson.null then
        out[#out + 1] = "null"
    else
        error("cannot encode a " .. tv .. " as JSON")
    end
end

function _M.encode(value)
    local out = {}
    encode_value(value, out)
    return concat(out)
end

return _M
