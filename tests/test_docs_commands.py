"""The documents' commands that can run here, run as written.

docs/running-locally.md's block brings up the API and a worker against a
Postgres and Redis "of your own" (the test's, their superuser named
postgres as on most machines); docs/api.md's console examples are then sent
to that API, each answered as the document shows. README.md's first
command, scripts/new-env.sh, writes the .env Compose reads. What cannot run
here (Docker, clouds, clusters) is checked for existence by test_docs.py.

Only what a reader would change is changed: the `...` placeholders get real
passwords, and, because this machine's ports 5000, 5432 and 6379 may be
taken, the ports (PORT, PGPORT, REDIS_PORT) are set beforehand as a reader
with other ports would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from processes import wait_until

from stack.servers import PostgresServer, RedisServer, free_port

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def fenced(document: Path, language: str) -> list[list[str]]:
    """The lines of each ```<language> block of `document`."""
    blocks: list[list[str]] = []
    inside = False
    for line in document.read_text().splitlines():
        if line.strip().startswith("```"):
            inside = not inside and line.strip() == f"```{language}"
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append(line)
    return blocks


def console_examples(document: Path) -> list[tuple[str, list[str]]]:
    """Each `$ command` of the document's console blocks, with the lines it shows as its output."""
    examples: list[tuple[str, list[str]]] = []
    for block in fenced(document, "console"):
        for line in block:
            if line.startswith("$ "):
                examples.append((line[2:], []))
            else:
                examples[-1][1].append(line)
    return examples


class ServerOfYourOwn(PostgresServer):
    """A Postgres as a reader's own usually is: its superuser named postgres, the database postgres."""

    user = "postgres"
    database = "unused"  # made by prepare(); the reader's block uses the postgres database every cluster has


@pytest.fixture(scope="module")
def api_as_documented(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docs/running-locally.md's block, run; the API's URL (with the port the block's comment names changed)."""
    work = tmp_path_factory.mktemp("docs")
    # Not under tmp_path: that is private to root, and as root Postgres runs as its own user.
    postgres_dir = Path(tempfile.mkdtemp(prefix="fibstack-docs-postgres-"))
    postgres, redis = ServerOfYourOwn(postgres_dir), RedisServer(work)
    postgres.start()
    redis.start()
    (block,) = fenced(DOCS / "running-locally.md", "sh")
    app_password = secrets.token_urlsafe(16)
    script = []
    for line in block:
        line = line.replace("MIGRATION_PGPASSWORD=...", f"MIGRATION_PGPASSWORD={postgres.password}")
        line = re.sub(r"(?<![A-Z_])PGPASSWORD=\.\.\.", f"PGPASSWORD={app_password}", line)
        assert "..." not in line.split("#")[0], f"a placeholder this test does not fill: {line}"
        # The servers run until this test stops them.
        script.append(f"{line.split('#')[0].rstrip()} &" if line.startswith("make run-") else line)
    port = free_port()
    env = os.environ | {
        "PORT": str(port),
        "PGPORT": str(postgres.port),
        "REDIS_PORT": str(redis.port),
        "METRICS_PORT": "0",  # the API's and the worker's default (9464) would collide here
    }
    log = work / "services.log"
    with open(log, "wb") as out:
        services = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", "\n".join([*script, "wait"])],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://localhost:{port}"
    try:
        wait_until(lambda: services.poll() is not None or _ready(url), timeout=90, interval=0.5)
        assert services.poll() is None, f"the block stopped:\n{log.read_text()[-3000:]}"
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone: the block failed
            os.killpg(services.pid, signal.SIGTERM)
        try:
            services.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(services.pid, signal.SIGKILL)
        postgres.stop()
        redis.stop()
        shutil.rmtree(postgres_dir, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/readyz", timeout=2).ok
    except requests.RequestException:
        return False


def as_shown(shown: str, answered: str) -> bool:
    """Whether an answer is what the document shows: the same JSON but for timings, or the same text."""
    try:
        expected, actual = json.loads(shown), json.loads(answered)
    except ValueError:
        return shown == answered
    if isinstance(expected, dict) and isinstance(actual, dict) and expected.keys() == actual.keys():
        return all(_same(key, value, actual[key]) for key, value in expected.items())
    return bool(expected == actual)


def _same(key: str, shown: object, answered: object) -> bool:
    if key == "compute_ms" and shown is not None:  # an example: a real run takes its own time
        return isinstance(answered, float)
    return shown == answered


def test_the_api_answers_as_docs_api_shows(api_as_documented: str, tmp_path: Path) -> None:
    examples = console_examples(DOCS / "api.md")
    assert len(examples) >= 5
    for command, shown in examples:
        command = command.replace("localhost:5000", api_as_documented.removeprefix("http://"))
        where = f"docs/api.md: $ {command}"
        if command.startswith("curl -sN "):  # an event stream: its opening, then one event
            check_event_stream(command, shown, api_as_documented, where)
            continue
        saved = re.search(r"# saves (\S+)", command)
        if saved:
            run(command, tmp_path, where)
            assert (tmp_path / saved.group(1)).read_text() == fibonacci_digits(1_000_000), where
            continue
        (expected,) = shown
        # The document shows each GET's answer once the work asked for is done: asked again until then.
        deadline = time.monotonic() + (60 if "-XPOST" not in command else 0)
        while not as_shown(expected, answer := run(command, tmp_path, where)):
            assert time.monotonic() < deadline, f"{where}: answered {answer!r}, the document shows {expected!r}"
            time.sleep(0.5)


def run(command: str, cwd: Path, where: str) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{where}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def check_event_stream(command: str, shown: list[str], url: str, where: str) -> None:
    stream = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert stream.stdout is not None
        opening = [stream.stdout.readline().rstrip("\n") for _ in range(3)]
        assert opening == shown[:3], f"{where}: opened with {opening}"
        requests.post(f"{url}/api/values", json={"index": 12}, timeout=5).raise_for_status()
        event = [stream.stdout.readline().rstrip("\n") for _ in range(3)]
        for line, example in zip(event, shown[3:6], strict=True):
            field = example.partition(": ")[0]
            assert line.startswith(f"{field}: "), f"{where}: {line!r} where the document shows {example!r}"
        assert re.fullmatch(r"id: \d+-\d+", event[0]), event
        assert event[1] == "event: status"
        data = json.loads(event[2].removeprefix("data: "))
        assert (data["index"], data["status"]) == (12, "pending"), f"{where}: {data}"
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=10)


def fibonacci_digits(n: int) -> str:
    import gmpy2

    return str(gmpy2.fib(n).digits())


def test_new_env_writes_the_passwords_compose_reads_once(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "new-env.sh", tmp_path / "scripts")
    command = "scripts/new-env.sh"
    readme = (REPO / "README.md").read_text()
    assert f"\n{command} " in readme, "the README's first command"
    subprocess.run([tmp_path / command], check=True, capture_output=True)
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o077 == 0, "readable by its owner only"
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert written.keys() == {name for name in example if not name.startswith("#")}
    assert all(len(value) >= 24 for value in written.values())
    compose = (REPO / "docker-compose.yml").read_text()
    for name in written:
        assert f"${{{name}" in compose, f"docker-compose.yml never reads {name}"
    first = env_file.read_text()
    time.sleep(0.01)
    subprocess.run([tmp_path / command], check=True, capture_output=True)
    assert env_file.read_text() == first, "an existing .env is kept"
