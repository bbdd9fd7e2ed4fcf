"""`make bench`: how fast fibstack is, each figure beside its baseline from the same run.

1. Compute: the worker's F(n) + decimal conversion against gmpy2.fib(n) + digits().
2. Worker throughput on small jobs: RQ's forking Worker against SimpleWorker.
3. End to end: POST /api/values -> the "done" event, p50/p99, small and large n.
4. Open event streams: request latency with none and with many streams open,
   for gunicorn's gevent worker (ours) and a gthread worker (the alternative).

Timings on a shared machine are noisy: compare figures within one run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "server"), str(REPO / "worker"), str(REPO / "tests" / "support")]

import baselines  # noqa: E402
import capacity  # noqa: E402
import course  # noqa: E402
import gmpy2  # noqa: E402
import http_paths  # noqa: E402
import redis_calls  # noqa: E402
import requests  # noqa: E402
import system_page  # noqa: E402
import worker_jobs  # noqa: E402
from fibapi.events import KEEPALIVE_SECONDS  # noqa: E402
from fibworker import contract  # noqa: E402
from fibworker.fib import fibonacci, to_decimal  # noqa: E402
from fibworker.jobqueue import fib_queue  # noqa: E402
from processes import API, start_worker  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Callback  # noqa: E402
from schema import migrate_server  # noqa: E402
from sse import events, open_stream  # noqa: E402

from stack.servers import PostgresServer, RedisServer  # noqa: E402


def best_of(fn: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def worker_compute(n: int) -> str:
    return to_decimal(fibonacci(n))


def gmp_compute(n: int) -> str:
    return str(gmpy2.fib(n).digits())


def bench_compute() -> None:
    print("## 1. Compute + decimal conversion vs GMP baseline (best of N)\n")
    print("| n | digits | worker (ms) | gmpy2.fib + digits (ms) | ratio | target |")
    print("|---:|---:|---:|---:|---:|:---|")
    for exponent in range(3, 8):
        n = 10**exponent
        repeat = 200 if n <= 10**5 else (20 if n <= 10**6 else 5)
        ours = best_of(partial(worker_compute, n), repeat)
        baseline = best_of(partial(gmp_compute, n), repeat)
        ratio = ours / baseline
        target = ("met" if ratio <= 1.2 else "MISSED") + " (<= 1.2x)" if n >= 10**5 else "none below 10^5"
        digits = len(to_decimal(fibonacci(n)))
        print(f"| 10^{exponent} | {digits:,} | {ours * 1000:.3f} | {baseline * 1000:.3f} | {ratio:.2f}x | {target} |")
    print()


@contextmanager
def services() -> Iterator[tuple[dict[str, str], PostgresServer]]:
    """Postgres and Redis with production's settings: fsync on; the append-only file, 256 MB, noeviction."""
    pg_dir = Path(tempfile.mkdtemp(prefix="fibstack-bench-pg-"))
    redis_dir = Path(tempfile.mkdtemp(prefix="fibstack-bench-redis-"))
    postgres = PostgresServer(pg_dir, durable=True)
    redis_server = RedisServer(redis_dir, maxmemory="256mb", persistent=True)
    postgres.start()
    redis_server.start()
    migrate_server(postgres)
    try:
        # No reconcile pass in the sections that flush Redis between runs and leave rows pending in
        # Postgres: it would queue them again in the middle of the next figure (capacity runs it).
        env = postgres.env() | redis_server.env() | {"LOG_LEVEL": "WARNING", "RECONCILE_INTERVAL_SECONDS": "0"}
        yield env, postgres
    finally:
        postgres.stop()
        redis_server.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(redis_dir, ignore_errors=True)


WORKER_CLASSES = {"Worker (fork per job)": "rq.Worker", "SimpleWorker (no fork)": "rq.SimpleWorker"}


