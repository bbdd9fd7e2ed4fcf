#!/usr/bin/env bash
# The Dev Container (.devcontainer/), brought up by its reference CLI
# (@devcontainers/cli, what VS Code and Codespaces run) against the local
# Docker: the development stack and the workspace start from
# devcontainer.json, and from inside the workspace, as its user, the app
# answers through the router, the repository is mounted, and make, git, sudo
# and Python's venv work. Then everything is removed.
#   make devcontainer-check      (needs a running Docker engine and docker-compose)
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=fibstack-devcontainer-check
cli=(scripts/with-node .devcontainer/check/node_modules/.bin/devcontainer)
stack=(docker-compose -f docker-compose.yml -f docker-compose.override.yml -f .devcontainer/compose.yml)
fail() { echo "devcontainer-check: FAILED: $*" >&2; "${stack[@]}" ps >&2 || true; exit 1; }

created_env=
[ -f .env ] || created_env=1
cleanup() {
    "${stack[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    if [ -n "$created_env" ]; then rm -f .env; fi
}
trap cleanup EXIT

echo "devcontainer-check: devcontainer up (as VS Code would; postCreateCommand skipped: it is make deps)"
"${cli[@]}" up --workspace-folder . --skip-post-create --docker-compose-path docker-compose \
    --log-level info >/tmp/devcontainer-up.log 2>&1 || { tail -n 40 /tmp/devcontainer-up.log >&2; fail "devcontainer up"; }
inside() { "${cli[@]}" exec --workspace-folder . "$@"; }

for _ in $(seq 120); do
    if inside curl -fsS -o /dev/null http://nginx:8080/api/readyz 2>/dev/null; then break; fi
    sleep 1
done
inside curl -fsS http://nginx:8080/api/readyz >/dev/null || fail "the app does not answer at http://nginx:8080 from the workspace"
user=$(inside id -un)
[ "$user" = node ] || fail "the workspace runs as $user, not node"
inside test -f /workspaces/fibstack/Makefile || fail "the repository is not mounted at /workspaces/fibstack"
inside sh -c 'make --version >/dev/null && git --version >/dev/null && sudo -n true && python3 -m venv /tmp/venv-check' \
    || fail "make, git, sudo or python3 -m venv does not work in the workspace"
echo "devcontainer-check: the workspace runs as $user with the repository, make, git, sudo and venv;" \
    "the app answers at http://nginx:8080 ($(inside curl -fsS http://nginx:8080/api/readyz))"
