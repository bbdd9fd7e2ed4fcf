#!/usr/bin/env bash
# Start a fresh local stack, try it as a hostile client would, run the browser
# test against it, stop the stack.
#   scripts/e2e.sh               the Vite dev server behind the router (make dev)
#   scripts/e2e.sh --prod-client the production build behind the router (make dev-prod)
# The stack's data lives in a throw-away directory, so every run starts empty.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every service on a free port (the router too, unless FIBSTACK_ROUTER_PORT
# says which), so a running `make dev` or another server on the machine
# cannot get in the way.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export FIBSTACK_ROUTER_PORT=${FIBSTACK_ROUTER_PORT:-$(free_port)}
base=http://localhost:$FIBSTACK_ROUTER_PORT
export FIBSTACK_POSTGRES_PORT=$(free_port) FIBSTACK_REDIS_PORT=$(free_port)
export FIBSTACK_API_PORT=$(free_port) FIBSTACK_CLIENT_PORT=$(free_port)
export FIBSTACK_API_METRICS_PORT=$(free_port) FIBSTACK_WORKER_METRICS_PORT=$(free_port)

work=$(mktemp -d /tmp/fibstack-e2e-XXXXXX)
chmod 755 "$work"  # Postgres runs as its own user when we are root
mkdir -p .work
log=.work/e2e-stack.log
FIBSTACK_WORK_DIR=$work setsid .venv/bin/python -m stack dev "$@" >"$log" 2>&1 &
stack=$!

stop() {
    kill -TERM "$stack" 2>/dev/null || true   # honcho stops every service
    wait "$stack" 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 240); do
    if curl -fsS -o /dev/null "$base/api/readyz" 2>/dev/null && curl -fsS -o /dev/null "$base/" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$stack" 2>/dev/null; then
        echo "e2e: the stack stopped; its log:" >&2; tail -50 "$log" >&2; exit 1
    fi
    sleep 0.5
done
curl -fsS -o /dev/null "$base/api/readyz" || { echo "e2e: the stack is not ready; see $log" >&2; exit 1; }

# What a hostile client tries, against this stack's router (tests/support/hostile.py).
.venv/bin/python tests/support/hostile.py "$base" submit-spellings other-spellings slow-clients system-flood \
    || { echo "e2e: the hostile-client checks failed; the stack's log is in $log" >&2; exit 1; }

cd client
E2E_BASE_URL=$base ../scripts/with-node npx vitest run --config vitest.e2e.config.ts \
    || { echo "e2e: failed; the stack's log is in $log" >&2; exit 1; }
