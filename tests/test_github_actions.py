""".github/workflows/: every step runs what exists in the repo, and the deploys run for real against stand-ins.

The linters (zizmor, actionlint, GitHub's workflow schema) run in make
workflow-lint; here, what they cannot know: that each `run:` calls a make
target or script of this repo, that CI runs what .ci/run runs, and that the
deploy jobs' environment, with the short-lived credentials OIDC gives, is
enough for scripts/ci-deploy.sh (Beanstalk on moto, Kubernetes on a
recording kubectl).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import fake_aws
import pytest
import yaml
from kube import kubectl_calls, write_fake_kubectl

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CI = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v\d+(\.\d+)*$")
REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/fibstack-github-deploy"
SHA = "0123456789abcdef0123456789abcdef01234567"


def workflows() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in WORKFLOWS:
        yield path, yaml.safe_load(path.read_text())


def steps() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, workflow in workflows():
        for name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                yield f"{path.name}:{name}", step


def test_every_run_step_calls_a_make_target_or_a_script_that_exists() -> None:
    runs = [(where, step["run"]) for where, step in steps() if "run" in step]
    assert runs
    for where, command in runs:
        assert "${{" not in command, f"{where}: {command!r}: pass values through env:, never into the shell text"
        first = command.split()[0]
        if first == "make":
            target = command.split()[1]
            assert target in MAKE_TARGETS, f"{where}: no make target {target!r}"
        else:
            assert first.startswith("scripts/"), f"{where}: {command!r}: call a make target or a script"
            path = REPO / first
            assert path.is_file(), f"{where}: {first} does not exist"
            assert path.stat().st_mode & 0o111, f"{where}: {first} is not executable"
        assert "\n" not in command.strip(), f"{where}: one command per step; put logic in a script"


def test_the_test_job_runs_what_ci_runs() -> None:
    ci_run = (REPO / ".ci" / "run").read_text()
    ran_by_ci = re.findall(r"^make ([\w-]+)", ci_run, re.MULTILINE)
    test_job = [step["run"].split()[1] for step in CI["jobs"]["test"]["steps"] if "run" in step]
    assert test_job == ran_by_ci == ["test", "docker-check", "sbom", "devcontainer-check", "k8s-pods-check", "eb-check"]


def test_every_action_is_pinned_to_a_full_commit_with_its_version_beside_it() -> None:
    for path in WORKFLOWS:
        lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(- )?uses:", line)]
        assert lines
        for line in lines:
            assert PINNED.match(line), f"{path.name}: {line.strip()!r}: pin by commit SHA, with '# vX.Y.Z' after it"


def test_each_job_asks_only_for_the_permissions_it_needs() -> None:
    for path, workflow in workflows():
        assert workflow["permissions"] == {}, f"{path.name}: nothing at the top; each job asks for its own"
        for name, job in workflow["jobs"].items():
            permissions = job["permissions"]
            assert permissions.get("contents") == "read", f"{name}: {permissions}"
            writes = {scope for scope, level in permissions.items() if level == "write"}
            expected = {"publish": {"packages"}, "deploy-eb": {"id-token"}, "deploy-k8s": {"id-token"}}.get(name, set())
            assert writes == expected, f"{name}: writes {writes}, needs {expected}"


def test_only_pushes_to_main_publish_and_deploy_and_deploys_never_overlap() -> None:
    jobs = CI["jobs"]
    assert jobs["publish"]["needs"] == "test"
    assert jobs["publish"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    for name in ("deploy-eb", "deploy-k8s"):
        job = jobs[name]
        # After publish, so only where publish ran (a push to main), and in the protected environment.
        assert job["needs"] == "publish"
        assert job["environment"] == "production"
        assert job["concurrency"]["cancel-in-progress"] is False
        text = yaml.safe_dump(job)
        assert "secrets." not in text, f"{name}: no stored secret; the AWS role is assumed by OIDC"
    assert jobs["deploy-eb"]["concurrency"]["group"] != jobs["deploy-k8s"]["concurrency"]["group"]


def test_images_are_built_for_amd64_and_arm64_and_pushed_to_ghcr() -> None:
    step = next(s for s in CI["jobs"]["publish"]["steps"] if "run" in s)
    assert step["run"] == "scripts/push-images.sh"
    assert step["env"]["PLATFORMS"] == "linux/amd64,linux/arm64"
    assert step["env"]["REGISTRY"] == "ghcr.io/${{ github.repository_owner }}"
    assert step["env"]["TAG"] == "${{ github.sha }}"
    login = next(s for s in CI["jobs"]["publish"]["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"


# The deploy jobs, run as GitHub would run them.

CONTEXT = {
    "github.repository_owner": "fibstack-org",
    "github.sha": SHA,
    "vars.AWS_DEPLOY_ROLE_ARN": ROLE,
    "vars.AWS_REGION": REGION,
    "vars.EB_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/fibstack-ecs-task-execution",
    "vars.EKS_CLUSTER": "fibstack",
}


def expand(value: str, context: dict[str, str]) -> str:
    """A workflow value with its ${{ ... }} expressions replaced as GitHub would (plain names only)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in context, f"the test's context lacks {name}"
        return context[name]

    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", one, value)


