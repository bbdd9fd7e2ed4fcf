"""The liveness probe fails when the worker's loop stops, and only then."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from processes import start_worker, wait_until, worker_probe
from redis import Redis

from stack.servers import free_port


@pytest.fixture
def beat(tmp_path: Path) -> Path:
    # Where start_worker has a worker write its heartbeat (next to its log).
    return tmp_path / "worker.heartbeat"


@pytest.fixture
def probe_env(beat: Path) -> dict[str, str]:
    return {"REDIS_HOST": "localhost", "WORKER_HEARTBEAT_FILE": str(beat), "WORKER_STALL_SECONDS": "3"}


def wait_for_the_loop_to_turn(beat: Path) -> None:
    wait_until(beat.exists)
    first = beat.stat().st_mtime
    # Idle, the loop still turns (every heartbeat.LOOP_SECONDS) and touches the file.
    wait_until(lambda: beat.stat().st_mtime > first, timeout=15)


def test_probe_passes_while_the_loop_turns_and_fails_once_it_stops(
    redis_client: Redis, services_env: dict[str, str], tmp_path: Path, beat: Path, probe_env: dict[str, str]
) -> None:
    assert worker_probe(probe_env).returncode == 1  # no worker yet: no file
    worker = start_worker(services_env, tmp_path / "worker.log")
    try:
        wait_for_the_loop_to_turn(beat)
        assert worker_probe(probe_env).returncode == 0

        worker.send_signal(signal.SIGSTOP)  # wedged: alive, but its loop no longer turns
        wait_until(lambda: worker_probe(probe_env).returncode == 1, timeout=15)
        assert "WORKER_STALL_SECONDS=3" in worker_probe(probe_env).stderr

        worker.send_signal(signal.SIGCONT)
        wait_until(lambda: worker_probe(probe_env).returncode == 0, timeout=15)
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(timeout=20)


def test_waiting_for_redis_is_not_being_stuck(
    services_env: dict[str, str], tmp_path: Path, beat: Path, probe_env: dict[str, str]
) -> None:
    env = services_env | {"REDIS_PORT": str(free_port())}  # nothing listens there
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for_the_loop_to_turn(beat)
        assert worker_probe(probe_env).returncode == 0
    finally:
        worker.terminate()
        worker.wait(timeout=20)
