#!/usr/bin/env bash
# The dev overlay's passwords, random, each in a git-ignored file beside its
# kustomization, made once (kept after that, as the in-cluster data is):
#   postgres-admin.env     the superuser, which the migration step connects as
#   postgres-password.env  the API's own least-privilege role
#   redis-password.env     Redis's requirepass
# Called by scripts/deploy-k8s.sh for the dev overlay, and by the tests that render it.
set -euo pipefail
cd "$(dirname "$0")/../k8s/overlays/dev"
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
write() {  # write <file> <content>: only if the file is missing
    if [ ! -f "$1" ]; then
        (umask 077 && printf '%s\n' "$2" >"$1")
        echo "k8s-dev-secrets: wrote a random password to k8s/overlays/dev/$1 (git-ignored)" >&2
    fi
}
write postgres-admin.env "username=postgres
password=$(random)"
write postgres-password.env "password=$(random)"
write redis-password.env "password=$(random)"
