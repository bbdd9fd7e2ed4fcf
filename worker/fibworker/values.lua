-- Store one computed value and keep all values within their memory budget,
-- atomically (Redis runs a script as one step).
-- KEYS: the value's key, VALUES_BY_USE, VALUES_SIZES, VALUES_BYTES (contract.py)
-- ARGV: the decimal value, its index, now (Unix seconds), the budget in
--       bytes, the prefix of value keys (contract.decimal_key without the index)
-- Returns the indexes of the values dropped, least recently used first; the
-- value just stored is never one of them. Sizes are recorded, so the total
-- stays right even if a value's key was deleted some other way.
local by_use, sizes, bytes = KEYS[2], KEYS[3], KEYS[4]
local index = ARGV[2]
local previous = tonumber(redis.call('HGET', sizes, index) or '0')
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', sizes, index, string.len(ARGV[1]))
redis.call('ZADD', by_use, ARGV[3], index)
local total = redis.call('INCRBY', bytes, string.len(ARGV[1]) - previous)
local budget = tonumber(ARGV[4])
local dropped = {}
while total > budget do
    local oldest = redis.call('ZRANGE', by_use, 0, 0)[1]
    if oldest == nil or oldest == index then
        break
    end
    total = redis.call('DECRBY', bytes, tonumber(redis.call('HGET', sizes, oldest) or '0'))
    redis.call('DEL', ARGV[5] .. oldest)
    redis.call('HDEL', sizes, oldest)
    redis.call('ZREM', by_use, oldest)
    table.insert(dropped, oldest)
end
return dropped
