#!/usr/bin/env bash
# The default model repository (three models, one server) under two OpenMP
# waiting policies, alternating round by round: libgomp's spin count alone
# (GOMP_SPINCOUNT=10000, the servers before OMP_WAIT_POLICY=ACTIVE was added)
# against the server's own default (GOMP_SPINCOUNT=10000 with
# OMP_WAIT_POLICY=ACTIVE, server/common/process_env.h). With more OpenMP
# threads than CPUs libgomp spins only its "throttled" count between parallel
# regions: 100 iterations by default, 1000 with ACTIVE.
#
#   bench/server/openmp_policy.sh [BUILD_DIR] [ROUNDS]
#
# Per round and policy: rectifier-perf (KServe ModelInfer, random tensors,
# loopback) on road_detector, scan_classifier and scan_segmenter (192x192) at
# concurrency 1 and 4: infer/s, p50 and p99.
set -euo pipefail
build=${1:-build}
rounds=${2:-2}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run_policy() {  # label, env assignments...
  local label=$1
  shift
  env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$@" "$build/server/rectifier-server" \
    --model-repository models --grpc-address 127.0.0.1:0 --metrics-address "" \
    --http-address "" > "$work/server.log" 2>&1 &
  local pid=$! port
  port=$(grpc_port "$work/server.log")
  local model shape
  for model in road_detector scan_classifier scan_segmenter; do
    shape=()
    [ "$model" = scan_segmenter ] && shape=(--shape image:1,192,192)
    "$build/tools/perf/rectifier-perf" -m "$model" --url "127.0.0.1:$port" "${shape[@]}" \
      --concurrency 1:4:x4 --window-s 2 --max-windows 5 --csv "$work/perf.csv" > /dev/null
    /usr/bin/python3 - "$label" "$model" "$work/perf.csv" <<'PY'
import csv, sys
label, model, path = sys.argv[1:]
for r in csv.DictReader(open(path)):
    print(f"| {label} | {model} | {r['level']} | {float(r['throughput_infer_per_s']):.1f} | "
          f"{float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} |")
PY
  done
  kill -TERM $pid
  wait $pid || true
}

echo "| policy | model | concurrency | infer/s | p50 ms | p99 ms |"
echo "| --- | --- | --- | --- | --- | --- |"
for _ in $(seq "$rounds"); do
  run_policy "spin count only" GOMP_SPINCOUNT=10000
  run_policy "default (ACTIVE)"
done
