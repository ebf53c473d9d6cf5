#!/usr/bin/env bash
# Two builds' servers on the same model, alternating round by round: KServe
# ModelInfer at batch BATCH, concurrency 1, driven by the second build's
# rectifier-perf (one warm-up window, then 3 s windows). Per side and round:
# the client's p50 and, from ModelStatistics read before and after the
# measured windows, compute_input (decoding the request), compute_infer and
# compute_output (encoding the response) per request.
#
#   bench/server/builds_ab.sh BUILD_A BUILD_B MODEL.onnx [BATCH] [ROUNDS]
#
# The model is served with `max_batch_size: BATCH` and two intra-op threads
# from a temporary repository (dim 0 of its input must be dynamic).
set -euo pipefail
usage() {
  echo "usage: $0 BUILD_A BUILD_B MODEL.onnx [BATCH] [ROUNDS]" >&2
  exit 2
}
[ $# -ge 3 ] || usage
build_a=$(realpath "$1")
build_b=$(realpath "$2")
onnx=$(realpath "$3")
batch=${4:-8}
rounds=${5:-3}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/repo/m/1"
ln -s "$onnx" "$work/repo/m/1/model.onnx"
cat > "$work/repo/m/config.pbtxt" <<CFG
max_batch_size: $batch
parameters { key: "intra_op_threads" value { string_value: "2" } }
CFG
perf=$build_b/tools/perf/rectifier-perf
client=$build_b/tools/client/rectifier-client

side() {  # build directory, label (a, b: each keeps its own tuning cache)
  local build=$1 label=$2
  "$build/server/rectifier-server" --model-repository "$work/repo" \
    --grpc-address 127.0.0.1:0 --metrics-address "" --http-address "" \
    --tuning-cache-dir "$work/tuning-$label" > "$work/server.log" 2>&1 &
  local pid=$! port url
  port=$(grpc_port "$work/server.log")
  url=127.0.0.1:$port
  "$perf" -m m --url "$url" -b "$batch" --window-s 1 --max-windows 1 --stable-windows 1 \
    > /dev/null 2>&1
  "$client" --url "$url" stats m > "$work/before.json"
  "$perf" -m m --url "$url" -b "$batch" --concurrency 1 --window-s 3 --max-windows 3 \
    --stable-windows 2 --csv "$work/perf.csv" > /dev/null 2>&1
  "$client" --url "$url" stats m > "$work/after.json"
  kill -TERM $pid
  wait $pid || true
  /usr/bin/python3 - "$build" "$work/perf.csv" "$work/before.json" "$work/after.json" <<'PY'
import csv, json, sys
build, perf, before, after = sys.argv[1:]
row = list(csv.DictReader(open(perf)))[-1]
def stats(path):
    return json.load(open(path))["model_stats"][0]["inference_stats"]
a, b = stats(before), stats(after)
def ms(key):
    count = int(b[key].get("count", 0)) - int(a[key].get("count", 0))
    ns = int(b[key].get("ns", 0)) - int(a[key].get("ns", 0))
    return ns / count / 1e6 if count else float("nan")
print(f"| {build} | {float(row['p50_ms']):.1f} | {ms('compute_input'):.3f} | "
      f"{ms('compute_infer'):.1f} | {ms('compute_output'):.3f} |")
PY
}

echo "| build | client p50 ms | compute_input ms | compute_infer ms | compute_output ms |"
echo "| --- | --- | --- | --- | --- |"
for _ in $(seq "$rounds"); do
  side "$build_a" a
  side "$build_b" b
done
