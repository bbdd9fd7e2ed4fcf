#!/usr/bin/env bash
# Log Docker in to the registry that REGISTRY names (make registry-login):
#   REGISTRY_USER, REGISTRY_PASSWORD (a token, never your account password)
# The password goes through stdin, never the command line or the log.
# REGISTRY=docker.io/you logs in to Docker Hub; ghcr.io/org to GitHub's, and so on.
set -euo pipefail
: "${REGISTRY:?set REGISTRY, e.g. docker.io/you}"
: "${REGISTRY_USER:?set REGISTRY_USER}"
: "${REGISTRY_PASSWORD:?set REGISTRY_PASSWORD (an access token)}"
host=${REGISTRY%%/*}
printf '%s' "$REGISTRY_PASSWORD" | docker login --username "$REGISTRY_USER" --password-stdin "$host"
