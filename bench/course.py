"""`make bench` section `course`: fibstack side by side with the course's Node app, in one run.

The course's app (bench/course_app/: its server/index.js and worker/index.js,
Express, pg and redis 3 as the course wrote them) runs on the same Postgres
(fsync on) and Redis as fibstack, behind nginx with the course's own server
block (`rewrite /api/(.*) /$1`, a new upstream connection per request) in
the router's main configuration. Each figure of one app is printed beside the
other's from the same minute.

What differs by design, and is said beside the figures: the course answers a
POST before its INSERT is written (not awaited) and before anything is
queued durably (Redis pub/sub: a worker that is down loses it); fibstack
answers 202 after its row is committed and its job queued. The course's
/values/all is every row ever written, so both are measured with the same 20.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import psycopg
import requests
from floors import MODES, lone_durable_post_ms, post_floors, rq_noop_job_ms
from http_paths import SECONDS, Stack, bare_wsgi, running_stack
from load import POST_SCRIPT, WrkResult, cpu_seconds, wrk
from processes import wait_until
from redis import Redis

from stack import router
from stack.servers import PostgresServer, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "bench" / "course_app"
CONNECTIONS = (10, 50, 200)
SEEDED = range(1, 21)
E2E_SAMPLES = 200
E2E_INDEX = 20  # the course computes F(n) by naive recursion: it refuses n > 40
NOTHING_YET = "Nothing yet!"  # the course's placeholder, as fibstack's
# The POST runs' indexes, 0-20 for both apps. Not up to the course's 40: its
# worker computes F(n) by naive recursion, one message at a time, and F(40)
# takes it about a second, so a few thousand POSTs would keep it busy (and
# one of the two cores) for hours after the run.
POST_SPAN = 21
POST_CONNECTIONS = (10, 50)


def install() -> None:
    """The course app's pinned packages (package-lock.json) into its ignored node_modules/."""
    if not (APP / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=APP, check=True)


