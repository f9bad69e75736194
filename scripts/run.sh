#!/usr/bin/env bash
# Set up and run: install dependencies, build, and start icpnsd on
# 127.0.0.1:8470 serving the built-in synthetic dataset.  Extra arguments go
# to icpnsd (e.g. --listen 127.0.0.1:0, --tables DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
meson compile -C build >/dev/null
echo "run: starting build/src/daemon/icpnsd $*" >&2
exec build/src/daemon/icpnsd "$@"
