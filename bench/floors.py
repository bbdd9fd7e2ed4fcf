"""`make bench` section `course`, its floors: the least a durable submission costs on this stack.

Measured in the same run as the comparison with the course (course.py), so
each figure of fibstack's stands beside what any app on the design card's
packages pays for the same answer:

- POST: floor_app.py under the API's gunicorn settings, as Flask alone (no
  I/O) and with the two round trips a durable 202 needs (one Redis write, one
  Postgres commit per POST).
- POST -> value readable: that durable POST alone, plus RQ's own delay from
  enqueue to a finished job that does nothing (rq's SimpleWorker, no fork).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from load import WrkResult, children, cpu_seconds, wrk
from processes import API
from redis import Redis
from rq import Queue

REPO = Path(__file__).resolve().parents[1]
MODES = {"flask": "Flask alone, no I/O", "durable": "Flask + 1 Redis write + 1 Postgres commit per POST"}
FLOOR_QUEUE = "bench-floor"


@contextmanager
def floor_api(env: dict[str, str], work: Path, mode: str) -> Iterator[API]:
    # The app named last: gunicorn takes it over the configuration's wsgi_app.
    config = ("--config", str(REPO / "bench" / "bare_gunicorn.conf.py"), "--pythonpath", str(REPO / "bench"))
    api = API(env | {"FLOOR_APP": mode}, work / f"floor-{mode}.log", workers=2, extra_args=(*config, "floor_app:app"))
    try:
        yield api
    finally:
        api.stop()


def post_floors(
    env: dict[str, str], work: Path, connections: tuple[int, ...], seconds: int, script: str
) -> dict[tuple[str, int], tuple[WrkResult, float]]:
    """Each mode's wrk result and API CPU per POST (ms), at each number of connections."""
    results = {}
    for mode in MODES:
        with floor_api(env, work, mode) as api:
            pids = children(api.process.pid)
            wrk(f"{api.url}/api/values", connections[0], 1, script=script)  # warm up
            for conns in connections:
                before = cpu_seconds(pids)
                result = wrk(f"{api.url}/api/values", conns, seconds, script=script)
                results[mode, conns] = (result, (cpu_seconds(pids) - before) * 1000 / max(result.requests, 1))
    return results


def lone_durable_post_ms(env: dict[str, str], work: Path, samples: int) -> float:
    """p50 of one durable floor POST at a time (ms)."""
    with floor_api(env, work, "durable") as api:
        session = requests.Session()
        timings = []
        for sample in range(samples):
            started = time.perf_counter()
            session.post(f"{api.url}/api/values", json={"index": sample}, timeout=5).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def rq_noop_job_ms(env: dict[str, str], samples: int) -> float:
    """p50 from enqueue to a finished job that does nothing, one at a time, polled (ms)."""
    redis = Redis(host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]))
    queue = Queue(FLOOR_QUEUE, connection=redis)
    code = (
        "import sys; from redis import Redis; from rq import Queue, SimpleWorker;"
        f"c = Redis(host={env['REDIS_HOST']!r}, port={env['REDIS_PORT']});"
        f"SimpleWorker([Queue({FLOOR_QUEUE!r}, connection=c)], connection=c).work(logging_level='WARNING')"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        timings = []
        for sample in range(samples + 5):  # the first few wait for the worker to start
            started = time.perf_counter()
            job = queue.enqueue("operator.add", sample, 1, result_ttl=60)
            while job.get_status(refresh=True) != "finished":
                if time.perf_counter() - started > 30:
                    raise TimeoutError("the floor's RQ worker did not finish a job in 30 s")
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return statistics.median(timings[5:])