@contextmanager
def course_app(env: dict[str, str], work: Path) -> Iterator[tuple[str, str]]:
    """The course's API and worker, and nginx in front as the course configures it: (API URL, router URL)."""
    install()
    port, router_port = free_port(), free_port()
    log = (work / "course-app.log").open("ab")
    child_env = os.environ | env | {"PORT": str(port)}
    processes = [
        subprocess.Popen(["node", script], cwd=APP, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        for script in ("server.js", "worker.js")
    ]
    conf_dir = work / "course-nginx"
    conf_dir.mkdir(parents=True, exist_ok=True)
    server = (
        f"upstream api {{ server 127.0.0.1:{port}; }} "
        f"server {{ listen 127.0.0.1:{router_port}; "
        "location /api { rewrite /api/(.*) /$1 break; proxy_pass http://api; } }"
    )
    main = (
        Path(router.ROUTER_MAIN_CONF).read_text()
        .replace("/tmp/", f"{conf_dir}/")  # noqa: S108
        .replace("access_log /dev/stdout;", "access_log /dev/null;")
        .replace("include /etc/nginx/conf.d/*.conf;", server)
    )  # fmt: skip
    (conf_dir / "nginx.conf").write_text(main)
    try:
        wait_for_port(port)
        with router.serving(conf_dir / "nginx.conf", router_port):
            yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{router_port}"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        log.close()


def post_script(span: int) -> str:
    return POST_SCRIPT.format(first=0, span=span)


def seed(stack: Stack, course_api: str) -> None:
    for index in SEEDED:
        requests.post(f"{stack.api.url}/api/values", json={"index": index}, timeout=5).raise_for_status()
        requests.post(f"{course_api}/values", json={"index": index}, timeout=5).raise_for_status()
    wait_until(lambda: len(requests.get(f"{course_api}/values/all", timeout=5).json()) == len(SEEDED))
    wait_until(
        lambda: all(s["status"] == "done" for s in requests.get(f"{stack.api.url}/api/values/recent", timeout=5).json())
    )


def row(label: str, conns: int, ours: WrkResult, theirs: WrkResult) -> str:
    return (
        f"| {label} | {conns} | {ours.per_second:,.0f} | {ours.p99_ms:.1f} | {ours.not_2xx + ours.socket_errors} "
        f"| {theirs.per_second:,.0f} | {theirs.p99_ms:.1f} | {theirs.not_2xx + theirs.socket_errors} "
        f"| {ours.per_second / theirs.per_second:.2f} |"
    )


def e2e_samples(
    post: Callable[[requests.Session, int], object],
    read: Callable[[requests.Session, int], bool],
    before: Callable[[int], object] = lambda sample: None,
) -> list[float]:
    """POST, then ask the app's own read until it shows the value (`read`): ms each."""
    session = requests.Session()
    samples = []
    for sample in range(E2E_SAMPLES):
        before(sample)
        started = time.perf_counter()
        post(session, sample)
        while not read(session, sample):
            pass
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def bench_course(env: dict[str, str], postgres: PostgresServer, work: Path) -> None:
    if not shutil.which("node"):
        print("## fibstack beside the course's Node app: skipped (no node on PATH)\n")
        return
    print(f"## fibstack beside the course's Node app ({SECONDS} s each, wrk -t2, same servers, same run)\n")
    # The course's app creates its table itself, so it connects as the superuser.
    course_env = env | {"PGUSER": postgres.user, "PGPASSWORD": postgres.password}
    # Both apps from empty stores, whatever ran before in this bench.
    redis = Redis(port=int(env["REDIS_PORT"]))
    redis.flushall()
    with psycopg.connect(conninfo(course_env), autocommit=True) as conn:
        conn.execute("TRUNCATE submissions, indexes")
        conn.execute("DROP TABLE IF EXISTS values")
    with running_stack(env, work) as stack, course_app(course_env, work) as (course_api, course_router):
        seed(stack, course_api)
        print("| path | conns | fibstack req/s | p99 (ms) | errors | course req/s | p99 (ms) | errors | ÷ course |")
        print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
        gets: dict[int, tuple[WrkResult, WrkResult]] = {}
        for path in ("/api/values/current", "/api/values/all"):
            for conns in CONNECTIONS:
                theirs = wrk(f"{course_router}{path}", conns, SECONDS)
                ours = wrk(f"{stack.router_url}{path}", conns, SECONDS)
                if path == "/api/values/current":
                    gets[conns] = (ours, theirs)
                print(row(f"GET {path} via router", conns, ours, theirs))
        current_body = requests.get(f"{stack.router_url}/api/values/current", timeout=5).content
        print()
        print(f"| POST straight to the API, indexes 0-{POST_SPAN - 1} | conns | fibstack 202s/s | p99 (ms) | errors "
              "| course answers/s | p99 (ms) | errors | ÷ course | course rows written/s |")  # fmt: skip
        print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        posts: dict[int, tuple[WrkResult, float, WrkResult]] = {}
        with psycopg.connect(conninfo(course_env), autocommit=True) as conn:
            for conns in POST_CONNECTIONS:
                # The same indexes for both: every POST a new row. Each from the same
                # state of Postgres's WAL, whoever wrote a lot just before.
                conn.execute("CHECKPOINT")
                pids, cpu_before = stack.api_pids(), cpu_seconds(stack.api_pids())
                ours = wrk(f"{stack.api.url}/api/values", conns, SECONDS, script=post_script(POST_SPAN))
                ours_cpu = (cpu_seconds(pids) - cpu_before) * 1000 / max(ours.requests, 1)
                conn.execute("CHECKPOINT")
                rows_before, started = course_rows(conn), time.perf_counter()
                theirs = wrk(f"{course_api}/values", conns, SECONDS, script=post_script(POST_SPAN))
                # The course answers before its INSERT is written: wait until every row it
                # answered for is there (also so that its backlog does not slow what comes next).
                answered = theirs.requests - theirs.not_2xx
                wait_until(partial(rows_reach, conn, rows_before + answered), timeout=600, interval=0.1)
                written = answered / (time.perf_counter() - started)
                posts[conns] = (ours, ours_cpu, theirs)
                print(f"{row('durable on fibstack side only', conns, ours, theirs)} {written:,.0f} |")

        def course_post(session: requests.Session, sample: int) -> None:
            session.post(f"{course_api}/values", json={"index": E2E_INDEX}, timeout=5).raise_for_status()

        def course_read(session: requests.Session, sample: int) -> bool:
            values = session.get(f"{course_api}/values/current", timeout=5).json()
            return bool(values.get(str(E2E_INDEX), NOTHING_YET) != NOTHING_YET)

        def ours_post(session: requests.Session, sample: int) -> None:
            session.post(f"{stack.api.url}/api/values", json={"index": 1000 + sample}, timeout=5).raise_for_status()

        def ours_read(session: requests.Session, sample: int) -> bool:
            return bool(
                session.get(f"{stack.api.url}/api/values/{1000 + sample}", timeout=5).json()["status"] == "done"
            )

        theirs_e2e = e2e_samples(course_post, course_read, lambda sample: redis.hdel("values", str(E2E_INDEX)))
        ours_e2e = e2e_samples(ours_post, ours_read)
    ours_p50, theirs_p50 = statistics.median(ours_e2e), statistics.median(theirs_e2e)
    print(
        f"\nPOST -> value readable (the app's own read asked at once until it shows it, {E2E_SAMPLES} samples, "
        f"straight to each API): fibstack p50 {ours_p50:.1f} ms, the course {theirs_p50:.1f} ms "
        f"(÷ course {theirs_p50 / ours_p50:.2f}: above 1 is faster than the course)."
    )
    print("Its rows written/s: what it answered for, over the time until the last of those rows was in Postgres.\n")
    print_floors(env, work, gets, current_body, posts, ours_p50, theirs_p50)
    print("Goals (#17): at least 1.0x the course on every GET path at 10, 50 and 200 connections with no")
    print("socket errors and p99 no worse; at least 1.0x on POST with durable commits; e2e p50 no worse.\n")


def print_floors(
    env: dict[str, str],
    work: Path,
    gets: dict[int, tuple[WrkResult, WrkResult]],
    current_body: bytes,
    posts: dict[int, tuple[WrkResult, float, WrkResult]],
    ours_e2e_ms: float,
    theirs_e2e_ms: float,
) -> None:
    """Each path on the least app of the design card's packages (floors.py), beside both apps."""
    print("Floors, same run: GET /api/values/current's body from bench/bare_app.py under the API's gunicorn")
    print("settings, behind the same router (no Flask, no Redis: the least any app on this worker costs)\n")
    print("| conns | course req/s | p99 (ms) | bare WSGI req/s | p99 (ms) | fibstack req/s | p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with bare_wsgi(env, work, current_body) as bare_url:
        wrk(f"{bare_url}/api/values/current", CONNECTIONS[0], 1)  # warm up
        for conns, (ours, theirs) in gets.items():
            bare = wrk(f"{bare_url}/api/values/current", conns, SECONDS)
            print(
                f"| {conns} | {theirs.per_second:,.0f} | {theirs.p99_ms:.1f} | {bare.per_second:,.0f} "
                f"| {bare.p99_ms:.1f} | {ours.per_second:,.0f} | {ours.p99_ms:.1f} |"
            )
    print()
    floors = post_floors(env, work, POST_CONNECTIONS, SECONDS, post_script(POST_SPAN))
    print(f"Floors, same run: POST, indexes 0-{POST_SPAN - 1}, on bench/floor_app.py under the API's gunicorn")
    print("settings (Flask alone; Flask with the two round trips of a durable 202, one POST at a time)\n")
    print("| app | conns | 2xx/s | p99 (ms) | API CPU/POST (ms) | ÷ course |")
    print("|:---|---:|---:|---:|---:|---:|")
    for conns, (ours, ours_cpu, theirs) in posts.items():
        print(f"| the course | {conns} | {theirs.per_second:,.0f} | {theirs.p99_ms:.1f} | | 1.00 |")
        for mode, label in MODES.items():
            floor, cpu = floors[mode, conns]
            print(
                f"| {label} | {conns} | {floor.per_second:,.0f} | {floor.p99_ms:.1f} | {cpu:.3f} "
                f"| {floor.per_second / theirs.per_second:.2f} |"
            )
        print(
            f"| fibstack (group commit, admission, queued job) | {conns} | {ours.per_second:,.0f} "
            f"| {ours.p99_ms:.1f} | {ours_cpu:.3f} | {ours.per_second / theirs.per_second:.2f} |"
        )
    post_ms, job_ms = lone_durable_post_ms(env, work, E2E_SAMPLES), rq_noop_job_ms(env, E2E_SAMPLES)
    print(
        f"\nPOST -> value readable, floor: a durable floor POST alone p50 {post_ms:.1f} ms + RQ from enqueue to a "
        f"finished no-op job, polled, p50 {job_ms:.1f} ms = {post_ms + job_ms:.1f} ms (÷ course "
        f"{theirs_e2e_ms / (post_ms + job_ms):.2f}); fibstack {ours_e2e_ms:.1f} ms, "
        f"the course {theirs_e2e_ms:.1f} ms.\n"
    )


def course_rows(conn: psycopg.Connection) -> int:
    count: int = conn.execute("SELECT count(*) FROM values").fetchone()[0]  # type: ignore[index]
    return count


def rows_reach(conn: psycopg.Connection, goal: int) -> bool:
    return course_rows(conn) >= goal


def conninfo(env: dict[str, str]) -> str:
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    return " ".join(f"{key}={env[name]}" for key, name in names.items())
