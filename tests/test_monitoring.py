"""Prometheus itself (Debian's package) against the local stack, the alert rules' unit tests, the dashboard."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from processes import API, REPO, start_worker, wait_until

from stack.router import nginx_command, write_router
from stack.servers import free_port, wait_for_port

MONITORING = REPO / "monitoring"


def test_alert_rules_pass_their_unit_tests() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "rules.test.yml"], cwd=MONITORING / "prometheus", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_and_rules_are_valid() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"], cwd=MONITORING / "prometheus", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Monitored:
    api: API
    prometheus: str
    slow_worker: subprocess.Popen[bytes]
    start_worker: Callable[[], subprocess.Popen[bytes]]

    def query(self, expr: str) -> list[dict[str, object]]:
        answer = requests.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, object]] = answer["data"]["result"]
        return result

    def number(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def monitored(services_env: dict[str, str], tmp_path: Path) -> Iterator[Monitored]:
    """API (2 processes), a slow worker (another on demand), the router, its exporter, Prometheus on them all."""
    env = services_env | {"RECONCILE_INTERVAL_SECONDS": "0"}
    api = API(env, tmp_path / "api.log", workers=2)
    worker_ports = [free_port(), free_port()]
    workers = [start_worker(env | {"METRICS_PORT": str(worker_ports[0])}, tmp_path / "slow-worker.log", delay=3.0)]

    def another_worker() -> subprocess.Popen[bytes]:
        workers.append(start_worker(env | {"METRICS_PORT": str(worker_ports[1])}, tmp_path / "worker.log"))
        return workers[-1]

    router_port, status_port, exporter_port, prometheus_port = free_port(), free_port(), free_port(), free_port()
    conf = write_router(
        tmp_path / "router", router_port, api=f"127.0.0.1:{api.port}", client="127.0.0.1:9", mode="production",
        status_port=status_port,
    )  # fmt: skip
    processes = [spawn(nginx_command(conf), tmp_path / "router.log")]
    wait_for_port(status_port)  # the exporter gives up on a router that is not there yet
    processes.append(
        spawn(
            ["prometheus-nginx-exporter", f"-nginx.scrape-uri=http://127.0.0.1:{status_port}/stub_status",
             f"-web.listen-address=127.0.0.1:{exporter_port}"],
            tmp_path / "exporter.log",
        )
    )  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "prometheus" / "rules.yml")],
        "scrape_configs": [
            {"job_name": "fibstack-api", "static_configs": [{"targets": [f"127.0.0.1:{api.metrics_port}"]}]},
            {
                "job_name": "fibstack-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in worker_ports]}],
            },
            {"job_name": "fibstack-router", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    processes.append(
        spawn(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            tmp_path / "prometheus.log",
        )
    )  # fmt: skip
    try:
        wait_for_port(prometheus_port)
        # It listens before its storage is open, answering 503 until then.
        wait_until(lambda: requests.get(f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=2).ok, timeout=60)
        yield Monitored(api, f"http://127.0.0.1:{prometheus_port}", workers[0], another_worker)
    finally:
        for process in [*processes, *workers]:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        api.stop()


def test_prometheus_sees_submissions_the_queue_and_a_dead_workers_job(monitored: Monitored) -> None:
    prometheus = monitored
    try:
        wait_until(lambda: prometheus.number('count(up{job=~"fibstack-.*"} == 1)') == 3, timeout=30)
    except TimeoutError:
        raise AssertionError(prometheus.query("up")) from None
    # One slow worker: it takes the first job and the rest wait in the queue.
    url = f"{prometheus.api.url}/api/values"
    for index in (21, 22, 23, 24, 21):
        assert requests.post(url, json={"index": index}, timeout=5).status_code == 202
    for bad in ("x", -1):
        assert requests.post(url, json={"index": bad}, timeout=5).status_code == 422
    wait_until(lambda: prometheus.number("max(fibstack_queue_jobs)") >= 2, timeout=30)
    wait_until(lambda: prometheus.number("max(fibstack_queue_oldest_job_age_seconds)") > 0, timeout=30)
    # Killed in the middle of its job: another worker puts it back and does everything.
    prometheus.slow_worker.kill()
    prometheus.slow_worker.wait(timeout=10)
    prometheus.start_worker()
    wait_until(lambda: prometheus.number('sum(fibstack_worker_jobs_total{outcome="done"})') >= 4, timeout=60)
    wait_until(lambda: prometheus.number("sum(fibstack_worker_requeued_jobs_total)") >= 1, timeout=30)
    wait_until(lambda: prometheus.number("max(fibstack_queue_jobs)") == 0, timeout=60)

    assert prometheus.number('sum(fibstack_api_submissions_total{outcome="accepted"})') == 4
    assert prometheus.number('sum(fibstack_api_submissions_total{outcome="deduplicated"})') == 1
    assert prometheus.number('sum(fibstack_api_submissions_total{outcome="refused"})') == 2
    assert prometheus.number('sum(fibstack_api_request_duration_seconds_count{route="/api/values"})') == 7
    assert prometheus.number("sum(fibstack_worker_compute_seconds_count)") >= 4
    assert prometheus.number("sum(nginx_connections_accepted)") >= 1
    # The rules loaded and evaluate without errors.
    groups = requests.get(f"{prometheus.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {group["name"] for group in groups} == {"fibstack.recording", "fibstack.alerts"}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups
    # Every panel of the dashboard is a query Prometheus accepts.
    dashboard = json.loads((MONITORING / "grafana" / "fibstack.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            prometheus.query(target["expr"])
