"""API (gunicorn, gevent) -> Redis queue -> worker -> API, all as real processes."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gmpy2
import psycopg
import pytest
import requests
from processes import API, start_worker, wait_until
from redis import Redis
from sse import events, open_stream, wait_for


@pytest.fixture
def stack(services_env: dict[str, str], tmp_path: Path) -> Iterator[API]:
    env = services_env | {"RECONCILE_INTERVAL_SECONDS": "1", "LOG_LEVEL": "INFO"}
    api = API(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    yield api
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    api.stop()


def post(api: API, index: object) -> requests.Response:
    return requests.post(f"{api.url}/api/values", json={"index": index}, timeout=10)


def test_submit_and_see_the_result_arrive(stack: API) -> None:
    stream = events(open_stream(stack.url))
    assert post(stack, "10").status_code == 202
    pending = wait_for(stream, 10, "pending")
    done = wait_for(stream, 10, "done")
    assert int(done.id.split("-")[0]) >= int(pending.id.split("-")[0])
    assert done.event == "status"
    assert done.data["value"] == "55"
    assert requests.get(f"{stack.url}/api/values/10", timeout=5).json() == done.data
    assert requests.get(f"{stack.url}/api/values/current", timeout=5).json() == {"10": "55"}


def test_one_million_is_exact_and_summarised(stack: API) -> None:
    stream = events(open_stream(stack.url))
    post(stack, 1_000_000)
    done = wait_for(stream, 1_000_000)
    expected = gmpy2.fib(1_000_000).digits()
    assert done.data["digits"] == 208_988
    assert done.data["value"] is None
    assert (done.data["head"], done.data["tail"]) == (expected[:20], expected[-20:])
    download = requests.get(f"{stack.url}/api/values/1000000/decimal", timeout=30)
    assert download.headers["Content-Disposition"] == 'attachment; filename="fibonacci-1000000.txt"'
    assert download.text == expected
    shown = requests.get(f"{stack.url}/api/values/current", timeout=5).json()["1000000"]
    assert shown.endswith("(208,988 digits)")


def test_reconnecting_client_gets_what_it_missed(stack: API) -> None:
    stream = events(open_stream(stack.url))
    post(stack, 11)
    first = wait_for(stream, 11)
    post(stack, 12)
    post(stack, 13)
    time.sleep(0.5)
    replayed = events(open_stream(stack.url, last_event_id=first.id))
    assert wait_for(replayed, 12).data["value"] == "144"
    assert wait_for(replayed, 13).data["value"] == "233"


def test_what_redis_loses_is_healed_by_the_running_api_and_nothing_done_is_computed_again(
    stack: API, services_env: dict[str, str], pg_conn: psycopg.Connection
) -> None:
    stream = events(open_stream(stack.url))
    post(stack, 15)
    wait_for(stream, 15)
    # Accepted a while ago, then its job lost with Redis: pending in Postgres, nothing in RQ.
    pg_conn.execute(
        "INSERT INTO indexes (number, job, queued_at) VALUES (17, 'fib-17-lost', now() - interval '1 minute')"
    )
    Redis(port=int(services_env["REDIS_PORT"])).flushall()
    # Nobody asks: the API's reconcile pass finds 17 without a live job and queues it.
    wait_for(stream, 17, "pending")
    assert wait_for(stream, 17).data["value"] == "1597"
    assert requests.get(f"{stack.url}/api/values/current", timeout=5).json() == {"17": "1597", "15": "610"}
    (attempts,) = pg_conn.execute("SELECT attempts FROM indexes WHERE number = 15").fetchone()  # type: ignore[misc]
    assert attempts == 1  # 15 was done: known to Postgres, never computed again


def test_hundreds_of_open_streams_all_get_events_and_do_not_block_requests(stack: API) -> None:
    streams = [open_stream(stack.url) for _ in range(300)]
    try:
        started = time.monotonic()
        assert requests.get(f"{stack.url}/api/values/all", timeout=10).status_code == 200
        post(stack, 21)
        for response in streams:
            assert wait_for(events(response), 21).data["value"] == "10946"
        assert time.monotonic() - started < 60
    finally:
        for response in streams:
            response.close()


def test_sigterm_ends_open_streams_and_exits_cleanly(stack: API) -> None:
    stream = open_stream(stack.url)
    started = time.monotonic()
    assert stack.stop() == 0
    # Shorter than graceful_timeout: the open stream did not hold shutdown up.
    assert time.monotonic() - started < 8
    assert list(events(stream)) == []


def test_a_restart_is_not_held_up_by_event_streams_or_idle_connections(
    services_env: dict[str, str], tmp_path: Path
) -> None:
    """Streams open and reopening (as browsers do), idle keep-alive connections, submissions: SIGTERM.

    gunicorn waited for all of them up to its graceful timeout (10 s); now
    the streams end, the idle connections close, the submissions in flight
    are answered, and it exits. Every 202 was committed.
    """
    import threading

    import psycopg

    api = API(services_env, tmp_path / "api.log", workers=2)
    stop = threading.Event()
    answered: list[int] = []

    def reopening_stream() -> None:
        while not stop.is_set():
            try:
                with requests.get(f"{api.url}/api/events", stream=True, timeout=30) as stream:
                    for _ in stream.iter_lines():
                        if stop.is_set():
                            return
            except requests.RequestException:
                pass
            time.sleep(0.05)

    def submitting(offset: int) -> None:
        index = offset
        session = requests.Session()  # keep-alive: its connection sits idle between requests
        while not stop.is_set():
            index += 4
            try:
                if session.post(f"{api.url}/api/values", json={"index": index}, timeout=15).status_code == 202:
                    answered.append(index)
            except requests.RequestException:
                time.sleep(0.05)
            time.sleep(0.02)

    idle = [requests.Session() for _ in range(20)]
    for session in idle:
        session.get(f"{api.url}/api/healthz", timeout=5)
    threads = [threading.Thread(target=reopening_stream) for _ in range(20)]
    threads += [threading.Thread(target=submitting, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    assert api.stop() == 0
    took = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=35)
    # Far from the graceful timeout (10 s) that held it before.
    assert took < 5, f"SIGTERM to exit took {took:.1f} s"
    assert answered
    connection = {name.removeprefix("PG").lower(): services_env[name] for name in ("PGHOST", "PGPORT", "PGUSER")}
    with psycopg.connect(**connection, password=services_env["PGPASSWORD"], dbname=services_env["PGDATABASE"]) as conn:
        recorded = {number for (number,) in conn.execute("SELECT number FROM submissions")}
    assert set(answered) <= recorded


def test_every_response_is_json_even_for_errors(stack: API) -> None:
    for response in (
        requests.post(f"{stack.url}/api/values", data="index=1", timeout=5),
        requests.post(f"{stack.url}/api/values", json={"index": "1.5"}, timeout=5),
        requests.post(
            f"{stack.url}/api/values", data=b"x" * 5000, headers={"Content-Type": "application/json"}, timeout=5
        ),
        requests.get(f"{stack.url}/api/values/404", timeout=5),
        requests.get(f"{stack.url}/api/nope", timeout=5),
    ):
        assert response.status_code in (400, 404, 413, 415, 422)
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"error", "code"}
        assert "Traceback" not in response.text


def test_chunked_body_over_the_limit_is_refused_not_truncated(stack: API) -> None:
    # No Content-Length: the server only learns the size while reading.
    chunks = iter([b'{"index": "' + b"1" * 4000, b'"}'])
    response = requests.post(
        f"{stack.url}/api/values", data=chunks, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request_entity_too_large"
    small = requests.post(
        f"{stack.url}/api/values",
        data=iter([b'{"index": ', b'"8"}']),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert small.status_code == 202
    assert requests.get(f"{stack.url}/api/values/all", timeout=5).json() == [{"number": 8}]


def test_sigterm_under_load_answers_what_it_took_and_exits_0(services_env: dict[str, str], tmp_path: Path) -> None:
    """A restart under load: every request the API took is answered and committed; it exits 0.

    A connection still waiting in the kernel's accept queue when the listener
    closes is reset without being read: its submission was never recorded, so
    the client can safely send it again (the router does for idempotent
    requests, on another replica). The test holds each side to that.
    """
    import threading

    import psycopg

    api = API(services_env, tmp_path / "api.log", workers=2)
    answered: list[int] = []
    unanswered: list[int] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        index = offset
        while not stop.is_set():
            index += 8
            try:
                response = requests.post(
                    f"{api.url}/api/values", json={"index": index}, headers={"Connection": "close"}, timeout=15
                )
                assert response.status_code == 202, response.text
                answered.append(index)
            except requests.ConnectionError:
                unanswered.append(index)
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    assert api.stop() == 0  # SIGTERM; every worker finished its requests within the graceful timeout
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    assert len(answered) > 20
    connection = {
        "host": services_env["PGHOST"],
        "port": services_env["PGPORT"],
        "user": services_env["PGUSER"],
        "password": services_env["PGPASSWORD"],
        "dbname": services_env["PGDATABASE"],
    }
    with psycopg.connect(**connection) as conn:
        recorded = {number for (number,) in conn.execute("SELECT number FROM submissions")}
    assert set(answered) <= recorded  # every 202 was committed
    assert not set(unanswered) & recorded  # nothing cut half-way: what got no answer was never recorded


def test_a_busy_keep_alive_connection_does_not_hold_up_the_others(stack: API) -> None:
    """A connection whose next request is always there already must not keep the process to itself.

    The router (and wrk) send the next request on a keep-alive connection as
    soon as the last answer is in, so under load it is waiting when gunicorn's
    gevent worker reads: the read succeeds without yielding, and that one
    connection was served over and over while the others' requests waited in
    the kernel (p50 0.3 ms, p99 1.2-3.5 s). Here: 1,000 pipelined requests on
    one connection, and once they are being answered one on another: its
    answer must come before most of the 1,000.
    """
    import socket

    def answer(sock: socket.socket) -> bytes:
        """One whole response (headers and body come in separate writes)."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        while len(body) < length:
            body += sock.recv(65536)
        return head

    request = b"GET /api/values/current HTTP/1.1\r\nHost: test\r\n\r\n"
    busy, other = (socket.create_connection(("127.0.0.1", stack.port), timeout=10) for _ in range(2))
    with busy, other:
        other.sendall(request)
        assert answer(other).startswith(b"HTTP/1.1 200")  # its greenlet now waits for a next request
        busy.sendall(request * 1000)
        busy.recv(1, socket.MSG_PEEK)  # the busy connection is being answered now
        other.sendall(request)
        assert answer(other).startswith(b"HTTP/1.1 200")
        busy.setblocking(False)
        answered_first = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := busy.recv(1 << 20):
                answered_first += chunk
        assert answered_first.count(b"HTTP/1.1 200") < 500


