-- Smooth weighted round robin, as nginx's ngx_http_upstream_get_peer does it.
--
-- Pure module (no `ngx`). State is per worker, like nginx's own round robin
-- without a shared zone. A peer is a table with at least:
--   weight        configured weight (>= 1)
--   max_fails     for the effective-weight penalty on failure (0 = none)
--   max_conns     0 = unlimited, otherwise `limit` is this worker's share
--   limit         in-flight requests this worker may have on the peer
--   ckey          key into the caller's in-flight table
--   down_until    timestamp until which the peer is unhealthy (0 = healthy)
-- The picker adds `current` and `effective` (nginx's current_weight and
-- effective_weight).

local _M = {}
local mt = { __index = _M }

function _M.new(peers)
    for _, p in ipairs(peers) do
        p.current = 0
        p.effective = p.weight
        p.down_until = p.down_until or 0
        p.limit = p.limit or 0
        p.max_conns = p.max_conns or 0
    end
    return setmetatable({ peers = peers, n = #peers }, mt)
end

-- Usable for this attempt: healthy at `now`, not already tried by this request,
-- below its connection limit.
local function usable(p, now, tried, inflight)
    if p.down_until > now then
        return false
    end
    if tried and tried[p] then
        return false
    end
    if p.max_conns > 0 and inflight and (inflight[p.ckey] or 0) >= p.limit then
        return false
    end
    return true
end
_M.usable = usable

-- Returns the chosen peer, or nil when no peer is usable. Ties go to the
-- earlier peer, as in nginx (strict `>`).
function _M.pick(self, now, tried, inflight)
    local best, total = nil, 0
    local peers = self.peers
    for i = 1, self.n do
        local p = peers[i]
        if usable(p, now, tried, inflight) then
            local e = p.effective
            p.current = p.current + e
            total = total + e
            -- a penalised peer earns its weight back one step per pick
            if e < p.weight then
                p.effective = e + 1
            end
            if best == nil or p.current > best.current then
                best = p
            end
        end
    end
    if best then
        best.current = best.current - total
    end
    return best
end

-- nginx lowers a failed peer's effective weight by weight / max_fails so that
-- traffic shifts away before the peer is taken out entirely.
function _M.failed(p)
    if p.max_fails and p.max_fails > 0 then
        local e = p.effective - math.floor(p.weight / p.max_fails)
        p.effective = e > 0 and e or 0
    end
end

return _M
