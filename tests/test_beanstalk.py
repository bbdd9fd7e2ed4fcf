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
from env_names import API_READS, WORKER_READS, router_reads
from kube import K8S, one, render

REPO = Path(__file__).resolve().parents[1]
DOCKERRUN = json.loads((REPO / "Dockerrun.aws.json").read_text())
EB_COMPOSE = yaml.safe_load((REPO / "docker-compose.eb.yml").read_text())
CONTAINERS = {c["name"]: c for c in DOCKERRUN["containerDefinitions"]}
READS = {"api": API_READS, "worker": WORKER_READS, "router": router_reads(), "client": set()}


def ecs_errors(containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> str:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(
        {"family": "fibstack", "containerDefinitions": containers, "volumes": volumes}, shape
    )
    return report.generate_report() if report.has_errors() else ""


def test_dockerrun_is_version_2_and_valid_for_ecs() -> None:
    assert DOCKERRUN["AWSEBDockerrunVersion"] == 2
    assert set(DOCKERRUN) <= {"AWSEBDockerrunVersion", "containerDefinitions", "volumes", "authentication"}
    assert ecs_errors(DOCKERRUN["containerDefinitions"], DOCKERRUN["volumes"]) == ""


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
        assert container["image"] == f"fibstack-{name}:set-by-deploy"
    for name, service in EB_COMPOSE["services"].items():
        assert service["image"] == f"fibstack-{name}:set-by-deploy"


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_env_names_are_ones_the_code_reads(name: str) -> None:
    set_here = {e["name"] for e in CONTAINERS[name].get("environment", [])}
    assert set_here <= READS[name]
    assert set_here == set(EB_COMPOSE["services"][name].get("environment", {}))


def test_memory_is_what_was_measured_for_kubernetes() -> None:
    # One measurement (scripts/k8s-pods-check.sh prints the peaks), one sizing
    # everywhere: reservation = the pod's request, hard limit = its limit.
    from kube import ensure_dev_password, quantity_bytes

    ensure_dev_password()
    objects = render(K8S / "overlays" / "dev")
    mib = 2**20
    for name, container in CONTAINERS.items():
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
