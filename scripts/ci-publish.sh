#!/usr/bin/env bash
# CI's build stage (.travis.yml; any CI can call it): log in and push the
# production images tagged with the commit. Without registry credentials (a
# pull request, another branch, or a fork: the variables are scoped to main)
# there is nothing to push: it says so and succeeds, so such builds stay green.
# GitHub Actions logs in with its own token and calls scripts/push-images.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${REGISTRY:-}" ] || [ -z "${REGISTRY_USER:-}" ] || [ -z "${REGISTRY_PASSWORD:-}" ]; then
    echo "ci-publish: REGISTRY, REGISTRY_USER or REGISTRY_PASSWORD is not set (a pull request, another branch or a fork): nothing pushed"
    exit 0
fi
make registry-login
make push
