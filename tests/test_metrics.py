"""Prometheus metrics of the API (two gunicorn processes added up), the worker and the router."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from fibworker import contract
from fibworker.jobqueue import fib_queue
from processes import API, start_worker, wait_until
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Callback

from stack.router import serving, write_router
from stack.servers import free_port, wait_for_port


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at `url`, by name and sorted labels."""
    text = requests.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def api(services_env: dict[str, str], tmp_path: Path) -> Iterator[API]:
    api = API(services_env | {"RECONCILE_INTERVAL_SECONDS": "0"}, tmp_path / "api.log", workers=2)
    yield api
    api.stop()


def test_api_counts_every_request_across_its_processes(api: API) -> None:
    # A new connection each time, until both of gunicorn's processes have
    # answered some (each writes its own files; the master adds them up).
    sent = 0
    while sent < 40 or len(list(Path(api.metrics_dir).glob("counter_*.db"))) < 2:
        assert requests.get(f"{api.url}/api/values/7", headers={"Connection": "close"}, timeout=5).status_code == 404
        sent += 1
        assert sent < 2000, "one process answered everything"
    for index in ("5", "5", "x", "-1"):
        requests.post(f"{api.url}/api/values", json={"index": index}, headers={"Connection": "close"}, timeout=5)
    requests.post(f"{api.url}/api/values", data=b"{", headers={"Content-Type": "application/json"}, timeout=5)
    samples = scrape(api.metrics_url)
    route = "/api/values/<int:index>"
    assert value(samples, "fibstack_api_requests_total", route=route, method="GET", status="404") == sent
    assert value(samples, "fibstack_api_request_duration_seconds_count", route=route) == sent
    assert value(samples, "fibstack_api_requests_total", route="/api/values", method="POST", status="202") == 2
    assert value(samples, "fibstack_api_submissions_total", outcome="accepted", code="") == 1
    assert value(samples, "fibstack_api_submissions_total", outcome="deduplicated", code="") == 1
    refused = {
        labels: count
        for (name, labels), count in samples.items()
        if name == "fibstack_api_submissions_total" and ("outcome", "refused") in labels
    }
    assert sum(refused.values()) == 3


def test_open_event_streams_are_counted(api: API) -> None:
    streams = [requests.get(f"{api.url}/api/events", stream=True, timeout=10) for _ in range(3)]
    try:
        wait_until(lambda: value(scrape(api.metrics_url), "fibstack_api_event_streams") == 3)
    finally:
        for stream in streams:
            stream.close()


def test_a_dependency_failing_is_counted_by_name(services_env: dict[str, str], tmp_path: Path) -> None:
    # Redis that is not there: every submission is a 503 naming it.
    env = services_env | {"REDIS_PORT": str(free_port()), "RECONCILE_INTERVAL_SECONDS": "0", "LOG_LEVEL": "INFO"}
    api = API(env, tmp_path / "api.log")
    try:
        headers = {"X-Request-ID": "outage-0123456789"}
        assert requests.post(f"{api.url}/api/values", json={"index": 3}, headers=headers, timeout=5).status_code == 503
        # The app's own log line about it carries the request's id too.
        lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines() if line.startswith("{")]
        warning = next(line for line in lines if line["logger"] == "fibapi.errors")
        assert warning["request_id"] == "outage-0123456789"
        samples = scrape(api.metrics_url)
        assert value(samples, "fibstack_api_dependency_unavailable_total", dependency="redis") == 1
        assert value(samples, "fibstack_api_submissions_total", outcome="refused", code="redis_unavailable") == 1
    finally:
        api.stop()


def test_worker_reports_its_jobs_and_the_queue(services_env: dict[str, str], tmp_path: Path) -> None:
    redis = Redis(port=int(services_env["REDIS_PORT"]))
    queue = fib_queue(redis)
    for index in (10, 11, 12, 13):
        queue.enqueue_call(
            contract.JOB_FUNCTION,
            args=(index,),
            job_id=contract.new_job_id(index),
            on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
        )
    port = free_port()
    worker = start_worker(services_env | {"METRICS_PORT": str(port)}, tmp_path / "worker.log", delay=1.0)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_port(port)
        samples = scrape(url)
        assert value(samples, "fibstack_queue_jobs") >= 2
        assert value(samples, "fibstack_queue_oldest_job_age_seconds") > 0
        wait_until(lambda: value(scrape(url), "fibstack_worker_jobs_total", outcome="done") == 4, timeout=30)
        samples = scrape(url)
        assert value(samples, "fibstack_worker_compute_seconds_count") == 4
        assert value(samples, "fibstack_worker_digits_total") == 2 + 2 + 3 + 3  # 55, 89, 144, 233
        assert value(samples, "fibstack_queue_jobs") == 0
        assert value(samples, "fibstack_queue_oldest_job_age_seconds") == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_a_busy_metrics_port_is_named_with_the_way_out(services_env: dict[str, str], tmp_path: Path) -> None:
    with socket_on_a_port() as port:
        worker = start_worker(services_env | {"METRICS_PORT": str(port)}, tmp_path / "worker.log")
        assert worker.wait(timeout=30) == 2
    log = (tmp_path / "worker.log").read_text()
    assert f"cannot serve metrics on port {port}" in log
    assert "set METRICS_PORT" in log


def test_metrics_are_never_served_through_the_router(api: API, tmp_path: Path) -> None:
    status_port = free_port()
    port = free_port()
    conf = write_router(
        tmp_path / "router", port, api=f"127.0.0.1:{api.port}", client="127.0.0.1:9", mode="production",
        status_port=status_port,
    )  # fmt: skip
    with serving(conf, port):
        for path in ("/metrics", "/stub_status", "/api/metrics"):
            response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert response.status_code == 404, path
            assert response.json()["code"] == "not_found"
        status = requests.get(f"http://127.0.0.1:{status_port}/stub_status", timeout=5)
        assert status.status_code == 200
        assert "Active connections" in status.text


@contextmanager
def socket_on_a_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (where the metrics server binds)
        sock.listen()
        yield sock.getsockname()[1]
