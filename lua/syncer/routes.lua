-- Routing tables in the shared dict, and their admin API (see docs/routing.md).
--
--   GET    /routes            every entry's table and version
--   GET    /routes/<entry>    one table
--   PUT    /routes/<entry>    replace it (body: the table syncer compiled)
--   DELETE /routes/<entry>    remove it (the entry then proxies to its own pool)
--
-- Keys: "rt:<entry>" holds the validated table (JSON), "rtv:<entry>" its version,
-- "rtn" the sorted entry names. The router reads "rtv:<entry>" on every request
-- and re-reads the table only when it moved (the same per-request check as the
-- upstreams' change counter).
--
-- A table is validated in full before it is stored: variable names from a fixed
-- set of prefixes, every regex compiled here with PCRE (ngx.re, the engine that
-- will run it), pool and header names as tokens, legs summing to 10000 units.

local gray = require "syncer.gray"
local json = require "syncer.json"
local state = require "syncer.state"
local validate = require "syncer.validate"

local ngx = ngx
local type, pairs, ipairs, pcall, tostring = type, pairs, ipairs, pcall, tostring
local match, sub, find = string.match, string.sub, string.find
local floor = math.floor

local _M = {}

local MAX_ROUTES, MAX_CONDS, MAX_LEGS, MAX_HEADERS = 256, 64, 64, 32
local MAX_REGEX, MAX_VALUE = 1100, 1024
local UNITS = 10000
-- plain string tests the router may do instead of the (equivalent) regex
local LITERALS = { prefix = true, exact = true, suffix = true, nonempty = true }

local function show(v)
    return validate.show(v)
end

local function var_ok(v)
    if type(v) ~= "string" or #v > 80 or not match(v, "^[a-z0-9_]+$") then
        return false
    end
    return v == "uri" or v == "request_method" or v == "remote_addr" or v == "request_id"
        or match(v, "^http_[a-z0-9_]+$") ~= nil or match(v, "^arg_[a-z0-9_]+$") ~= nil
        or match(v, "^cookie_[a-z0-9_]+$") ~= nil
end

local function regex_ok(re)
    if type(re) ~= "string" or #re == 0 or #re > MAX_REGEX or find(re, "[%z\1-\31\127]") then
        return false, "invalid regex " .. show(re)
    end
    -- compile it with PCRE now: a pattern nginx cannot run is refused here, not per request
    local ok, from, _, err = pcall(ngx.re.find, "", re, "jo") -- from, to, err
    if not ok then
        err = from -- the error pcall caught
    end
    if err then
        return false, "regex " .. show(re) .. " does not compile: " .. tostring(err or "error")
    end
    return true
end

local function value_ok(v)
    return type(v) == "string" and #v <= MAX_VALUE and not find(v, "[%z\1-\31\127]")
end

local function header_name_ok(n)
    return type(n) == "string" and #n >= 1 and #n <= 64 and match(n, "^[A-Za-z0-9-]+$") ~= nil
end

local function headers_ok(list, where)
    if list == nil then
        return true
    end
    if type(list) ~= "table" or #list > MAX_HEADERS then
        return false, where .. " must be a list of at most " .. MAX_HEADERS
    end
    for i, h in ipairs(list) do
        if type(h) ~= "table" or not header_name_ok(h.name)
            or (h.op ~= "set" and h.op ~= "add" and h.op ~= "remove")
            or (h.op ~= "remove" and not value_ok(h.value)) then
            return false, where .. "[" .. i .. "] is invalid: " .. show(h)
        end
    end
    return true
end

local function action_ok(a, where)
    if type(a) ~= "table" or type(a.legs) ~= "table" or #a.legs < 1 or #a.legs > MAX_LEGS then
        return false, where .. ".legs must be a list of 1.." .. MAX_LEGS
    end
    local sum = 0
    for i, leg in ipairs(a.legs) do
        local ok = type(leg) == "table" and validate.name(leg.pool)
        local u = type(leg) == "table" and leg.units
        if not ok or type(u) ~= "number" or u ~= floor(u) or u < 1 or u > UNITS then
            return false, where .. ".legs[" .. i .. "] is invalid: " .. show(leg)
        end
        sum = sum + u
    end
    if sum ~= UNITS then
        return false, where .. ".legs units sum to " .. sum .. ", not " .. UNITS
    end
    if not var_ok(a.key) then
        return false, where .. ".key is not a variable syncer uses: " .. show(a.key)
    end
    if a.rewrite ~= nil then
        local r = a.rewrite
        if type(r) ~= "table" or not value_ok(r.to) or sub(r.to, 1, 1) ~= "/" or type(r.rest) ~= "boolean" then
            return false, where .. ".rewrite is invalid: " .. show(r)
        end
        local ok, err = regex_ok(r.re)
        if not ok then
            return false, where .. ".rewrite: " .. err
        end
    end
    local ok, err = headers_ok(a.request_headers, where .. ".request_headers")
    if not ok then
        return false, err
    end
    return headers_ok(a.response_headers, where .. ".response_headers")
end

-- Returns the table or nil, reason.
function _M.check(t)
    if type(t) ~= "table" or type(t.routes) ~= "table" or #t.routes > MAX_ROUTES then
        return nil, "body must be an object with routes (at most " .. MAX_ROUTES .. ") and default"
    end
    for i, r in ipairs(t.routes) do
        local where = "routes[" .. i .. "]"
        if type(r) ~= "table" or type(r.conds) ~= "table" or #r.conds > MAX_CONDS then
            return nil, where .. " must have conds (at most " .. MAX_CONDS .. ")"
        end
        for j, c in ipairs(r.conds) do
            if type(c) ~= "table" or not var_ok(c.var) or type(c.invert) ~= "boolean"
                or (c.lit ~= nil and not LITERALS[c.lit]) or (c.lit ~= nil and not value_ok(c.text)) then
                return nil, where .. ".conds[" .. j .. "] is invalid: " .. show(c)
            end
            local ok, err = regex_ok(c.re)
            if not ok then
                return nil, where .. ".conds[" .. j .. "]: " .. err
            end
        end
        local ok, err = action_ok(r.action, where .. ".action")
        if not ok then
            return nil, err
        end
    end
    local ok, err = action_ok(t.default, "default")
    if not ok then
        return nil, err
    end
    if t.gray ~= nil then -- KV stages 1-4: compiled here once to refuse what the router could not run
        local compiled, gerr = gray.compile(t.gray)
        if not compiled then
            return nil, "gray: " .. gerr
        end
    end
    return t
end

local function names()
    local raw = state.dict:get("rtn")
    local list = raw and json.decode(raw)
    return json.array(type(list) == "table" and list or {})
end

local function set_names(list)
    table.sort(list)
    return state.dict:safe_set("rtn", json.encode(json.array(list)))
end

function _M.get(entry)
    local raw = state.dict:get("rt:" .. entry)
    if not raw then
        return nil
    end
    return json.decode(raw), state.dict:get("rtv:" .. entry)
end

function _M.version(entry)
    return state.dict:get("rtv:" .. entry)
end

-- ``raw``: the validated request body as sent; storing it as is spares re-encoding a
-- large table (a 10,000-entry gray list is ~0.5 MB: ~40 ms in the Lua encoder)
local function store(entry, t, raw)
    local dict = state.dict
    local body = raw or json.encode(t)
    if dict:get("rt:" .. entry) == body then
        return dict:get("rtv:" .. entry)
    end
    local ok, err = dict:safe_set("rt:" .. entry, body)
    if not ok then
        return nil, err
    end
    local list, present = names(), false
    for _, n in ipairs(list) do
        present = present or n == entry
    end
    if not present then
        list[#list + 1] = entry
        set_names(list)
    end
    return state.count("rtv:" .. entry)
end

local function remove(entry)
    local kept = json.array()
    for _, n in ipairs(names()) do
        if n ~= entry then
            kept[#kept + 1] = n
        end
    end
    set_names(kept)
    state.dict:delete("rt:" .. entry)
    state.count("rtv:" .. entry) -- routers notice and drop their copy
end

-- The admin handler for /routes[/<entry>]; `api` carries admin.lua's helpers.
function _M.serve(api, method, uri)
    if uri == "/routes" then
        if method ~= "GET" then
            return api.not_allowed("GET")
        end
        local all = {}
        for _, n in ipairs(names()) do
            local t, v = _M.get(n)
            if t then
                all[n] = { version = v, table = t }
            end
        end
        return api.respond(200, { generation = state.generation(), routes = all })
    end
    local entry = sub(uri, 9)
    local valid, nerr = validate.name(entry)
    if not valid then
        return api.err(400, nerr)
    end
    if method == "GET" then
        local t, v = _M.get(entry)
        if not t then
            return api.err(404, 'routes for "' .. entry .. '" not found')
        end
        return api.respond(200, { entry = entry, version = v, table = t })
    elseif method == "PUT" then
        local body, berr = api.read_body()
        if not body then
            return api.err(400, berr)
        end
        local decoded, jerr = json.decode(body)
        if decoded == nil then
            return api.err(400, "invalid JSON: " .. tostring(jerr))
        end
        local t, verr = _M.check(decoded)
        if not t then
            return api.err(400, 'routes for "' .. entry .. '": ' .. verr)
        end
        local v, serr = store(entry, t, body)
        if not v then
            return api.err(500, "cannot store routes: " .. tostring(serr))
        end
        return api.respond(200, { entry = entry, version = v, generation = state.generation() })
    elseif method == "DELETE" then
        remove(entry)
        return api.respond(200, { entry = entry, deleted = true })
    end
    return api.not_allowed("GET, PUT, DELETE")
end

return _M
