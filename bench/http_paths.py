"""`make bench` section: the HTTP paths under load, production settings.

The API runs as in production (gunicorn, 2 gevent workers, no reload) behind
the router (nginx, the image's configuration), with one worker process.
Baseline from the same run: the same nginx answering a fixed JSON body of the
same size itself, which is as fast as any app behind this router can be.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from fibworker import contract
from load import POST_SCRIPT, children, cpu_seconds, memory_mib, wrk
from processes import API, start_worker, wait_until

from stack import router
from stack.servers import free_port

REPO = Path(__file__).resolve().parents[1]
GET_PATHS = ("/api/values/current", "/api/values/all", "/api/values/recent")
CONNECTIONS = (10, 50, 200)
SECONDS = 5
SEEDED = range(1, 21)  # the 20 indexes the lists show during the GET runs
POST_FIRST, POST_SPAN = 100, 2000  # the POST runs cycle through these indexes


@dataclass
class Stack:
    router_url: str
    api: API
    worker: subprocess.Popen[bytes]
    env: dict[str, str]

    def api_pids(self) -> list[int]:
        return children(self.api.process.pid)

    def worker_pids(self) -> list[int]:
        return [self.worker.pid]


@contextmanager
def routing(conf_dir: Path, api_port: int) -> Iterator[str]:
    """The router, production configuration, in front of the API on `api_port`; its URL."""
    port = free_port()
    # The client upstream is never asked: only /api paths are measured. wrk's
    # load is many clients' but comes from one address: the router's cap on
    # one address's requests in progress (REQUESTS_PER_CLIENT) is lifted.
    conf = router.write_router(
        conf_dir,
        port,
        api=f"127.0.0.1:{api_port}",
        client="127.0.0.1:9",
        mode="production",
        requests_per_client=65_535,  # nginx's largest
    )
    with router.serving(conf, port):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def running_stack(env: dict[str, str], work: Path, api_env: dict[str, str] | None = None) -> Iterator[Stack]:
    api = API(env | (api_env or {}), work / "api-http.log", workers=2)
    worker = start_worker(env, work / "worker-http.log")
    try:
        with routing(work / "router-http", api.port) as router_url:
            yield Stack(router_url, api, worker, env)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        api.stop()


@contextmanager
def static_nginx(work: Path, body: bytes) -> Iterator[str]:
    """nginx answering `body` itself at every path: the router's own ceiling (the baseline)."""
    conf_dir = work / "static-nginx"
    conf_dir.mkdir(parents=True, exist_ok=True)
    # In the configuration itself: nginx's workers (nobody, when started as
    # root) cannot read files under the bench's private directory.
    text = body.decode()
    assert "$" not in text, "nginx would read $ as a variable"
    quoted = text.replace("\\", "\\\\").replace("'", "\\'")
    port = free_port()
    main = (Path(router.ROUTER_MAIN_CONF).read_text()
            .replace("/tmp/", f"{conf_dir}/")  # noqa: S108
            .replace("access_log /dev/stdout;", "access_log /dev/null;")
            .replace("include /etc/nginx/conf.d/*.conf;",
                     f"server {{ listen 127.0.0.1:{port}; "
                     f"location / {{ default_type application/json; return 200 '{quoted}'; }} }}"))  # fmt: skip
    (conf_dir / "nginx.conf").write_text(main)
    with router.serving(conf_dir / "nginx.conf", port):
        yield f"http://127.0.0.1:{port}/"


@contextmanager
def bare_wsgi(env: dict[str, str], work: Path, body: bytes) -> Iterator[str]:
    """bare_app.py under the API's gunicorn settings (2 processes), behind the router: the stack's floor."""
    body_file = work / "bare-body.json"
    body_file.write_bytes(body)
    bare = API(
        env | {"BENCH_BODY_FILE": str(body_file)},
        work / "bare-wsgi.log",
        workers=2,
        extra_args=("--config", str(REPO / "bench" / "bare_gunicorn.conf.py"), "--pythonpath", str(REPO / "bench")),
    )
    try:
        with routing(work / "router-bare", bare.port) as router_url:
            yield router_url
    finally:
        bare.stop()