def bench_throughput(env: dict[str, str], jobs: int = 400) -> None:
    print(f"## 2. Small-job throughput, one worker process, {jobs} jobs (F(1000)..)\n")
    print("| worker class | jobs/s | ms per job |")
    print("|:---|---:|---:|")
    connection = Redis(port=int(env["REDIS_PORT"]))
    for label, dotted in WORKER_CLASSES.items():
        worker_jobs.fresh_stores(env)
        with worker_jobs.pg(env) as conn:  # recorded pending, as the API records them
            conn.execute("INSERT INTO indexes (number) SELECT generate_series(1000, %s)", (999 + jobs,))
        queue = fib_queue(connection)
        for index in range(1000, 1000 + jobs):
            queue.enqueue_call(
                contract.JOB_FUNCTION,
                args=(index,),
                job_id=contract.new_job_id(index),
                result_ttl=0,
                on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
            )
        code = (
            "import sys; from redis import Redis; from rq.utils import import_attribute;"
            "from rq.serializers import JSONSerializer; from fibworker.jobqueue import FibJob, fib_queue;"
            f"c = Redis(port={env['REDIS_PORT']});"
            f"import_attribute('{dotted}')([fib_queue(c)], connection=c, job_class=FibJob, serializer=JSONSerializer)"
            ".work(burst=True, logging_level='WARNING')"
        )
        child_env = os.environ | env | {"PYTHONPATH": str(REPO / "worker")}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=child_env, check=True, capture_output=True)
        elapsed = time.perf_counter() - started
        done = worker_jobs.done_count(env, range(1000, 1000 + jobs))
        assert done == jobs, f"{label}: only {done} of {jobs} jobs done"
        print(f"| {label} | {jobs / elapsed:.0f} | {elapsed / jobs * 1000:.2f} |")
    print("\n(Includes the worker's start-up, the same for both.)\n")


def bench_end_to_end(env: dict[str, str], work: Path) -> None:
    print("## 3. End to end: POST -> done event (1 API process, 1 worker)\n")
    print("| case | samples | p50 (ms) | p99 (ms) |")
    print("|:---|---:|---:|---:|")
    worker_jobs.fresh_stores(env)  # each index new work: one Postgres already knows gets no job
    api = API(env, work / "api-e2e.log")
    worker = start_worker(env, work / "worker-e2e.log")
    try:
        time.sleep(1)
        stream = events(open_stream(api.url, timeout=120))
        for label, indexes in (
            ("small n (F(10)..F(209))", list(range(10, 210))),
            ("large n (F(10^6)..)", list(range(10**6, 10**6 + 20))),
            ("largest n (F(10^7)..)", list(range(10**7 - 5, 10**7))),
        ):
            samples = []
            for index in indexes:
                started = time.perf_counter()
                response = requests.post(f"{api.url}/api/values", json={"index": index}, timeout=30)
                response.raise_for_status()
                for event in stream:
                    if event.data["index"] == index and event.data["status"] == "done":
                        break
                samples.append((time.perf_counter() - started) * 1000)
            print(f"| {label} | {len(samples)} | {statistics.median(samples):.1f} | {percentile(samples, 99):.1f} |")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        api.stop()
    print()


def request_latencies(url: str, count: int = 200, timeout: float = 2.0) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            requests.get(f"{url}/api/values/all", timeout=timeout).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
        except requests.RequestException:
            samples.append(float("inf"))
    return samples


def open_streams(url: str, count: int) -> list[requests.Response]:
    """Open up to `count` event streams at once; the ones the server accepted."""
    opened: list[requests.Response] = []

    def hold() -> None:
        with suppress(requests.RequestException):
            opened.append(requests.get(f"{url}/api/events", stream=True, timeout=3))

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return opened


