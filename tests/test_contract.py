"""The API and the worker each ship a copy of contract.py; they must be identical."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_contract_copies_are_identical() -> None:
    server = (REPO / "server/fibapi/contract.py").read_bytes()
    worker = (REPO / "worker/fibworker/contract.py").read_bytes()
    assert server == worker, (
        "server/fibapi/contract.py and worker/fibworker/contract.py differ: edit one, then copy it over the other"
    )


def test_job_paths_point_at_real_worker_functions() -> None:
    from fibworker import contract, jobs

    for dotted in (contract.JOB_FUNCTION, contract.JOB_FAILURE_CALLBACK):
        module, _, name = dotted.rpartition(".")
        assert module == jobs.__name__
        assert callable(getattr(jobs, name))
