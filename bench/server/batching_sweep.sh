#!/usr/bin/env bash
# Server throughput and latency at concurrency 1, 4, 16, 64 with dynamic
# batching on vs off, on a real model, through the whole stack (gRPC, KServe
# codec, scheduler, engine). Loopback only; bounded by rectifier-perf's windows.
#
#   bench/server/batching_sweep.sh [BUILD_DIR] [MODEL]   (MODEL: mobilenet_v2 by default)
#
# Exports the model with models/tools/export_zoo.py into models/.cache/ if needed.
set -euo pipefail
build=${1:-build}
model=${2:-mobilenet_v2}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
onnx=models/.cache/$model.onnx
[ -f "$onnx" ] || /usr/bin/python3 models/tools/export_zoo.py "$model" --out "$onnx"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
run_config() {  # name, config.pbtxt text
  local name=$1 config=$2
  local repo=$work/$name
  mkdir -p "$repo/$model/1"
  ln -s "$PWD/$onnx" "$repo/$model/1/model.onnx"
  printf '%s\n' "$config" > "$repo/$model/config.pbtxt"
  "$build/server/rectifier-server" --model-repository "$repo" --grpc-address 127.0.0.1:0 \
    --metrics-address "" --http-address "" > "$work/$name.log" 2>&1 &
  local pid=$! port
  port=$(grpc_port "$work/$name.log")
  echo "== $model, $name"
  "$build/tools/perf/rectifier-perf" -m "$model" --url "127.0.0.1:$port" \
    --concurrency 1:64:x4 --window-s 3 --max-windows 6 --csv "$work/$name.csv"
  kill -TERM $pid
  wait $pid || true
}
# Off: max_batch_size 0, so every request runs alone (Triton's non-batching model).
run_config "batching-off" "max_batch_size: 0"
run_config "batching-on" "max_batch_size: 64
dynamic_batching { preferred_batch_size: [4, 8, 16] max_queue_delay_microseconds: 2000 }"