def seed(stack: Stack) -> None:
    for index in SEEDED:
        requests.post(f"{stack.api.url}/api/values", json={"index": index}, timeout=5).raise_for_status()
    wait_until(
        lambda: all(s["status"] == "done" for s in requests.get(f"{stack.api.url}/api/values/recent", timeout=5).json())
    )


def answers_are_current(stack: Stack, index: int) -> bool:
    """A submission, then at once every list through the router: does each show it, from either API process?"""
    requests.post(f"{stack.api.url}/api/values", json={"index": index}, timeout=5).raise_for_status()
    for _ in range(4):
        if str(index) not in requests.get(f"{stack.router_url}/api/values/current", timeout=5).json():
            return False
        if {"number": index} not in requests.get(f"{stack.router_url}/api/values/all", timeout=5).json():
            return False
    done = wait_until(lambda: requests.get(f"{stack.api.url}/api/values/{index}", timeout=5).json()["status"] == "done")
    return bool(done) and all(
        requests.get(f"{stack.router_url}/api/values/current", timeout=5).json()[str(index)] != contract.NOTHING_YET
        for _ in range(4)
    )


def bench_gets(stack: Stack, work: Path) -> None:
    print(f"## GET paths through the router ({SECONDS} s each, wrk -t2; 2 API processes)\n")
    print("Baselines, same body, same run: nginx answering it itself (the router's ceiling), and a bare WSGI app")
    print("(bench/bare_app.py) under the API's gunicorn settings behind the same router (the floor of any")
    print("app on this gunicorn worker).\n")
    print("| path | conns | req/s | p50 (ms) | p99 (ms) | API CPU/req (ms) | errors | bare WSGI req/s, p99 (ms) "
          "| ÷ bare | nginx static req/s |")  # fmt: skip
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    seed(stack)
    for path in GET_PATHS:
        body = requests.get(f"{stack.router_url}{path}", timeout=5).content
        with static_nginx(work, body) as static_url, bare_wsgi(stack.env, work, body) as bare_url:
            for conns in CONNECTIONS:
                baseline = wrk(static_url, conns, SECONDS)
                assert baseline.not_2xx == 0, "the baseline must answer 200, as the API does"
                bare = wrk(f"{bare_url}{path}", conns, SECONDS)
                pids = stack.api_pids()
                cpu_before = cpu_seconds(pids)
                result = wrk(f"{stack.router_url}{path}", conns, SECONDS)
                cpu_ms = (cpu_seconds(pids) - cpu_before) * 1000 / max(result.requests, 1)
                print(
                    f"| {path} | {conns} | {result.per_second:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} "
                    f"| {cpu_ms:.3f} | {result.not_2xx + result.socket_errors} "
                    f"| {bare.per_second:,.0f}, {bare.p99_ms:.1f} | {result.per_second / bare.per_second:.2f} "
                    f"| {baseline.per_second:,.0f} |"
                )
    print(f"\nEvery answer current (an index submitted, then each list at once, 4 times): "
          f"{'yes' if answers_are_current(stack, 77_777) else 'NO'}\n")  # fmt: skip
    print("Goals (#17, for the Xeon): >= 5,500 req/s at 10-200 connections, no errors, p99 <= 12 ms at 50,")
    print("CPU <= 0.25 ms per request.\n")


