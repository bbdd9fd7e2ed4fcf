"""`make bench` section system: what the live system page costs.

The stack of the http section (the API as in production, 2 processes behind
the router, one worker), production's Postgres and Redis (fsync on). A page
is simulated by a kept-alive connection asking GET /api/system through the
router once a second: the most a page asks (every 2 s, and at most once a
second after events).

1. The hot paths with and without PAGES pages open: PAIRS runs of each,
   alternated, and in each wrk drives GET /api/values/current through the router, then POST
   /api/values, at 50 connections. The API's CPU is read from /proc, so the
   load generators' (on the same 2 cores) is not counted in it; the rates
   are everything's, load generators and pages included.
2. What one page costs the API, idle: PAGE_COST_PAGES pages asking GET
   /api/system, beside as many asking GET /api/healthz (the least a request
   to a Flask route can cost) at the same rate.
3. What the page adds to the submit path, with no page open: the timeline
   stamps each committed group writes (timeline.stamps), timed alone.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fibapi import timeline
from fibapi.db import Recorded
from fibapi.submissions import Submission
from http_paths import POST_FIRST, POST_SPAN, SECONDS, Stack, running_stack, seed
from load import POST_SCRIPT, cpu_seconds, wrk

PAGES = 20  # a class watching the same system
PAIRS = 5  # of runs without and with pages: this machine's noise is a good part of any one run
PAGE_COST_PAGES = 100
CONNECTIONS = 50
# Submissions committed together at 50 connections are a few dozen (the
# posts section's "POSTs per write"): the stamps are timed for a group this big.
STAMPED_GROUP = 50


@contextmanager
def pages_open(router_url: str, pages: int, path: str = "/api/system") -> Iterator[Counter[str]]:
    """`pages` pages (none: 0), each asking `path` once a second; how they were answered.

    One thread for all of them, each page its own kept-alive connection, the
    requests spread evenly over each second: as light a load generator as
    the question allows.
    """
    answers: Counter[str] = Counter()
    if not pages:
        yield answers
        return
    host, port = router_url.removeprefix("http://").split(":")
    stop = threading.Event()

    def ask() -> None:
        connections = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(pages)]
        next_at = time.monotonic()
        while not stop.is_set():
            for connection in connections:
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    answers[str(response.status)] += 1
                except (OSError, http.client.HTTPException) as exc:
                    answers[type(exc).__name__] += 1
                    connection.close()  # reopened by the next request
                next_at += 1.0 / pages
                if stop.wait(max(0.0, next_at - time.monotonic())):
                    break
        for connection in connections:
            connection.close()

    thread = threading.Thread(target=ask, name="pages", daemon=True)
    thread.start()
    time.sleep(2)  # every page has asked once
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=15)


def hot_paths(stack: Stack, script: str) -> dict[int, list[tuple[float, float, float, float]]]:
    """Part 1's table; each run's (/current req/s, API CPU per GET, POSTs accepted/s, API CPU per POST) by pages."""
    print("| pages | run | /current req/s | p99 (ms) | API CPU/GET (ms) | POST accepted/s | p99 (ms) "
          "| API CPU/POST (ms) | the pages' GET /api/system |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
    figures: dict[int, list[tuple[float, float, float, float]]] = {0: [], PAGES: []}
    # Alternated, ABBA..., so a drift of the machine over the runs weighs on both alike.
    order = [pages for pair in range(PAIRS) for pages in ((0, PAGES) if pair % 2 == 0 else (PAGES, 0))]
    for run, pages in enumerate(order, start=1):
        with pages_open(stack.router_url, pages) as answers:
            pids = stack.api_pids()
            cpu = cpu_seconds(pids)
            gets = wrk(f"{stack.router_url}/api/values/current", CONNECTIONS, SECONDS)
            get_cpu = (cpu_seconds(pids) - cpu) * 1000 / max(gets.requests, 1)
            cpu = cpu_seconds(pids)
            posts = wrk(f"{stack.api.url}/api/values", CONNECTIONS, SECONDS, script=script)
            post_cpu = (cpu_seconds(pids) - cpu) * 1000 / max(posts.requests, 1)
        errors = gets.not_2xx + gets.socket_errors + posts.not_2xx + posts.socket_errors
        assert errors == 0, f"{errors} requests failed with {pages} pages open"
        accepted = posts.requests / posts.seconds
        summary = ", ".join(f"{count:,} × {code}" for code, count in answers.most_common()) or "none"
        print(
            f"| {pages} | {run} | {gets.per_second:,.0f} | {gets.p99_ms:.2f} | {get_cpu:.3f} "
            f"| {accepted:,.0f} | {posts.p99_ms:.2f} | {post_cpu:.3f} | {summary} |"
        )
        figures[pages].append((gets.per_second, get_cpu, accepted, post_cpu))
    return figures


def compare(figures: dict[int, list[tuple[float, float, float, float]]]) -> None:
    """Medians, and whether the median with pages lies within the runs without them (this machine's noise)."""
    print("\n| figure | without pages: median (range) | with pages: median | with ÷ without | within the range |")
    print("|:---|---:|---:|---:|:---|")
    names = ("/current req/s", "API CPU per GET (ms)", "POST accepted/s", "API CPU per POST (ms)")
    for at, (name, shown) in enumerate(zip(names, (",.0f", ".3f", ",.0f", ".3f"), strict=True)):
        off = [run[at] for run in figures[0]]
        with_pages = statistics.median(run[at] for run in figures[PAGES])
        without = statistics.median(off)
        within = "yes" if min(off) <= with_pages <= max(off) else "NO"
        print(
            f"| {name} | {without:{shown}} ({min(off):{shown}}-{max(off):{shown}}) | {with_pages:{shown}} "
            f"| {with_pages / without - 1:+.1%} | {within} |"
        )


def idle_cpu_ms_per_second(stack: Stack, pages: int, path: str) -> float:
    """The API's CPU per second, in ms, with `pages` pages asking `path` and nothing else asking."""
    with pages_open(stack.router_url, pages, path):
        pids = stack.api_pids()
        cpu = cpu_seconds(pids)
        time.sleep(SECONDS * 2)
        return (cpu_seconds(pids) - cpu) * 1000 / (SECONDS * 2)


def stamps_microseconds(calls: int = 20_000) -> float:
    """CPU time of timeline.stamps for one committed group of STAMPED_GROUP new indexes, in µs."""
    group = [Submission(index) for index in range(1000, 1000 + STAMPED_GROUP)]
    recorded = {
        s.index: Recorded(s.index, {"status": "pending"}, f"fib-{s.index}-0123456789ab", True, False, [s.index], 1)
        for s in group
    }
    now = time.time()
    started = time.process_time()
    for _ in range(calls):
        timeline.stamps(group, recorded, now, now)
    return (time.process_time() - started) / calls * 1e6


def bench_system_page(env: dict[str, str], work: Path) -> None:
    print("## The system page's cost\n")
    print(f"1. The hot paths, without and with {PAGES} system pages open (each asking GET /api/system once a")
    print(f"second): GET /api/values/current through the router, then POST /api/values, {CONNECTIONS} connections,")
    print(f"{SECONDS} s each. CPU is the API's own, the pages' requests included.\n")
    script = POST_SCRIPT.format(first=POST_FIRST, span=POST_SPAN)
    with running_stack(env, work) as stack:
        seed(stack)
        # Warm up, and fill the lists to their full length first: the POSTs add indexes to them, and
        # a longer /current is a slower one.
        wrk(f"{stack.api.url}/api/values", CONNECTIONS, SECONDS, script=script)
        wrk(f"{stack.router_url}/api/values/current", CONNECTIONS, 1)
        compare(hot_paths(stack, script))
        print(f"\n2. What a page costs the API, idle: {PAGE_COST_PAGES} pages each asking once a second, beside as")
        print("many asking GET /api/healthz, the least any request to a Flask route costs, at the same rate.\n")
        print("| pages ask | API CPU, ms a second | per page |")
        print("|:---|---:|---:|")
        baseline = idle_cpu_ms_per_second(stack, 0, "")
        for path in ("/api/healthz", "/api/system", "/api/healthz", "/api/system"):
            used = idle_cpu_ms_per_second(stack, PAGE_COST_PAGES, path)
            print(f"| {path} | {used:.1f} | {(used - baseline) / PAGE_COST_PAGES:.2f} |")
        print(f"| nothing | {baseline:.1f} | |")
    print(f"\n3. The timeline stamps a committed group of {STAMPED_GROUP} submissions writes: "
          f"{stamps_microseconds():.1f} µs of CPU, once per group.")  # fmt: skip
    print("\nGoal (#19): nothing measurable on the hot paths: with the pages, each median of part 1 within the")
    print("range of the runs without them, and a page costing no more than any request a second. Each API")
    print("process makes GET /api/system's answer at most once a second however many pages ask")
    print("(system.KEEP_SECONDS).\n")
