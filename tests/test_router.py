"""nginx/templates/default.conf.template, rendered as the image does, run by a real nginx.

In front of a real API (gunicorn) and a stand-in client.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hostile
import psycopg
import pytest
import requests
from processes import API, start_worker, wait_until

from stack.router import csp, nginx_check_command, nginx_command, real_ip_config, write_router
from stack.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]


class FakeClient(BaseHTTPRequestHandler):
    """Stands in for the client service: says which path it was asked for."""

    def do_GET(self) -> None:
        body = f"client saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_client() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeClient)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def start_router(
    workdir: Path,
    api: str,
    client: str,
    mode: str = "production",
    trusted_proxies: str = "",
    event_streams_max: int = 6000,
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = write_router(
        workdir,
        port,
        api=api,
        client=client,
        mode=mode,
        trusted_proxies=trusted_proxies,
        event_streams_max=event_streams_max,
    )
    check = subprocess.run(nginx_check_command(conf), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    process = subprocess.Popen(nginx_command(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def router(services_env: dict[str, str], fake_client: int, tmp_path: Path) -> Iterator[str]:
    api = API(services_env, tmp_path / "api.log")
    process, url = start_router(tmp_path / "router", f"127.0.0.1:{api.port}", f"127.0.0.1:{fake_client}")
    yield url
    process.terminate()
    process.wait(timeout=10)
    api.stop()


@pytest.fixture
def router_behind_proxy(services_env: dict[str, str], fake_client: int, tmp_path: Path) -> Iterator[str]:
    """The router trusting one proxy, 127.0.0.2; every other peer is a client."""
    api = API(services_env, tmp_path / "api.log")
    process, url = start_router(
        tmp_path / "router", f"127.0.0.1:{api.port}", f"127.0.0.1:{fake_client}", trusted_proxies="127.0.0.2/32"
    )
    yield url
    process.terminate()
    process.wait(timeout=10)
    api.stop()


def submit_from(url: str, source: str, forwarded_for: str) -> int:
    """POST one submission from local address `source`, claiming to forward `forwarded_for`."""
    port = int(url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request(
            "POST",
            "/api/values",
            body=b'{"index": 7}',
            headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_clients_behind_a_trusted_proxy_are_limited_one_by_one(router_behind_proxy: str) -> None:
    # The proxy (127.0.0.2) forwards a flood from one client: that client is limited...
    flood = [submit_from(router_behind_proxy, "127.0.0.2", "203.0.113.1") for _ in range(40)]
    assert 429 in flood
    # ...while another client behind the same proxy is not.
    assert submit_from(router_behind_proxy, "127.0.0.2", "203.0.113.2") == 202


def test_a_client_cannot_spoof_x_forwarded_for_past_the_limit(router_behind_proxy: str) -> None:
    # 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is ignored, so a
    # new made-up address on every request still counts as one client.
    statuses = [submit_from(router_behind_proxy, "127.0.0.1", f"198.51.100.{i}") for i in range(40)]
    assert 429 in statuses


def get_from(url: str, source: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    port = int(url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    connection.request("GET", "/api/healthz", headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_hsts_only_for_what_reached_a_trusted_proxy_over_tls(router_behind_proxy: str) -> None:
    over_tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    assert get_from(router_behind_proxy, "127.0.0.2", over_tls).getheader("Strict-Transport-Security") == (
        "max-age=31536000"
    )
    # The trusted proxy over plain HTTP, and anyone else claiming TLS: no HSTS.
    plain = over_tls | {"X-Forwarded-Proto": "http"}
    assert get_from(router_behind_proxy, "127.0.0.2", plain).getheader("Strict-Transport-Security") is None
    assert get_from(router_behind_proxy, "127.0.0.1", over_tls).getheader("Strict-Transport-Security") is None


def test_the_worker_count_follows_the_containers_cpus_not_the_nodes(tmp_path: Path) -> None:
    script = REPO / "nginx/docker-entrypoint.d/07-fibstack-worker-processes.envsh"
    cgroup = tmp_path / "cpu.max"

    def workers(cpu_max: str | None, nproc: int, preset: str = "") -> str:
        # The script as the entrypoint sources it, with a cgroup file and a CPU count of our choosing.
        text = script.read_text().replace("/sys/fs/cgroup/cpu.max", str(cgroup))
        text = text.replace("/sys/fs/cgroup/cpu/", str(tmp_path / "v1") + "/")
        if cpu_max is None:
            cgroup.unlink(missing_ok=True)
        else:
            cgroup.write_text(cpu_max + "\n")
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir(exist_ok=True)
        (fake_bin / "nproc").write_text(f"#!/bin/sh\necho {nproc}\n")
        (fake_bin / "nproc").chmod(0o755)
        (tmp_path / "script.envsh").write_text(text)
        result = subprocess.run(
            ["sh", "-c", '. "$1" && printf %s "$NGINX_WORKER_PROCESSES"', "sh", str(tmp_path / "script.envsh")],
            env={"PATH": f"{fake_bin}:/usr/bin:/bin", "NGINX_WORKER_PROCESSES": preset},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    assert workers("150000 100000", nproc=64) == "2"  # 1.5 CPUs on a 64-CPU node
    assert workers("max 100000", nproc=64) == "4"  # no limit: the CPUs it may use, at most 4
    assert workers(None, nproc=2) == "2"
    assert workers("50000 100000", nproc=64) == "1"
    assert workers("max 100000", nproc=64, preset="6") == "6"  # set by hand: kept


def test_real_ip_config_comes_from_the_image_script() -> None:
    assert real_ip_config("") == ""
    assert real_ip_config("10.0.0.0/8, 192.168.0.0/16") == (
        "set_real_ip_from 10.0.0.0/8; set_real_ip_from 192.168.0.0/16; "
        "real_ip_header X-Forwarded-For; real_ip_recursive on;"
    )


@pytest.mark.parametrize("mode", ["production", "development"])
def test_both_modes_pass_nginx_t(tmp_path: Path, mode: str) -> None:
    # start_router runs `nginx -t` on the rendered files first.
    process, _ = start_router(tmp_path, "127.0.0.1:1", "127.0.0.1:2", mode)
    process.terminate()
    process.wait(timeout=10)


def test_api_paths_pass_through_unchanged_and_the_rest_goes_to_the_client(router: str) -> None:
    assert requests.get(f"{router}/api/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{router}/api/values/all", timeout=5).json() == []
    assert requests.get(f"{router}/otherpage?x=1", timeout=5).text == "client saw /otherpage?x=1"
    assert requests.get(f"{router}/", timeout=5).text == "client saw /"


def test_security_headers_on_pages_api_and_errors(router: str) -> None:
    for path in ("/", "/api/healthz", "/api/values/404"):
        headers = requests.get(f"{router}{path}", timeout=5).headers
        assert headers["Content-Security-Policy"] == csp("production")
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Server" not in headers or "/" not in headers["Server"]  # no version


def test_large_body_is_refused_with_json(router: str) -> None:
    response = requests.post(
        f"{router}/api/values", data=b"1" * 20_000, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["code"] == "request_entity_too_large"


def test_submissions_are_rate_limited_with_json(router: str) -> None:
    def submit(index: int) -> requests.Response:
        return requests.post(f"{router}/api/values", json={"index": index}, timeout=10)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(submit, range(60)))
    statuses = {response.status_code for response in responses}
    assert statuses == {202, 429}
    limited = next(response for response in responses if response.status_code == 429)
    assert limited.json() == {
        "error": "Too many submissions; wait a moment and try again.",
        "code": "too_many_requests",
    }
    # Reading is not limited.
    assert all(requests.get(f"{router}/api/values/all", timeout=5).ok for _ in range(40))


def test_event_stream_is_not_buffered(router: str) -> None:
    started = time.monotonic()
    with requests.get(f"{router}/api/events", stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in stream.headers
        # The API sends ~30 bytes at once, then nothing for 15 s: a buffering
        # proxy would hold them back until its buffer filled or the timeout hit.
        lines = stream.iter_lines(decode_unicode=True)
        assert next(lines) == "retry: 3000"
        assert time.monotonic() - started < 5
        requests.post(f"{router}/api/values", json={"index": 10}, timeout=5)
        assert any('"index":10' in (line or "") for line in lines)


def test_text_is_compressed(router: str, services_env: dict[str, str]) -> None:
    response = requests.get(f"{router}/api/openapi.json", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert response.headers["Content-Encoding"] == "gzip"


def test_api_down_is_a_json_502(tmp_path: Path, fake_client: int) -> None:
    process, url = start_router(tmp_path, f"127.0.0.1:{free_port()}", f"127.0.0.1:{fake_client}")
    try:
        response = requests.get(f"{url}/api/values/all", timeout=5)
        assert response.status_code == 502
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["code"] == "bad_gateway"
        assert requests.get(f"{url}/nginx-health", timeout=5).text == "ok\n"
    finally:
        process.terminate()
        process.wait(timeout=10)


def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (requests would refuse or fix them); return status, headers, body."""
    import socket

    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /api/values/\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "bad_request"),
        (
            b"GET /api/values/all HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * 65536 + b"\r\nConnection: close\r\n\r\n",
            400,
            "request_header_too_large",
        ),
        (
            b"GET /api/values/" + b"1" * 100_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            414,
            "uri_too_long",
        ),
        (b"TRACE /api/values HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (
            b"POST /api/values HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n",
            501,
            "not_implemented",
        ),
        (b"GET /api/values/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"),
        (b"GET /api/../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"),
    ],
    ids=["nul-in-path", "64k-cookie", "100k-url", "trace", "unknown-transfer-coding", "encoded-traversal", "traversal"],
)
def test_every_answer_under_api_is_json_even_from_nginx_itself(
    router: str, request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, body = raw_request(router, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["code"] == code
    assert headers["content-security-policy"]  # the security headers too


def test_pages_outside_api_still_get_the_client(router: str) -> None:
    got, headers, body = raw_request(router, b"GET /otherpage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (got, body) == (200, b"client saw /otherpage")
    got, headers, _ = raw_request(router, b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got == 405
    assert headers["content-type"].startswith("text/html")  # not an API request: nginx's own page


def test_every_spelling_of_the_submit_path_is_limited_with_it(router: str) -> None:
    hostile.check_every_submit_spelling_is_limited(router)


def test_no_other_spelling_of_the_submit_path_records_anything(router: str, pg_conn: psycopg.Connection) -> None:
    hostile.check_other_spellings_never_submit(router)
    # Only the spellings that decode to /api/values itself were submissions.
    (count,) = pg_conn.execute("SELECT count(*) FROM submissions").fetchone()  # type: ignore[misc]
    assert count == len(hostile.SAME_PATH)


def test_one_client_cannot_hold_every_stream(router: str) -> None:
    # 127.0.0.1 takes its 100 streams (the shipped cap) and is refused one more; 127.0.0.2 is not.
    hostile.check_one_client_at_its_cap(router, hostile.hold_streams, 100, source="127.0.0.1", other="127.0.0.2")


def test_one_client_cannot_hold_every_connection(router: str) -> None:
    # 100 requests in progress (bodies that never come) from 127.0.0.1: its next is a 429, 127.0.0.2's are not.
    hostile.check_one_client_at_its_cap(router, hostile.hold_requests, 100, source="127.0.0.1", other="127.0.0.2")


def test_slow_clients_are_cut_off(router: str) -> None:
    hostile.check_slow_clients_are_cut_off(router)


def test_a_limited_submission_says_when_to_retry(router: str) -> None:
    def submit(index: int) -> requests.Response:
        return requests.post(f"{router}/api/values", json={"index": index}, timeout=10)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(submit, range(40)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    assert all(r.headers["Retry-After"] == "1" for r in limited)
    assert all("Retry-After" not in r.headers for r in responses if r.status_code == 202)


def test_a_stream_past_the_cap_gets_a_clean_503_and_the_others_keep_going(
    services_env: dict[str, str], fake_client: int, tmp_path: Path
) -> None:
    api = API(services_env, tmp_path / "api.log")
    process, url = start_router(
        tmp_path / "router", f"127.0.0.1:{api.port}", f"127.0.0.1:{fake_client}", event_streams_max=3
    )
    streams = [requests.get(f"{url}/api/events", stream=True, timeout=10) for _ in range(3)]
    try:
        assert all(stream.status_code == 200 for stream in streams)
        refused = requests.get(f"{url}/api/events", timeout=10)
        assert refused.status_code == 503
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.json()["code"] == "too_many_streams"
        assert refused.headers["Retry-After"] == "5"
        # The open ones still carry events, and other routes are unaffected.
        assert requests.post(f"{url}/api/values", json={"index": 12}, timeout=5).status_code == 202
        lines = streams[0].iter_lines(decode_unicode=True)
        assert any('"index":12' in (line or "") for line in lines)
        # A closed stream frees its place.
        streams.pop().close()
        time.sleep(0.5)
        with requests.get(f"{url}/api/events", stream=True, timeout=10) as again:
            assert again.status_code == 200
    finally:
        for stream in streams:
            stream.close()
        process.terminate()
        process.wait(timeout=10)
        api.stop()


def test_the_router_has_room_for_its_stream_cap() -> None:
    # Two connections per stream (browser and API), even with a single worker process.
    conf = (REPO / "nginx/nginx.conf").read_text()
    connections = int(re.search(r"worker_connections (\d+);", conf).group(1))  # type: ignore[union-attr]
    files = int(re.search(r"worker_rlimit_nofile (\d+);", conf).group(1))  # type: ignore[union-attr]
    cap = int(re.search(r"EVENT_STREAMS_MAX=(\d+)", (REPO / "nginx/Dockerfile").read_text()).group(1))  # type: ignore[union-attr]
    assert connections >= 2 * cap + 1000
    assert files >= 2 * connections
    gunicorn = (REPO / "server/gunicorn.conf.py").read_text()
    per_process = int(re.search(r"^worker_connections = (\d+)", gunicorn, re.M).group(1))  # type: ignore[union-attr]
    assert per_process * 2 >= cap  # one API replica (two processes) can hold them all


def test_one_request_id_follows_a_submission_from_router_to_worker(
    services_env: dict[str, str], fake_client: int, tmp_path: Path
) -> None:
    env = services_env | {"LOG_LEVEL": "INFO"}
    api = API(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    router, url = start_router(tmp_path / "router", f"127.0.0.1:{api.port}", f"127.0.0.1:{fake_client}")
    try:
        sent = "trace-0123456789"
        response = requests.post(f"{url}/api/values", json={"index": 31}, headers={"X-Request-ID": sent}, timeout=5)
        assert response.status_code == 202
        assert response.headers["X-Request-ID"] == sent  # once: the router's and the API's are one header
        wait_until(lambda: requests.get(f"{url}/api/values/31", timeout=5).json()["status"] == "done")
        api_lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines() if sent in line]
        assert any(line.get("path") == "/api/values" and line["request_id"] == sent for line in api_lines)
        worker_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if sent in line]
        assert any(line["message"] == "computed" and line["index"] == 31 for line in worker_lines)

        # Without one (or with a malformed one), the router makes one up and the API logs that one.
        for headers in ({}, {"X-Request-ID": "bad id!"}):
            made = requests.get(f"{url}/api/values/all", headers=headers, timeout=5).headers["X-Request-ID"]
            assert re.fullmatch(r"[0-9a-f]{32}", made)
            wait_until(lambda: made in (tmp_path / "api.log").read_text())  # noqa: B023
        # The client's pages carry one too.
        assert re.fullmatch(r"[0-9a-f]{32}", requests.get(url, timeout=5).headers["X-Request-ID"])
    finally:
        router.terminate()
        router.wait(timeout=10)
        worker.terminate()
        worker.wait(timeout=30)
        api.stop()
