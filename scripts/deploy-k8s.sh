#!/usr/bin/env bash
# Deploy fibstack to the Kubernetes cluster of the current kubectl context:
# build and push the images tagged with the git commit, render the overlay
# with those tags, apply it, wait for every rollout, and roll back with a
# clear message if one does not become ready. CI calls this same script.
#
#   scripts/deploy-k8s.sh [--dry-run] [--no-build] dev|prod|PATH      (make deploy-k8s OVERLAY=...)
#
#   --dry-run    print what would be applied and stop: needs no cluster, no
#                registry, no Docker
#   --no-build   the images of this commit are in the registry already
#                (CI's build stage pushed them: scripts/push-images.sh)
# Environment:
#   REGISTRY         where the images are pushed and pulled from (ghcr.io/you, docker.io/you, ...)
#   TAG              image tag; default: the current commit (git rev-parse HEAD)
#   KIND_CLUSTER     load the images into this kind cluster instead of pushing
#   MINIKUBE=1       load the images into minikube instead of pushing
#   KUBECTL          the kubectl to use; default: the project's (.venv/bin/kubectl), else kubectl on PATH
#   ROLLOUT_TIMEOUT  how long each rollout may take; default 300s
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deploy-k8s: $*" >&2; exit 1; }
say() { echo "deploy-k8s: $*" >&2; }

dry_run=0 build=1 overlay=""
for argument in "$@"; do
    case $argument in
        --dry-run) dry_run=1 ;;
        --no-build) build=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $argument (see --help)" ;;
        *) overlay=$argument ;;
    esac
done
[ -n "$overlay" ] || die "which overlay? dev, prod or a path to a kustomization (see --help)"
[ -d "$overlay" ] || overlay=k8s/overlays/$overlay
[ -f "$overlay/kustomization.yaml" ] || die "no kustomization.yaml in $overlay"

if [ -z "${KUBECTL:-}" ]; then
    if [ -x .venv/bin/kubectl ]; then KUBECTL=.venv/bin/kubectl; else KUBECTL=kubectl; fi
fi
command -v "$KUBECTL" >/dev/null || die "no kubectl: run make deps (it installs one into .venv/), or set KUBECTL"

TAG=${TAG:-$(git rev-parse HEAD)}
if [ -n "${KIND_CLUSTER:-}" ] || [ "${MINIKUBE:-0}" = 1 ]; then
    REGISTRY=${REGISTRY:-local}  # loaded into the nodes, never pulled
fi
[ -n "${REGISTRY:-}" ] || die "set REGISTRY (e.g. REGISTRY=ghcr.io/you), or KIND_CLUSTER=<name> / MINIKUBE=1 for a local cluster"
images=(fibstack-api fibstack-worker fibstack-client fibstack-router)

# The dev overlay's passwords: random, in git-ignored files, made once.
if [ "$(realpath "$overlay")" = "$(realpath k8s/overlays/dev)" ]; then
    scripts/k8s-dev-secrets.sh
fi

# The overlay with this commit's images, in a kustomization of its own so
# that nothing in the repo is edited (kustomize edit set image would).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - $(realpath --relative-to="$work" "$overlay")"
    echo "images:"
    for image in "${images[@]}"; do
        printf '  - name: %s\n    newName: %s/%s\n    newTag: "%s"\n' "$image" "$REGISTRY" "$image" "$TAG"
    done
} >"$work/kustomization.yaml"
"$KUBECTL" kustomize "$work" >"$work/rendered.yaml" || die "kustomize could not render $overlay"

if [ "$dry_run" = 1 ]; then
    say "dry run: this is what would be applied (images $REGISTRY/fibstack-*:$TAG)"
    cat "$work/rendered.yaml"
    exit 0
fi

