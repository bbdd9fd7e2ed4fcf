"""scripts/deploy-k8s.sh, against a stand-in kubectl that records what it is asked.

The real cluster part (apply, rollout status, undo) is kubectl's; what is
ours is which calls are made, in which order, and what the user is told.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kube import REPO, kubectl_calls, write_fake_kubectl

SCRIPT = REPO / "scripts" / "deploy-k8s.sh"
WORKLOADS = {
    "deployment/api",
    "deployment/worker",
    "deployment/client",
    "deployment/router",
    "statefulset/postgres",
    "statefulset/redis",
}


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> Path:
    return write_fake_kubectl(tmp_path)


def deploy(fake_kubectl: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = (
        os.environ | {"KUBECTL": str(fake_kubectl), "REGISTRY": "registry.example/team", "TAG": "c0ffee"} | env
    )
    return subprocess.run([str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=120)


def calls(fake_kubectl: Path) -> list[str]:
    return kubectl_calls(fake_kubectl)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_dry_run_prints_the_overlay_with_the_commit_images_and_touches_nothing(
    fake_kubectl: Path, overlay: str
) -> None:
    result = deploy(fake_kubectl, "--dry-run", overlay)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    images = {
        c["image"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    ours = {image for image in images if "fibstack-" in image}
    assert ours == {f"registry.example/team/fibstack-{name}:c0ffee" for name in ("api", "worker", "client", "router")}
    assert [call.split()[0] for call in calls(fake_kubectl)] == ["kustomize"]  # nothing else touched


def test_default_tag_is_the_commit(fake_kubectl: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "TAG"}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    result = subprocess.run(
        [str(SCRIPT), "--dry-run", "dev"],
        env=environment | {"KUBECTL": str(fake_kubectl), "REGISTRY": "r.example"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"r.example/fibstack-api:{commit.strip()}" in result.stdout
    assert ":latest" not in result.stdout


def test_a_registry_is_required(fake_kubectl: Path) -> None:
    result = deploy(fake_kubectl, "--dry-run", "dev", REGISTRY="")
    assert result.returncode != 0
    assert "set REGISTRY" in result.stderr


def test_a_good_deploy_applies_and_waits_for_every_rollout(fake_kubectl: Path) -> None:
    result = deploy(fake_kubectl, "--no-build", "dev")
    assert result.returncode == 0, result.stderr
    made = calls(fake_kubectl)
    applied = next(i for i, call in enumerate(made) if call.startswith("apply -f"))
    waited = {call.split()[4] for call in made[applied:] if " rollout status " in f" {call}"}
    assert waited == WORKLOADS
    assert all(call.split()[:2] == ["-n", "fibstack-dev"] for call in made[applied + 1 :])
    assert "every rollout is complete" in result.stderr


def test_a_rollout_that_does_not_get_ready_is_undone_with_a_clear_message(fake_kubectl: Path) -> None:
    result = deploy(fake_kubectl, "--no-build", "dev", FAIL_ROLLOUT="deployment/worker")
    assert result.returncode != 0
    assert "-n fibstack-dev rollout undo deployment/worker" in calls(fake_kubectl)
    assert not any("rollout undo deployment/api" in call for call in calls(fake_kubectl))
    assert "rolled deployment/worker back" in result.stderr
    assert "the deploy of c0ffee failed: deployment/worker did not become ready" in result.stderr


def test_a_first_deploy_that_fails_says_there_is_nothing_to_roll_back_to(fake_kubectl: Path) -> None:
    result = deploy(fake_kubectl, "--no-build", "dev", FAIL_ROLLOUT="deployment/api", HAVE_HISTORY="0")
    assert result.returncode != 0
    assert "no previous revision" in result.stderr


def test_prod_wants_the_users_secret_before_applying(fake_kubectl: Path) -> None:
    result = deploy(fake_kubectl, "--no-build", "prod")
    assert result.returncode != 0
    assert "create secret generic fibstack-postgres-password --from-literal=password=" in result.stderr
    assert not any(call.startswith("apply") for call in calls(fake_kubectl))
    assert deploy(fake_kubectl, "--no-build", "prod", HAVE_SECRET="1").returncode == 0
