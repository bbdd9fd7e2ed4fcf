-- Shared by queue.lua and recompute.lua (scripts.py puts it in front of
-- each): whether fibstack takes on new work now, and running the commands
-- that queue it.

-- nil when there is room for new work; else why not: 'queue' while RQ's
-- queue holds queue_max jobs or more, 'memory' while Redis's memory other
-- than the cache (which gives way to new entries, cache.lua) is over
-- memory_percent of its maxmemory: that memory is the work in flight (the
-- queue, RQ's keys) and the capped streams, none of which grows with the
-- number of indexes ever seen. A Redis without maxmemory: the queue's
-- bound only. The memory is read once per run of the script (INFO builds a
-- long reply to parse): a group's new jobs, a few hundred bytes each, may
-- take it that much past the bound before the next group is refused.
-- Each refusal is counted in REFUSALS (contract.REFUSALS_STREAM, set by
-- scripts.py above this file) for GET /api/system: only when refusing.
local memory_over = nil
local function refuse(reason)
    redis.call('XADD', REFUSALS, 'MAXLEN', '~', REFUSALS_MAXLEN, '*', 'reason', reason)
    return reason
end
local function over_capacity(queue_key, cache_bytes_key, queue_max, memory_percent)
    if redis.call('LLEN', queue_key) >= queue_max then
        return refuse('queue')
    end
    if memory_over == nil then
        memory_over = false
        local info = redis.call('INFO', 'memory')
        local maxmemory = tonumber(string.match(info, 'maxmemory:(%d+)'))
        if maxmemory and maxmemory > 0 then
            local used = tonumber(string.match(info, 'used_memory:(%d+)'))
            local cached = tonumber(redis.call('GET', cache_bytes_key) or '0')
            memory_over = used - cached > maxmemory * memory_percent / 100
        end
    end
    if memory_over then
        return refuse('memory')
    end
    return nil
end

-- Run the commands recorded from ARGV[at] on: how many there are, then each
-- as its argument count and its arguments (RQ's own enqueue and our marks,
-- as redis-py's pipeline recorded them, store.py). Returns where the next
-- recorded block starts.
local function run_recorded(at)
    local commands = tonumber(ARGV[at])
    at = at + 1
    for _ = 1, commands do
        local count = tonumber(ARGV[at])
        redis.call(unpack(ARGV, at + 1, at + count))
        at = at + count + 1
    end
    return at
end

-- Where the recorded block after the one at ARGV[at] starts, running nothing.
local function skip_recorded(at)
    local commands = tonumber(ARGV[at])
    at = at + 1
    for _ = 1, commands do
        at = at + tonumber(ARGV[at]) + 1
    end
    return at
end
