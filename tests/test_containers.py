"""Static checks of the container files: hadolint, the compose schema, our conventions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ["client", "nginx", "server", "worker"]
DOCKERFILES = sorted(REPO.glob("*/Dockerfile*"))
# Whole stacks; and the files added to the development one (the bind mounts,
# Compose Watch, the Dev Container's workspace), checked for the spec only.
DEV_ADDITIONS = [
    REPO / "docker-compose.override.yml",
    REPO / "docker-compose.watch.yml",
    REPO / ".devcontainer/compose.yml",
]
COMPOSE_FILES = sorted(set(REPO.glob("docker-compose*.yml")) - set(DEV_ADDITIONS))
BIN = Path(sys.executable).parent


def test_every_service_has_its_container_files() -> None:
    for service in SERVICES:
        for name in ("Dockerfile", "Dockerfile.dev", ".dockerignore"):
            assert (REPO / service / name).is_file(), f"{service}/{name} is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_bases_are_debian_official_images_with_a_pinned_version(dockerfile: Path) -> None:
    for image in re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE):
        name, _, tag = image.partition(":")
        assert name in {"python", "node", "nginx"}, image
        assert re.match(r"\d+\.\d+-", tag), f"{image}: pin a minor version"
        assert "alpine" not in tag, f"{image}: use a Debian tag"
        assert "bookworm" in tag, f"{image}: name the Debian release (bookworm)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    assert users, f"{dockerfile} runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"{dockerfile}: USER by number, so Kubernetes can check it is not root"
    assert uid != "0"


@pytest.mark.parametrize("compose", COMPOSE_FILES + DEV_ADDITIONS, ids=lambda path: path.name)
def test_compose_files_follow_the_compose_spec(compose: Path) -> None:
    # The Compose Specification is what both docker-compose v1 and docker compose v2 read.
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_keeps_databases_private_and_secrets_out() -> None:
    import yaml

    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = spec["services"]
    started = {name for name, service in services.items() if "profiles" not in service}
    assert started == {"postgres", "redis", "migrate", "api", "worker", "client", "nginx"}
    # Monitoring only when asked for (--profile monitoring), Prometheus on this machine only.
    assert {name for name in services if name not in started} == {"prometheus", "nginx-exporter"}
    assert all(services[name]["profiles"] == ["monitoring"] for name in ("prometheus", "nginx-exporter"))
    assert services["prometheus"]["ports"] == [
        "${FIBSTACK_LISTEN_ADDRESS:-127.0.0.1}:${FIBSTACK_PROMETHEUS_PORT:-9090}:9090"
    ]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    # Only this machine by default; FIBSTACK_LISTEN_ADDRESS=0.0.0.0 opens it to the network.
    assert services["nginx"]["ports"] == ["${FIBSTACK_LISTEN_ADDRESS:-127.0.0.1}:3050:8080"]
    for name in ("postgres", "redis", "migrate", "api", "worker", "client"):
        assert "ports" not in services[name], f"{name} must not be published to the host"
    for variable in ("POSTGRES_PASSWORD", "FIBSTACK_DB_PASSWORD", "REDIS_PASSWORD"):
        assert "${" + variable + ":?" in (REPO / "docker-compose.yml").read_text()
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    for name in ("api", "nginx"):
        for dependency in services[name]["depends_on"].values():
            assert dependency["condition"] in {"service_healthy", "service_started", "service_completed_successfully"}
    assert set(spec["volumes"]) == {"pgdata", "redisdata", "prometheusdata"}
    for name in ("postgres", "redis"):
        image, _, tag = services[name]["image"].partition(":")
        assert image == name
        assert re.match(r"\d+\.\d+-bookworm$", tag), f"{name}: a Debian tag pinned to a minor version"


LOCAL_COMPOSE = [path for path in COMPOSE_FILES if path.name != "docker-compose.eb.yml"]


@pytest.mark.parametrize("compose", LOCAL_COMPOSE, ids=lambda path: path.name)
def test_the_router_shares_no_network_with_the_data(compose: Path) -> None:
    import yaml

    services = yaml.safe_load(compose.read_text())["services"]
    networks = {name: set(service.get("networks", ["default"])) for name, service in services.items()}
    assert not networks["nginx"] & (networks["postgres"] | networks["redis"])
    assert networks["nginx"] & networks["api"]  # it reaches what it proxies to
    assert networks["api"] & networks["postgres"] & networks["redis"]


@pytest.mark.parametrize("compose", LOCAL_COMPOSE, ids=lambda path: path.name)
def test_redis_requires_auth_and_the_api_waits_for_the_migration(compose: Path) -> None:
    import yaml

    services = yaml.safe_load(compose.read_text())["services"]
    command = services["redis"]["command"]
    assert (
        command[command.index("--requirepass") + 1]
        == "${REDIS_PASSWORD:?Set REDIS_PASSWORD in .env first - run scripts/new-env.sh}"
    )
    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_PASSWORD"] == command[command.index("--requirepass") + 1]
    assert services["migrate"]["command"][:3] == ["python", "-m", "fibapi.migrate"]
    assert services["api"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # The superuser's password for the migration alone; the API connects as its own role.
    assert "MIGRATION_PGPASSWORD" in services["migrate"]["environment"]
    assert "MIGRATION_PGPASSWORD" not in services["api"]["environment"]
    assert services["api"]["environment"]["PGUSER"] != "postgres"


def test_the_production_stack_is_locked_down_as_on_kubernetes() -> None:
    import yaml

    services = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["mem_limit"], name
    # The data services as their images' own users, so their entrypoints need no root.
    assert services["postgres"]["user"] == services["redis"]["user"] == "999:999"


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda path: path.name)
def test_stopping_gives_each_process_more_than_its_own_graceful_timeout(compose: Path) -> None:
    import yaml

    graceful = int(
        re.search(r"^graceful_timeout = (\d+)", (REPO / "server/gunicorn.conf.py").read_text(), re.M).group(1)
    )  # type: ignore[union-attr]
    services = yaml.safe_load(compose.read_text())["services"]
    # Docker's default is 10 s, the same as gunicorn's: a stop under load ended in SIGKILL.
    assert int(services["api"]["stop_grace_period"].removesuffix("s")) > graceful
    assert int(services["worker"]["stop_grace_period"].removesuffix("s")) >= 30


def test_compose_v1_never_reads_what_it_does_not_know() -> None:
    import yaml

    # docker-compose v1 rejects `develop` (Compose Watch): only the watch file, which v1 never loads, has it.
    for compose in [*COMPOSE_FILES, REPO / "docker-compose.override.yml"]:
        for name, service in yaml.safe_load(compose.read_text())["services"].items():
            assert "develop" not in service, f"{compose.name}: {name}"
    watched = yaml.safe_load((REPO / "docker-compose.watch.yml").read_text())["services"]
    mounted = yaml.safe_load((REPO / "docker-compose.override.yml").read_text())["services"]
    # Watch covers every service the override bind-mounts, and each rebuilds when its lock changes.
    assert set(watched) == set(mounted) == {"api", "worker", "client"}
    for name, service in watched.items():
        actions = {rule["action"] for rule in service["develop"]["watch"]}
        assert actions == {"sync", "rebuild"}, name
