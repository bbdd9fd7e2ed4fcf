-- Queue an index unless it is pending or done already, in one atomic step.
-- KEYS[1]: the index's status hash (contract.status_key)
-- ARGV[1]: how many commands follow; then each command as its argument
--          count and its arguments: marking the index pending and RQ's own
--          enqueue, as redis-py's pipeline recorded them (store.py)
-- Returns 1 if the commands ran (queued now), 0 if not (pending or done).
-- The commands touch keys not listed in KEYS (RQ's): fine on a single Redis
-- or a replicated one, not on Redis Cluster, which fibstack does not use.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'pending' or status == 'done' then
    return 0
end
local at = 2
for _ = 1, tonumber(ARGV[1]) do
    local count = tonumber(ARGV[at])
    redis.call(unpack(ARGV, at + 1, at + count))
    at = at + count + 1
end
return 1
