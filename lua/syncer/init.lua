-- Entry points for nginx.conf:
--
--   init_by_lua_block {
--       require("syncer.init").setup({
--           dict = "syncer_upstreams",                      -- lua_shared_dict name
--           token_file = "/etc/syncer/admin.token",         -- admin bearer token
--           snapshot_file = "/var/lib/syncer/snapshot.json",-- loaded on a cold start
--           max_body = 1048576,                             -- admin request body limit
--           refresh_interval = 1,                           -- idle-worker refresh (s)
--           log_phase = true,   -- false when the proxying location has no
--                               -- log_by_lua_block { require("syncer.balancer").log() }
--       })
--   }
--   init_worker_by_lua_block { require("syncer.init").worker() }
--
-- init_by_lua runs in the master at start and again on every `nginx -s
-- reload`; the shared dict survives a reload, so the generation is created
-- with add() (only the first time) and the snapshot is loaded only then.

local state = require "syncer.state"

local ngx = ngx
local log, ERR, NOTICE = ngx.log, ngx.ERR, ngx.NOTICE

local _M = {}

local DEFAULTS = {
    dict = "syncer_upstreams",
    token_file = "/etc/syncer/admin.token",
    snapshot_file = false,
    max_body = 1048576,
    refresh_interval = 1,
    log_phase = true,
}

local function read_token(path)
    if not path or path == "" then
        return nil, "no token_file configured"
    end
    local f, open_err = io.open(path, "rb")
    if not f then
        return nil, "token file unreadable (" .. tostring(open_err) .. ")"
    end
    local text = f:read("*a") or ""
    f:close()
    local token = text:match("^%s*(.-)%s*$")
    if token == "" then
        return nil, "token file " .. path .. " is empty"
    end
    if token:find("%s") then
        return nil, "token file " .. path .. " holds more than one word"
    end
    return token
end

function _M.setup(opts)
    opts = opts or {}
    local conf = {}
    for k, v in pairs(DEFAULTS) do
        conf[k] = v
    end
    for k, v in pairs(opts) do
        if DEFAULTS[k] == nil then
            error("syncer.init.setup: unknown option " .. tostring(k), 2)
        end
        conf[k] = v
    end
    if type(conf.max_body) ~= "number" or conf.max_body < 1024 then
        error("syncer.init.setup: max_body must be a number >= 1024", 2)
    end
    if type(conf.refresh_interval) ~= "number" or conf.refresh_interval <= 0 then
        error("syncer.init.setup: refresh_interval must be a positive number", 2)
    end
    if type(conf.log_phase) ~= "boolean" then
        error("syncer.init.setup: log_phase must be true or false", 2)
    end
    state.configure(conf)

    local token, why = read_token(conf.token_file)
    conf.token, conf.token_error = token, why
    if not token then
        log(ERR, "syncer: admin API disabled, every request will be refused: ", why)
    end

    local cold, generation = state.init_generation()
    if cold then
        log(NOTICE, "syncer: new generation ", generation)
        state.load_snapshot(conf.snapshot_file or nil)
    end

    -- load the request-path modules in the master so workers share them
    require("syncer.balancer").init()
    require "syncer.admin"
end

function _M.worker()
    require("syncer.balancer").start_timer()
end

return _M
