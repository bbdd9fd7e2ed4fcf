"""The docker CLI, for the runners that turn deploy specs into containers (pods.py, beanstalk.py)."""

from __future__ import annotations

import subprocess


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; raise with docker's own message when it fails (unless check=False)."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}... failed:\n{result.stderr[-3000:]}")
    return result


def host_port(container: str, port: int) -> int:
    """The loopback port Docker published for the container's `port`."""
    mapped = docker("port", container, f"{port}/tcp").stdout.split("\n")[0]
    return int(mapped.rsplit(":", 1)[1])


def logs(container: str, lines: int = 40) -> str:
    result = docker("logs", "--tail", str(lines), container, check=False)
    return result.stdout + result.stderr
