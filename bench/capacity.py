"""`make bench capacity` (bench.py capacity): what a growing history costs.

Submits TOTAL distinct indexes (0 .. TOTAL-1, in a scrambled order; most of
them over 1,000 digits, so the values cache fills and gives way) straight
to the API (gunicorn, 2 processes) from many connections, with Redis at the
shipped 256 MB and both servers durable, two workers computing. At 0, a
quarter, a half and all of TOTAL stored, it prints Redis's memory (all of
it, and the cache's part), Postgres's table sizes, and the POST rate and
p99 of new indexes (5 s of wrk, of indexes past TOTAL, so new at every
checkpoint; the workers suspended so they do not take the cores) and of
repeats. Every index must be accepted (a refusal for
memory fails the run; one for a deep queue is retried after it drains, as a
client honouring Retry-After would) and end done.

Not in `make bench`: it computes a million indexes, about two hours on 2 cores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from fibworker import contract
from load import wrk
from processes import API, start_worker, wait_until
from redis import Redis
from rq.registry import StartedJobRegistry
from rq.suspension import resume, suspend

# BENCH_CAPACITY_TOTAL=20000 for a quick try of the bench itself.
TOTAL = int(os.environ.get("BENCH_CAPACITY_TOTAL", "1000000"))
CONNECTIONS = 50
MEASURE_SECONDS = 5
# A multiplier prime to TOTAL: k -> (k * STRIDE) % TOTAL visits every index once, scrambled.
STRIDE = 7_919

# wrk's Lua: each request the next k of this run (threads interleaved), as the index (k * stride) % total.
DISTINCT_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local id = 0
local threads = {threads}
local base = {base}
local threadcount = 0
setup = function(thread)
  thread:set("id", threadcount)
  threadcount = threadcount + 1
end
request = function()
  local k = base + id + counter * threads
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{{"index": ' .. (k * {stride}) % {total} .. '}}')
end
"""

