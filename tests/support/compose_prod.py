"""The production Compose stack, tried as a hostile client and an intruder would (scripts/docker-check.sh).

    python tests/support/compose_prod.py [--keep]

Brings up docker-compose.prod.yml (the production images, locked down) with
the .env docker-check wrote, then, against the real containers:
- the router: every spelling of the submit path limited, slow clients cut
  off, one client at its stream and request caps while another is served
  (tests/support/hostile.py, from the host and from a container);
- the networks: the router cannot even resolve Postgres or Redis;
- Redis: refuses a client without the password;
- the worker: a job naming os.system, put in Redis from inside the stack
  (pickled, and as JSON), runs nothing;
- Postgres: the API's role is no superuser, owns the tables, may create none;
- every container: read-only root, no capabilities, no-new-privileges, a
  memory limit, a non-root user;
- a restart of the API with event streams open and submissions coming in:
  how long it takes, and every 202 committed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import hostile as hostile_checks
import requests
from docker_cli import docker
from kube import REPO
from through_router import compute_through_router

PROJECT = "fibstack-prod-check"
BASE = "http://127.0.0.1:3050"
COMPOSE = [*os.environ.get("COMPOSE", "docker-compose").split(), "-p", PROJECT, "-f", "docker-compose.prod.yml"]
HOSTILE = REPO / "tests/support/hostile.py"


def say(message: str) -> None:
    print(f"compose-prod: {message}", flush=True)


def compose(
    *args: str, check: bool = True, stdin: str | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMPOSE, *args], cwd=REPO, input=stdin, capture_output=True, text=True, check=check, timeout=timeout
    )


def in_container(service: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return compose("exec", "-T", service, *command, check=False, stdin=stdin)


def container_of(service: str) -> str:
    return compose("ps", "-q", service).stdout.strip()


def dotenv() -> dict[str, str]:
    lines = (REPO / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def wait_ready(timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{BASE}/api/readyz", timeout=2).ok and requests.get(BASE, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    logged = compose("logs", "--tail=30", check=False).stdout
    raise RuntimeError(f"the production stack is not ready at {BASE}:\n{logged}")


def check_networks() -> None:
    for data in ("postgres", "redis"):
        assert in_container("nginx", "getent", "hosts", data).returncode != 0, f"the router can resolve {data}"
        assert in_container("api", "getent", "hosts", data).returncode == 0, f"the API cannot resolve {data}"
    say("the router shares no network with Postgres or Redis (it cannot even resolve them); the API can")


def check_redis_auth() -> None:
    without = in_container("redis", "sh", "-c", "env -u REDISCLI_AUTH redis-cli ping")
    assert "NOAUTH" in without.stdout + without.stderr, without
    wrong = in_container("redis", "sh", "-c", "env -u REDISCLI_AUTH redis-cli --no-auth-warning -a wrong ping")
    assert "WRONGPASS" in wrong.stdout + wrong.stderr, wrong
    say("Redis answers NOAUTH without the password and WRONGPASS with a wrong one")


INJECT = """
import os, sys, time
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
redis = Redis(host="redis", password=os.environ["REDIS_PASSWORD"])
pickled, as_json = Queue("fib", connection=redis), Queue("fib", connection=redis, serializer=JSONSerializer)
ids = [
    pickled.enqueue_call("os.system", args=("touch /tmp/pwned-pickle",)).id,
    as_json.enqueue_call("os.system", args=("touch /tmp/pwned-json",)).id,
]
deadline = time.monotonic() + 60
while set(ids) - set(FailedJobRegistry("fib", connection=redis).get_job_ids()):
    if time.monotonic() > deadline:
        sys.exit("the injected jobs did not fail")
    time.sleep(0.5)
