#!/usr/bin/env bash
# The server's cost over the bare engine, on one model, in one script (so both
# see the same machine state): throughput at saturation through the server
# (rectifier-perf, KServe ModelInfer of a random tensor) vs rectifier-engine
# alone at the same thread count, and the server's added latency at
# concurrency 1 (p50 server round trip minus the engine's p50).
#
#   bench/server/server_vs_engine.sh [BUILD_DIR] MODEL_ONNX [CONCURRENCY] [BATCH_CONFIG]
#
# MODEL_ONNX: a file, or a zoo name exported on demand (mobilenet_v2, resnet50,
# ...), or a default model directory under models/ (its config.pbtxt is used).
# SHAPE=NAME:d1,d2,... (one input, without the batch; rectifier-perf --shape)
# gives a model with dynamic dimensions its size on both sides (the default
# scan_segmenter: SHAPE=image:1,128,128).
# The load runs on the same CPUs as the server, so at CONCURRENCY
# rectifier-perf keeps its requests in flight through asynchronous calls
# (--async: a few threads instead of one per request); ASYNC=0 measures with
# one blocked thread per outstanding request instead. Concurrency 1 always
# uses the blocking call, whose latency has no hand-over to gRPC's callback
# thread.
# Targets: server throughput >= 90% of the engine's; added latency < 1 ms.
set -euo pipefail
build=${1:-build}
model=${2:?model}
concurrency=${3:-4}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
threads=${THREADS:-2}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

config="max_batch_size: 8
dynamic_batching { }"
if [ -d "models/$model" ]; then
  onnx=models/$model/1/model.onnx
  config=$(cat "models/$model/config.pbtxt")
  name=$model
elif [ -f "$model" ]; then
  onnx=$model
  name=$(basename "$model" .onnx)
else
  onnx=models/.cache/$model.onnx
  [ -f "$onnx" ] || /usr/bin/python3 models/tools/export_zoo.py "$model" --out "$onnx"
  name=$model
fi

echo "== engine alone: $name, batch 1, $threads threads"
engine_shape=() perf_shape=()
if [ -n "${SHAPE:-}" ]; then
  dims=${SHAPE#*:}
  engine_shape=(--shape "1x${dims//,/x}")
  perf_shape=(--shape "$SHAPE")
fi
OMP_NUM_THREADS=$threads "$build/tools/engine/rectifier-engine" "$onnx" --batch 1 \
  --threads "$threads" --warmup 10 --iterations "${ITERATIONS:-200}" "${engine_shape[@]}" |
  tee "$work/engine.txt"

repo=$work/repo
mkdir -p "$repo/$name/1"
case $onnx in
  /*) ln -s "$onnx" "$repo/$name/1/model.onnx" ;;
  *) ln -s "$PWD/$onnx" "$repo/$name/1/model.onnx" ;;
esac
# A default model's other files (labels.txt, which its config names).
if [ -d "models/$model" ]; then
  for f in "models/$model"/*; do
    if [ -f "$f" ] && [ "$(basename "$f")" != config.pbtxt ]; then ln -s "$PWD/$f" "$repo/$name/"; fi
  done
fi
printf '%s\n' "$config" > "$repo/$name/config.pbtxt"
"$build/server/rectifier-server" --model-repository "$repo" --grpc-address 127.0.0.1:0 \
  --metrics-address "" --http-address "" --intra-op-threads "$threads" > "$work/server.log" 2>&1 &
pid=$!
port=$(grpc_port "$work/server.log")
async=()
[ "${ASYNC:-1}" = 0 ] || async=(--async)
echo "== server: $name through KServe ModelInfer (rectifier-perf), concurrency 1, then $concurrency ${async[*]}"
"$build/tools/perf/rectifier-perf" -m "$name" --url "127.0.0.1:$port" --concurrency 1 \
  --window-s 3 --max-windows 6 --csv "$work/perf1.csv" "${perf_shape[@]}"
cp "$work/perf1.csv" "$work/perf.csv"
if [ "$concurrency" != 1 ]; then
  "$build/tools/perf/rectifier-perf" -m "$name" --url "127.0.0.1:$port" "${async[@]}" \
    --concurrency "$concurrency" --window-s 3 --max-windows 6 --csv "$work/perfN.csv" \
    "${perf_shape[@]}"
  tail -n +2 "$work/perfN.csv" >> "$work/perf.csv"
fi
kill -TERM $pid
wait $pid || true
echo "== summary"
/usr/bin/python3 - "$work/engine.txt" "$work/perf.csv" <<'PY'
import csv, re, sys
text = open(sys.argv[1]).read()
ips = float(re.search(r"([0-9.]+) images/s", text).group(1))
p50 = float(re.search(r"p50 ([0-9.]+) ms", text).group(1))
rows = list(csv.DictReader(open(sys.argv[2])))
c1 = rows[0]
best = max(rows, key=lambda r: float(r["throughput_infer_per_s"]))
print(f"engine: {ips:.1f} img/s, p50 {p50:.3f} ms")
print(f"server c=1: {float(c1['throughput_infer_per_s']):.1f} infer/s, p50 {float(c1['p50_ms']):.3f} ms "
      f"-> added latency {float(c1['p50_ms']) - p50:.3f} ms (target < 1 ms)")
print(f"server best (c={best['level']}): {float(best['throughput_infer_per_s']):.1f} infer/s "
      f"= {100 * float(best['throughput_infer_per_s']) / ips:.0f}% of the engine (target >= 90%)")
PY