# Repeats of a few known small indexes (each a row in submissions, no job).
REPEAT_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{{"index": ' .. (counter % 20) .. '}}')
end
"""


def pg(env: dict[str, str]) -> psycopg.Connection:
    return psycopg.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"],
        dbname=env["PGDATABASE"], autocommit=True,
    )  # fmt: skip


def one(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def bench_capacity(env: dict[str, str], work: Path, total: int = TOTAL) -> None:
    checkpoints = (0, total // 4, total // 2, total)
    print(f"## Capacity: {total:,} distinct indexes, Redis at 256 MB (both servers durable), 2 API processes\n")
    redis = Redis(port=int(env["REDIS_PORT"]))
    redis.flushall()
    with pg(env) as conn:
        conn.execute("TRUNCATE indexes, submissions")
    # As shipped: the reconcile pass every 10 s (the other sections turn it off).
    env = {name: value for name, value in env.items() if not name.startswith("RECONCILE_")}
    api = API(env | {"LOG_LEVEL": "WARNING"}, work / "api-capacity.log", workers=2)
    workers = [start_worker(env, work / f"worker-capacity-{n}.log") for n in range(2)]
    cursor = 0  # the next k to submit
    measured = 0  # indexes past `total` the checkpoints sent: new ones every time, whatever is stored
    rows: list[dict[str, float]] = []
    started = time.monotonic()
    print_header()
    try:
        with pg(env) as conn:
            for target in checkpoints:
                cursor = fill(api, conn, redis, cursor, target, total)
                wait_until(lambda: redis.llen(f"rq:queue:{contract.QUEUE_NAME}") == 0, timeout=7200, interval=1)
                rows.append(measure(api, conn, redis, first=total + measured))
                print_row(rows[-1])  # as it comes: the run is long
                measured += int(rows[-1]["distinct_sent"])
            left = total - one(conn, "SELECT count(*) FROM indexes WHERE number < %s", (total,))
            assert left == 0, f"{left:,} indexes never recorded"
            wait_until(lambda: one(conn, "SELECT count(*) FROM indexes WHERE status <> 'done'") == 0,
                       timeout=4 * 3600, interval=5)  # fmt: skip
            refusals: Any = redis.xrange(contract.REFUSALS_STREAM)
            refused_memory = sum(1 for _, fields in refusals if fields[b"reason"] == b"memory")
        minutes = (time.monotonic() - started) / 60
        healed = int(redis.hget(contract.RECONCILE_REPORT, "healed_total") or 0)
        print(f"\nAll {total:,} accepted and done in {minutes:.0f} min; refused for memory: {refused_memory}; "
              f"queued again by the reconcile pass: {healed} (Redis lost nothing here: 0 expected).")  # fmt: skip
        first, last = rows[0], rows[-1]
        flat = max(r["redis_mb"] for r in rows[1:]) - min(r["redis_mb"] for r in rows[1:])
        print(f"Redis used memory once the cache was full: within {flat:.1f} MB from {checkpoints[1]:,} to {total:,}.")
        ratio = last["new_per_s"] / first["new_per_s"]
        verdict = "met" if ratio >= 0.9 else "MISSED"
        print(f"POST rate of new indexes at {total:,} stored: {ratio:.2f}x the rate at 0 (goal >= 0.9x): {verdict}.\n")
    finally:
        resume(redis)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        api.stop()


def fill(api: API, conn: psycopg.Connection, redis: Redis, cursor: int, target: int, total: int) -> int:
    """Submit distinct indexes (wrk, CONNECTIONS at once) until `target` are recorded; the cursor after."""
    # Of 0 .. total-1 only: the checkpoints' own new indexes lie past them.
    while (stored := one(conn, "SELECT count(*) FROM indexes WHERE number < %s", (total,))) < target:
        if cursor >= total:
            # Every k tried: now those refused or cut off, as many as the target still wants.
            query = """
                SELECT n FROM generate_series(0, %s) AS n EXCEPT SELECT number FROM indexes ORDER BY n LIMIT %s
            """
            resubmit(api, [n for (n,) in conn.execute(query, (total - 1, target - stored))])
            continue
        want = target - stored
        # About 30 s at a time, then the count again; a deep queue is let drain, as Retry-After asks.
        result = wrk(f"{api.url}/api/values", CONNECTIONS, min(30, max(2, want // 800)),
                     script=DISTINCT_SCRIPT.format(threads=2, base=cursor, stride=STRIDE, total=total))  # fmt: skip
        cursor += result.requests + CONNECTIONS  # those cut off at the end may or may not have been recorded
        if result.not_2xx:
            wait_until(lambda: redis.llen(f"rq:queue:{contract.QUEUE_NAME}") < 1000, timeout=7200, interval=1)
    return cursor


def resubmit(api: API, indexes: list[int]) -> None:
    session = requests.Session()
    for index in indexes:
        while True:
            response = session.post(f"{api.url}/api/values", json={"index": index}, timeout=30)
            if response.status_code == 202:
                break
            assert response.json()["code"] == "over_capacity", response.text
            time.sleep(float(response.headers.get("Retry-After", "1")))


def measure(api: API, conn: psycopg.Connection, redis: Redis, first: int) -> dict[str, float]:
    """The checkpoint's figures; its new POSTs are of the indexes from `first` on, in order."""
    stored = one(conn, "SELECT count(*) FROM indexes")
    memory = redis.info("memory")
    cache = int(redis.get(contract.CACHE_BYTES) or 0)
    tables = {
        name: one(conn, "SELECT pg_total_relation_size(%s)", (name,)) / 2**20 for name in ("indexes", "submissions")
    }
    # The cores to the API, Postgres and Redis while measuring: the workers suspended (RQ's own
    # switch: they end their job and idle, alive), not stopped, which would look like dying.
    suspend(redis)
    try:
        wait_until(lambda: StartedJobRegistry(contract.QUEUE_NAME, connection=redis).count == 0, timeout=600)
        new = wrk(f"{api.url}/api/values", CONNECTIONS, MEASURE_SECONDS,
                  script=DISTINCT_SCRIPT.format(threads=2, base=first, stride=1, total=2**31))  # fmt: skip
        repeats = wrk(f"{api.url}/api/values", CONNECTIONS, MEASURE_SECONDS, script=REPEAT_SCRIPT.format())
    finally:
        resume(redis)
    return {
        "stored": stored,
        "redis_mb": memory["used_memory"] / 2**20,
        "cache_mb": cache / 2**20,
        "indexes_mb": tables["indexes"],
        "submissions_mb": tables["submissions"],
        "new_per_s": (new.requests - new.not_2xx) / new.seconds,
        "new_p99": new.p99_ms,
        "new_refused": new.not_2xx,
        "repeat_per_s": (repeats.requests - repeats.not_2xx) / repeats.seconds,
        "repeat_p99": repeats.p99_ms,
        "distinct_sent": new.requests + CONNECTIONS,
    }


def print_header() -> None:
    print("| indexes stored | Redis used (MB) | of it the cache (MB) | Postgres indexes (MB) | submissions (MB) "
          "| new POST/s | p99 (ms) | refused | repeat POST/s | p99 (ms) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)


def print_row(r: dict[str, float]) -> None:
    print(
        f"| {r['stored']:,.0f} | {r['redis_mb']:.1f} | {r['cache_mb']:.1f} | {r['indexes_mb']:.1f} "
        f"| {r['submissions_mb']:.1f} | {r['new_per_s']:,.0f} | {r['new_p99']:.1f} | {r['new_refused']:.0f} "
        f"| {r['repeat_per_s']:,.0f} | {r['repeat_p99']:.1f} |",
        flush=True,
    )
