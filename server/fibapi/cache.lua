-- Put entries into fibstack's cache (statuses and values: docs/state.md) and
-- keep the whole cache within the room Redis has for it, atomically.
-- The worker puts what it has just recorded in Postgres; the API puts back a
-- status it had to read from Postgres. Each side carries a copy of this file
-- (tests/test_contract.py keeps them identical); contract.cache_put builds
-- the arguments.
-- KEYS[1]: contract.CACHE_BY_USE, KEYS[2]: contract.CACHE_SIZES,
-- KEYS[3]: contract.CACHE_BYTES, KEYS[4...]: the entries' keys, in order
-- ARGV[1]: now (Unix seconds), ARGV[2]: a cap in bytes (CACHE_MAX_BYTES; 0:
-- none), ARGV[3]: the share of maxmemory kept free of the cache (percent),
-- ARGV[4]: its floor in bytes, ARGV[5]: the budget when Redis has no
-- maxmemory, ARGV[6]: what recording one entry here takes (bytes)
-- ARGV[7...]: for each entry: its mode, how many arguments follow, and those:
--   'string' value: the key is set to the value
--   'hash' field value ...: the key becomes a hash of these fields
--   'hash-if-absent' field value ...: the same, unless the key is there (a
--     read put back must never replace what the worker wrote meanwhile)
-- Returns the keys dropped, least recently used first.
--
-- The budget follows the server's real maxmemory, read now: the cache may
-- take what is left once everything else in Redis (the queue, RQ's keys,
-- the streams: used_memory less the cache) and a reserve are counted. Sizes
-- are the memory each key takes (MEMORY USAGE) and are recorded, so the
-- total stays right however a key is later removed. The entries just put
-- give way last: they are the most recently used.
local by_use, sizes, bytes = KEYS[1], KEYS[2], KEYS[3]
local now, overhead = ARGV[1], tonumber(ARGV[6])
local total = tonumber(redis.call('GET', bytes) or '0')

local function forget(key)
    local size = tonumber(redis.call('HGET', sizes, key) or '0')
    if size > 0 then
        total = redis.call('DECRBY', bytes, size)
        redis.call('HDEL', sizes, key)
    end
    redis.call('ZREM', by_use, key)
end

local at = 7
for i = 4, #KEYS do
    local key, mode, count = KEYS[i], ARGV[at], tonumber(ARGV[at + 1])
    local first, last = at + 2, at + 1 + count
    at = last + 1
    if mode == 'hash-if-absent' and redis.call('EXISTS', key) == 1 then
        redis.call('ZADD', by_use, 'XX', now, key)
    else
        forget(key)
        redis.call('DEL', key)
        if mode == 'string' then
            redis.call('SET', key, ARGV[first])
        else
            redis.call('HSET', key, unpack(ARGV, first, last))
        end
        local size = redis.call('MEMORY', 'USAGE', key) + overhead
        redis.call('HSET', sizes, key, size)
        redis.call('ZADD', by_use, now, key)
        total = redis.call('INCRBY', bytes, size)
    end
end

local budget = tonumber(ARGV[2])
local info = redis.call('INFO', 'memory')
local maxmemory = tonumber(string.match(info, 'maxmemory:(%d+)'))
if maxmemory > 0 then
    local used = tonumber(string.match(info, 'used_memory:(%d+)'))
    local reserve = math.max(maxmemory * tonumber(ARGV[3]) / 100, tonumber(ARGV[4]))
    local room = maxmemory - reserve - (used - total)
    if budget == 0 or room < budget then
        budget = room
    end
elseif budget == 0 then
    budget = tonumber(ARGV[5])
end

local dropped = {}
while total > budget do
    local oldest = redis.call('ZPOPMIN', by_use)[1]
    if oldest == nil then
        -- Nothing left to drop, yet the total says more: records lost some
        -- other way (a partial loss of Redis). Start counting afresh.
        redis.call('DEL', sizes)
        redis.call('SET', bytes, 0)
        break
    end
    forget(oldest)
    redis.call('DEL', oldest)
    dropped[#dropped + 1] = oldest
end
return dropped