def bench_posts(stack: Stack) -> None:
    print(f"## POST /api/values straight to the API ({SECONDS} s each, indexes cycling over {POST_SPAN:,})\n")
    print(
        "| conns | accepted/s | p50 (ms) | p99 (ms) | API CPU/POST (ms) | refused or failed | rows = 202s "
        "| POSTs per write |"
    )
    print("|---:|---:|---:|---:|---:|---:|:---|---:|")
    dsn = " ".join(f"{key}={stack.env[name]}" for key, name in
                   (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD"),
                    ("dbname", "PGDATABASE")))  # fmt: skip
    script = POST_SCRIPT.format(first=POST_FIRST, span=POST_SPAN)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for conns in (10, 50):
            rows_before = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]  # type: ignore[index]
            pids = stack.api_pids()
            cpu_before = cpu_seconds(pids)
            groups_before = submission_groups(stack)
            result = wrk(f"{stack.api.url}/api/values", conns, SECONDS, script=script)
            groups = submission_groups(stack) - groups_before
            accepted = result.requests - result.not_2xx
            cpu_ms = (cpu_seconds(pids) - cpu_before) * 1000 / max(result.requests, 1)
            rows = conn.execute("SELECT count(*) FROM submissions").fetchone()[0] - rows_before  # type: ignore[index]
            # wrk counts a request cut off by its end of run as neither: a few more rows than 202s is fine.
            print(
                f"| {conns} | {accepted / result.seconds:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} "
                f"| {cpu_ms:.3f} | {result.not_2xx + result.socket_errors} | {rows:,} rows, {accepted:,} 202s "
                f"| {result.requests / max(groups, 1):.1f} |"
            )
        submitted = [
            number
            for (number,) in conn.execute(
                "SELECT number FROM indexes WHERE number >= %s AND number < %s", (POST_FIRST, POST_FIRST + POST_SPAN)
            )
        ]
        started = time.monotonic()

        def all_done() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM indexes WHERE number = ANY(%s) AND status = 'done'", (submitted,)
            ).fetchone()
            return bool(row and row[0] == len(submitted))

        wait_until(all_done, timeout=300, interval=0.2)
    print(f"\nEvery submitted index computed {time.monotonic() - started:.1f} s after the last POST; nothing lost.\n")
    print("POSTs per write: submissions that shared one statement and commit, and one queueing script (group commit).")
    print("Goals: >= 2,000 accepted/s at 50 connections, CPU <= 0.5 ms per POST.\n")


def submission_groups(stack: Stack) -> float:
    """Group writes of submissions so far, all API processes (fibstack_api_submission_group_size's count)."""
    for line in requests.get(stack.api.metrics_url, timeout=5).text.splitlines():
        if line.startswith("fibstack_api_submission_group_size_count"):
            return float(line.split()[-1])
    return 0.0


def memory(stack: Stack) -> tuple[float, float, float, float]:
    """RSS and PSS of the API (all its processes) and of the worker, MiB."""
    return (*memory_mib([stack.api.process.pid, *stack.api_pids()]), *memory_mib(stack.worker_pids()))


STREAM_REQUEST = b"GET /api/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"


# Streams per client address in the bench: as many as a busy office behind
# one address, under the router's cap (EVENT_STREAMS_PER_CLIENT, 100).
STREAMS_PER_ADDRESS = 50


def open_raw_streams(url: str, count: int, first: int = 0) -> tuple[list[socket.socket], Counter[str]]:
    """Open `count` event streams through the router, as browsers do; the sockets, and how each was answered.

    From many loopback addresses (127.0.1.1, 127.0.1.2, ...), STREAMS_PER_ADDRESS
    each, as pages from many places; `first` numbers the first stream, so a
    second call goes on with new addresses.
    """
    host, port = url.removeprefix("http://").split(":")
    sockets: list[socket.socket] = []
    answers: Counter[str] = Counter()
    for n in range(first, first + count):
        client = n // STREAMS_PER_ADDRESS
        source = f"127.0.{1 + client // 250}.{1 + client % 250}"
        try:
            sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
            sock.sendall(STREAM_REQUEST)
            sockets.append(sock)
        except OSError as exc:
            answers[f"connect failed: {exc.strerror}"] += 1
    for sock in sockets:
        try:
            status_line = sock.recv(4096).split(b"\r\n", 1)[0].decode()
            answers[status_line.split(" ", 2)[1] if status_line else "closed"] += 1
        except OSError:
            answers["no answer"] += 1
    return sockets, answers


