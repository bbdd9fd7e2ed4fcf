#!/usr/bin/env bash
# .env for Docker Compose, with a random password for each of Postgres's
# superuser, the API's own database role, and Redis. Only once: an existing
# .env is kept (its passwords are those of the data in the volumes).
#   scripts/new-env.sh            (or copy .env.example and choose your own)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .env ]; then
    echo "new-env: .env exists already; kept as it is" >&2
    exit 0
fi
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
(
    umask 077
    {
        echo "# Written by scripts/new-env.sh: git-ignored, never committed."
        echo "POSTGRES_PASSWORD=$(random)"
        echo "FIBSTACK_DB_PASSWORD=$(random)"
        echo "REDIS_PASSWORD=$(random)"
    } >.env
)
echo "new-env: wrote .env with random passwords" >&2
