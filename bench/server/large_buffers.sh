#!/usr/bin/env bash
# Requests larger than glibc's largest mmap threshold (32 MiB) with and
# without the server's heap-only allocation (common::ReuseLargeAllocations),
# alternating round by round: the 640x640 detector at batch 8 (39 MB of FP32
# per request) through KServe ModelInfer at concurrency 1.
#
#   bench/server/large_buffers.sh [BUILD_DIR] [ROUNDS]
#
# "glibc defaults" starts the server with GLIBC_TUNABLES set to a malloc
# tunable at its default value (glibc.malloc.tcache_count=7), which makes the
# server leave malloc as glibc configures it. Per side: rectifier-perf p50,
# ModelStatistics compute_input (decoding the request's tensor) and
# compute_infer per request, and the server's minor page faults per request.
set -euo pipefail
build=${1:-build}
rounds=${2:-2}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
onnx=$(ls models/.cache/zoo/yolo_like-*.onnx 2>/dev/null | head -1 || true)
if [ -z "$onnx" ]; then
  onnx=models/.cache/yolo_like.onnx
  [ -f "$onnx" ] || /usr/bin/python3 models/tools/export_zoo.py yolo_like --out "$onnx"
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/repo/detector/1"
ln -s "$PWD/$onnx" "$work/repo/detector/1/model.onnx"
input=$(/usr/bin/python3 -c "import onnx,sys; print(onnx.load(sys.argv[1], load_external_data=False).graph.input[0].name)" "$onnx")
cat > "$work/repo/detector/config.pbtxt" <<CFG
max_batch_size: 8
parameters { key: "intra_op_threads" value { string_value: "2" } }
model_warmup [ { name: "batch" batch_size: 8 inputs { key: "$input" value { data_type: TYPE_FP32 dims: [ 3, 640, 640 ] random_data: true } } } ]
CFG

side() {  # label, env assignments...
  local label=$1
  shift
  env "$@" "$build/server/rectifier-server" --model-repository "$work/repo" \
    --grpc-address 127.0.0.1:0 --metrics-address "" --http-address "" \
    --tuning-cache-dir "$work/tuning" > "$work/server.log" 2>&1 &
  local pid=$! port
  port=$(grpc_port "$work/server.log")
  local faults0
  faults0=$(awk '{print $10}' "/proc/$pid/stat")
  "$build/tools/perf/rectifier-perf" -m detector --url "127.0.0.1:$port" -b 8 --concurrency 1 \
    --window-s 4 --max-windows 4 --csv "$work/perf.csv" > /dev/null 2>&1
  local faults1
  faults1=$(awk '{print $10}' "/proc/$pid/stat")
  "$build/tools/client/rectifier-client" --url "127.0.0.1:$port" stats detector > "$work/stats.json"
  kill -TERM $pid
  wait $pid || true
  /usr/bin/python3 - "$label" "$work/perf.csv" "$work/stats.json" "$((faults1 - faults0))" <<'PY'
import csv, json, sys
label, perf, stats, faults = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
row = next(csv.DictReader(open(perf)))
s = json.load(open(stats))["model_stats"][0]["inference_stats"]
n = int(s["success"]["count"])
ms = lambda k: int(s[k].get("ns", 0)) / n / 1e6
print(f"| {label} | {float(row['p50_ms']):.1f} | {ms('compute_input'):.1f} | "
      f"{ms('compute_infer'):.1f} | {faults / max(1, int(row['ok'])):.0f} |")
PY
}

echo "| side | p50 ms | compute_input ms | compute_infer ms | page faults / measured request |"
echo "| --- | --- | --- | --- | --- |"
for _ in $(seq "$rounds"); do
  side "glibc defaults" GLIBC_TUNABLES=glibc.malloc.tcache_count=7
  side "heap only (default)"
done
