#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that `make test` and `make dev` need, if
# missing: with apt-get when running as root or through password-less sudo,
# otherwise stop and print the exact command to run.
#
# Usage: scripts/ensure-system-packages.sh [group ...]   (default: test)
set -euo pipefail

missing=()
need() {  # need <package> <check command...>
    local package=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing+=("$package"); fi
}
has_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb; }

for group in "${@:-test}"; do
    case $group in
        python)
            need python3 command -v python3
            need python3-venv python3 -c "import ensurepip, venv"
            ;;
        test)
            need python3 command -v python3
            need python3-venv python3 -c "import ensurepip, venv"
            need make command -v make
            need redis-server command -v redis-server
            need postgresql has_postgres
            need util-linux command -v setpriv  # runs Postgres as its own user when we are root
            need nginx command -v nginx  # serves the client's production build in its test
            need prometheus command -v promtool  # the alert rules' tests and the metrics test run it
            need prometheus-nginx-exporter command -v prometheus-nginx-exporter  # the router's metrics, in that test
            ;;
        bench)
            need wrk command -v wrk  # HTTP load in make bench
            ;;
        e2e)
            need chromium command -v chromium  # driven by Playwright in the browser test
            need curl command -v curl
            ;;
        docker)
            need docker.io command -v dockerd
            need docker-compose command -v docker-compose
            ;;
        registry)
            need docker-registry command -v docker-registry  # a local registry for scripts/eb-check.sh
            ;;
        node)
            need nodejs command -v node
            need npm command -v npm
            ;;
        *) echo "ensure-system-packages: unknown group '$group'" >&2; exit 2 ;;
    esac
done

[ ${#missing[@]} -eq 0 ] && exit 0
# De-duplicate, keeping order.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
command_line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "Missing system packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "    sudo sh -c '$command_line'" >&2
    exit 1
fi

echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
