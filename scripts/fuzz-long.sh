#!/usr/bin/env bash
# Long libFuzzer sessions for every harness (docs/reliability.md).
# Usage: scripts/fuzz-long.sh [SECONDS_EACH=1800] [JOBS=1]
# Needs clang and libclang-rt-14-dev (Debian).  Work goes to $FUZZ_DIR
# (default /tmp/icpns-fuzz); findings land in $FUZZ_DIR/NAME/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1800}
jobs=${2:-1}
dir=${FUZZ_DIR:-/tmp/icpns-fuzz}
[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzzing=true \
  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
meson compile -C build-fuzz >/dev/null
harnesses=(tables request_json request_frame cluster config route)
run_one() {
  local f=$1 w="$dir/$1"
  mkdir -p "$w/corpus" "$w/artifacts"
  cp -n tests/fuzz/corpus/"$f"/* "$w/corpus/" 2>/dev/null || true
  build-fuzz/tests/fuzz/fuzz_"$f" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$w/artifacts/" "$w/corpus" >"$w/log.txt" 2>&1 || true
}
export -f run_one; export dir secs
printf '%s\n' "${harnesses[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
echo "| harness | seconds | executions | exec/s | edges (cov) | features | corpus | findings |"
echo "|---|---|---|---|---|---|---|---|"
for f in "${harnesses[@]}"; do
  log="$dir/$f/log.txt"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  found=$(ls "$dir/$f/artifacts" 2>/dev/null | wc -l)
  echo "| fuzz_$f | $secs | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $found |"
done
