-- Queue jobs that Postgres has recorded (pending, with these jobs' ids), each
-- only while there is room for new work (admission.lua, in front), all in
-- one atomic step; and the lists-changes entry of the group they came with.
-- The API's submissions (a group's new indexes, submissions.py) and its
-- reconcile pass (indexes whose jobs Redis lost, reconcile.py) call it.
-- KEYS: queue cache_bytes lists_changes cache_by_use cache_sizes
-- ARGV: queue_max memory_percent admit entry_indexes entry_timeline entry_maxlen jobs
--   queue: RQ's queue (a list); cache_bytes, cache_by_use, cache_sizes: the
--     cache's records (contract.CACHE_*); lists_changes: contract.LISTS_CHANGES
--   queue_max, memory_percent: admission's bounds; admit: '1' to apply them,
--     '0' not to (work accepted before: the reconcile pass)
--   entry_indexes, entry_timeline: the group's lists-changes entry (its
--     committed indexes, comma-separated, and contract.TIMELINE_FIELD; ''
--     for none), appended only if no job is refused; entry_maxlen: the
--     stream's approximate length bound
--   jobs: how many jobs follow in the rest of ARGV, each as: how many
--     cached statuses to drop (indexes queued again after they failed, whose
--     "failed" must go) and those keys; then the commands that queue it
--     (admission.lua's run_recorded: RQ's own enqueue, and a pending event
--     per index)
-- Returns, for each job, 1 if queued, or why it is refused ('queue' or
-- 'memory': nothing is written for it but a refusal's entry in REFUSALS);
-- and RQ's queue's length after.
-- The commands touch keys not listed in KEYS (RQ's): fine on a single Redis
-- or a replicated one, not on Redis Cluster, which fibstack does not use.
local queue, cache_bytes, lists_changes, by_use, sizes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local queue_max, memory_percent, admit = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'

local function uncache(key)
    local size = tonumber(redis.call('HGET', sizes, key) or '0')
    if size > 0 then
        redis.call('DECRBY', cache_bytes, size)
        redis.call('HDEL', sizes, key)
    end
    redis.call('ZREM', by_use, key)
    redis.call('DEL', key)
end

local answers = {}
local refused = false
local at = 8
for _ = 1, tonumber(ARGV[7]) do
    local drops = tonumber(ARGV[at])
    local first_drop = at + 1
    at = at + 1 + drops
    local answer = 1
    if admit then
        answer = over_capacity(queue, cache_bytes, queue_max, memory_percent) or 1
    end
    if answer == 1 then
        for d = first_drop, first_drop + drops - 1 do
            uncache(ARGV[d])
        end
        at = run_recorded(at)
    else
        refused = true
        at = skip_recorded(at)
    end
    answers[#answers + 1] = answer
end
if ARGV[4] ~= '' and not refused then
    if ARGV[5] ~= '' then
        redis.call('XADD', lists_changes, 'MAXLEN', '~', ARGV[6], '*', 'indexes', ARGV[4], TIMELINE_FIELD, ARGV[5])
    else
        redis.call('XADD', lists_changes, 'MAXLEN', '~', ARGV[6], '*', 'indexes', ARGV[4])
    end
end
return {answers, redis.call('LLEN', queue)}
