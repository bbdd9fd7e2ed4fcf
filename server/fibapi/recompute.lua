-- Queue a dropped value's recomputation (its status stays "done"): once per
-- index per window, at most a given number of them per window overall, and
-- only while there is room for new work (admission.lua, in front).
-- KEYS: flight recomputes queue cache_bytes
-- ARGV: now window recomputes_max queue_max memory_percent index
--   flight: contract.recompute_key(index); recomputes: contract.RECOMPUTES;
--   queue: RQ's queue; cache_bytes: contract.CACHE_BYTES
--   now: Unix seconds; window: seconds; recomputes_max: the bound per window
--   overall; queue_max, memory_percent: admission's bounds; index: the index
--   The rest of ARGV: RQ's enqueue (run_recorded)
-- Returns 1 if queued now, 0 if it is queued already, or why it is refused
-- ('recomputes', 'queue' or 'memory').
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
    return 'recomputes'
end
local refused = over_capacity(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]))
if refused then
    return refused
end
redis.call('SET', KEYS[1], '1', 'EX', window)
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('EXPIRE', KEYS[2], window)
run_recorded(7)
return 1
