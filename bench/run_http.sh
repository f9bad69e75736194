#!/usr/bin/env bash
# The HTTP benchmark of BENCHMARKS.md: icpnsd (2 threads) on the built-in
# dataset and bench_http (2 connections) on loopback, same 2-core machine.
# Usage: bench/run_http.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
B=${1:-build-rel}
S=${2:-5}
tok=$(mktemp); head -c 24 /dev/urandom | base64 > "$tok"; chmod 600 "$tok"
out=$(mktemp)
"$B/src/daemon/icpnsd" --listen 127.0.0.1:0 --threads 2 --admin-token-file "$tok" \
  --log-level warn >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$tok" "$out"' EXIT
for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
port=$(sed -n 's/listening on .*:\([0-9]*\)/\1/p' "$out")
echo "| format | users/request | n | connections | reloads running | negatives/s | requests/s | p50 | p99 | errors | reloads done |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for fmt in binary json; do
  for users in 256 4096; do
    for n in 1 16; do
      "$B/bench/bench_http" "$port" "$fmt" "$users" "$n" "$S" 2
    done
  done
done
for fmt in binary json; do
  "$B/bench/bench_http" "$port" "$fmt" 4096 16 "$S" 2 "$(cat "$tok")"
done
