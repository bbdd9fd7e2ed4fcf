#!/usr/bin/env bash
# The Kubernetes manifests' pods for real, without a cluster: the rendered
# dev overlay run in Docker as the kubelet would (tests/support/pods.py),
# every probe, F(10^7) and the browser test through the router.
# Needs a running Docker engine (scripts/ensure-docker.sh). Where no registry
# is reachable, build base images first: ../shared/offline-images/build-standins --from-project .
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=tests/support exec .venv/bin/python tests/support/pods.py "$@"
