-- Queue an index unless it is pending or done already, in one atomic step,
-- and only while there is room for new work (admission.lua, in front).
-- KEYS[1]: the index's status hash (contract.status_key)
-- KEYS[2]: RQ's queue (a list), KEYS[3]: contract.VALUES_BYTES
-- ARGV[1]: the queue's bound, ARGV[2]: the memory bound (percent of maxmemory),
-- ARGV[3]: '1' to apply both, '0' not to (work accepted before: recovery)
-- ARGV[4...]: the commands to run (admission.lua's run_recorded): marking
--          the index pending and RQ's own enqueue
-- Returns 1 if queued now, 0 if not needed (pending or done), or why it is
-- refused ('queue' or 'memory'): then nothing is written.
-- The commands touch keys not listed in KEYS (RQ's): fine on a single Redis
-- or a replicated one, not on Redis Cluster, which fibstack does not use.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'pending' or status == 'done' then
    return 0
end
if ARGV[3] == '1' then
    local refused = over_capacity(KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]))
    if refused then
        return refused
    end
end
run_recorded(4)
return 1
