-- The limits shared with syncer's Python side, read from limits.json beside
-- this file (the one contract both sides and the property tests read).
--
-- Pure module (no `ngx`): loaded once per Lua VM, at require time.

local cjson = require "cjson.safe"

local function here()
    local source = debug.getinfo(1, "S").source
    return source:sub(1, 1) == "@" and source:match("^@(.*/)") or "./"
end

local function load()
    local path = here() .. "limits.json"
    local f, err = io.open(path, "rb")
    if not f then
        error("syncer: cannot read the limits contract " .. path .. ": " .. tostring(err), 0)
    end
    local text = f:read("*a")
    f:close()
    local limits, derr = cjson.decode(text)
    if type(limits) ~= "table" then
        error("syncer: the limits contract " .. path .. " is not valid JSON: " .. tostring(derr), 0)
    end
    limits.path = path
    return limits
end

return load()
