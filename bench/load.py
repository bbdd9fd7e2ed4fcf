"""Load generation and process accounting for `make bench`.

wrk (Debian's package) drives HTTP load; CPU time and memory come from
/proc, so the figures are the API's own, not the load generator's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux; /proc/<pid>/stat counts in these

# wrk's Lua: POST bodies with indexes cycling through a range, so that most
# submissions repeat an index (as users do) and a known set gets computed.
POST_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local thread_offset = 0
local span = {span}
local first = {first}
setup = function(thread)
  thread:set("thread_offset", math.random(0, span - 1))
end
request = function()
  counter = counter + 1
  local index = first + (thread_offset + counter * 7919) % span
  return wrk.format(nil, nil, nil, '{{"index": ' .. index .. '}}')
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    not_2xx: int
    socket_errors: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, connections: int, seconds: float, script: str | None = None, threads: int = 2) -> WrkResult:
    """Run wrk against `url`; its figures, non-2xx answers and socket errors included."""
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            argv += ["-s", lua.name]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    assert total, out
    elapsed = float(total.group(2)) * (60 if total.group(3) == "m" else 1)
    latency = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    assert {"50", "99"} <= latency.keys(), out
    not_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=elapsed,
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        not_2xx=int(not_2xx.group(1)) if not_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's worker processes under its master)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        return []
    return [int(child) for child in path.read_text().split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) of the processes together, in MiB. PSS shares pages fairly between forks."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except FileNotFoundError:
            continue
        figures = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE))
        rss += int(figures["Rss"])
        pss += int(figures["Pss"])
    return rss / 1024, pss / 1024
