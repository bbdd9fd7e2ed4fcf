#!/usr/bin/env bash
# Build the production images and push them, tagged with the git commit:
#   REGISTRY=ghcr.io/you scripts/push-images.sh        (make push)
# Images: $REGISTRY/fibstack-{api,worker,client,router}:$TAG. Log in first
# (docker login --password-stdin). Never "latest": a tag names one commit.
#   REGISTRY   where the images go (docker.io/you, ghcr.io/org, 123456789012.dkr.ecr.eu-west-1.amazonaws.com)
#   TAG        default: the current commit (git rev-parse HEAD)
#   PUSH=0     build and tag only (for kind load / minikube image load)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${REGISTRY:?set REGISTRY to your registry and namespace, e.g. REGISTRY=ghcr.io/you}"
TAG=${TAG:-$(git rev-parse HEAD)}
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${ALLOW_DIRTY:-0}" != 1 ]; then
    echo "push-images: the work tree has uncommitted changes, so images tagged $TAG would not be that commit." >&2
    echo "push-images: commit them first (or ALLOW_DIRTY=1 to push anyway)." >&2
    exit 1
fi

declare -A contexts=([fibstack-api]=server [fibstack-worker]=worker [fibstack-client]=client [fibstack-router]=nginx)
for image in fibstack-api fibstack-worker fibstack-client fibstack-router; do
    ref="$REGISTRY/$image:$TAG"
    echo "push-images: building $ref from ${contexts[$image]}/"
    docker build --tag "$ref" "${contexts[$image]}"
    if [ "${PUSH:-1}" != 0 ]; then
        docker push "$ref"
    fi
done
