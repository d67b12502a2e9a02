-- Shared-dict storage: upstream sets, versions, generation, snapshot load.
--
-- Keys in the lua_shared_dict (all workers see them; they survive
-- `nginx -s reload`, and are gone after a stop/start):
--   generation, started_at   identity of this shared-memory lifetime
--   n:<bucket>               JSON array of the upstream names in one of BUCKETS
--                            buckets (by CRC32 of the name): creating or deleting
--                            an upstream rewrites one small bucket, never a list
--                            of every name; storing an existing one touches none
--   count, digest            number of upstreams, and the XOR of
--                            crc32("<name> <version>") over all of them: the O(1)
--                            summary syncer's reconcile probe compares
--   seq                      +1 on every config or health change, so idle workers'
--                            refresh timers stay O(1) while nothing changes
--   u:<name>                 JSON {"version": n, "servers": [...], "hash_on": s?}
--   c:<name>                 change counter: +1 on every config or health change;
--                            the balancer reads only this key per request
--   dv:<name>                last version of a deleted upstream, so versions are
--                            never reused within a generation
--   f:<name> <ip:port>       passive-health failure count (expires after fail_timeout)
--   h:<name> <ip:port>       unhealthy-until timestamp (expires after fail_timeout)
--   w:<worker id>            JSON {"pid", "applied": {name: version}, "seen_at"}
--   lock                     admin write lock (pid, 5 s expiry)
-- Every write uses safe_set/safe_add (or incr without init, which never
-- allocates): a full dict refuses the write instead of silently evicting
-- another upstream's entry to make room.

local json = require "syncer.json"
local validate = require "syncer.validate"
local cjson = require "cjson.safe"

local ngx = ngx
local log, ERR, NOTICE = ngx.log, ngx.ERR, ngx.NOTICE
local crc32 = ngx.crc32_long
local bxor = bit.bxor

local BUCKETS = 64

local _M = {
    conf = nil,  -- set by configure()
    dict = nil,
}

function _M.configure(conf)
    local dict = ngx.shared[conf.dict]
    if not dict then
        error('syncer: lua_shared_dict "' .. tostring(conf.dict) .. '" is not defined in the http block', 0)
    end
    _M.conf = conf
    _M.dict = dict
end

local function random_id()
    local f = io.open("/dev/urandom", "rb")
    local bytes = f and f:read(8)
    if f then
        f:close()
    end
    if not bytes or #bytes ~= 8 then
        math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
        bytes = ""
        for _ = 1, 8 do
            bytes = bytes .. string.char(math.random(0, 255))
        end
    end
    return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Creates the generation if this shared memory is fresh. Returns true on a cold
-- start (new generation), false when the dict already had one (reload).
function _M.init_generation()
    local dict = _M.dict
    local id = random_id()
    local ok, err = dict:safe_add("generation", id)
    if ok then
        dict:safe_set("started_at", ngx.now())
        return true, id
    end
    if err ~= "exists" then
        error("syncer: cannot store the generation in the shared dict: " .. tostring(err), 0)
    end
    return false, dict:get("generation")
end

function _M.generation()
    return _M.dict:get("generation"), _M.dict:get("started_at")
end

-- A write the dict refused, in words an operator can act on.
function _M.refused(err)
    if err ~= "no memory" then
        return tostring(err)
    end
    local dict = _M.dict
    return 'no memory: lua_shared_dict "' .. _M.conf.dict .. '" is full (size ' .. dict:capacity()
        .. " bytes, " .. dict:free_space() .. " bytes in free pages); raise its size in nginx.conf"
end

local function bucket_key(name)
    return "n:" .. crc32(name) % BUCKETS
end

local function bucket(key)
    local raw = _M.dict:get(key)
    local names = raw and json.decode(raw)
    return json.array(type(names) == "table" and names or nil)
end

