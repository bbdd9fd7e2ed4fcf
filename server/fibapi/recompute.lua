-- Queue a dropped value's recomputation (its status stays "done"): once per
-- index per window, at most a given number of them per window overall, and
-- only while there is room for new work (admission.lua, in front).
-- KEYS[1]: contract.recompute_key(index), KEYS[2]: contract.RECOMPUTES,
-- KEYS[3]: RQ's queue, KEYS[4]: contract.VALUES_BYTES
-- ARGV[1]: now (Unix seconds), ARGV[2]: the window (seconds), ARGV[3]: the
-- overall bound per window, ARGV[4]: the queue's bound, ARGV[5]: the memory
-- bound (percent), ARGV[6]: the index, ARGV[7...]: RQ's enqueue (run_recorded)
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
