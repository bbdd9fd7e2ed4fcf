"""scripts/deploy_eb.py against a local AWS stand-in (moto, with the Beanstalk calls it lacks: fake_aws.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import fake_aws
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "deploy_eb.py"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    with fake_aws.serving() as endpoint:
        yield endpoint


@pytest.fixture
def environment(aws: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh Beanstalk application and environment; the variables a user sets for the script."""
    name = f"fib{abs(hash(request.node.name)) % 10**8}"
    eb = client("elasticbeanstalk", aws)
    eb.create_application(ApplicationName=name)
    eb.create_environment(
        ApplicationName=name,
        EnvironmentName=f"{name}-prod",
        SolutionStackName="64bit Amazon Linux 2023 v4.5.0 running ECS",
    )
    return {
        "AWS_ENDPOINT_URL": aws,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "EB_APP": name,
        "EB_ENV": f"{name}-prod",
        "REGISTRY": "registry.example/team",
        "EB_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/fibstack-ecs-task-execution",
        "TAG": "0123456789abcdef",
        "EB_POLL_SECONDS": "0.05",
        "EB_TIMEOUT_SECONDS": "10",
    }


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=clean | env, capture_output=True, text=True, timeout=120
    )


def bundle_from_s3(env: dict[str, str]) -> zipfile.ZipFile:
    eb = client("elasticbeanstalk", env["AWS_ENDPOINT_URL"])
    version = eb.describe_application_versions(ApplicationName=env["EB_APP"])["ApplicationVersions"][0]
    source = version["SourceBundle"]
    body = (
        client("s3", env["AWS_ENDPOINT_URL"]).get_object(Bucket=source["S3Bucket"], Key=source["S3Key"])["Body"].read()
    )
    return zipfile.ZipFile(io.BytesIO(body))


def test_a_deploy_uploads_the_bundle_creates_the_version_and_updates_the_environment(
    environment: dict[str, str],
) -> None:
    result = deploy(environment)
    assert result.returncode == 0, result.stdout + result.stderr
    archive = bundle_from_s3(environment)
    dockerrun = json.loads(archive.read("Dockerrun.aws.json"))
    images = {c["name"]: c["image"] for c in dockerrun["containerDefinitions"]}
    assert images == {
        name: f"registry.example/team/fibstack-{'api' if name == 'migrate' else name}:0123456789abcdef"
        for name in ("client", "migrate", "api", "worker", "router")
    }
    # ECS reads each container's secrets from Parameter Store with the role the user named.
    assert dockerrun["executionRoleArn"] == environment["EB_EXECUTION_ROLE_ARN"]
    secrets = {c["name"]: [s["valueFrom"] for s in c.get("secrets", [])] for c in dockerrun["containerDefinitions"]}
    assert secrets["router"] == secrets["client"] == []
    assert secrets["api"] == ["/fibstack/PGPASSWORD", "/fibstack/REDIS_PASSWORD"]
    assert "certs/README" in archive.namelist() or any(n.startswith("certs/") for n in archive.namelist())
    eb = client("elasticbeanstalk", environment["AWS_ENDPOINT_URL"])
    env = eb.describe_environments(ApplicationName=environment["EB_APP"], EnvironmentNames=[environment["EB_ENV"]])
    assert env["Environments"][0]["VersionLabel"] == "0123456789abcdef"
    assert env["Environments"][0]["Health"] == "Green"
    assert "health Green" in result.stdout


def test_the_compose_platform_gets_a_compose_bundle(environment: dict[str, str]) -> None:
    result = deploy(environment, "--platform", "docker")
    assert result.returncode == 0, result.stdout + result.stderr
    archive = bundle_from_s3(environment)
    assert "Dockerrun.aws.json" not in archive.namelist()
    compose = yaml.safe_load(archive.read("docker-compose.yml"))
    assert compose["services"]["api"]["image"] == "registry.example/team/fibstack-api:0123456789abcdef"


def test_a_reused_label_fails_and_says_why(environment: dict[str, str]) -> None:
    assert deploy(environment).returncode == 0
    again = deploy(environment)
    assert again.returncode == 1
    assert "version 0123456789abcdef exists already" in again.stderr
    assert "Created new Application Version (0123456789abcdef)" in again.stderr  # Beanstalk's events


def test_an_unhealthy_environment_fails_the_deploy_with_beanstalks_events(environment: dict[str, str]) -> None:
    eb = client("elasticbeanstalk", environment["AWS_ENDPOINT_URL"])
    arn = eb.describe_environments(EnvironmentNames=[environment["EB_ENV"]])["Environments"][0]["EnvironmentArn"]
    eb.update_tags_for_resource(ResourceArn=arn, TagsToAdd=[{"Key": fake_aws.HEALTH_TAG, "Value": "Red"}])
    result = deploy(environment)
    assert result.returncode == 1
    assert "its health is Red" in result.stderr
    assert "Essential container in task exited" in result.stderr


@pytest.mark.parametrize("name", ["EB_ENV", "EB_EXECUTION_ROLE_ARN"])
def test_a_missing_variable_is_named(environment: dict[str, str], name: str) -> None:
    result = deploy({k: v for k, v in environment.items() if k != name})
    assert result.returncode != 0
    assert f"set {name}" in result.stderr


def test_the_parameters_can_live_under_another_path(tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    env = {"REGISTRY": "r.example", "TAG": "abc", "EB_PARAMETER_PATH": "/teams/fib/prod/"}
    assert deploy(env, "--bundle-only", str(out)).returncode == 0
    dockerrun = json.loads(zipfile.ZipFile(out).read("Dockerrun.aws.json"))
    worker = next(c for c in dockerrun["containerDefinitions"] if c["name"] == "worker")
    assert worker["secrets"] == [
        {"name": "PGPASSWORD", "valueFrom": "/teams/fib/prod/PGPASSWORD"},
        {"name": "REDIS_PASSWORD", "valueFrom": "/teams/fib/prod/REDIS_PASSWORD"},
    ]


def test_bundle_only_needs_no_aws(tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    result = deploy({"REGISTRY": "r.example", "TAG": "abc"}, "--bundle-only", str(out))
    assert result.returncode == 0, result.stderr
    dockerrun = json.loads(zipfile.ZipFile(out).read("Dockerrun.aws.json"))
    assert all(c["image"].endswith(":abc") for c in dockerrun["containerDefinitions"])
