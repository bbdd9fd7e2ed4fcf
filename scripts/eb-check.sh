#!/usr/bin/env bash
# The Elastic Beanstalk bundles for real, without AWS (tests/support/beanstalk.py):
# images pushed to and pulled from a local registry, then the Dockerrun.aws.json
# bundle run as the ECS agent would and the compose bundle as the Docker
# platform would, against TLS-only Postgres and TLS+AUTH Redis stand-ins for
# RDS and ElastiCache, with the browser test through the router for each.
# Needs a running Docker engine (scripts/ensure-docker.sh) and Debian's
# docker-registry (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-system-packages.sh registry
PYTHONPATH=.:tests/support exec .venv/bin/python tests/support/beanstalk.py "$@"
