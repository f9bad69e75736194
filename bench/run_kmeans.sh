#!/usr/bin/env bash
# The k-means benchmark of BENCHMARKS.md: icpns cluster on synthetic
# embeddings (Gaussian blobs, written by /usr/bin/python3 with numpy), wall
# seconds for 1 thread and for every online CPU, interleaved, median of
# REPS runs each; checks that both give the same communities.
# Usage: bench/run_kmeans.sh [BUILD_DIR] [REPS]
set -euo pipefail
B=${1:-build-rel}
R=${2:-3}
cpus=$(nproc)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 - "$dir" <<'EOF'
import sys
import numpy as np
rng = np.random.default_rng(2026)
for name, n, dim, k in (("100k_x_64", 100000, 64, 16), ("20k_x_128", 20000, 128, 16)):
    c = rng.normal(size=(k, dim)) * 0.3  # overlapping blobs: many Lloyd iterations
    x = c[rng.integers(0, k, n)] + rng.normal(size=(n, dim))
    np.save("%s/%s.npy" % (sys.argv[1], name), x.astype(np.float32))
EOF
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "| embeddings | k | restarts | 1 thread | $cpus threads | ratio |"
echo "|---|---|---|---|---|---|"
for f in 100k_x_64 20k_x_128; do
  : >"$dir/t1"; : >"$dir/tn"
  for _ in $(seq "$R"); do
    for t in 1 "$cpus"; do
      s=$(date +%s.%N)
      "$B/src/cli/icpns" cluster --embeddings "$dir/$f.npy" --k 16 --seed 1 --restarts 2 \
        --threads "$t" -q -o "$dir/$f-$t.tsv"
      e=$(date +%s.%N)
      awk -v a="$s" -v b="$e" 'BEGIN {print b - a}' >>"$dir/$([ "$t" = 1 ] && echo t1 || echo tn)"
    done
  done
  cmp -s "$dir/$f-1.tsv" "$dir/$f-$cpus.tsv" || { echo "$f: communities differ" >&2; exit 1; }
  a=$(median <"$dir/t1"); b=$(median <"$dir/tn")
  awk -v f="$f" -v a="$a" -v b="$b" 'BEGIN {printf "| %s | 16 | 2 | %.2f s | %.2f s | %.2f |\n", f, a, b, b / a}'
done
