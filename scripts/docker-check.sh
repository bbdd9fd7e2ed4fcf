#!/usr/bin/env bash
# The containers, proven end to end:
#   1. build every image and `docker-compose up -d` the development stack
#   2. run the browser test (client/e2e) against http://127.0.0.1:3050
#   3. restart the postgres container: the submitted indexes survive
#   4. edit the API's source in its bind mount: the API reloads with the
#      change (and the worker restarts when its source changes)
#   5. with Compose v2.22+: Compose Watch (docker-compose.watch.yml) in place
#      of the bind mounts copies an edit into the API, which serves it
#   6. the monitoring profile: Prometheus scrapes the API, the worker and the
#      router's exporter, and loads the alert rules
#   7. `docker-compose down -v`: nothing of the stack is left
#   8. the production stack (docker-compose.prod.yml), tried as a hostile
#      client and an intruder would (tests/support/compose_prod.py)
# Needs a running Docker engine (scripts/ensure-docker.sh). Where no registry
# is reachable, build base images first: ../shared/offline-images/build-standins --from-project .
# COMPOSE="docker compose" (or a Compose v2 binary's path) runs it with
# Compose v2; make docker-check runs it with v1 and then v2.
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=fibstack-check
read -r -a compose <<<"${COMPOSE:-docker-compose}"
# Every service, the monitoring profile's too, for the commands that stop them.
all_profiles=("${compose[@]}" --profile monitoring)
prometheus_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FIBSTACK_PROMETHEUS_PORT=$prometheus_port
base=http://127.0.0.1:3050
api_source=server/fibapi/health.py
worker_source=worker/fibworker/__init__.py
work=$(mktemp -d)
cp "$api_source" "$work/api_source"
cp "$worker_source" "$work/worker_source"

step() { printf '\n== docker-check %s\n' "$*"; }
fail() {
    echo "docker-check: FAILED: $*" >&2
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --tail=40 >&2 || true
    if [ -s "$work/watch.log" ]; then echo "compose watch said:" >&2; tail -n 20 "$work/watch.log" >&2; fi
    exit 1
}
wait_for() {  # wait_for <seconds> <description> <command...>
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 2))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    fail "$what (waited ${seconds} s)"
}

created_env=
if [ ! -f .env ]; then
    created_env=1
    scripts/new-env.sh
fi

watch_pid=
cleanup() {
    if [ -n "$watch_pid" ]; then kill "$watch_pid" 2>/dev/null || true; fi
    cp "$work/api_source" "$api_source"
    cp "$work/worker_source" "$worker_source"
    "${all_profiles[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    if [ -n "$created_env" ]; then rm -f .env; fi
    rm -rf "$work"
}
trap cleanup EXIT

step "1/8: build every image and start the stack"
"${compose[@]}" build
"${compose[@]}" up -d
wait_for 180 "the stack answers at $base" curl -fsS -o /dev/null "$base/api/readyz"
wait_for 60 "the client answers at $base" curl -fsS -o /dev/null "$base/"
# The same in Compose v1 and v2: which services a plain `up` runs (not the
# monitoring profile's), the one-shot migrate step done before the API
# started (depends_on: service_completed_successfully), and each container
# found by its service's label; the names differ (v1 project_api_1, v2
# project-api-1), so nothing here or in the docs uses them.
running=$("${compose[@]}" ps --services --filter status=running | sort | xargs)
[ "$running" = "api client nginx postgres redis worker" ] || fail "a plain up runs: $running"
for service in postgres redis migrate api worker client nginx; do
    found=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter "label=com.docker.compose.service=$service" | wc -l)
    [ "$found" = 1 ] || fail "$found containers of service $service"
done
migrated=$(docker inspect --format '{{.State.ExitCode}} {{.State.FinishedAt}}' \
    "$("${compose[@]}" ps -aq migrate)")
api_started=$(docker inspect --format '{{.State.StartedAt}}' "$("${compose[@]}" ps -q api)")
[ "${migrated%% *}" = 0 ] || fail "the migrate step exited ${migrated%% *}"
[[ "${migrated#* }" < "$api_started" ]] || fail "the API started ($api_started) before migrate ended (${migrated#* })"
echo "$("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -1): running $running; migrate done before the API started"

step "2/8: the browser test against $base"
(cd client && E2E_BASE_URL=$base ../scripts/with-node npx vitest run --config vitest.e2e.config.ts) \
    || fail "the browser test"

step "3/8: restart postgres; the submitted indexes survive"
before=$(curl -fsS "$base/api/values/all")
grep -q '{"number":1000000}' <<<"$before" || fail "the browser test's submissions are not recorded: $before"
"${compose[@]}" restart postgres
wait_for 60 "the API sees Postgres again" curl -fsS -o /dev/null "$base/api/values/all"
after=$(curl -fsS "$base/api/values/all")
[ "$before" = "$after" ] || fail "the indexes changed across the restart: $before -> $after"
echo "the same $(grep -o number <<<"$after" | wc -l) submissions before and after the restart"

