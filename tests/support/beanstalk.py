"""The Beanstalk bundles for real, without AWS (scripts/eb-check.sh, make eb-check, CI).

    python tests/support/beanstalk.py [--keep]

1. The images through a registry: a local registry (Debian's docker-registry)
   on a free loopback port; scripts/registry-login.sh logs in as CI does,
   scripts/push-images.sh builds and pushes the
   production images tagged with the commit; the local copies are removed
   and pulled back, so everything below runs what the registry served.
2. Stand-ins for RDS and ElastiCache: Postgres accepting TLS connections only
   and Redis with a TLS port only and an AUTH password, their certificates
   from a throw-away CA, reached by host names as managed endpoints are.
3. The ECS bundle (scripts/deploy_eb.py --bundle-only): each container of its
   Dockerrun.aws.json run as the ECS agent runs them in bridge mode, with
   links, hostname, memory reservation and limit, stop timeout, health check,
   read-only root, dropped capabilities, tmpfs and security options, the
   bundle's certs/ volume, the environment properties (a local properties
   file, as Beanstalk passes them to every container), and each container's
   own secrets from a stand-in Parameter Store (as ECS reads them with the
   execution role); the migrate container to completion before the api
   (dependsOn SUCCESS); the router's host port on a free loopback port
   instead of 80. Then the browser test through the router, and a look at
   what each container holds: no secret but its own, the router none.
4. The Docker (compose) bundle: its docker-compose.yml run with docker-compose
   and the properties and secrets as .env, as Beanstalk runs it; the browser
   test again, and the same look at the secrets.

What only AWS shows: that Beanstalk accepts the bundle and its ECS agent
starts it (the platform's own conversion of the Dockerrun), the load
balancer and its health checks, RDS's and ElastiCache's real certificates,
IAM, and instance sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import requests
import yaml
from docker_cli import docker, host_port, logs
from kube import REPO
from through_router import browser_test, compute_through_router

from stack.servers import Certificates, free_port, wait_for_port

PREFIX = "fibstack-eb"
SERVICES = ("api", "worker", "client", "router")
CONTAINERS = ("migrate", *SERVICES)


def say(message: str) -> None:
    print(f"eb-check: {message}", flush=True)


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storing under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.log = workdir / "registry.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=out)
        wait_for_port(self.port)

    @property
    def prefix(self) -> str:
        # Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by itself.
        return f"127.0.0.1:{self.port}/fibstack"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def push_and_pull(registry: Registry, tag: str) -> None:
    env = os.environ | {"REGISTRY": registry.prefix, "TAG": tag, "ALLOW_DIRTY": "1"}
    # As CI logs in before it pushes (this registry takes any user; the password goes through stdin).
    login = env | {"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "not-a-secret"}
    subprocess.run([str(REPO / "scripts/registry-login.sh")], env=login, check=True, cwd=REPO)
    subprocess.run([str(REPO / "scripts/push-images.sh")], env=env, check=True, cwd=REPO)
    for service in SERVICES:
        image = f"{registry.prefix}/fibstack-{service}:{tag}"
        docker("rmi", image)
        docker("pull", image)
    catalog = requests.get(f"http://127.0.0.1:{registry.port}/v2/_catalog", timeout=5).json()
    say(f"the registry holds {sorted(catalog['repositories'])}; pulled back {tag}")


class DataServices:
    """TLS-only Postgres and TLS+AUTH Redis containers, standing in for RDS and ElastiCache."""

    def __init__(self, workdir: Path, network: str) -> None:
        self.network = network
        certs = Certificates(workdir / "ca", hosts=("postgres", "redis"))
        self.ca = certs.ca
        # Each server's copy of the key, owned by its image's user (999), as both insist.
        server_dir = workdir / "server-certs"
        server_dir.mkdir()
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy(workdir / "ca" / name, server_dir / name)
        (server_dir / "pg_hba.conf").write_text("local all all trust\nhostssl all all all scram-sha-256\n")
        for path in server_dir.iterdir():
            os.chown(path, 999, 999)
        (server_dir / "server.key").chmod(0o600)
        self.pg_password = secrets.token_urlsafe(18)  # the superuser's: RDS's master user
        self.app_password = secrets.token_urlsafe(18)  # the API's own role, which the migration makes
        self.redis_password = secrets.token_urlsafe(18)
        mount = f"{server_dir}:/certs:ro"
        docker(
            "run", "-d", "--name", f"{PREFIX}-postgres", "--network", network, "--network-alias", "postgres",
            "-e", f"POSTGRES_PASSWORD={self.pg_password}", "-v", mount, "postgres:15.18-bookworm",
            "-c", "ssl=on", "-c", "ssl_cert_file=/certs/server.pem", "-c", "ssl_key_file=/certs/server.key",
            "-c", "hba_file=/certs/pg_hba.conf",
        )  # fmt: skip
        docker(
            "run", "-d", "--name", f"{PREFIX}-redis", "--network", network, "--network-alias", "redis", "-v", mount,
            "redis:7.4-bookworm", "redis-server", "--port", "0", "--tls-port", "6379",
            "--tls-cert-file", "/certs/server.pem", "--tls-key-file", "/certs/server.key",
            "--tls-ca-cert-file", "/certs/ca.pem", "--tls-auth-clients", "no", "--requirepass", self.redis_password,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        checks = {
            "postgres": ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"],
            "redis": ["redis-cli", "--tls", "--cacert", "/certs/ca.pem", "--no-auth-warning",
                      "-a", self.redis_password, "ping"],
        }  # fmt: skip
        for name, command in checks.items():
            while docker("exec", f"{PREFIX}-{name}", *command, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{logs(f'{PREFIX}-{name}')}")
                time.sleep(1)
        # Only TLS gets in: a plain connection to either is refused.
        plain = docker("exec", "-e", "PGSSLMODE=disable", f"{PREFIX}-postgres", "psql", "-h", "127.0.0.1",
                       "-U", "postgres", "-c", "select 1", check=False, timeout=30)  # fmt: skip
        assert plain.returncode != 0, "Postgres accepted a connection without TLS"
        assert "no encryption" in plain.stderr, plain.stderr
        no_tls = docker("exec", f"{PREFIX}-redis", "redis-cli", "-a", self.redis_password, "ping", check=False)
        assert "PONG" not in no_tls.stdout, "Redis answered without TLS"

    def properties(self, certs_path: str) -> dict[str, str]:
        """Beanstalk environment properties pointing at the stand-ins, as a user sets them: no secret among them."""
        return {
            "PGHOST": "postgres",
            "PGUSER": "fibstack",
            "PGDATABASE": "postgres",
            "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": f"{certs_path}/ca.pem",
            "MIGRATION_PGUSER": "postgres",
            "REDIS_HOST": "redis",
            "REDIS_TLS": "1",
            "REDIS_TLS_CA_FILE": f"{certs_path}/ca.pem",
            "TRUSTED_PROXIES": "172.16.0.0/12",
        }

    def secrets(self) -> dict[str, str]:
        """The secrets, as a user puts them in Parameter Store (SecureString) under /fibstack."""
        return {
            "/fibstack/PGPASSWORD": self.app_password,
            "/fibstack/MIGRATION_PGPASSWORD": self.pg_password,
            "/fibstack/REDIS_PASSWORD": self.redis_password,
        }

    def remove(self) -> None:
        for name in ("postgres", "redis"):
            docker("rm", "-f", "-v", f"{PREFIX}-{name}", check=False)  # -v: their images' anonymous volumes


def unpack_bundle(platform: str, registry: Registry, tag: str, into: Path, ca: Path) -> Path:
    """scripts/deploy_eb.py's bundle, unpacked as Beanstalk does under /var/app/current, with our CA in certs/."""
    archive = into / f"bundle-{platform}.zip"
    env = os.environ | {"REGISTRY": registry.prefix, "TAG": tag}
    command = [
        sys.executable,
        str(REPO / "scripts/deploy_eb.py"),
        "--platform",
        platform,
        "--bundle-only",
        str(archive),
    ]
    subprocess.run(command, env=env, check=True)
    current = into / f"current-{platform}"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(current)
    shutil.copy(ca, current / "certs" / "ca.pem")
    return current


