"""Deploy the commit's images to an Elastic Beanstalk environment (make deploy-eb; CI calls the same).

    .venv/bin/python scripts/deploy_eb.py [--platform ecs|docker] [--bundle-only FILE]

1. Bundle: Dockerrun.aws.json (platform "ECS running on 64bit Amazon Linux
   2023", the default) or docker-compose.eb.yml as docker-compose.yml
   (platform "Docker running on 64bit Amazon Linux 2023"), with every image
   set to $REGISTRY/fibstack-<service>:$TAG, never "latest" (with a moving
   tag Beanstalk keeps running whatever image its instances already have),
   plus certs/ (eb/certs/: a CA bundle such as RDS's, mounted read-only into
   the api and the worker at /etc/fibstack/certs).
2. Upload it to S3 (EB_BUCKET, or Beanstalk's own storage bucket).
3. Create the application version labelled $TAG; a label already used fails,
   as it would name two different bundles.
4. Update the environment to it and wait until it is Ready, Green and on
   that version; otherwise print Beanstalk's events and exit 1.

Secrets never go in the bundle or in Beanstalk's environment properties
(which every container of the ECS platform receives): on the ECS platform
each container names the Parameter Store parameters it needs
(PGPASSWORD, MIGRATION_PGPASSWORD, REDIS_PASSWORD under EB_PARAMETER_PATH,
default /fibstack), which ECS reads with the task execution role
EB_EXECUTION_ROLE_ARN; on the Docker platform each service takes only its
own from the environment's secrets.

Environment: EB_APP, EB_ENV, REGISTRY (required); EB_EXECUTION_ROLE_ARN
(required for the ECS platform); EB_PARAMETER_PATH; TAG (default: the
current commit); AWS_REGION or AWS_DEFAULT_REGION; EB_BUCKET;
EB_TIMEOUT_SECONDS (default 900); credentials as the AWS SDK finds them.
AWS_ENDPOINT_URL points every AWS call elsewhere, as the tests do (a local
stand-in).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("api", "worker", "client", "router")
CERTS = REPO / "eb" / "certs"
# The Parameter Store path the Dockerrun's secrets name (its valueFrom).
PARAMETER_PATH = "/fibstack"


class DeployError(Exception):
    """The deploy did not reach a healthy environment on the new version."""


def image(registry: str, service: str, tag: str) -> str:
    return f"{registry}/fibstack-{service}:{tag}"


def dockerrun(
    registry: str, tag: str, execution_role: str = "set-by-deploy", parameters: str = PARAMETER_PATH
) -> bytes:
    """Dockerrun.aws.json with the commit's images, the execution role, and the secrets' Parameter Store path."""
    spec = json.loads((REPO / "Dockerrun.aws.json").read_text())
    spec["executionRoleArn"] = execution_role
    for container in spec["containerDefinitions"]:
        # The placeholder names the image's service (the migrate container runs the API's image).
        service = container["image"].removeprefix("fibstack-").removesuffix(":set-by-deploy")
        container["image"] = image(registry, service, tag)
        for secret in container.get("secrets", []):
            secret["valueFrom"] = parameters.rstrip("/") + secret["valueFrom"].removeprefix(PARAMETER_PATH)
    return (json.dumps(spec, indent=2) + "\n").encode()


def eb_compose(registry: str, tag: str) -> bytes:
    text = (REPO / "docker-compose.eb.yml").read_text()
    for service in SERVICES:
        placeholder = f"image: fibstack-{service}:set-by-deploy"
        assert placeholder in text, f"docker-compose.eb.yml: no {placeholder!r}"
        text = text.replace(placeholder, f"image: {image(registry, service, tag)}")
    yaml.safe_load(text)  # still YAML
    return text.encode()


def bundle(platform: str, registry: str, tag: str, execution_role: str = "set-by-deploy") -> bytes:
    """The source bundle, as a zip file's bytes."""
    buffer = io.BytesIO()
    parameters = os.environ.get("EB_PARAMETER_PATH", "").strip() or PARAMETER_PATH
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if platform == "ecs":
            archive.writestr("Dockerrun.aws.json", dockerrun(registry, tag, execution_role, parameters))
        else:
            archive.writestr("docker-compose.yml", eb_compose(registry, tag))
        certs = sorted(CERTS.glob("*.pem")) if CERTS.is_dir() else []
        for cert in certs:
            archive.write(cert, f"certs/{cert.name}")
        if not certs:
            archive.writestr("certs/README", "CA bundles for the api and the worker (PGSSLROOTCERT); see eb/certs/.\n")
    return buffer.getvalue()


