"""The API and the worker each ship a copy of contract.py; they must be identical."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["contract.py", "redisconf.py", "pgconf.py", "cache.lua"])
def test_shared_module_copies_are_identical(module: str) -> None:
    # Each image is built from its own folder, so each carries its own copy.
    server = (REPO / "server/fibapi" / module).read_bytes()
    worker = (REPO / "worker/fibworker" / module).read_bytes()
    assert server == worker, (
        f"server/fibapi/{module} and worker/fibworker/{module} differ: edit one, then copy it over the other"
    )


def test_job_paths_point_at_real_worker_functions() -> None:
    from fibworker import contract, jobs

    for dotted in (contract.JOB_FUNCTION, contract.BATCH_JOB_FUNCTION, contract.JOB_FAILURE_CALLBACK):
        module, _, name = dotted.rpartition(".")
        assert module == jobs.__name__
        assert callable(getattr(jobs, name))