def wait_healthy(container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)
        if state.get("Health", {}).get("Status") == "healthy":
            return
        if not state["Running"] or time.monotonic() > deadline:
            raise RuntimeError(f"{container} is not healthy:\n{logs(container)}")
        time.sleep(1)


def ecs_run_args(
    container: dict[str, Any], spec: dict[str, Any], current: Path, env_file: Path, parameters: dict[str, str]
) -> list[str]:
    """`docker run` for one container definition, as the ECS agent starts it in bridge mode."""
    name = container["name"]
    args = ["run", "-d", "--name", f"{PREFIX}-{name}", "--env-file", str(env_file)]
    for secret in container.get("secrets", []):
        # What ECS reads from Parameter Store (with the execution role) for this container alone.
        args += ["--env", f"{secret['name']}={parameters[secret['valueFrom']]}"]
    if container.get("readonlyRootFilesystem"):
        args.append("--read-only")
    linux = container.get("linuxParameters", {})
    for capability in linux.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", capability]
    for mount in linux.get("tmpfs", []):
        options = ",".join([f"size={mount['size']}m", *mount.get("mountOptions", [])])
        args += ["--tmpfs", f"{mount['containerPath']}:{options}"]
    for option in container.get("dockerSecurityOptions", []):
        args += ["--security-opt", option]
    if "hostname" in container:
        args += ["--hostname", container["hostname"]]
    for link in container.get("links", []):
        target, _, alias = link.partition(":")
        args += ["--link", f"{PREFIX}-{target}:{alias or target}"]
    args += ["--memory", f"{container['memory']}m", "--memory-reservation", f"{container['memoryReservation']}m"]
    args += ["--stop-timeout", str(container.get("stopTimeout", 30))]
    for variable in container.get("environment", []):
        args += ["--env", f"{variable['name']}={variable['value']}"]
    volumes = {v["name"]: v["host"]["sourcePath"] for v in spec.get("volumes", [])}
    for mount in container.get("mountPoints", []):
        source = volumes[mount["sourceVolume"]].replace("/var/app/current", str(current))
        args += ["--volume", f"{source}:{mount['containerPath']}{':ro' if mount.get('readOnly') else ''}"]
    for mapping in container.get("portMappings", []):
        # The host's port 80 may be taken here: a free loopback port instead.
        args += ["--publish", f"127.0.0.1::{mapping['containerPort']}"]
    if "healthCheck" in container:
        check = container["healthCheck"]
        assert check["command"][0] == "CMD"
        args += ["--health-cmd", shlex.join(check["command"][1:])]
        args += ["--health-interval", f"{min(check.get('interval', 30), 2)}s", "--health-retries", "30"]
    args.append(container["image"])
    args += container.get("command", [])
    return args