def job_environment(
    job: str, context: dict[str, str], event: str = "push", ref: str = "refs/heads/main"
) -> dict[str, str]:
    """What the deploy step's process gets: the runner's variables, OIDC's credentials, the step's env."""
    steps = CI["jobs"][job]["steps"]
    oidc = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    role, region = (expand(oidc["with"][key], context) for key in ("role-to-assume", "aws-region"))
    # What configure-aws-credentials does with the job's OIDC token: AssumeRoleWithWebIdentity,
    # then the temporary credentials in the environment of every later step.
    sts = boto3.client(
        "sts", endpoint_url=context["endpoint"], region_name=region, aws_access_key_id="x", aws_secret_access_key="x"
    )
    credentials = sts.assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="GitHubActions", WebIdentityToken="a-github-oidc-token"
    )["Credentials"]
    deploy = next(s for s in steps if s.get("run") == "scripts/ci-deploy.sh")
    runner = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EB_", "TRAVIS", "KUBECONFIG"))}
    return (
        runner
        | {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event, "GITHUB_REF": ref}
        | {
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
        }
        | {name: expand(str(value), context) for name, value in deploy["env"].items()}
    )


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    with fake_aws.serving() as endpoint:
        yield endpoint


def run_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "ci-deploy.sh"
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=300)


def test_the_beanstalk_job_deploys_the_commit_with_oidc_credentials(aws: str) -> None:
    context = CONTEXT | {"endpoint": aws, "vars.EB_APP": "fibgha", "vars.EB_ENV": "fibgha-prod"}
    eb = boto3.client(
        "elasticbeanstalk", endpoint_url=aws, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    eb.create_application(ApplicationName="fibgha")
    eb.create_environment(
        ApplicationName="fibgha",
        EnvironmentName="fibgha-prod",
        SolutionStackName="64bit Amazon Linux 2023 v4.5.0 running ECS",
    )
    env = job_environment("deploy-eb", context) | {
        "AWS_ENDPOINT_URL": aws,  # the stand-in, in place of AWS
        "EB_POLL_SECONDS": "0.05",
    }
    assert env["AWS_SESSION_TOKEN"]  # temporary credentials, not a stored key
    result = run_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    live = eb.describe_environments(ApplicationName="fibgha", EnvironmentNames=["fibgha-prod"])["Environments"][0]
    assert live["VersionLabel"] == SHA
    assert live["Health"] == "Green"
    version = eb.describe_application_versions(ApplicationName="fibgha", VersionLabels=[SHA])["ApplicationVersions"]
    assert version, "the commit's version was not created"


def test_the_kubernetes_job_deploys_the_commit_with_a_kubeconfig_from_oidc(aws: str, tmp_path: Path) -> None:
    kubectl = write_fake_kubectl(tmp_path)
    fake_aws_cli = tmp_path / "aws"
    # The aws CLI GitHub's runners carry: update-kubeconfig writes a kubeconfig whose user runs
    # `aws eks get-token` (short-lived, from the assumed role); recorded with the credentials it saw.
    fake_aws_cli.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$* key=$AWS_ACCESS_KEY_ID session=${{AWS_SESSION_TOKEN:+yes}}" >> {tmp_path}/aws-calls\n'
        'while [ $# -gt 0 ]; do [ "$1" = --kubeconfig ] && echo "# eks kubeconfig" > "$2"; shift; done\n'
    )
    fake_aws_cli.chmod(0o755)
    env = job_environment("deploy-k8s", CONTEXT | {"endpoint": aws}) | {"KUBECTL": str(kubectl), "HAVE_SECRET": "1"}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    result = run_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    aws_calls = (tmp_path / "aws-calls").read_text()
    assert aws_calls.startswith("eks update-kubeconfig --name fibstack --kubeconfig ")
    assert "session=yes" in aws_calls
    made = kubectl_calls(kubectl)
    assert any(call.startswith("apply -f") for call in made)
    assert any("rollout status deployment/api" in call for call in made)
    assert set((tmp_path / "kubeconfigs").read_text().splitlines()) == {"# eks kubeconfig"}
    assert f"with images ghcr.io/fibstack-org/fibstack-*:{SHA}" in result.stderr


@pytest.mark.parametrize(
    ("event", "ref"),
    [("pull_request", "refs/pull/7/merge"), ("push", "refs/heads/feature"), ("workflow_dispatch", "refs/heads/main")],
)
def test_the_deploy_script_refuses_anything_but_a_push_to_main(aws: str, event: str, ref: str) -> None:
    env = job_environment("deploy-eb", CONTEXT | {"endpoint": aws, "vars.EB_APP": "x", "vars.EB_ENV": "y"}, event, ref)
    result = run_deploy(env)
    assert result.returncode == 1
    assert "nothing deployed (only pushes to main deploy)" in result.stderr


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        # An action by tag: zizmor (a tag can be moved to other code).
        ("      - uses: docker/login-action@v3\n", "unpinned-uses"),
        # A misspelt key: actionlint.
        ("      - run: make test\n        time-out-minutes: 5\n", 'unexpected key "time-out-minutes"'),
        # A job that needs one that does not exist: actionlint.
        ("      - run: make test\n", None),
    ],
)
def test_the_workflow_linters_fail_on_a_real_mistake(tmp_path: Path, mistake: str, says: str | None) -> None:
    # make workflow-lint passes on the real workflows; it must not pass on everything.
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    text = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    text = text.replace("    steps:\n", "    steps:\n" + mistake, 1)
    if says is None:
        text = text.replace("    needs: test\n", "    needs: tests\n", 1)
        says = 'job "publish" needs job "tests" which does not exist'
    (workflows / "ci.yml").write_text(text)
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "workflow-lint", f"WORKFLOWS_DIR={workflows}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, result.stdout
    assert says in result.stdout + result.stderr
