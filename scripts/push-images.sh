#!/usr/bin/env bash
# Build the production images and push them, tagged with the git commit:
#   REGISTRY=ghcr.io/you scripts/push-images.sh        (make push)
# Images: $REGISTRY/fibstack-{api,worker,client,router}:$TAG. Log in first
# (docker login --password-stdin). Never "latest": a tag names one commit.
#   REGISTRY   where the images go (docker.io/you, ghcr.io/org, 123456789012.dkr.ecr.eu-west-1.amazonaws.com)
#   TAG        default: the current commit (git rev-parse HEAD)
#   PUSH=0     build and tag only (for kind load / minikube image load)
#   PLATFORMS  where Buildx exists (docker buildx), the platforms of one
#              multi-arch image each; default linux/amd64,linux/arm64 (arm64
#              builds under QEMU on an amd64 machine: binfmt must be set up,
#              as docker/setup-qemu-action does). Each image is pushed with an
#              SBOM and a provenance attestation. Without Buildx, or with
#              PUSH=0, a single image for this machine's platform is built
#              with docker build, and it says so.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${REGISTRY:?set REGISTRY to your registry and namespace, e.g. REGISTRY=ghcr.io/you}"
TAG=${TAG:-$(git rev-parse HEAD)}
if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${ALLOW_DIRTY:-0}" != 1 ]; then
    echo "push-images: the work tree has uncommitted changes, so images tagged $TAG would not be that commit." >&2
    echo "push-images: commit them first (or ALLOW_DIRTY=1 to push anyway)." >&2
    exit 1
fi

# Registries take lowercase names only; GitHub owners may have capitals.
REGISTRY=${REGISTRY,,}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
multiarch=0
if [ "${PUSH:-1}" != 0 ] && docker buildx version >/dev/null 2>&1; then
    multiarch=1
    echo "push-images: Buildx found: one image per service for $PLATFORMS, with SBOM and provenance"
elif [ "${PUSH:-1}" = 0 ]; then
    echo "push-images: PUSH=0: building for this machine's platform only ($(uname -m)), to load locally"
else
    echo "push-images: no Buildx (docker buildx) here: building for this machine's platform only ($(uname -m)), without SBOM or provenance attestations; install docker-buildx for $PLATFORMS"
fi

declare -A contexts=([fibstack-api]=server [fibstack-worker]=worker [fibstack-client]=client [fibstack-router]=nginx)
for image in fibstack-api fibstack-worker fibstack-client fibstack-router; do
    ref="$REGISTRY/$image:$TAG"
    echo "push-images: building $ref from ${contexts[$image]}/"
    if [ "$multiarch" = 1 ]; then
        docker buildx build --platform "$PLATFORMS" --sbom=true --provenance=mode=max \
            --tag "$ref" --push "${contexts[$image]}"
        continue
    fi
    docker build --tag "$ref" "${contexts[$image]}"
    if [ "${PUSH:-1}" != 0 ]; then
        docker push "$ref"
    fi
done
