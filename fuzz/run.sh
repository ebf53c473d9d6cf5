#!/usr/bin/env bash
# Runs one libFuzzer target with the project's limits (docs/FUZZING.md).
#   fuzz/run.sh replay BINARY CORPUS_DIR
#       every file of CORPUS_DIR once; fails on the first crash, leak,
#       UBSan report, contract violation, >1 GiB malloc or >2 GiB RSS.
#   fuzz/run.sh fuzz BINARY CORPUS_DIR SECONDS WORK_DIR [libFuzzer flags...]
#       fuzzes for SECONDS on WORK_DIR/corpus, a fresh copy of CORPUS_DIR
#       (the committed corpus is never written); crash inputs land in
#       WORK_DIR/artifacts/, the log in WORK_DIR/fuzz.log.
set -euo pipefail

mode=${1:?usage: run.sh replay|fuzz BINARY CORPUS_DIR [SECONDS WORK_DIR [flags...]]}
binary=${2:?binary}
corpus=${3:?corpus dir}

# Limits from issue 13: an input may not make the server allocate more than
# 1 GiB at once or grow past 2 GiB.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=60)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
export OMP_NUM_THREADS=1

case "$mode" in
  replay)
    mapfile -t files < <(find "$corpus" -type f | sort)
    [ ${#files[@]} -gt 0 ] || { echo "run.sh: no inputs in $corpus" >&2; exit 1; }
    exec "$binary" "${limits[@]}" "${files[@]}"
    ;;
  fuzz)
    seconds=${4:?seconds}
    work=${5:?work dir}
    shift 5
    binary=$(realpath "$binary")
    rm -rf "$work"
    mkdir -p "$work/artifacts"
    cp -r "$corpus" "$work/corpus"
    cd "$work"
    # -jobs=1: one worker process, its output in fuzz-0.log here. 64 KiB
    # inputs keep mutations cheap (longer seeds are truncated for mutation).
    rc=0
    "$binary" "${limits[@]}" -max_len=65536 -max_total_time="$seconds" -jobs=1 \
      -print_final_stats=1 -artifact_prefix="$PWD/artifacts/" "$@" corpus >/dev/null 2>&1 || rc=$?
    log=fuzz-0.log
    if [ $rc -ne 0 ] || ls artifacts/* >/dev/null 2>&1; then
      echo "run.sh: $(basename "$binary") failed (exit $rc); artifacts: $(ls artifacts | tr '\n' ' ')"
      tail -n 80 "$log"
      exit 1
    fi
    # Final statistics (-fork=N prints none: its last status line instead).
    stats=$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
              "$log" || true)
    [ -n "$stats" ] || stats=$(grep -E '^#[0-9]+: cov' "$log" | tail -n 1 || true)
    echo $stats
    ;;
  *)
    echo "run.sh: unknown mode '$mode' (replay or fuzz)" >&2
    exit 2
    ;;
esac