def bench_streams(env: dict[str, str], work: Path, stream_count: int = 500) -> None:
    print(f"## 4. GET /api/values/all latency with 0 and {stream_count} open event streams (1 API process)\n")
    print("| gunicorn worker | streams asked for | streams open | p50 (ms) | p99 (ms) | requests failed |")
    print("|:---|---:|---:|---:|---:|---:|")
    for label, args in (
        ("gevent (ours)", ()),
        ("gthread, 8 threads", ("--worker-class", "gthread", "--threads", "8")),
    ):
        api = API(env, work / f"api-{label.split()[0]}.log", extra_args=args)
        try:
            for streams_open in (0, stream_count):
                holders = open_streams(api.url, streams_open)
                samples = request_latencies(api.url, 100)
                ok = [s for s in samples if s != float("inf")]
                p50 = f"{statistics.median(ok):.1f}" if ok else "-"
                p99 = f"{percentile(ok, 99):.1f}" if ok else "-"
                failed = f"{len(samples) - len(ok)} of {len(samples)}"
                print(f"| {label} | {streams_open} | {len(holders)} | {p50} | {p99} | {failed} |")
                for response in holders:
                    response.close()
        finally:
            api.stop()
    print()


def bench_http(env: dict[str, str], work: Path) -> None:
    worker_jobs.fresh_stores(env)
    memory: list[tuple[str, tuple[float, float, float, float]]] = []
    with http_paths.running_stack(env, work) as stack:
        memory.append(("idle, after start", http_paths.memory(stack)))
        http_paths.bench_gets(stack, work)
        http_paths.bench_posts(stack)
        memory.append(("after the GET and POST runs", http_paths.memory(stack)))
        # Three runs: memory a process takes for its first 5,000 streams is kept for the next (the
        # allocator's); the question is whether each run after adds more.
        for run in (1, 2, 3):
            http_paths.bench_streams(stack)
            # An API process notices a stream its client closed at its next
            # keep-alive comment: wait for that before measuring.
            time.sleep(KEEPALIVE_SECONDS + 2)
            memory.append((f"after 5,000 streams, run {run}", http_paths.memory(stack)))
    print("## Memory of the API (master + 2 processes) and the worker, MiB\n")
    print("| when | API RSS | API PSS | worker RSS | worker PSS |")
    print("|:---|---:|---:|---:|---:|")
    for when, figures in memory:
        print(f"| {when} | " + " | ".join(f"{figure:.1f}" for figure in figures) + " |")
    print("\nGoal: no growth from one run to the next.\n")


SECTIONS = ("compute", "redis", "http", "posts", "system", "course", "metrics", "worker", "recovery", "e2e", "streams")
# Run only when named (`make bench capacity`): about an hour.
ON_DEMAND = ("capacity",)


def main() -> None:
    chosen = sys.argv[1:] or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS) - set(ON_DEMAND)
    if unknown:
        sys.exit(f"bench.py: no section {', '.join(sorted(unknown))}; sections: {', '.join(SECTIONS + ON_DEMAND)}")
    print(f"# fibstack benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)\n")
    if "compute" in chosen:
        bench_compute()
    work = Path(tempfile.mkdtemp(prefix="fibstack-bench-"))
    with services() as (env, postgres):
        baselines.print_settings(postgres, env)
        baselines.bench_durable_commits(postgres)
        if "redis" in chosen:
            redis_calls.bench_redis_calls(env)
        if "http" in chosen:
            bench_http(env, work)
        if "posts" in chosen and "http" not in chosen:  # http includes them
            with http_paths.running_stack(env, work) as stack:
                http_paths.bench_posts(stack)
        if "system" in chosen:
            system_page.bench_system_page(env, work)
        if "course" in chosen:
            course.bench_course(env, postgres, work)
        if "metrics" in chosen:
            http_paths.bench_instrumentation(env, work)
        if "worker" in chosen:
            bench_throughput(env)
            worker_jobs.bench_small_jobs(env)
            worker_jobs.bench_large_jobs(env, work)
        if "recovery" in chosen:
            worker_jobs.bench_recovery(env, work)
        if "e2e" in chosen:
            bench_end_to_end(env, work)
        if "streams" in chosen:
            bench_streams(env, work)
        if "capacity" in chosen:
            capacity.bench_capacity(env, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
