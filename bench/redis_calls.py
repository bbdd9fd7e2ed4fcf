"""`make bench` section redis: what one redis-py call costs under gevent, with and without fibapi/gevent_poll.py.

Counted in instructions by valgrind's callgrind (the same count every run,
whatever else the machine does), as the difference between 2,500 and 500
GETs on one pooled connection, so start-up is left out. redis-py 8 checks a
connection for unread data with select.poll(0) each time it takes it from
the pool, which under gevent's monkey-patching was a round trip through the
hub (fibapi/gevent_poll.py says more).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys
from gevent import monkey
monkey.patch_all()
if sys.argv[3] == "fixed":
    from fibapi import gevent_poll
    gevent_poll.apply()
import redis
r = redis.Redis(port=int(sys.argv[2]), socket_timeout=1.0)
r.set("k", "v")
for _ in range(int(sys.argv[1])):
    r.get("k")
"""


def instructions(port: int, gets: int, variant: str) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", PROGRAM, str(gets), str(port), variant],
        capture_output=True, text=True, check=True, cwd=REPO / "server",
        env={"PYTHONPATH": str(REPO / "server"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def bench_redis_calls(env: dict[str, str]) -> None:
    import redis

    print(f"## One redis-py {redis.__version__} GET under gevent, in instructions (callgrind)\n")
    if not shutil.which("valgrind"):
        print("valgrind is not installed: skipped (apt-get install valgrind)\n")
        return
    port = int(env["REDIS_PORT"])
    print("| select.poll | instructions per GET |")
    print("|:---|---:|")
    for variant, label in (("stock", "gevent's"), ("fixed", "fibapi/gevent_poll.py")):
        per_get = (instructions(port, 2500, variant) - instructions(port, 500, variant)) // 2000
        print(f"| {label} | {per_get:,} |")
    print(
        "\nMeasured the same way with other versions (2026-12-02, this machine): redis-py 5.2.1 111,369;"
        " 6.4.0 132,216; 7.0.1 139,005; 7.4.1 181,647; 8.0.1 297,643 (194,620 fixed); 8.1.0 299,969"
        " (198,608 fixed).\n"
    )
