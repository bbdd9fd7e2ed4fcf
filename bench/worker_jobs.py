"""`make bench` sections: the worker's throughput and Redis round trips, and recovery.

The worker runs as deployed (`python -m fibworker`, with --burst so it exits
when the queue is empty). Its Redis round trips are counted in the process
(each send of a command or a pipeline is one); its commands from Redis's own
INFO commandstats.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg
from fibapi import create_app, reconcile
from fibapi.config import Settings
from fibapi.db import Database
from fibapi.store import Store
from fibapi.submissions import Submission, get_submissions
from fibworker import contract
from fibworker.jobqueue import fib_queue
from processes import start_worker, wait_until
from redis import Redis
from rq import Callback

REPO = Path(__file__).resolve().parents[1]
# Submissions per group write, about what 50 connections give (bench posts).
SUBMISSION_GROUP = 10

# The worker, counting its round trips to Redis and printing them at exit.
COUNTING_WORKER = """
import atexit, sys
from redis.connection import AbstractConnection
sent = [0]
original = AbstractConnection.send_packed_command
def counting(self, command, check_health=True):
    sent[0] += 1
    return original(self, command, check_health)
AbstractConnection.send_packed_command = counting
atexit.register(lambda: print(f"round-trips={sent[0]}", file=sys.stderr))
from fibworker.__main__ import main
sys.exit(main(["--burst"]))
"""


def pg(env: dict[str, str]) -> psycopg.Connection:
    """A connection as the API's role, for the bench's own reads and writes."""
    return psycopg.connect(
        host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], password=env["PGPASSWORD"],
        dbname=env["PGDATABASE"], autocommit=True,
    )  # fmt: skip


def pending_count(env: dict[str, str]) -> int:
    with pg(env) as conn:
        row = conn.execute("SELECT count(*) FROM indexes WHERE status = 'pending'").fetchone()
    return int(row[0]) if row else 0


def done_count(env: dict[str, str], indexes: range) -> int:
    with pg(env) as conn:
        row = conn.execute(
            "SELECT count(*) FROM indexes WHERE status = 'done' AND number BETWEEN %s AND %s",
            (indexes.start, indexes.stop - 1),
        ).fetchone()
    return int(row[0]) if row else 0


def fresh_stores(env: dict[str, str]) -> None:
    """Empty Redis and no indexes in Postgres."""
    Redis(port=int(env["REDIS_PORT"])).flushall()
    with pg(env) as conn:
        conn.execute("TRUNCATE indexes, submissions")


def commands(redis: Redis) -> int:
    return sum(stat["calls"] for stat in redis.info("commandstats").values())


def run_workers(env: dict[str, str], processes: int = 1) -> tuple[float, int]:
    """Run `processes` burst workers until the queue is empty: (seconds, round trips of them all)."""
    # No metrics server: several workers on one machine would want the same port.
    child_env = os.environ | env | {"PYTHONPATH": str(REPO / "worker"), "LOG_LEVEL": "WARNING", "METRICS_PORT": "0"}
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTING_WORKER],
            env=child_env | {"WORKER_HEARTBEAT_FILE": f"/tmp/fibstack-bench-heartbeat-{n}"},  # noqa: S108
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    outputs = [worker.communicate(timeout=600)[1] for worker in workers]
    elapsed = time.perf_counter() - started
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"a worker failed:\n{output[-2000:]}"
    trips = sum(int(line.split("=")[1]) for out in outputs for line in out.splitlines() if "round-trips=" in line)
    return elapsed, trips


def enqueue_as_before(redis: Redis, index: int) -> None:
    """A plain RQ job, as the API queued one before its round-trip work (result_ttl=0: RQ deletes it at once),
    for an index recorded pending in Postgres (fresh_stores, then bench_small_jobs records them)."""
    fib_queue(redis).enqueue_call(
        contract.JOB_FUNCTION,
        args=(index,),
        job_id=contract.new_job_id(index),
        result_ttl=0,
        on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
    )


def bench_small_jobs(env: dict[str, str], jobs: int = 2000) -> None:
    print(f"## Worker: {jobs:,} small jobs (F(1000)..), one process\n")
    print("| indexes as queued | indexes/s | ms/index | Redis commands/index | round trips/index |")
    print("|:---|---:|---:|---:|---:|")
    redis = Redis(port=int(env["REDIS_PORT"]))
    app = create_app(Settings.from_env(env))

    def in_groups(indexes: range) -> None:
        # The API's own submission path, SUBMISSION_GROUP at a time (as its group commit gathers them).
        submissions = get_submissions()
        for start in range(0, len(indexes), SUBMISSION_GROUP):
            group = indexes[start : start + SUBMISSION_GROUP]
            submissions._write([Submission(index) for index in group])

    def one_by_one(indexes: range, enqueue: Callable[[int], object]) -> None:
        for index in indexes:
            enqueue(index)

    def plain_jobs(indexes: range) -> None:
        with pg(env) as conn:
            conn.execute("INSERT INTO indexes (number) SELECT unnest(%s::integer[])", (list(indexes),))
        one_by_one(indexes, partial(enqueue_as_before, redis))

    for label, enqueue in (
        ("plain RQ jobs (result_ttl=0), a job each", plain_jobs),
        (
            "one at a time (a lone POST each), a job each",
            partial(one_by_one, enqueue=lambda i: get_submissions().submit(i)),
        ),
        (f"in groups of {SUBMISSION_GROUP} (group commit), batch jobs at depth", in_groups),
    ):
        fresh_stores(env)
        with app.app_context():
            enqueue(range(1000, 1000 + jobs))
        before = commands(redis)
        elapsed, trips = run_workers(env)
        worker_commands = commands(redis) - before
        done = done_count(env, range(1000, 1000 + jobs))
        assert done == jobs, f"{label}: {done} of {jobs} done"
        print(
            f"| {label} | {jobs / elapsed:,.0f} | {elapsed / jobs * 1000:.2f} "
            f"| {worker_commands / jobs:.1f} | {trips / jobs:.1f} |"
        )
    print("\n(Includes each worker's start-up, about 0.3 s.)")
    print(f"Groups of {SUBMISSION_GROUP}: about what each write carries at 50 connections (bench posts).")
    print("Goals: >= 1,000 indexes/s per process with a deep queue.\n")
    app.extensions["fibstack.db"].close()


def bench_large_jobs(env: dict[str, str], work: Path, jobs: int = 20, n: int = 9_000_000, rounds: int = 3) -> None:
    print(f"## Worker: {jobs} large jobs (F({n:,})..), one and two processes, timed after start-up\n")
    print(f"| worker processes | seconds, best of {rounds} (each) | speed-up |")
    print("|---:|---:|---:|")
    # Alternated, so that the machine's drift (a shared host) touches both alike.
    timings: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for processes in timings:
            timings[processes].append(_large_jobs_seconds(env, work, processes, jobs, n))
    single = min(timings[1])
    for processes, seconds in timings.items():
        listed = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {processes} | {min(seconds):.2f} ({listed}) | {single / min(seconds):.2f}x |")
    print(f"\nGoal: two processes at least 1.8x one ({os.cpu_count()} CPUs here, shared with Redis).\n")


def _large_jobs_seconds(env: dict[str, str], work: Path, processes: int, jobs: int, n: int) -> float:
    """From queueing `jobs` large indexes to the last one done, with `processes` workers started and waiting."""
    redis = Redis(port=int(env["REDIS_PORT"]))
    app = create_app(Settings.from_env(env))
    fresh_stores(env)
    workers = [start_worker(env, work / f"worker-large-{processes}-{i}.log") for i in range(processes)]
    try:
        # Started: each has registered with RQ and is waiting for work.
        wait_until(lambda: redis.scard("rq:workers") == processes, timeout=60)
        started = time.perf_counter()
        with app.app_context():
            for index in range(n, n + jobs):
                get_submissions().submit(index)
        wait_until(lambda: pending_count(env) == 0, timeout=600, interval=0.02)
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        app.extensions["fibstack.db"].close()
    done = done_count(env, range(n, n + jobs))
    assert done == jobs, f"{processes} workers: {done} of {jobs} done"
    return elapsed


def bench_recovery(env: dict[str, str], work: Path, count: int = 100_000) -> None:
    print(f"## Recovery: Redis lost, {count:,} recorded indexes (0..{count - 1:,}) computed again, one worker\n")
    settings = Settings.from_env(env)
    db, store = Database(settings), Store(settings)
    db.open()
    fresh_stores(env)
    with db.connection() as conn:
        # Recorded pending, their jobs lost with Redis (a flush, or an upgrade from an older fibstack).
        conn.execute("INSERT INTO indexes (number) SELECT generate_series(0, %s)", (count - 1,))
    worker = start_worker(env, work / "worker-recovery.log")
    try:
        started = time.perf_counter()
        done_pass = reconcile.reconcile(db, store, grace_seconds=0)
        assert done_pass is not None
        queued, queued_in = done_pass.healed, time.perf_counter() - started
        wait_until(lambda: pending_count(env) == 0, timeout=600, interval=0.2)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        db.close()
    done = done_count(env, range(count))
    print("| indexes queued | queued in (s) | all computed in (s) | done | goal |")
    print("|---:|---:|---:|---:|:---|")
    verdict = "met" if elapsed <= 60 else "MISSED"
    print(f"| {queued:,} | {queued_in:.1f} | {elapsed:.1f} | {done:,} | {verdict} (<= 60 s) |")
    print()
