-- Queue each of a group of indexes unless it is pending or done already, all
-- in one atomic step, each new one only while there is room for new work
-- (admission.lua, in front). A group is what concurrent submissions to one
-- API process share (submissions.py); reads and the sweeper queue groups of one.
-- While the queue is deep, the group's small new indexes go as one batch job
-- (fibworker.jobs.compute_batch), each claimed by the batch's id here: the
-- workers are busy anyway, and one job where there were many spares RQ's
-- bookkeeping per index. At a shallow queue each index is a job of its own.
-- First, the lists-changes entry the previous group of this API process owes
-- (committed, not yet announced: submissions.py), if any: one round trip
-- fewer per group while submissions keep coming.
-- KEYS[1]: RQ's queue (a list), KEYS[2]: contract.VALUES_BYTES,
-- KEYS[3]: contract.LISTS_CHANGES,
-- KEYS[4...]: each index's status hash (contract.status_key), in order
-- ARGV[1]: the queue's bound, ARGV[2]: the memory bound (percent of maxmemory),
-- ARGV[3]: '1' to apply both, '0' not to (work accepted before: recovery)
-- ARGV[4]: batch when the queue holds at least this many jobs ('0': never)
-- ARGV[5]: the owed entry's indexes, comma-separated ('' if none),
-- ARGV[6]: its timeline stamps (contract.TIMELINE_FIELD; '' if none),
-- ARGV[7]: the stream's approximate length bound
-- ARGV[8...]: for each index in turn: 'unprepared' alone if it came without
--          its commands (thought settled, store.py); else '1' if it may go in
--          the batch, or '0'; the commands that queue it alone (admission.lua's
--          run_recorded: marking it pending and RQ's own enqueue); if it may
--          go in the batch, the commands that mark it pending for the batch.
--          Last, if any may: RQ's own enqueue of the batch job.
-- Returns two arrays: for each index, 1 if queued now, 0 if not needed
-- (pending or done, an index twice in the group included), why it is refused
-- ('queue' or 'memory'), or 'unprepared' if it needs queueing but came
-- without its commands (for the last three, nothing is written for it but a
-- refusal's entry in REFUSALS, admission.lua); and
-- each index's status hash as the script leaves it (HGETALL's flat array).
-- Each index sees the queue as the ones before it left it, exactly as if
-- they had come one by one.
-- The commands touch keys not listed in KEYS (RQ's): fine on a single Redis
-- or a replicated one, not on Redis Cluster, which fibstack does not use.
if ARGV[5] ~= '' and ARGV[6] ~= '' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'indexes', ARGV[5], TIMELINE_FIELD, ARGV[6])
elseif ARGV[5] ~= '' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'indexes', ARGV[5])
end
local batch_depth = tonumber(ARGV[4])
local batching = batch_depth > 0 and redis.call('LLEN', KEYS[1]) >= batch_depth
local batched = false
local answers = {}
local statuses = {}
local at = 8
for i = 4, #KEYS do
    local unprepared = ARGV[at] == 'unprepared'
    local may_batch = ARGV[at] == '1'
    at = at + 1
    local answer = 1
    local status = redis.call('HGET', KEYS[i], 'status')
    if status == 'pending' or status == 'done' then
        answer = 0
    elseif unprepared then
        answer = 'unprepared'
    elseif ARGV[3] == '1' then
        answer = over_capacity(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])) or 1
    end
    if not unprepared then
        if answer == 1 and not (batching and may_batch) then
            at = run_recorded(at)
        else
            at = skip_recorded(at)
        end
        if may_batch then
            if answer == 1 and batching then
                at = run_recorded(at)
                batched = true
            else
                at = skip_recorded(at)
            end
        end
    end
    answers[#answers + 1] = answer
end
if batched then
    run_recorded(at)
end
for i = 4, #KEYS do
    statuses[#statuses + 1] = redis.call('HGETALL', KEYS[i])
end
return {answers, statuses}
