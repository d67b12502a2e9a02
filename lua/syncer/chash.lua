-- Consistent hashing on a ketama-like ring, weighted by server weight.
--
-- Pure module (no `ngx`): the 32-bit hash function is passed in (the balancer
-- passes ngx.crc32_long, as nginx's own `hash ... consistent` uses CRC32).
-- Each peer owns POINTS_PER_WEIGHT * weight points derived from its own
-- "<ip:port>" only, so a peer's points do not depend on the other peers: adding
-- one server only takes over the keys that fall on its own points (~1/N of
-- them). If the ring would exceed MAX_POINTS, every peer gets proportionally
-- fewer points (then adding a server may move more than 1/N of the keys).

local wrr = require "syncer.wrr"

local floor = math.floor
local sort = table.sort
local char = string.char
local usable = wrr.usable

-- MAX_POINTS bounds the rebuild (done by each worker on its first request
-- after a change): ~10 ms at 16384 points.
local _M = { POINTS_PER_WEIGHT = 160, MAX_POINTS = 16384 }
local mt = { __index = _M }

function _M.new(peers, hash)
    local total = 0
    for _, p in ipairs(peers) do
        total = total + p.weight
    end
    local per = _M.POINTS_PER_WEIGHT
    if total * per > _M.MAX_POINTS then
        per = _M.MAX_POINTS / total
    end

    -- A point is packed into one number, hash * 8192 + peer index (exact in a
    -- double: < 2^45), so the default numeric sort orders the ring, ties broken
    -- by peer order; a Lua comparator would be several times slower.
    local packed = {}
    for index, p in ipairs(peers) do
        local n = floor(p.weight * per + 0.5)
        if n < 1 then
            n = 1
        end
        -- like nginx's `hash ... consistent`: each point is the CRC32 of the
        -- server name followed by the previous point's 4 bytes. Chaining makes
        -- the points scatter; CRC32 of "name#1", "name#2"... would not (it is
        -- linear, so similar names give correlated points and uneven shares).
        local base, prev = p.name .. "\0", 0
        for _ = 1, n do
            prev = hash(base .. char(prev % 256, floor(prev / 256) % 256,
                                     floor(prev / 65536) % 256, floor(prev / 16777216) % 256))
            packed[#packed + 1] = prev * 8192 + index
        end
    end
    sort(packed)

    local hashes, owners = {}, {}
    for i, v in ipairs(packed) do
        local index = v % 8192
        hashes[i] = (v - index) / 8192
        owners[i] = peers[index]
    end
    return setmetatable({ hashes = hashes, owners = owners, n = #hashes, npeers = #peers }, mt)
end

-- First point clockwise from key_hash, then onwards past peers that are not
-- usable (unhealthy, tried by this request, at max_conns). `remap` (a ring of an
-- older server set still in use): name -> current peer; owners not in it, or now
-- down or backup, are skipped.
function _M.pick(self, key_hash, now, tried, inflight, remap)
    local n = self.n
    if n == 0 then
        return nil
    end
    local hashes = self.hashes
    local lo, hi = 1, n
    if key_hash > hashes[n] then
        lo = 1
    else
        while lo < hi do
            local mid = floor((lo + hi) / 2)
            if hashes[mid] < key_hash then
                lo = mid + 1
            else
                hi = mid
            end
        end
    end

    local owners = self.owners
    local seen, nseen = nil, 0
    for step = 0, n - 1 do
        local p = owners[(lo - 1 + step) % n + 1]
        if remap then
            local current = remap[p.name]
            if current and not current.down and not current.backup and usable(current, now, tried, inflight) then
                return current
            end
        elseif usable(p, now, tried, inflight) then
            return p
        end
        -- stop once every peer has been looked at
        seen = seen or {}
        if not seen[p] then
            seen[p] = true
            nseen = nseen + 1
            if nseen >= self.npeers then
                return nil
            end
        end
    end
    return nil
end

return _M
