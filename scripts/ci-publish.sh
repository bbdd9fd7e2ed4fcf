#!/usr/bin/env bash
# CI's build stage (.travis.yml; any CI can call it): log in and push the
# production images tagged with the commit. Without registry credentials (a
# pull request, or a fork that has not set them) there is nothing to push:
# it says so and succeeds, so such builds stay green.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${REGISTRY:-}" ] || [ -z "${REGISTRY_USER:-}" ] || [ -z "${REGISTRY_PASSWORD:-}" ]; then
    echo "ci-publish: REGISTRY, REGISTRY_USER or REGISTRY_PASSWORD is not set (a pull request or a fork): nothing pushed"
    exit 0
fi
make registry-login
make push
