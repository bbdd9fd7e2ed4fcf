"""Start the real services as subprocesses, the way deployments run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from stack.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str]) -> dict[str, str]:
    pythonpath = os.pathsep.join(str(REPO / part) for part in ("server", "worker", "tests/support"))
    return os.environ | {"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"} | extra


def start_worker(env: dict[str, str], log: Path, delay: float = 0.0) -> subprocess.Popen[bytes]:
    """`python -m fibworker`, or the test wrapper that slows each job by `delay`."""
    argv = (
        [sys.executable, str(REPO / "tests/support/slow_worker.py")] if delay else [sys.executable, "-m", "fibworker"]
    )
    extra = {
        "FIB_TEST_DELAY": str(delay),
        "WORKER_LIVENESS_TTL_SECONDS": "3",
        # One per worker: several run at once in the tests.
        "WORKER_HEARTBEAT_FILE": str(log.with_suffix(".heartbeat")),
        # Several run at once in the tests: each its own metrics port.
        "METRICS_PORT": str(free_port()),
    } | env
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=_env(extra), stdout=out, stderr=subprocess.STDOUT, cwd=REPO / "worker")


def worker_probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The worker's liveness probe (`python -m fibworker.heartbeat`), as Kubernetes runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fibworker.heartbeat"],
        env=_env(env),
        cwd=REPO / "worker",
        capture_output=True,
        text=True,
        timeout=30,
    )


class API:
    """gunicorn serving the API exactly as in production (gunicorn.conf.py)."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1, extra_args: tuple[str, ...] = ()) -> None:
        self.log = log
        # A free port can be taken by another process between our check and
        # gunicorn's bind (parallel test runs): then try another one.
        for _ in range(3):
            if self._start(env, workers, extra_args):
                return
            self.stop()
            if not self._port_was_taken():
                break
        raise TimeoutError(f"the API did not start; see {log}:\n{log.read_text()[-3000:]}")

    def _port_was_taken(self) -> bool:
        text = self.log.read_text() if self.log.exists() else ""
        return "Address already in use" in text[self._log_start :]

    def _start(self, env: dict[str, str], workers: int, extra_args: tuple[str, ...]) -> bool:
        self._log_start = len(self.log.read_text()) if self.log.exists() else 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        # Its own: gunicorn empties it at start.
        self.metrics_dir = str(self.log.with_name(f"{self.log.stem}-metrics-{self.port}"))
        extra = {"METRICS_PORT": str(self.metrics_port), "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir} | env
        extra |= {"PORT": str(self.port), "WEB_CONCURRENCY": str(workers)}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *extra_args],
                env=_env(extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO / "server",
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.url}/api/healthz", timeout=1).ok:
                    return True
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or listening but still loading the app
                # (slow on a busy machine): ask again.
                time.sleep(0.1)
            if self._port_was_taken():
                return False
        return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")
