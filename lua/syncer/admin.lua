-- The admin HTTP API (content_by_lua). See docs/admin-api.md.
--
--   GET    /summary              O(1): generation, count and digest of versions, limits
--   GET    /upstreams            all upstreams + generation
--   PATCH  /upstreams            many upstreams in one request, each with its own result
--   GET    /upstreams/<name>     one upstream (ETag: "<version>")
--   PUT    /upstreams/<name>     replace its server set (If-Match / If-None-Match: *)
--   DELETE /upstreams/<name>     remove it (If-Match)
--   GET    /status               versions, peer health, what each worker applied
--   GET|PUT|DELETE /routes[/<entry>]  routing tables (syncer/routes.lua, docs/routing.md)
--
-- Every request needs `Authorization: Bearer <token>`; without a configured
-- token every request is refused (fail closed). Routes live in two tables
-- (`_M.routes`, exact paths; `_M.prefixed`, "<prefix><name>"), so another module
-- adds one with `admin.route(path, { GET = handler })`.

local state = require "syncer.state"
local validate = require "syncer.validate"
local json = require "syncer.json"

local limits = validate.limits

local ngx = ngx
local log, ERR = ngx.log, ngx.ERR
local byte, match, sub = string.byte, string.match, string.sub
local bxor, bor = bit.bxor, bit.bor

local _M = {}

local function respond(status, body, headers)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    if headers then
        for k, v in pairs(headers) do
            ngx.header[k] = v
        end
    end
    ngx.print(json.encode(body), "\n")
    return ngx.exit(ngx.HTTP_OK)
end

local function err(status, message, extra, headers)
    local body = { error = message }
    if extra then
        for k, v in pairs(extra) do
            body[k] = v
        end
    end
    return respond(status, body, headers)
end

-- Constant-time comparison: the loop always runs over the longer input and
-- the length difference is folded into the result.
local function same(a, b)
    local la, lb = #a, #b
    local diff = bxor(la, lb)
    local n = la > lb and la or lb
    for i = 1, n do
        diff = bor(diff, bxor(byte(a, i) or 0, byte(b, i) or 0))
    end
    return diff == 0
end

