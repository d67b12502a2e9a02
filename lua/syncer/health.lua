-- Passive health, shared across workers through the dict.
--
-- nginx's own max_fails/fail_timeout live in each worker (or in a `zone`);
-- here a failure seen by any worker counts for all: `max_fails` failures within
-- `fail_timeout` seconds (counted from the first one) take the peer out for
-- `fail_timeout` seconds. A success does not reset the count; the window
-- expiring does. Marking a peer bumps the upstream's change counter so every
-- worker reloads the marks on its next request.

local state = require "syncer.state"
local wrr = require "syncer.wrr"

local ngx = ngx
local log, WARN, ERR = ngx.log, ngx.WARN, ngx.ERR

local _M = {}

-- Count one failure of `peer` (an attempt that ended in error/timeout/
-- invalid header, or an http_* status listed in proxy_next_upstream).
function _M.failed(p, peer)
    wrr.failed(peer)
    -- nginx: "If there is only a single server in a group, max_fails,
    -- fail_timeout ... are ignored, and such a server will never be considered
    -- unavailable." Same here.
    if p.single or peer.max_fails == 0 or peer.fail_timeout <= 0 then
        return
    end
    local dict = state.dict
    -- the window starts with the first failure and is not extended
    local n, err = state.count(peer.fkey, peer.fail_timeout)
    if not n then
        log(ERR, 'syncer: upstream "', p.name, '": cannot count a failure of ', peer.name, ": ", err)
        return
    end
    if n >= peer.max_fails then
        local until_ts = ngx.now() + peer.fail_timeout
        local ok, set_err = dict:safe_set(peer.hkey, until_ts, peer.fail_timeout)
        if not ok then
            log(ERR, 'syncer: upstream "', p.name, '": cannot mark ', peer.name, " unhealthy: ", set_err)
        end
        dict:delete(peer.fkey)
        peer.down_until = until_ts
        p.marked = true
        state.bump(p.name)
        log(WARN, 'syncer: upstream "', p.name, '": server ', peer.name, " marked unhealthy for ",
            peer.fail_timeout, "s after ", n, " failure(s)")
    end
end

-- Reload this worker's copy of the marks (after the change counter moved).
function _M.load(p)
    local dict = state.dict
    local marked = false
    for _, peer in pairs(p.by_name) do
        local until_ts = (not p.single and dict:get(peer.hkey)) or 0
        peer.down_until = until_ts
        marked = marked or until_ts > 0
    end
    -- the balancer reads the clock only when some peer carries a mark
    p.marked = marked
end

-- nginx's "quick recovery": when a request finds no usable peer and some are
-- only unhealthy, this request gets 502 but the marks are cleared so that the
-- next request probes the servers again instead of failing for fail_timeout.
function _M.recover(p)
    local dict = state.dict
    local cleared = 0
    for _, peer in pairs(p.by_name) do
        if peer.down_until > 0 then
            dict:delete(peer.hkey)
            peer.down_until = 0
            cleared = cleared + 1
        end
    end
    p.marked = false
    if cleared > 0 then
        state.bump(p.name)
    end
    return cleared
end

return _M