def wait_exited_0(container: str, timeout: float = 180) -> None:
    """dependsOn SUCCESS: the container ran to completion with exit code 0."""
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)
        if not state["Running"] and state["Status"] == "exited":
            if state["ExitCode"] != 0:
                raise RuntimeError(f"{container} exited with {state['ExitCode']}:\n{logs(container)}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{container} still runs after {timeout:.0f} s:\n{logs(container)}")
        time.sleep(0.5)


def run_ecs_bundle(current: Path, data: DataServices, workdir: Path) -> str:
    spec = json.loads((current / "Dockerrun.aws.json").read_text())
    env_file = workdir / "properties.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in data.properties("/etc/fibstack/certs").items()))
    containers = {c["name"]: c for c in spec["containerDefinitions"]}
    # ECS starts a container once its dependsOn conditions hold; the others in any order.
    order = sorted(containers, key=lambda name: len(containers[name].get("dependsOn", [])))
    for name in order:
        for dependency in containers[name].get("dependsOn", []):
            waits = {"HEALTHY": wait_healthy, "SUCCESS": wait_exited_0}.get(dependency["condition"])
            if waits:
                waits(f"{PREFIX}-{dependency['containerName']}")
        say(f"ECS: starting {name}")
        args = ecs_run_args(containers[name], spec, current, env_file, data.secrets())
        # Created first, then attached to the managed services' network (outside the task,
        # reachable by name as RDS's and ElastiCache's endpoints are), then started: a
        # container that runs to completion at once (migrate) would otherwise be gone first.
        args[:2] = ["create"]
        docker(*args)
        docker("network", "connect", data.network, f"{PREFIX}-{name}")
        docker("start", f"{PREFIX}-{name}")
    router = next(c for c in containers.values() if c.get("portMappings"))
    port = host_port(f"{PREFIX}-{router['name']}", router["portMappings"][0]["containerPort"])
    return f"http://127.0.0.1:{port}"


def wait_for_page(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/api/readyz", timeout=2).ok and requests.get(base, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} is not ready")
        time.sleep(1)


def check_through(base: str, what: str) -> None:
    wait_for_page(base)
    status = compute_through_router(base, 100_000)
    assert status["status"] == "done", status
    assert status["digits"] == 20_899, status
    browser_test(base)
    say(f"{what}: F(10^5) over TLS to Redis and Postgres, and the browser test, through the router at {base}")


