#!/usr/bin/env bash
# A running Docker engine and docker-compose, for scripts/docker-check.sh:
# installs docker.io and docker-compose with apt-get when missing (as
# ensure-system-packages.sh does), and starts dockerd when none answers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-system-packages.sh docker
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-docker: the Docker engine is not running; start it (sudo systemctl start docker)" >&2
    exit 1
fi
echo "ensure-docker: starting dockerd (log: /tmp/dockerd.log)"
nohup dockerd >/tmp/dockerd.log 2>&1 &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
echo "ensure-docker: dockerd did not start; see /tmp/dockerd.log" >&2
exit 1
