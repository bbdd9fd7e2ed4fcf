""".travis.yml: valid for Travis, and every command it runs exists in the repo.

check-jsonschema's Travis schema misses typos inside some sections, so the
commands are also checked one by one against the Makefile and scripts/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRAVIS = yaml.safe_load((REPO / ".travis.yml").read_text())
MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))


def commands() -> list[str]:
    found: list[str] = []
    for job in TRAVIS["jobs"]["include"]:
        for key in ("before_install", "install", "before_script", "script", "after_success", "deploy"):
            value = job.get(key, [])
            found += [value] if isinstance(value, str) else list(value)
    return found


def test_travis_yml_follows_the_travis_schema() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.travis", str(REPO / ".travis.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_exists_in_the_repo() -> None:
    assert commands()
    for command in commands():
        for make in re.findall(r"\bmake ([\w-]+)", command):
            assert make in MAKE_TARGETS, f"{command!r}: no make target {make!r}"
        for script in re.findall(r"\b(scripts/[\w./-]+)", command):
            path = REPO / script
            assert path.is_file(), f"{command!r}: {script} does not exist"
            assert path.stat().st_mode & 0o111, f"{script} is not executable"
        first = command.split()[0]
        assert first in ("make", "scripts/ci-publish.sh", "scripts/ci-deploy.sh"), f"{command!r}: call a script or make"


def test_the_scripts_ci_calls_call_what_exists() -> None:
    for script in ("scripts/ci-publish.sh", "scripts/ci-deploy.sh"):
        text = (REPO / script).read_text()
        for make in re.findall(r"\bmake ([\w-]+)", text):
            assert make in MAKE_TARGETS, f"{script}: no make target {make!r}"


def test_the_test_stage_runs_what_ci_runs() -> None:
    stages = {job["stage"]: job for job in TRAVIS["jobs"]["include"]}
    assert stages["test"]["script"] == "make test"
    assert "make test" in (REPO / ".ci/run").read_text()
    assert [stage["name"] for stage in TRAVIS["stages"]] == ["test", "build", "deploy"]
    # Images and deploys only from pushes to main: the only builds that get the credentials.
    assert TRAVIS["stages"][1]["if"] == TRAVIS["stages"][2]["if"] == "type = push AND branch = main"


def test_without_secrets_publish_and_deploy_do_nothing_and_succeed(tmp_path: Path) -> None:
    # A pull request or a fork without the variables: green, and nothing pushed or deployed.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for script, says in (("scripts/ci-publish.sh", "nothing pushed"), ("scripts/ci-deploy.sh", "nothing deployed")):
        result = subprocess.run([str(REPO / script)], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert says in result.stdout


def test_deploy_goes_where_the_variables_say(tmp_path: Path) -> None:
    import base64

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_make = bin_dir / "make"
    # Records each call and the kubeconfig it was given.
    fake_make.write_text(f'#!/bin/sh\necho "$* ${{KUBECONFIG:+$(cat "$KUBECONFIG")}}" >> {tmp_path}/calls\n')
    fake_make.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "EB_APP": "fibstack",
        "EB_ENV": "fibstack-prod",
        "KUBECONFIG_BASE64": base64.b64encode(b"apiVersion: v1\nkind: Config").decode(),
    }
    result = subprocess.run([str(REPO / "scripts/ci-deploy.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].strip() == "deploy-eb"
    assert calls[1].startswith("deploy-k8s OVERLAY=prod DEPLOY_K8S_FLAGS=--no-build apiVersion: v1")


@pytest.mark.parametrize(
    ("pull_request", "branch", "refused"),
    [("7", "main", "a pull request build"), ("false", "feature", "a build of branch 'feature'")],
)
def test_the_deploy_script_refuses_any_travis_build_but_a_push_to_main(
    tmp_path: Path, pull_request: str, branch: str, refused: str
) -> None:
    # Even if the stage conditions were edited away, another branch's code is not deployed.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TRAVIS": "true",
        "TRAVIS_PULL_REQUEST": pull_request,
        "TRAVIS_BRANCH": branch,
        "EB_APP": "fibstack",
        "EB_ENV": "fibstack-prod",
    }
    result = subprocess.run([str(REPO / "scripts/ci-deploy.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"ci-deploy: this is {refused}: nothing deployed (only pushes to main deploy)" in result.stderr
