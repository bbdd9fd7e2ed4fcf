#!/usr/bin/env bash
# The images of Compose's "monitoring" profile: the official ones, pulled, or
# where no registry answers (an offline machine), stand-ins built from
# Debian's packages (scripts/standins/), tagged with the official names.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure() {  # ensure <official image> <stand-in directory>
    local image=$1 dir=$2
    if docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image" >/dev/null 2>&1; then
        return 0
    fi
    echo "monitoring-images: $image cannot be pulled; building a stand-in from $dir"
    docker build -q -t "$image" "$dir" >/dev/null
}

images=$(sed -n 's/^ *image: *\(prom\/prometheus:[^ ]*\|nginx\/nginx-prometheus-exporter:[^ ]*\)$/\1/p' docker-compose.yml)
for image in $images; do
    case $image in
        prom/prometheus:*) ensure "$image" scripts/standins/prometheus ;;
        nginx/nginx-prometheus-exporter:*) ensure "$image" scripts/standins/nginx-prometheus-exporter ;;
    esac
done