step "4/8: edit the sources in their bind mounts"
token="reloaded-$RANDOM$RANDOM"
sed -i "s/return {\"status\": \"ok\"}/return {\"status\": \"ok\", \"edit\": \"$token\"}/" "$api_source"
grep -q "$token" "$api_source" || fail "could not edit $api_source"
wait_for 60 "the API serves the edited code" sh -c "curl -fsS '$base/api/healthz' | grep -q '$token'"
echo "GET /api/healthz -> $(curl -fsS "$base/api/healthz")"
starts() { "${compose[@]}" logs worker | grep -c "Listening on fib" || true; }
worker_starts=$(starts)
printf '\n# edited by scripts/docker-check.sh\n' >>"$worker_source"
wait_for 60 "the worker restarts after its source changed" sh -c "[ \$(${compose[*]} logs worker | grep -c 'Listening on fib') -gt $worker_starts ]"
echo "the worker restarted after its source changed"
cp "$work/api_source" "$api_source"
cp "$work/worker_source" "$worker_source"

step "5/8: Compose Watch: an edit copied into the API, with no bind mount"
version=$("${compose[@]}" version --short)
if [ "${version%%.*}" -lt 2 ] || { [ "${version%%.*}" = 2 ] && [ "$(cut -d. -f2 <<<"$version")" -lt 22 ]; }; then
    echo "skipped: Compose Watch needs Compose v2.22 or later; this is $version (docker-compose.watch.yml is never read by v1)"
else
    watching=("${compose[@]}" -f docker-compose.yml -f docker-compose.watch.yml)
    "${watching[@]}" up -d --build api worker client
    # The router resolved the API's address when it started: let it resolve the new container's.
    "${compose[@]}" restart nginx
    wait_for 120 "the API answers again, now without its bind mount" curl -fsS -o /dev/null "$base/api/readyz"
    mounts=$(docker inspect --format '{{range .Mounts}}{{.Destination}} {{end}}' "$("${compose[@]}" ps -q api)")
    [[ " $mounts " != *" /app "* ]] || fail "the API still has /app mounted: $mounts"
    "${watching[@]}" watch >"$work/watch.log" 2>&1 &
    watch_pid=$!
    token="watched-$RANDOM$RANDOM"
    sed -i "s/return {\"status\": \"ok\"}/return {\"status\": \"ok\", \"edit\": \"$token\"}/" "$api_source"
    grep -q "$token" "$api_source" || fail "could not edit $api_source"
    # Touched on each try: an edit made before Watch was ready is not copied.
    wait_for 90 "Compose Watch copies the edit and the API serves it" \
        sh -c "touch '$api_source'; curl -fsS '$base/api/healthz' | grep -q '$token'"
    echo "GET /api/healthz -> $(curl -fsS "$base/api/healthz") (copied by Compose Watch)"
    kill "$watch_pid" && wait "$watch_pid" || true
    cp "$work/api_source" "$api_source"
    # Back to the bind mounts for the steps that follow.
    "${compose[@]}" up -d api worker client
    "${compose[@]}" restart nginx
    wait_for 120 "the API answers again with its bind mount" curl -fsS -o /dev/null "$base/api/readyz"
fi

step "6/8: the monitoring profile: Prometheus scrapes the API, the worker and the router"
scripts/monitoring-images.sh
"${all_profiles[@]}" up -d prometheus nginx-exporter
prometheus=http://127.0.0.1:$prometheus_port
targets_up() {
    curl -fsS "$prometheus/api/v1/targets" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
up = sorted(t["labels"]["job"] for t in targets if t["health"] == "up")
print(up)
sys.exit(up != ["fibstack-api", "fibstack-router", "fibstack-worker"])'
}
wait_for 120 "Prometheus sees the API, the worker and the router up" targets_up
echo "targets up: $(targets_up)"
rules=$(curl -fsS "$prometheus/api/v1/rules" | python3 -c 'import json, sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
[ "$rules" -gt 0 ] || fail "Prometheus loaded no rules"
submitted=$(curl -fsS -G "$prometheus/api/v1/query" --data-urlencode 'query=sum(fibstack_api_submissions_total)' \
    | python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
echo "$rules rules loaded; submissions counted since the API started: $submitted"

step "7/8: down -v leaves nothing behind"
"${all_profiles[@]}" down -v --remove-orphans
label="label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
[ -z "$(docker ps -aq --filter "$label")" ] || fail "containers are left: $(docker ps -a --filter "$label")"
[ -z "$(docker volume ls -q --filter "$label")" ] || fail "volumes are left: $(docker volume ls --filter "$label")"
[ -z "$(docker network ls -q --filter "$label")" ] || fail "networks are left"
echo "no container, volume or network of the stack is left"

step "8/8: the production stack, tried as a hostile client and an intruder would"
COMPOSE="${compose[*]}" .venv/bin/python tests/support/compose_prod.py || fail "the production stack's checks"

printf '\ndocker-check: all 8 steps passed\n'
