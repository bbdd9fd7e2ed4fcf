#!/usr/bin/env bash
# CI's deploy step (.travis.yml's deploy stage, .github/workflows/ci.yml's
# deploy jobs; any CI can call it), for the default branch only: deploys the
# images the build step pushed for this commit
#   - to Elastic Beanstalk when EB_APP and EB_ENV are set (make deploy-eb);
#   - to a Kubernetes cluster (make deploy-k8s, overlay K8S_OVERLAY, default
#     prod) when EKS_CLUSTER names an EKS cluster (its kubeconfig is made
#     with the AWS credentials CI already holds, e.g. from OIDC: no key is
#     stored) or KUBECONFIG_BASE64 holds a kubeconfig;
# and does nothing, successfully, when none is set.
#   DEPLOY_TARGET=eb|k8s   deploy to that one only (one CI job each)
#   DEPLOY_BRANCH          the branch that may deploy; default main
# It refuses to run in a CI build of anything but a push to DEPLOY_BRANCH
# (Travis, GitHub Actions), whatever the CI configuration says.
set -euo pipefail
cd "$(dirname "$0")/.."

branch=${DEPLOY_BRANCH:-main}
refuse() { echo "ci-deploy: $*: nothing deployed (only pushes to $branch deploy)" >&2; exit 1; }
if [ "${TRAVIS:-}" = true ]; then
    [ "${TRAVIS_PULL_REQUEST:-}" = false ] || refuse "this is a pull request build"
    [ "${TRAVIS_BRANCH:-}" = "$branch" ] || refuse "this is a build of branch '${TRAVIS_BRANCH:-}'"
fi
if [ "${GITHUB_ACTIONS:-}" = true ]; then
    [ "${GITHUB_EVENT_NAME:-}" = push ] || refuse "this run was triggered by '${GITHUB_EVENT_NAME:-}'"
    [ "${GITHUB_REF:-}" = "refs/heads/$branch" ] || refuse "this run is for '${GITHUB_REF:-}'"
fi

target=${DEPLOY_TARGET:-all}
case $target in
    all | eb | k8s) ;;
    *) echo "ci-deploy: DEPLOY_TARGET is '$target'; use eb, k8s, or leave it unset for both" >&2; exit 2 ;;
esac

deployed=0
if [ "$target" != k8s ] && [ -n "${EB_APP:-}" ] && [ -n "${EB_ENV:-}" ]; then
    make deploy-eb
    deployed=1
fi
if [ "$target" != eb ] && { [ -n "${EKS_CLUSTER:-}" ] || [ -n "${KUBECONFIG_BASE64:-}" ]; }; then
    KUBECONFIG=$(mktemp)
    export KUBECONFIG
    trap 'rm -f "$KUBECONFIG"' EXIT
    if [ -n "${EKS_CLUSTER:-}" ]; then
        command -v aws >/dev/null || { echo "ci-deploy: EKS_CLUSTER is set but there is no aws CLI on PATH" >&2; exit 1; }
        aws eks update-kubeconfig --name "$EKS_CLUSTER" --kubeconfig "$KUBECONFIG" >&2
    else
        printf '%s' "$KUBECONFIG_BASE64" | base64 --decode >"$KUBECONFIG"
    fi
    make deploy-k8s OVERLAY="${K8S_OVERLAY:-prod}" DEPLOY_K8S_FLAGS=--no-build
    deployed=1
fi
if [ "$deployed" = 0 ]; then
    echo "ci-deploy: neither EB_APP/EB_ENV nor EKS_CLUSTER/KUBECONFIG_BASE64 is set for target '$target': nothing deployed"
fi
