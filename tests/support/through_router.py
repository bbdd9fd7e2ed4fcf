"""Checks of a running stack through its router, shared by the container runners (pods.py, beanstalk.py)."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import requests
from kube import REPO


def compute_through_router(base: str, index: int, timeout: float = 120) -> dict[str, Any]:
    response = requests.post(f"{base}/api/values", json={"index": str(index)}, timeout=10)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = requests.get(f"{base}/api/values/{index}", timeout=10).json()
        if status["status"] != "pending":
            return status
        time.sleep(0.5)
    raise RuntimeError(f"F({index}) did not finish within {timeout} s")


def browser_test(base: str) -> None:
    env = os.environ | {"E2E_BASE_URL": base}
    subprocess.run(
        [str(REPO / "scripts/with-node"), "npx", "vitest", "run", "--config", "vitest.e2e.config.ts"],
        cwd=REPO / "client",
        env=env,
        check=True,
    )
