-- The admin HTTP API (content_by_lua). See docs/admin-api.md.
--
--   GET    /upstreams            all upstreams + generation
--   GET    /upstreams/<name>     one upstream (ETag: "<version>")
--   PUT    /upstreams/<name>     replace its server set (If-Match / If-None-Match: *)
--   DELETE /upstreams/<name>     remove it (If-Match)
--   GET    /status               versions, peer health, what each worker applied
--   GET|PUT|DELETE /routes[/<entry>]  routing tables (syncer/routes.lua, docs/routing.md)
--
-- Every request needs `Authorization: Bearer <token>`; without a configured
-- token every request is refused (fail closed).

local state = require "syncer.state"
local validate = require "syncer.validate"
local json = require "syncer.json"

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
        if current and state.content_key(current) == state.content_key(set) then
            return 200, nil, nil, current.version -- unchanged: same version
        end
        local v = current and current.version + 1 or state.next_new_version(name)
        local stored, serr = state.store(name, v, set)
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

local function not_allowed(allow)
    return err(405, "method " .. ngx.req.get_method() .. " not allowed", nil, { Allow = allow })
end

local function refuse(code, message)
    local headers = code == 401 and { ["WWW-Authenticate"] = 'Bearer realm="syncer"' } or nil
    return err(code, message, nil, headers)
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

    if uri == "/upstreams" then
        if method == "GET" then
            return list_upstreams()
        end
        return not_allowed("GET")
    end

    if sub(uri, 1, 11) == "/upstreams/" then
        local name = sub(uri, 12)
        if method ~= "GET" and method ~= "PUT" and method ~= "DELETE" then
            return not_allowed("GET, PUT, DELETE")
        end
        local valid, nerr = validate.name(name)
        if not valid then
            return err(400, nerr)
        end
        if method == "GET" then
            return get_upstream(name)
        elseif method == "PUT" then
            return put_upstream(name)
        end
        return delete_upstream(name)
    end

    if uri == "/status" then
        if method == "GET" then
            return status()
        end
        return not_allowed("GET")
    end

    if uri == "/routes" or sub(uri, 1, 8) == "/routes/" then -- routing tables: syncer/routes.lua
        local api = { respond = respond, err = err, read_body = read_body, not_allowed = not_allowed }
        return require("syncer.routes").serve(api, method, uri)
    end

    return err(404, "no such endpoint: " .. uri)
end

return _M
