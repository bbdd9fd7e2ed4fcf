-- Store one computed value and keep all values within the room Redis has
-- for them, atomically (Redis runs a script as one step).
-- KEYS: the value's key, VALUES_BY_USE, VALUES_SIZES, VALUES_BYTES (contract.py)
-- ARGV: the decimal value, its index, now (Unix seconds), a cap in bytes
--       (VALUES_MAX_BYTES; 0: none), the prefix of value keys
--       (contract.decimal_key without the index), the share of maxmemory
--       kept free of values (percent) and its floor in bytes, and the budget
--       when Redis has no maxmemory
-- Returns the indexes of the values dropped, least recently used first.
--
-- The budget follows the server's real maxmemory, read now: the values may
-- take what is left once everything else in Redis (statuses, the queue, RQ's
-- keys, the events stream: used_memory less the values) and a reserve are
-- counted. Sizes are the memory each value's key takes (MEMORY USAGE), and
-- are recorded, so the total stays right even if a key was deleted some
-- other way. Older values give way first; the value just stored goes too
-- only if it alone is over the budget (its status still says done, and the
-- API computes it again when someone asks for the digits).
local by_use, sizes, bytes = KEYS[2], KEYS[3], KEYS[4]
local index = ARGV[2]
local previous = tonumber(redis.call('HGET', sizes, index) or '0')
redis.call('SET', KEYS[1], ARGV[1])
local size = redis.call('MEMORY', 'USAGE', KEYS[1])
redis.call('HSET', sizes, index, size)
redis.call('ZADD', by_use, ARGV[3], index)
local total = redis.call('INCRBY', bytes, size - previous)

local budget = tonumber(ARGV[4])
local info = redis.call('INFO', 'memory')
local maxmemory = tonumber(string.match(info, 'maxmemory:(%d+)'))
if maxmemory > 0 then
    local used = tonumber(string.match(info, 'used_memory:(%d+)'))
    local reserve = math.max(maxmemory * tonumber(ARGV[6]) / 100, tonumber(ARGV[7]))
    local room = maxmemory - reserve - (used - total)
    if budget == 0 or room < budget then
        budget = room
    end
elseif budget == 0 then
    budget = tonumber(ARGV[8])
end

local function drop(member)
    total = redis.call('DECRBY', bytes, tonumber(redis.call('HGET', sizes, member) or '0'))
    redis.call('DEL', ARGV[5] .. member)
    redis.call('HDEL', sizes, member)
    redis.call('ZREM', by_use, member)
end

local dropped = {}
while total > budget do
    local oldest = redis.call('ZRANGE', by_use, 0, 0)[1]
    if oldest == nil then
        break
    end
    if oldest == index then
        -- Every older value is gone: the new one is the oldest left.
        local others = redis.call('ZRANGE', by_use, 1, 1)[1]
        if others == nil then
            drop(index)
            table.insert(dropped, index)
            break
        end
        oldest = others
    end
    drop(oldest)
    table.insert(dropped, oldest)
end
return dropped