def wait_for_environment(eb: Any, app: str, env: str, tag: str, timeout: float, poll: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = eb.describe_environments(ApplicationName=app, EnvironmentNames=[env])["Environments"]
        if not found:
            raise DeployError(f"environment {env} of application {app} does not exist")
        environment: dict[str, Any] = found[0]
        status, health = environment.get("Status"), environment.get("Health")
        print(f"deploy-eb: {env} is {status}, health {health}, version {environment.get('VersionLabel')}", flush=True)
        if status == "Ready":
            if environment.get("VersionLabel") != tag:
                raise DeployError(f"{env} is Ready but runs version {environment.get('VersionLabel')}, not {tag}")
            if health != "Green":
                raise DeployError(f"{env} is on {tag} but its health is {health}")
            return environment
        if time.monotonic() > deadline:
            raise DeployError(f"{env} was still {status} after {timeout:.0f} s")
        time.sleep(poll)


def print_events(eb: Any, app: str, env: str, since: datetime) -> None:
    events = eb.describe_events(ApplicationName=app, EnvironmentName=env, StartTime=since)["Events"]
    print(f"deploy-eb: Beanstalk's events for {env} since the deploy started:", file=sys.stderr)
    for event in reversed(events):  # oldest first
        print(f"  {event['EventDate']:%H:%M:%S} {event['Severity']:5} {event['Message']}", file=sys.stderr)


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"deploy-eb: set {name} (see docs/elastic-beanstalk.md)")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=("ecs", "docker"), default=os.environ.get("EB_PLATFORM", "ecs"))
    parser.add_argument("--bundle-only", type=Path, metavar="FILE", help="write the bundle to FILE and stop")
    options = parser.parse_args()

    registry = required("REGISTRY")
    tag = (
        os.environ.get("TAG", "").strip()
        or subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    role = os.environ.get("EB_EXECUTION_ROLE_ARN", "").strip()
    if options.platform == "ecs" and not role and not options.bundle_only:
        required("EB_EXECUTION_ROLE_ARN")  # ECS reads the containers' secrets from Parameter Store with it
    source = bundle(options.platform, registry, tag, role or "set-by-deploy")
    if options.bundle_only:
        options.bundle_only.write_bytes(source)
        print(f"deploy-eb: wrote {options.bundle_only} (images {registry}/fibstack-*:{tag})")
        return 0

    import boto3  # only for a real deploy: --bundle-only needs no AWS SDK

    app, env = required("EB_APP"), required("EB_ENV")
    region = os.environ.get("AWS_REGION", "").strip() or os.environ.get("AWS_DEFAULT_REGION", "").strip()
    if not region:
        raise SystemExit("deploy-eb: set AWS_REGION to the environment's region (e.g. eu-west-1)")
    eb, s3 = boto3.client("elasticbeanstalk", region_name=region), boto3.client("s3", region_name=region)
    started = datetime.now(UTC)
    bucket = os.environ.get("EB_BUCKET", "").strip() or eb.create_storage_location()["S3Bucket"]
    key = f"{app}/fibstack-{tag}-{options.platform}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=source)
    print(f"deploy-eb: uploaded s3://{bucket}/{key}")
    try:
        try:
            eb.create_application_version(
                ApplicationName=app,
                VersionLabel=tag,
                Description=f"fibstack {tag} ({options.platform})",
                SourceBundle={"S3Bucket": bucket, "S3Key": key},
                Process=True,
            )
        except eb.exceptions.TooManyApplicationVersionsException as exc:
            raise DeployError(f"Beanstalk holds too many versions: delete old ones ({exc})") from None
        except eb.exceptions.ClientError as exc:
            if "already exists" in str(exc):
                raise DeployError(
                    f"version {tag} exists already in {app}: a label names one bundle. To run it again: "
                    f"aws elasticbeanstalk update-environment --environment-name {env} --version-label {tag}"
                ) from None
            raise
        print(f"deploy-eb: created version {tag}; updating {env}")
        eb.update_environment(ApplicationName=app, EnvironmentName=env, VersionLabel=tag)
        timeout = float(os.environ.get("EB_TIMEOUT_SECONDS", "900"))
        poll = float(os.environ.get("EB_POLL_SECONDS", "10"))
        environment = wait_for_environment(eb, app, env, tag, timeout, poll)
    except DeployError as exc:
        print_events(eb, app, env, started)
        print(f"deploy-eb: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"deploy-eb: {env} runs {tag}, health Green: http://{environment.get('CNAME', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