def test_the_system_counts_every_replica_and_worker_and_draws_submissions_through_each(
    services_env: dict[str, str], tmp_path: Path
) -> None:
    """Two API replicas of two processes each, two workers: what GET /api/system says, from either replica."""
    # RECONCILE_INTERVAL_SECONDS is 0 here: being counted must not depend on it.
    replicas = [API(services_env, tmp_path / f"api-{n}.log", workers=2) for n in (1, 2)]
    workers = [start_worker(services_env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:

        def system(replica: API) -> dict[str, Any]:
            body: dict[str, Any] = requests.get(f"{replica.url}/api/system", timeout=5).json()
            return body

        wait_until(lambda: all(system(r)["api"] == {"processes": 4} for r in replicas), timeout=30, interval=0.5)
        wait_until(lambda: system(replicas[0])["workers"]["alive"] == 2, timeout=30, interval=0.5)
        stream = events(open_stream(replicas[1].url))
        for replica, index in zip(replicas, (4321, 4322), strict=True):
            assert post(replica, index).status_code == 202
            wait_for(stream, index)

        def drawn(replica: API) -> dict[int, dict[str, Any]]:
            return {shown["index"]: shown for shown in system(replica)["recent"]}

        for replica in replicas:
            shown = wait_until(lambda r=replica: (d := drawn(r)) and {4321, 4322} <= d.keys() and d, interval=0.5)
            for index in (4321, 4322):
                assert shown[index]["outcome"] == "done"
                assert None not in shown[index]["stages"].values(), shown[index]

        # A worker stopped, then a replica scaled down: each count follows at once.
        stopped = workers.pop()
        stopped.send_signal(signal.SIGTERM)
        stopped.wait(timeout=20)
        wait_until(lambda: system(replicas[0])["workers"]["alive"] == 1, timeout=10, interval=0.5)
        replicas.pop().stop()
        wait_until(lambda: system(replicas[0])["api"] == {"processes": 2}, timeout=10, interval=0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=20)
        for replica in replicas:
            replica.stop()