-- Every upstream name, sorted: BUCKETS small reads (admin and timers only,
-- never the request path).
function _M.names()
    local all = json.array()
    for b = 0, BUCKETS - 1 do
        for _, name in ipairs(bucket("n:" .. b)) do
            all[#all + 1] = name
        end
    end
    table.sort(all)
    return all
end

-- Returns { version = n, servers = [...], hash_on = s|nil } or nil.
function _M.get(name)
    local raw = _M.dict:get("u:" .. name)
    if not raw then
        return nil
    end
    local u = json.decode(raw)
    if type(u) ~= "table" then
        log(ERR, 'syncer: corrupt entry for upstream "', name, '" in the shared dict')
        return nil
    end
    json.array(u.servers)
    if u.hash_on == json.null then
        u.hash_on = nil
    end
    return u
end

local SERVER_KEYS = { "address", "port", "weight", "max_fails", "fail_timeout", "max_conns", "backup", "down" }

-- Same content (servers in order, every field, hash_on), whatever the versions:
-- an unchanged PUT keeps its version.
function _M.same_content(a, b)
    if (a.hash_on or false) ~= (b.hash_on or false) or #a.servers ~= #b.servers then
        return false
    end
    for i, sa in ipairs(a.servers) do
        local sb = b.servers[i]
        for _, k in ipairs(SERVER_KEYS) do
            if sa[k] ~= sb[k] then
                return false
            end
        end
    end
    return true
end

-- incr() without an init value never allocates, so it cannot evict.
function _M.count(key, ttl)
    local dict = _M.dict
    local n, err = dict:incr(key, 1)
    if n then
        return n
    end
    if err == "not found" then
        local ok
        ok, err = dict:safe_add(key, 1, ttl)
        if ok then
            return 1
        end
        if err == "exists" then -- another worker created it meanwhile
            return dict:incr(key, 1)
        end
    end
    return nil, err
end

local function bump(name)
    local _, err = _M.count("c:" .. name)
    if err then
        log(ERR, 'syncer: cannot bump the change counter of "', name, '": ', err)
    end
    _M.count("seq")
end
_M.bump = bump

function _M.seq()
    return _M.dict:get("seq") or 0
end

-- The identity of one (name, version) pair in the digest; syncer computes the
-- same (zlib.crc32 of "<name> <version>").
local function mark(name, version)
    return crc32(name .. " " .. string.format("%d", version))
end

local function fold(value)
    local dict = _M.dict
    local d = bxor(dict:get("digest") or 0, value)
    if d < 0 then
        d = d + 4294967296
    end
    dict:safe_set("digest", d) -- a number: same size every time, never needs new memory
end

-- The O(1) summary for the reconcile probe.
function _M.summary()
    local dict = _M.dict
    local generation, started_at = _M.generation()
    return {
        generation = generation, started_at = started_at,
        upstreams = dict:get("count") or 0, digest = dict:get("digest") or 0,
        seq = dict:get("seq") or 0,
    }
end

local function edit_bucket(name, add)
    local key = bucket_key(name)
    local names, kept = bucket(key), json.array()
    for _, n in ipairs(names) do
        if n ~= name then
            kept[#kept + 1] = n
        end
    end
    if add then
        kept[#kept + 1] = name
    end
    return _M.dict:safe_set(key, json.encode(kept))
end

-- Stores a validated set as `version`; `previous` is the version it replaces
-- (nil: a new upstream). Caller holds the lock (or runs in init).
function _M.store(name, version, set, previous)
    local dict = _M.dict
    -- cjson: stored entries need no canonical key order (same_content compares
    -- fields), and it is ~10x faster than json.encode; get() restores empty arrays.
    local ok, err = dict:safe_set("u:" .. name, cjson.encode({
        version = version, servers = set.servers, hash_on = set.hash_on,
    }))
    if not ok then
        return nil, _M.refused(err)
    end
    if previous == nil then
        ok, err = edit_bucket(name, true)
        if not ok then
            dict:delete("u:" .. name)
            return nil, _M.refused(err)
        end
        _M.count("count")
    else
        fold(mark(name, previous))
    end
    fold(mark(name, version))
    bump(name)
    return true
end

function _M.delete(name, version)
    local dict = _M.dict
    edit_bucket(name, false)
    dict:delete("u:" .. name)
    dict:incr("count", -1)
    fold(mark(name, version))
    dict:safe_set("dv:" .. name, version)
    bump(name)
end

-- Version for the next write of `name` when it does not exist now.
function _M.next_new_version(name)
    return (_M.dict:get("dv:" .. name) or 0) + 1
end

-- Admin writes are read-modify-write (compare-and-set on the version, the name
-- list), so they are serialised across workers with a dict-based lock.
function _M.lock()
    local dict = _M.dict
    for _ = 1, 1000 do
        local ok, err = dict:safe_add("lock", ngx.worker.pid(), 5)
        if ok then
            return true
        end
        if err ~= "exists" then
            return nil, err
        end
        ngx.sleep(0.002)
    end
    return nil, "timed out waiting for the admin lock"
end

function _M.unlock()
    _M.dict:delete("lock")
end

-- Cold start only: load the snapshot the syncer writes (same shape as
-- GET /upstreams). A missing file is normal; a corrupt file is logged and
-- ignored; an invalid upstream inside a valid file is logged and skipped.
function _M.load_snapshot(path)
    if not path or path == "" then
        return 0
    end
    local f, open_err = io.open(path, "rb")
    if not f then
        log(NOTICE, "syncer: no snapshot loaded (", open_err, ")")
        return 0
    end
    local text = f:read("*a")
    f:close()
    local max = (_M.conf.max_body or 1048576) * 64
    if not text or #text > max then
        log(ERR, "syncer: snapshot ", path, " ignored: larger than ", max, " bytes")
        return 0
    end
    local snap, err = json.decode(text)
    if type(snap) ~= "table" or type(snap.upstreams) ~= "table" or snap.upstreams[1] ~= nil then
        log(ERR, "syncer: snapshot ", path, " ignored: ",
            err or 'not an object with an "upstreams" object')
        return 0
    end
    local loaded = 0
    local names = {}
    for name in pairs(snap.upstreams) do
        names[#names + 1] = name
    end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, name in ipairs(names) do
        local ok, name_err = validate.name(name)
        local set
        if ok then
            set, name_err = validate.snapshot_upstream(snap.upstreams[name])
        end
        if not set then
            log(ERR, "syncer: snapshot ", path, ': upstream "', tostring(name), '" skipped: ', name_err)
        else
            local stored, store_err = _M.store(name, set.version or 1, set, nil)
            if stored then
                loaded = loaded + 1
            else
                log(ERR, 'syncer: snapshot: cannot store upstream "', name, '": ', store_err)
            end
        end
    end
    log(NOTICE, "syncer: loaded ", loaded, " upstream(s) from snapshot ", path)
    return loaded
end

return _M
