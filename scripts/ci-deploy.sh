#!/usr/bin/env bash
# CI's deploy stage (.travis.yml; any CI can call it), for the default branch:
# deploys the images the build stage pushed for this commit
#   - to Elastic Beanstalk when EB_APP and EB_ENV are set (make deploy-eb);
#   - to a Kubernetes cluster when KUBECONFIG_BASE64 is set (make deploy-k8s,
#     overlay K8S_OVERLAY, default prod);
# and does nothing, successfully, when neither is.
set -euo pipefail
cd "$(dirname "$0")/.."
deployed=0
if [ -n "${EB_APP:-}" ] && [ -n "${EB_ENV:-}" ]; then
    make deploy-eb
    deployed=1
fi
if [ -n "${KUBECONFIG_BASE64:-}" ]; then
    KUBECONFIG=$(mktemp)
    export KUBECONFIG
    trap 'rm -f "$KUBECONFIG"' EXIT
    printf '%s' "$KUBECONFIG_BASE64" | base64 --decode >"$KUBECONFIG"
    make deploy-k8s OVERLAY="${K8S_OVERLAY:-prod}" DEPLOY_K8S_FLAGS=--no-build
    deployed=1
fi
if [ "$deployed" = 0 ]; then
    echo "ci-deploy: neither EB_APP/EB_ENV nor KUBECONFIG_BASE64 is set: nothing deployed"
fi