print("both injected jobs failed")
"""


def check_job_injection() -> None:
    # From inside the stack, with Redis's password: an intruder who can write to Redis.
    result = in_container("api", "python", "-", stdin=INJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    for proof in ("/tmp/pwned-pickle", "/tmp/pwned-json"):
        assert in_container("worker", "test", "-e", proof).returncode != 0, f"the worker ran an injected job ({proof})"
    logged = compose("logs", "worker", check=False).stdout
    assert "refused to run the job function 'os.system'" in logged
    assert compute_through_router(BASE, 300)["status"] == "done"  # and the worker goes on
    say("a job naming os.system, pickled or JSON, enqueued from inside the stack: failed, nothing ran")


def check_database_role() -> None:
    def sql(query: str, user: str = "postgres", password: str = "") -> subprocess.CompletedProcess[str]:
        command = ["psql", "-h", "127.0.0.1", "-U", user, "-d", "postgres", "-tAc", query]
        return compose("exec", "-T", "-e", f"PGPASSWORD={password}", "postgres", *command, check=False)

    admin = dotenv()["POSTGRES_PASSWORD"]
    role = "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'fibstack'"
    powers = sql(role, password=admin)
    assert powers.stdout.strip() == "f|f|f", powers
    tables = "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN ('submissions', 'indexes')"
    owners = sql(tables, password=admin)
    assert owners.stdout.strip() == "fibstack", owners
    intruder = sql("CREATE TABLE intruder (i int)", user="fibstack", password=dotenv()["FIBSTACK_DB_PASSWORD"])
    assert "permission denied" in intruder.stderr, intruder
    say("the API's role fibstack: no superuser, CREATEROLE or CREATEDB; owns its two tables; may create none")


def check_lockdown() -> None:
    for service in ("postgres", "redis", "api", "worker", "client", "nginx"):
        info = json.loads(docker("inspect", container_of(service)).stdout)[0]
        host = info["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["Memory"] > 0, service
        user = in_container(service, "id", "-u").stdout.strip()
        assert user not in ("", "0"), f"{service} runs as {user or 'nobody knows whom'}"
    say("every container: read-only root, all capabilities dropped, no-new-privileges, a memory limit, not root")


def hostile(*args: str) -> None:
    subprocess.run([sys.executable, str(HOSTILE), BASE, *args], check=True, timeout=300)


def other_client_inside() -> None:
    """tests/support/hostile.py's other-client check, from the API's container: another address."""
    other = in_container("api", "python", "-", "http://nginx:8080", "other-client", stdin=HOSTILE.read_text())
    assert other.returncode == 0, other.stdout + other.stderr


def check_restart_with_streams_open() -> None:
    streams = [requests.get(f"{BASE}/api/events", stream=True, timeout=60) for _ in range(20)]
    stop = threading.Event()
    answered: list[int] = []

    def submitting() -> None:
        index = 20_000
        while not stop.is_set():
            index += 1
            try:
                if requests.post(f"{BASE}/api/values", json={"index": index}, timeout=15).status_code == 202:
                    answered.append(index)
            except requests.RequestException:
                pass
            time.sleep(0.12)  # under the router's limit of 10 a second

    thread = threading.Thread(target=submitting)
    thread.start()
    try:
        time.sleep(2)
        started = time.monotonic()
        compose("restart", "api")
        took = time.monotonic() - started
        wait_ready()
        time.sleep(1)
    finally:
        stop.set()
        thread.join(timeout=30)
        for stream in streams:
            stream.close()
    say(f"restarting the API with 20 event streams open and submissions coming in took {took:.1f} s")
    # Held up by nothing: far from gunicorn's graceful timeout (10 s), which it used to wait out.
    assert took < 10, f"the restart took {took:.1f} s"
    admin = dotenv()["POSTGRES_PASSWORD"]
    query = "SELECT number FROM submissions WHERE number > 20000"
    rows = compose("exec", "-T", "-e", f"PGPASSWORD={admin}", "postgres",
                   "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", query).stdout  # fmt: skip
    recorded = {int(line) for line in rows.split()}
    assert answered, "no submission was answered"
    assert set(answered) <= recorded, f"202s not committed: {sorted(set(answered) - recorded)[:10]}"
    say(f"every one of the {len(answered)} submissions answered 202 during the restart is committed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    options = parser.parse_args()
    try:
        say("building and starting docker-compose.prod.yml")
        compose("up", "-d", "--build")
        wait_ready()
        assert compute_through_router(BASE, 100_000)["digits"] == 20_899
        check_networks()
        check_redis_auth()
        check_database_role()
        check_lockdown()
        check_job_injection()
        hostile("submit-spellings", "other-spellings", "slow-clients", "system-flood")
        hostile_checks.check_caps_while_another_is_served(BASE, other_client_inside)
        check_restart_with_streams_open()
    except Exception:
        print(compose("ps", check=False).stdout, compose("logs", "--tail=40", check=False).stdout, file=sys.stderr)
        raise
    finally:
        if not options.keep:
            compose("down", "-v", "--remove-orphans", check=False)
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
