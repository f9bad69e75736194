#!/usr/bin/env bash
# The whole test suite: dependencies, a -Werror build, meson test.
# SANITIZE=1 builds and runs it under AddressSanitizer + UBSan instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
if [ "${SANITIZE:-0}" = 1 ]; then
  dir=build-asan
  opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
else
  dir=build-test
  opts=(-Dbuildtype=debugoptimized)
fi
[ -f "$dir/build.ninja" ] || meson setup "$dir" -Dwerror=true "${opts[@]}" >/dev/null
meson compile -C "$dir"
meson test -C "$dir" --print-errorlogs "$@"