def bench_streams(stack: Stack, held: int = 5000, past: int = 1200) -> None:
    print(f"## Open event streams through the router: GET /api/values/current with {held:,} open\n")
    print("| streams open | answers to the streams | /current req/s | p50 (ms) | p99 (ms) | p99 ÷ idle |")
    print("|---:|:---|---:|---:|---:|---:|")
    idle = wrk(f"{stack.router_url}/api/values/current", 10, SECONDS)
    print(f"| 0 | | {idle.per_second:,.0f} | {idle.p50_ms:.2f} | {idle.p99_ms:.2f} | 1.00 |")
    sockets, answers = open_raw_streams(stack.router_url, held)
    more: list[socket.socket] = []
    try:
        loaded = wrk(f"{stack.router_url}/api/values/current", 10, SECONDS)
        summary = ", ".join(f"{count:,} × {status}" for status, count in answers.most_common())
        print(
            f"| {answers['200']:,} | {summary} | {loaded.per_second:,.0f} | {loaded.p50_ms:.2f} "
            f"| {loaded.p99_ms:.2f} | {loaded.p99_ms / idle.p99_ms:.2f} |"
        )
        more, past_answers = open_raw_streams(stack.router_url, past, first=held)
        summary = ", ".join(f"{count:,} × {status}" for status, count in past_answers.most_common())
        print(f"| {answers['200'] + past_answers['200']:,} | {past:,} more asked for: {summary} | | | | |")
    finally:
        for sock in sockets + more:
            sock.close()
    print("\nGoal: 5,000 held, /current p99 at most 1.5x idle. Past EVENT_STREAMS_MAX (6,000) the router")
    print("answers 503 (JSON, Retry-After: 5) and the browser tries again later.\n")


def bench_instrumentation(env: dict[str, str], work: Path) -> None:
    """GET /current through the router with the API's metrics on and off, alternately."""
    print("## Cost of the API's metrics: GET /api/values/current via the router, 50 conns\n")
    print("| metrics | run | req/s | p99 (ms) | API CPU/req (ms) |")
    print("|:---|---:|---:|---:|---:|")
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for run in (1, 2):
        for label, api_env in (("on", {}), ("off", {"METRICS_PORT": "0"})):
            with running_stack(env, work, api_env) as stack:
                seed(stack)
                wrk(f"{stack.router_url}/api/values/current", 50, 1)  # warm up
                pids = stack.api_pids()
                cpu_before = cpu_seconds(pids)
                result = wrk(f"{stack.router_url}/api/values/current", 50, SECONDS)
                cpu_ms = (cpu_seconds(pids) - cpu_before) * 1000 / max(result.requests, 1)
                rates[label].append(result.per_second)
                print(f"| {label} | {run} | {result.per_second:,.0f} | {result.p99_ms:.2f} | {cpu_ms:.3f} |")
    slower = 1 - sum(rates["on"]) / sum(rates["off"])
    added_us = instrumentation_microseconds()
    print(f"\nWith metrics {slower:.1%} slower over these runs (goal: under 5%); wrk's figures vary by a few")
    print(f"percent from run to run. Measured alone, the instrumentation adds {added_us:.1f} us per request")
    print("(one counter, one histogram, multiprocess mode), against about 350 us for a whole list request.\n")


def instrumentation_microseconds(calls: int = 50_000) -> float:
    """CPU the metrics middleware adds to one request, in a process of its own (multiprocess mode on)."""
    code = f"""
import os, tempfile, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from fibapi.metrics import Instrument
def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
instrumented = Instrument(app)
environ = {{"REQUEST_METHOD": "GET", "fibstack.route": "/api/values/current"}}
def timed(wsgi):
    started = time.process_time()
    for _ in range({calls}):
        wsgi(environ, lambda status, headers, exc_info=None: None)
    return time.process_time() - started
timed(instrumented)
print((timed(instrumented) - timed(app)) / {calls} * 1e6)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONPATH": str(REPO / "server")}).stdout  # fmt: skip
    return float(out)