if [ "$build" = 1 ]; then
    if [ -n "${KIND_CLUSTER:-}" ] || [ "${MINIKUBE:-0}" = 1 ]; then
        REGISTRY=$REGISTRY TAG=$TAG PUSH=0 scripts/push-images.sh
        for image in "${images[@]}"; do
            if [ -n "${KIND_CLUSTER:-}" ]; then
                kind load docker-image --name "$KIND_CLUSTER" "$REGISTRY/$image:$TAG"
            else
                minikube image load "$REGISTRY/$image:$TAG"
            fi
        done
    else
        REGISTRY=$REGISTRY TAG=$TAG scripts/push-images.sh
    fi
fi

namespace=$(awk '/^kind: Namespace$/ {found = 1} found && /^  name: / {print $2; exit}' "$work/rendered.yaml")
[ -n "$namespace" ] || die "the render has no Namespace"
if ! grep -q "^kind: Secret$" "$work/rendered.yaml"; then
    # prod: the Secrets and the CA bundle are the user's, never in the repo.
    "$KUBECTL" get namespace "$namespace" >/dev/null 2>&1 || "$KUBECTL" create namespace "$namespace"
    missing=()
    kubectl_ns="$KUBECTL -n $namespace"
    $kubectl_ns get secret fibstack-postgres-admin >/dev/null 2>&1 || missing+=("    $kubectl_ns create secret generic fibstack-postgres-admin --from-literal=username='<the master user>' --from-literal=password='<its password>'")
    $kubectl_ns get secret fibstack-postgres-password >/dev/null 2>&1 || missing+=("    $kubectl_ns create secret generic fibstack-postgres-password --from-literal=password='<a new password for the API's role>'")
    $kubectl_ns get secret fibstack-redis-password >/dev/null 2>&1 || missing+=("    $kubectl_ns create secret generic fibstack-redis-password --from-literal=password='<the Redis AUTH token>'")
    if grep -q "name: fibstack-postgres-ca$" "$work/rendered.yaml"; then
        $kubectl_ns get configmap fibstack-postgres-ca >/dev/null 2>&1 || missing+=("    $kubectl_ns create configmap fibstack-postgres-ca --from-file=ca.pem=<your cloud's CA bundle, see docs/kubernetes.md>")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        die "create these first (see docs/kubernetes.md):
$(printf '%s\n' "${missing[@]}")"
    fi
fi

say "applying $overlay to namespace $namespace with images $REGISTRY/fibstack-*:$TAG"
if ! "$KUBECTL" apply -f "$work/rendered.yaml"; then
    die "kubectl apply failed. 'no matches for kind' means a controller's CRDs are missing: install cert-manager (and KEDA, the Gateway API) first, as docs/kubernetes.md says"
fi

# Every Deployment and StatefulSet the overlay holds, as kind/name.
mapfile -t rollouts < <(awk '
    /^kind: (Deployment|StatefulSet)$/ {kind = tolower($2); next}
    /^kind: / {kind = ""}
    kind && /^  name: / {print kind "/" $2; kind = ""}
' "$work/rendered.yaml")
failed=()
for rollout in "${rollouts[@]}"; do
    if ! "$KUBECTL" -n "$namespace" rollout status "$rollout" --timeout="${ROLLOUT_TIMEOUT:-300s}"; then
        failed+=("$rollout")
    fi
done
if [ ${#failed[@]} -eq 0 ]; then
    say "every rollout is complete: ${rollouts[*]}"
    exit 0
fi

say "not ready in ${ROLLOUT_TIMEOUT:-300s}: ${failed[*]}; recent events:"
"$KUBECTL" -n "$namespace" get events --sort-by=.lastTimestamp 2>&1 | tail -20 >&2 || true
for rollout in "${failed[@]}"; do
    if "$KUBECTL" -n "$namespace" rollout undo "$rollout"; then
        say "rolled $rollout back to its previous revision"
    else
        say "$rollout has no previous revision to roll back to (a first deploy): fix and deploy again"
    fi
done
die "the deploy of $TAG failed: ${failed[*]} did not become ready (see the events above)"
