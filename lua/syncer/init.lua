-- Entry points for nginx.conf:
--
--   init_by_lua_block {
--       require("syncer.init").setup({
--           dict = "syncer_upstreams",                      -- lua_shared_dict name
--           token_file = "/etc/syncer/admin.token",         -- admin bearer token
--           snapshot_file = "/var/lib/syncer/snapshot.json",-- loaded on a cold start
--           max_body = 1048576,                             -- admin request body limit
--           refresh_interval = 1,                           -- idle-worker refresh (s)
--           log_phase = false,  -- true when the proxying location has
--                               -- log_by_lua_block { require("syncer.balancer").log() }
--                               -- (needed for max_conns only)
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

local limits = require "syncer.limits"

local DEFAULTS = {
    dict = "syncer_upstreams",
    token_file = "/etc/syncer/admin.token",
    snapshot_file = false,
    max_body = limits.max_body.default,
    refresh_interval = 1,
    log_phase = false,
}

-- The token file's mode bits, through statx(2) (its struct has one layout on
-- every architecture, unlike stat's). nil, reason when it cannot be checked.
local ffi = require "ffi"
pcall(ffi.cdef, [[
struct syncer_statx_ts { int64_t tv_sec; uint32_t tv_nsec; int32_t reserved; };
struct syncer_statx {
    uint32_t mask; uint32_t blksize; uint64_t attributes; uint32_t nlink; uint32_t uid; uint32_t gid;
    uint16_t mode; uint16_t spare0; uint64_t ino; uint64_t size; uint64_t blocks; uint64_t attributes_mask;
    struct syncer_statx_ts atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor; uint64_t spare2[14];
};
int statx(int dirfd, const char *path, int flags, unsigned int mask, struct syncer_statx *buf);
]])
local AT_FDCWD, STATX_MODE = -100, 0x2

local function file_mode(path)
    local buf = ffi.new("struct syncer_statx")
    local ok, rc = pcall(ffi.C.statx, AT_FDCWD, path, 0, STATX_MODE, buf)
    if not ok then
        return nil, "cannot check its permissions (no statx: " .. tostring(rc) .. ")"
    end
    if rc ~= 0 then
        return nil, "cannot check its permissions (errno " .. ffi.errno() .. ")"
    end
    return bit.band(buf.mode, 4095)
end

-- The token file must be private to its owner: a token other local users can
-- read (or replace) is no secret. syncer refuses the same modes.
local function private(path)
    local mode, why = file_mode(path)
    if not mode then
        return nil, why
    end
    if bit.band(mode, 54) ~= 0 then -- 0o066: read or write for group or others
        return nil, string.format("token file %s is readable or writable by group or others (mode %04o); "
            .. "chmod 600 it", path, mode)
    end
    return true
end
_M.private = private

local function read_token(path)
    if not path or path == "" then
        return nil, "no token_file configured"
    end
    local f, open_err = io.open(path, "rb")
    if not f then
        return nil, "token file unreadable (" .. tostring(open_err) .. ")"
    end
    local ok, perm_err = private(path)
    if not ok then
        f:close()
        return nil, perm_err
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
    if type(conf.max_body) ~= "number" or conf.max_body < limits.max_body.min then
        error("syncer.init.setup: max_body must be a number >= " .. limits.max_body.min, 2)
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
