"""A file that proves the worker's main loop is turning, for liveness probes.

The worker touches the file every time its loop turns: at least every
LOOP_SECONDS while idle (RQ's dequeue wait), and before and after each job.
A worker whose loop stops (deadlocked, stuck in a call that never returns)
stops touching it, and `python -m fibworker.heartbeat` (the Kubernetes exec
probe) fails once the file is older than WORKER_STALL_SECONDS. Redis being
down does not stop the loop, so it does not fail the probe: restarting
workers would not bring Redis back.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# How long an idle worker waits on the queue before its loop turns again.
LOOP_SECONDS = 5
# RQ waits (worker_ttl - 15) seconds for a job before turning its loop.
RQ_WORKER_TTL = LOOP_SECONDS + 15


def touch(path: Path) -> None:
    path.touch()


def age_seconds(path: Path) -> float | None:
    """Seconds since the last touch, or None if the file does not exist."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def main() -> int:
    """The liveness probe: exit 0 if the loop turned recently, 1 (saying why) if not."""
    from .config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"fibworker heartbeat: {exc}", file=sys.stderr)
        return 2
    path = Path(settings.heartbeat_file)
    age = age_seconds(path)
    if age is None:
        print(f"fibworker heartbeat: {path} does not exist (the worker has not started its loop)", file=sys.stderr)
        return 1
    if age > settings.stall_seconds:
        print(
            f"fibworker heartbeat: last beat {age:.0f} s ago, over WORKER_STALL_SECONDS={settings.stall_seconds}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("REDIS_HOST", "unused-by-the-probe")
    sys.exit(main())
