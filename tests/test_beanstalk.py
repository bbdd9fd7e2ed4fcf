"""Dockerrun.aws.json and docker-compose.eb.yml: valid for AWS, and wired to the images and the router.

botocore's ECS model (the one AWS's SDK ships) validates the container
definitions offline. It does not mark name or image required, check enum
values, or check that links and dependsOn name real containers: those checks
are here too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from env_names import API_READS, MIGRATION_READS, WORKER_READS, router_reads
from kube import K8S, one, render

REPO = Path(__file__).resolve().parents[1]
DOCKERRUN = json.loads((REPO / "Dockerrun.aws.json").read_text())
EB_COMPOSE = yaml.safe_load((REPO / "docker-compose.eb.yml").read_text())
CONTAINERS = {c["name"]: c for c in DOCKERRUN["containerDefinitions"]}
READS = {
    "api": API_READS,
    "migrate": MIGRATION_READS,
    "worker": WORKER_READS,
    "router": router_reads(),
    "client": set(),
}
# The secrets each container uses, and no other: the router and the client none.
SECRETS = {
    "migrate": {"PGPASSWORD", "MIGRATION_PGPASSWORD"},
    "api": {"PGPASSWORD", "REDIS_PASSWORD"},
    "worker": {"PGPASSWORD", "REDIS_PASSWORD"},
    "client": set(),
    "router": set(),
}
ALL_SECRETS = set().union(*SECRETS.values())


def ecs_errors(containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> str:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    task = {"family": "fibstack", "containerDefinitions": containers, "volumes": volumes}
    task["executionRoleArn"] = DOCKERRUN["executionRoleArn"]
    report = ParamValidator().validate(task, shape)
    return report.generate_report() if report.has_errors() else ""


def test_dockerrun_is_version_2_and_valid_for_ecs() -> None:
    assert DOCKERRUN["AWSEBDockerrunVersion"] == 2
    assert set(DOCKERRUN) <= {
        "AWSEBDockerrunVersion",
        "containerDefinitions",
        "volumes",
        "authentication",
        "executionRoleArn",
    }
    assert ecs_errors(DOCKERRUN["containerDefinitions"], DOCKERRUN["volumes"]) == ""


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_each_container_gets_only_the_secrets_it_uses(name: str) -> None:
    container = CONTAINERS[name]
    assert {secret["name"] for secret in container.get("secrets", [])} == SECRETS[name]
    assert all(secret["valueFrom"] == f"/fibstack/{secret['name']}" for secret in container.get("secrets", []))
    assert not ALL_SECRETS & {e["name"] for e in container.get("environment", [])}  # never in the clear
    service = EB_COMPOSE["services"][name]
    assert ALL_SECRETS & set(service.get("environment", {})) == SECRETS[name]
    assert "env_file" not in service  # which would hand a container every property Beanstalk has


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_every_container_is_locked_down_as_on_kubernetes(name: str) -> None:
    container, service = CONTAINERS[name], EB_COMPOSE["services"][name]
    assert container["readonlyRootFilesystem"] is True
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    assert container["dockerSecurityOptions"] == ["no-new-privileges"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    tmpfs = {mount["containerPath"] for mount in container["linuxParameters"].get("tmpfs", [])}
    assert tmpfs == {mount.split(":")[0] for mount in service.get("tmpfs", [])}


def test_the_api_waits_for_the_migration_step() -> None:
    assert CONTAINERS["migrate"]["command"][:3] == ["python", "-m", "fibapi.migrate"]
    assert "restartPolicy" not in CONTAINERS["migrate"]  # runs once
    assert {"containerName": "migrate", "condition": "SUCCESS"} in CONTAINERS["api"]["dependsOn"]
    api = EB_COMPOSE["services"]["api"]
    assert api["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert EB_COMPOSE["services"]["migrate"]["command"] == CONTAINERS["migrate"]["command"]


def test_the_validator_catches_mistakes() -> None:
    broken = json.loads(json.dumps(DOCKERRUN["containerDefinitions"]))
    broken[0]["memory"] = "lots"
    broken[1]["portMapping"] = []
    report = ecs_errors(broken, DOCKERRUN["volumes"])
    assert "memory" in report
    assert "portMapping" in report


def test_what_botocore_does_not_check() -> None:
    names = [c.get("name") for c in DOCKERRUN["containerDefinitions"]]
    assert all(names)
    assert len(names) == len(set(names))
    assert all(c.get("image") for c in CONTAINERS.values())
    volumes = {v["name"] for v in DOCKERRUN["volumes"]}
    for container in CONTAINERS.values():
        assert set(container.get("links", [])) <= set(CONTAINERS), container["name"]
        for dependency in container.get("dependsOn", []):
            assert dependency["containerName"] in CONTAINERS
            assert dependency["condition"] in ("START", "COMPLETE", "SUCCESS", "HEALTHY")
            if dependency["condition"] == "HEALTHY":
                assert "healthCheck" in CONTAINERS[dependency["containerName"]]
        for mount in container.get("mountPoints", []):
            assert mount["sourceVolume"] in volumes
        assert 0 < container["memoryReservation"] < container["memory"]


def test_the_router_is_the_one_entry_and_reaches_api_and_client() -> None:
    published = [c for c in CONTAINERS.values() if c.get("portMappings")]
    assert [c["name"] for c in published] == ["router"]
    router = CONTAINERS["router"]
    assert router["essential"] is True
    assert router["portMappings"] == [{"hostPort": 80, "containerPort": 8080}]
    assert (
        f"listen {router['portMappings'][0]['containerPort']};"
        in (REPO / "nginx/templates/default.conf.template").read_text()
    )
    env = {e["name"]: e["value"] for e in router["environment"]}
    assert env["API_UPSTREAM"] == f"{CONTAINERS['api']['hostname']}:5000"
    assert CONTAINERS["api"]["hostname"] == "api"
    assert set(router["links"]) == {"api", "client"}
    # Every other container is restarted in place when it dies, rather than taking the task down.
    for name in ("api", "worker", "client"):
        assert CONTAINERS[name]["essential"] is False
        assert CONTAINERS[name]["restartPolicy"]["enabled"] is True


def test_images_are_placeholders_the_deploy_script_replaces() -> None:
    for name, container in CONTAINERS.items():
        assert container["image"] == f"fibstack-{'api' if name == 'migrate' else name}:set-by-deploy"
    for name, service in EB_COMPOSE["services"].items():
        assert service["image"] == f"fibstack-{'api' if name == 'migrate' else name}:set-by-deploy"


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_env_names_are_ones_the_code_reads(name: str) -> None:
    set_here = {e["name"] for e in CONTAINERS[name].get("environment", [])}
    assert set_here <= READS[name]
    # The compose bundle also names the properties each service takes from .env.
    assert set_here <= set(EB_COMPOSE["services"][name].get("environment", {})) <= READS[name]


def test_memory_is_what_was_measured_for_kubernetes() -> None:
    # One measurement (scripts/k8s-pods-check.sh prints the peaks), one sizing
    # everywhere: reservation = the pod's request, hard limit = its limit.
    from kube import ensure_dev_password, quantity_bytes

    ensure_dev_password()
    objects = render(K8S / "overlays" / "dev")
    mib = 2**20
    for name, container in CONTAINERS.items():
        if name == "migrate":
            pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
            resources = pod["initContainers"][0]["resources"]
        else:
            resources = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert container["memoryReservation"] == quantity_bytes(resources["requests"]["memory"]) // mib, name
        assert container["memory"] == quantity_bytes(resources["limits"]["memory"]) // mib, name
        service = EB_COMPOSE["services"][name]
        assert (service["mem_reservation"], service["mem_limit"]) == (
            f"{container['memoryReservation']}m",
            f"{container['memory']}m",
        )


def test_stop_timeouts_outlast_each_process_own_graceful_timeout() -> None:
    import re

    graceful = int(
        re.search(r"^graceful_timeout = (\d+)", (REPO / "server/gunicorn.conf.py").read_text(), re.M).group(1)
    )  # type: ignore[union-attr]
    assert CONTAINERS["api"]["stopTimeout"] > graceful
    assert EB_COMPOSE["services"]["api"]["stop_grace_period"] == f"{CONTAINERS['api']['stopTimeout']}s"
    assert EB_COMPOSE["services"]["worker"]["stop_grace_period"] == f"{CONTAINERS['worker']['stopTimeout']}s"
