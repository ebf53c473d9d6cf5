#!/usr/bin/env bash
# make bench: runs every benchmark program that was built, one after the
# other (never in parallel: the machine has 2 cores). Results: docs/PERFORMANCE.md.
set -euo pipefail
build_dir=${1:-build}
cd "$(dirname "$0")/.."
ran=0
for bench in "$build_dir"/bench/*/*_bench; do
  [ -x "$bench" ] || continue
  echo "== $bench"
  "$bench" --benchmark_min_time=0.5
  ran=$((ran + 1))
done
if [ -x bench/engine/run_models.sh ]; then
  bench/engine/run_models.sh "$build_dir"
  ran=$((ran + 1))
fi
echo "bench: ran $ran programs"