def run_compose_bundle(current: Path, data: DataServices, project: str) -> str:
    compose_file = current / "docker-compose.yml"
    # The host's port 80 may be taken here: a free loopback port instead.
    port = free_port()
    text = compose_file.read_text()
    assert '      - "80:8080"' in text
    compose_file.write_text(text.replace('      - "80:8080"', f'      - "127.0.0.1:{port}:8080"'))
    # Beanstalk writes the properties, and the secrets it fetched, into .env.
    secrets_env = {path.rsplit("/", 1)[1]: value for path, value in data.secrets().items()}
    dotenv = data.properties("/etc/fibstack/certs") | secrets_env
    (current / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    # The managed services are outside the stack, reachable by name as RDS's and
    # ElastiCache's endpoints are: each service joins their network too (from its
    # start: migrate runs, and ends, as soon as it starts).
    spec = yaml.safe_load(compose_file.read_text())
    for service in spec["services"].values():
        service["networks"] = ["default", "managed"]
    spec["networks"] = {"managed": {"external": True, "name": data.network}}
    compose_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    compose = ["docker-compose", "--project-name", project, "--file", str(compose_file)]
    subprocess.run([*compose, "up", "-d", "--no-build"], check=True, cwd=current)
    return f"http://127.0.0.1:{port}"


def check_secrets_held(data: DataServices, containers: dict[str, str]) -> None:
    """What each running container holds in its environment: its own secrets, no other; the router none."""
    values = {path.rsplit("/", 1)[1]: value for path, value in data.secrets().items()}
    uses = {"migrate": {"PGPASSWORD", "MIGRATION_PGPASSWORD"}, "api": {"PGPASSWORD", "REDIS_PASSWORD"},
            "worker": {"PGPASSWORD", "REDIS_PASSWORD"}, "client": set(), "router": set()}  # fmt: skip
    for name, container in containers.items():
        env = docker("inspect", "--format", "{{json .Config.Env}}", container).stdout
        held = {secret for secret, value in values.items() if value in env}
        assert held == uses[name], f"{name} holds {sorted(held)}, and should hold {sorted(uses[name])}"
    say("each container holds only its own secrets; the router and the client none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    options = parser.parse_args()
    tag = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="fibstack-eb-check-"))
    workdir.chmod(0o755)
    network = f"{PREFIX}-data"
    project = "fibstackebcompose"  # docker-compose v1 keeps letters and digits only in network names
    registry = Registry(workdir)
    data: DataServices | None = None
    try:
        push_and_pull(registry, tag)
        docker("network", "create", network)
        data = DataServices(workdir, network)
        say("stand-ins for RDS (TLS only) and ElastiCache (TLS + AUTH) are up")

        current = unpack_bundle("ecs", registry, tag, workdir, data.ca)
        base = run_ecs_bundle(current, data, workdir)
        check_through(base, "the ECS bundle (Dockerrun.aws.json)")
        check_secrets_held(data, {name: f"{PREFIX}-{name}" for name in CONTAINERS})
        docker("rm", f"{PREFIX}-migrate")
        for name in ("router", "client", "worker", "api"):
            docker("stop", f"{PREFIX}-{name}", timeout=120)
            code = json.loads(docker("inspect", "--format", "{{json .State}}", f"{PREFIX}-{name}").stdout)["ExitCode"]
            assert code == 0, f"{name} stopped with exit code {code}:\n{logs(f'{PREFIX}-{name}')}"
            docker("rm", f"{PREFIX}-{name}")
        say("every container of the ECS bundle stopped with exit code 0")

        current = unpack_bundle("docker", registry, tag, workdir, data.ca)
        base = run_compose_bundle(current, data, project)
        check_through(base, "the Docker platform bundle (docker-compose.yml)")
        check_secrets_held(data, {name: f"{project}_{name}_1" for name in CONTAINERS})
    except Exception:
        for name in (*CONTAINERS, "postgres", "redis"):
            print(f"--- {name} ---\n{logs(f'{PREFIX}-{name}')}", file=sys.stderr)
        raise
    finally:
        if not options.keep:
            if data:
                data.remove()
            compose_file = workdir / "current-docker" / "docker-compose.yml"
            if compose_file.exists():
                subprocess.run(["docker-compose", "--project-name", project, "--file", str(compose_file), "down", "-v"],
                               capture_output=True, cwd=compose_file.parent)  # fmt: skip
            for name in CONTAINERS:
                docker("rm", "-f", f"{PREFIX}-{name}", check=False)
            docker("network", "rm", network, check=False)
            leftovers = docker("ps", "-aq", "--filter", f"name={PREFIX}").stdout.split()
            assert not leftovers, f"containers left behind: {leftovers}"
            docker("logout", registry.prefix.split("/")[0], check=False)
            registry.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
