"""`make dev`: the whole app on this machine, without Docker, at http://localhost:3050.

    python -m stack dev                  # Vite dev server with hot reload
    python -m stack dev --prod-client    # the production build, served by nginx

Starts Postgres and Redis (data kept in .work/dev/ between runs, on ports of
their own so they never collide with servers already on the machine), the
worker, the API (gunicorn, reloading on change), the client and the router,
under honcho: each service's log lines carry its name, and Ctrl-C stops them
all. Ports can be changed with FIBSTACK_<SERVICE>_PORT.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stack import router
from stack.servers import PostgresServer, RedisServer, kept_secret

REPO = Path(__file__).resolve().parents[1]
# Data and generated configs; FIBSTACK_WORK_DIR gives the end-to-end test a fresh stack.
WORK = Path(os.environ.get("FIBSTACK_WORK_DIR", REPO / ".work" / "dev"))
PYTHON = sys.executable
WITH_NODE = REPO / "scripts" / "with-node"


def port(name: str, default: int) -> int:
    return int(os.environ.get(f"FIBSTACK_{name}_PORT", default))


PORTS = {
    "router": port("ROUTER", 3050),
    "api": port("API", 5000),
    "client": port("CLIENT", 3000),
    "postgres": port("POSTGRES", 55432),
    "redis": port("REDIS", 56379),
    # Prometheus metrics of the API and the worker (never through the router).
    "api_metrics": port("API_METRICS", 9464),
    "worker_metrics": port("WORKER_METRICS", 9465),
}
URL = f"http://localhost:{PORTS['router']}"


def shell(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    line = " ".join(shlex.quote(part) for part in argv)
    if env:
        line = "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + line
    return f"cd {shlex.quote(str(cwd))} && exec {line}" if cwd else f"exec {line}"


def procfile(prod_client: bool) -> tuple[str, dict[str, str]]:
    WORK.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(WORK / "postgres", PORTS["postgres"], durable=True)
    postgres.prepare()
    # With AUTH, as everywhere: a random password kept beside its data.
    redis_dir = WORK / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(redis_dir, PORTS["redis"], persistent=True, password=kept_secret(redis_dir / "password"))
    env = postgres.env() | redis.env() | {"LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO")}
    api_env = {
        "PORT": str(PORTS["api"]),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_RELOAD": "1",
        "METRICS_PORT": str(PORTS["api_metrics"]),
    }

    if prod_client:
        subprocess.run([str(WITH_NODE), "npm", "run", "build"], cwd=REPO / "client", check=True)
        client_conf = router.write_client_server(WORK / "client-nginx", PORTS["client"], REPO / "client" / "dist")
        client = shell(router.nginx_command(client_conf))
    else:
        client = shell(
            [str(WITH_NODE), "npm", "run", "dev", "--", "--port", str(PORTS["client"])],
            REPO / "client",
            {"API_URL": f"http://127.0.0.1:{PORTS['api']}"},
        )
    router_conf = router.write_router(
        WORK / "router",
        PORTS["router"],
        api=f"127.0.0.1:{PORTS['api']}",
        client=f"127.0.0.1:{PORTS['client']}",
        mode="production" if prod_client else "development",
    )
    # The migration step, as deployments run it before the API: the API's
    # own role and its tables, as the cluster's superuser (whose password
    # only this line sees). Then it idles: honcho stops everything once any
    # process exits, and the API answers 503 until it has run.
    migrate = [PYTHON, "-m", "fibapi.migrate", "--wait", "60"]
    superuser = {name: value for name, value in postgres.migration_env().items() if name.startswith("MIGRATION_")}
    migration = shell(["sh", "-c", '"$@" && exec sleep infinity', "migrate", *migrate], REPO / "server", superuser)
    lines = {
        "postgres": shell(postgres.command()),
        "redis": shell(redis.command()),
        "migrate": migration,
        "api": shell([PYTHON, "-m", "gunicorn", "--config", "gunicorn.conf.py"], REPO / "server", api_env),
        "worker": shell([PYTHON, "-m", "fibworker"], REPO / "worker", {"METRICS_PORT": str(PORTS["worker_metrics"])}),
        "client": client,
        "router": shell(router.nginx_command(router_conf)),
        "ready": shell([PYTHON, "-m", "stack", "announce"], REPO),
    }
    return "".join(f"{name}: {command}\n" for name, command in lines.items()), env


def wait_until_ready(timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Our own local URL, not user input (S310).
            with (
                urllib.request.urlopen(f"{URL}/api/readyz", timeout=2) as ready,  # noqa: S310
                urllib.request.urlopen(f"{URL}/", timeout=2) as page,  # noqa: S310
            ):
                if ready.status == 200 and page.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def announce() -> int:
    """The "ready" process: says where to go once everything answers, then idles."""
    if wait_until_ready():
        print(f"fibstack is ready: open {URL}  (Ctrl-C stops everything)", flush=True)
    else:
        print(f"fibstack did not become ready; look for errors above ({URL}/api/readyz)", flush=True)
    # honcho stops every process as soon as one exits, so stay up.
    while True:
        time.sleep(3600)


def dev(prod_client: bool) -> int:
    text, env = procfile(prod_client)
    (WORK / "Procfile").write_text(text)
    # honcho reads variables from a file; this one, not the repository's .env.
    (WORK / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"fibstack: starting Postgres, Redis, the worker, the API, the client and the router for {URL}", flush=True)
    honcho = str(Path(PYTHON).with_name("honcho"))
    # Replace this process, so Ctrl-C and SIGTERM reach honcho directly.
    argv = [honcho, "start", "-f", str(WORK / "Procfile"), "-e", str(WORK / "env"), "-d", str(REPO)]
    os.execv(honcho, argv)  # noqa: S606
    return 0  # not reached


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("dev", help="run the whole app locally")
    run.add_argument("--prod-client", action="store_true", help="serve the production build of the client")
    commands.add_parser("announce", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command == "announce":
        return announce()
    return dev(args.prod_client)


if __name__ == "__main__":
    sys.exit(main())