local function authorized()
    local token = state.conf and state.conf.token
    if not token then
        local why = state.conf and state.conf.token_error or "syncer.init.setup() was not called"
        log(ERR, "syncer: admin request refused: ", why)
        return false, 503, "admin API disabled: " .. why
    end
    local header = ngx.var.http_authorization
    local given = header and match(header, "^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
    if not given or not same(given, token) then
        return false, 401, header and "invalid token" or "missing Authorization: Bearer <token>"
    end
    return true
end

local function read_body()
    local max = state.conf.max_body
    local length = tonumber(ngx.var.http_content_length)
    if length and length > max then
        return nil, "body too large: " .. length .. " bytes (max_body is " .. max .. ")"
    end
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if not data then
        local file = ngx.req.get_body_file()
        if file then
            local f = io.open(file, "rb")
            data = f and f:read(max + 1)
            if f then
                f:close()
            end
        end
    end
    data = data or ""
    if #data > max then
        return nil, "body too large: more than " .. max .. " bytes (max_body)"
    end
    return data
end

local function upstream_view(name, u, generation)
    return {
        name = name, version = u.version, servers = json.array(u.servers),
        hash_on = u.hash_on or json.null, generation = generation,
    }
end

local function etag(version)
    return { ETag = '"' .. version .. '"' }
end

local function list_upstreams()
    local generation = state.generation()
    local all = {}
    for _, name in ipairs(state.names()) do
        local u = state.get(name)
        if u then
            all[name] = { version = u.version, servers = json.array(u.servers), hash_on = u.hash_on or json.null }
        end
    end
    return respond(200, { generation = generation, upstreams = all })
end

local function get_upstream(name)
    local u = state.get(name)
    if not u then
        return err(404, 'upstream "' .. name .. '" not found')
    end
    return respond(200, upstream_view(name, u, state.generation()), etag(u.version))
end

-- Evaluates If-Match / If-None-Match against the current entry.
-- Returns nil when the write may go ahead, else status, message, extra.
local function precondition(current, if_match, if_none)
    if if_match then
        local want, perr = validate.if_match(if_match)
        if not want then
            return 400, perr
        end
        local have = current and current.version
        if want == "*" then
            if not current then
                return 409, "version mismatch", { version = json.null }
            end
        elseif have ~= want then
            return 409, "version mismatch", { version = have or json.null }
        end
    end
    if if_none then
        if match(if_none, "^%s*%*%s*$") == nil then
            return 400, 'If-None-Match: only "*" is supported, got ' .. validate.show(if_none)
        end
        if current then
            return 409, "upstream exists", { version = current.version }
        end
    end
    return nil
end

-- nginx's not_modified filter would compare If-Match / If-None-Match with the
-- ETag of our answer (the new version) and turn a successful write into 412 or
-- 304; the preconditions are ours to evaluate, so take them off the request.
local function take_preconditions()
    local if_match, if_none = ngx.var.http_if_match, ngx.var.http_if_none_match
    if if_match then
        ngx.req.clear_header("If-Match")
    end
    if if_none then
        ngx.req.clear_header("If-None-Match")
    end
    return if_match, if_none
end

local function put_upstream(name)
    local if_match, if_none = take_preconditions()
    local body, berr = read_body()
    if not body then
        return err(400, berr)
    end
    local decoded, jerr = json.decode(body)
    if decoded == nil then
        return err(400, "invalid JSON: " .. tostring(jerr))
    end
    local set, verr = validate.put_body(decoded)
    if not set then
        return err(400, verr)
    end

    local locked, lerr = state.lock()
    if not locked then
        return err(503, "busy: " .. tostring(lerr))
    end
    local ok, status, message, extra, version = pcall(function()
        local current = state.get(name)
        local code, msg, more = precondition(current, if_match, if_none)
        if code then
            return code, msg, more
        end
        if current and state.same_content(current, set) then
            return 200, nil, nil, current.version -- unchanged: same version
        end
        local v = current and current.version + 1 or state.next_new_version(name)
        local stored, serr = state.store(name, v, set, current and current.version)
        if not stored then
            return 500, "cannot store upstream: " .. tostring(serr)
        end
        return 200, nil, nil, v
    end)
    state.unlock()
    if not ok then
        log(ERR, "syncer: PUT /upstreams/", name, ": ", status)
        return err(500, "internal error")
    end
    if message then
        return err(status, message, extra)
    end
    local u = state.get(name)
    if not u then -- deleted in between: report what was written
        u = { version = version, servers = set.servers, hash_on = set.hash_on }
    end
    return respond(200, upstream_view(name, u, state.generation()), etag(u.version))
end

local function delete_upstream(name)
    local if_match, if_none = take_preconditions()
    local locked, lerr = state.lock()
    if not locked then
        return err(503, "busy: " .. tostring(lerr))
    end
    local ok, status, message, extra = pcall(function()
        local current = state.get(name)
        if not current then
            return 404, 'upstream "' .. name .. '" not found'
        end
        local code, msg, more = precondition(current, if_match, if_none)
        if code then
            return code, msg, more
        end
        state.delete(name, current.version)
        return 200
    end)
    state.unlock()
    if not ok then
        log(ERR, "syncer: DELETE /upstreams/", name, ": ", status)
        return err(500, "internal error")
    end
    if message then
        return err(status, message, extra)
    end
    return respond(200, { name = name, deleted = true })
end

local function summary()
    local body = state.summary()
    local dict = state.dict
    body.dict = { name = state.conf.dict, capacity = dict:capacity(), free = dict:free_space() }
    body.limits = { max_body = state.conf.max_body, max_batch = limits.max_batch, max_servers = limits.max_servers }
    return respond(200, body)
end

local BATCH_FIELDS = { upstreams = true }

-- One entry of a PATCH /upstreams body: a PUT body plus an optional "if_match".
local function batch_entry(name, entry)
    local ok, nerr = validate.name(name)
    if not ok then
        return nil, nerr
    end
    if type(entry) ~= "table" then
        return nil, "must be an object, got " .. validate.show(entry)
    end
    local if_match = entry.if_match
    if if_match ~= nil and (type(if_match) ~= "number" or if_match < 1 or if_match ~= math.floor(if_match)) then
        return nil, "if_match: must be a version (a positive integer), got " .. validate.show(if_match)
    end
    entry.if_match = nil
    local set, verr = validate.put_body(entry)
    if not set then
        return nil, verr
    end
    return set, if_match
end

local function store_entry(name, set, if_match)
    local current = state.get(name)
    if if_match and (not current or current.version ~= if_match) then
        return { status = 409, error = "version mismatch", version = current and current.version or json.null }
    end
    if current and state.same_content(current, set) then
        return { status = 200, version = current.version, changed = false }
    end
    local v = current and current.version + 1 or state.next_new_version(name)
    local stored, serr = state.store(name, v, set, current and current.version)
    if not stored then
        return { status = 500, error = "cannot store upstream: " .. tostring(serr) }
    end
    return { status = 200, version = v, changed = true }
end

-- PATCH /upstreams {"upstreams": {"<name>": {"servers": [...], "if_match": 3}, ...}}:
-- every upstream is validated and stored on its own; one refused upstream does
-- not stop the others. Answers 200 with a result per upstream.
local function batch()
    local body, berr = read_body()
    if not body then
        return err(400, berr)
    end
    local decoded, jerr = json.decode(body)
    if decoded == nil then
        return err(400, "invalid JSON: " .. tostring(jerr))
    end
    if type(decoded) ~= "table" or decoded[1] ~= nil then
        return err(400, "body must be a JSON object, got " .. validate.show(decoded))
    end
    for k in pairs(decoded) do
        if not BATCH_FIELDS[k] then
            return err(400, "unknown field " .. validate.show(k))
        end
    end
    local ups = decoded.upstreams
    if type(ups) ~= "table" or (ups[1] ~= nil) then
        return err(400, 'upstreams: must be an object {"<name>": {"servers": [...]}}, got ' .. validate.show(ups))
    end
    local names = {}
    for name in pairs(ups) do
        names[#names + 1] = tostring(name)
    end
    if #names > limits.max_batch then
        return err(400, "upstreams: at most " .. limits.max_batch .. " per request, got " .. #names)
    end
    table.sort(names)

    local results, todo = {}, {}
    for _, name in ipairs(names) do
        local set, extra = batch_entry(name, ups[name])
        if set then
            todo[#todo + 1] = { name, set, extra }
        else
            results[name] = { status = 400, error = extra }
        end
    end

    local locked, lerr = state.lock()
    if not locked then
        return err(503, "busy: " .. tostring(lerr))
    end
    -- No yield inside (ngx.sleep without OpenResty's delayed-events patch stalls
    -- for seconds under load): max_batch keeps one request's work to tens of ms.
    local ok, perr = pcall(function()
        for _, item in ipairs(todo) do
            results[item[1]] = store_entry(item[1], item[2], item[3])
        end
    end)
    state.unlock()
    if not ok then
        log(ERR, "syncer: PATCH /upstreams: ", perr)
        return err(500, "internal error")
    end
    return respond(200, { generation = state.generation(), results = results })
end

local function status()
    local dict = state.dict
    local generation, started_at = state.generation()
    local t = ngx.now()
    local upstreams = {}
    for _, name in ipairs(state.names()) do
        local u = state.get(name)
        if u then
            local peers = json.array()
            for _, s in ipairs(u.servers) do
                local pname = validate.peer_name(s.address, s.port)
                local key = name .. " " .. pname
                local until_ts = dict:get("h:" .. key)
                if until_ts and until_ts <= t then
                    until_ts = nil
                end
                local peer_state = "up"
                if s.down then
                    peer_state = "down"
                elseif until_ts then
                    peer_state = "unhealthy"
                end
                peers[#peers + 1] = {
                    address = s.address, port = s.port, weight = s.weight,
                    backup = s.backup, down = s.down,
                    fails = dict:get("f:" .. key) or 0,
                    state = peer_state,
                    unhealthy_until = until_ts or json.null,
                }
            end
            upstreams[name] = { version = u.version, peers = peers }
        end
    end
    local workers = {}
    for id = 0, ngx.worker.count() - 1 do
        local raw = dict:get("w:" .. id)
        local w = raw and json.decode(raw)
        if type(w) == "table" and w.pid then
            workers[tostring(w.pid)] = { applied = w.applied or {}, seen_at = w.seen_at }
        end
    end
    return respond(200, {
        generation = generation, started_at = started_at,
        upstreams = upstreams, workers = workers,
    })
end

local function refuse(code, message)
    local headers = code == 401 and { ["WWW-Authenticate"] = 'Bearer realm="syncer"' } or nil
    return err(code, message, nil, headers)
end

local function check_name(name)
    return validate.name(name)
end

-- Exact paths: path -> { METHOD = handler() }.
_M.routes = {
    ["/summary"] = { GET = summary },
    ["/upstreams"] = { GET = list_upstreams, PATCH = batch },
    ["/status"] = { GET = status },
}

-- "<prefix><rest>": { prefix, methods = { METHOD = handler(rest) }, check = f(rest) -> ok, err }.
_M.prefixed = {
    {
        prefix = "/upstreams/", check = check_name,
        methods = { GET = get_upstream, PUT = put_upstream, DELETE = delete_upstream },
    },
}

-- Adds a route (for other modules): an exact path, or a prefix when `check` is given.
function _M.route(path, methods, check)
    if check then
        _M.prefixed[#_M.prefixed + 1] = { prefix = path, methods = methods, check = check }
    else
        _M.routes[path] = methods
    end
end

local function allow(methods)
    local list = {}
    for m in pairs(methods) do
        list[#list + 1] = m
    end
    table.sort(list)
    return table.concat(list, ", ")
end

local function not_allowed(methods)
    return err(405, "method " .. ngx.req.get_method() .. " not allowed", nil, { Allow = allow(methods) })
end

-- error_page 413 target: nginx refused a body over client_max_body_size.
function _M.too_large()
    local ok, code, message = authorized()
    if not ok then
        return refuse(code, message)
    end
    return err(400, "body too large: more than " .. state.conf.max_body .. " bytes (max_body)")
end

function _M.serve()
    local ok, code, message = authorized()
    if not ok then
        return refuse(code, message)
    end

    local method = ngx.req.get_method()
    local uri = ngx.var.uri

    local methods = _M.routes[uri]
    if methods then
        local handler = methods[method]
        if not handler then
            return not_allowed(methods)
        end
        return handler()
    end

    for _, r in ipairs(_M.prefixed) do
        local n = #r.prefix
        if sub(uri, 1, n) == r.prefix then
            local rest = sub(uri, n + 1)
            local handler = r.methods[method]
            if not handler then
                return not_allowed(r.methods)
            end
            local valid, verr = r.check(rest)
            if not valid then
                return err(400, verr)
            end
            return handler(rest)
        end
    end

    if uri == "/routes" or sub(uri, 1, 8) == "/routes/" then -- routing tables: syncer/routes.lua
        local api = { respond = respond, err = err, read_body = read_body, not_allowed = not_allowed }
        return require("syncer.routes").serve(api, method, uri)
    end

    return err(404, "no such endpoint: " .. uri)
end

return _M
