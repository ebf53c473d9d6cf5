#!/usr/bin/env bash
# Requests larger than glibc's largest mmap threshold (32 MiB) with and
# without the server's heap-only allocation (common::ReuseLargeAllocations),
# alternating round by round: the 640x640 detector at batch 8 (39 MB of FP32
# per request, a 22 MB response) through KServe ModelInfer at concurrency 1;
# with `relu`, a one-node Relu model on the same batch instead (39 MB each
# way, the response above 32 MiB too).
#
#   bench/server/large_buffers.sh [BUILD_DIR] [ROUNDS] [detector|relu] [grpc|http]
#
# With `http`, rectifier-perf sends the same requests to the KServe HTTP/REST
# endpoint (binary tensor data) instead of gRPC.
#
# "glibc defaults" starts the server with GLIBC_TUNABLES set to a malloc
# tunable at its default value (glibc.malloc.tcache_count=7), which makes the
# server leave malloc as glibc configures it; "heap only, M_TOP_PAD 0" sets
# the first two of ReuseLargeAllocations' settings as tunables, without its
# 64 MiB top pad (thread arenas' heaps unmapped when they empty); the last
# side runs the default server with rectifier-perf itself left at glibc's
# defaults (the client also calls ReuseLargeAllocations, for the 39 MB it
# sends and the response it parses). Per side: rectifier-perf p50,
# ModelStatistics compute_input (decoding the request's tensor) and
# compute_infer per request, and the server's minor page faults per request.
set -euo pipefail
build=${1:-build}
rounds=${2:-2}
model=${3:-detector}
protocol=${4:-grpc}
cd "$(dirname "$0")/../.."
. bench/server/grpc_port.sh
usage() {
  echo "usage: $0 [BUILD_DIR] [ROUNDS] [detector|relu] [grpc|http]" >&2
  exit 2
}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
case $model in
  detector)
    onnx=$(ls models/.cache/zoo/yolo_like-*.onnx 2>/dev/null | head -1 || true)
    if [ -z "$onnx" ]; then
      onnx=models/.cache/yolo_like.onnx
      [ -f "$onnx" ] || /usr/bin/python3 models/tools/export_zoo.py yolo_like --out "$onnx"
    fi
    ;;
  relu)
    onnx=$work/relu.onnx
    /usr/bin/python3 - "$onnx" <<'PY'
import sys
import onnx
from onnx import TensorProto, helper
io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 640, 640]) for n in "xy"]
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", io[:1], io[1:])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, sys.argv[1])
PY
    ;;
  *)
    usage
    ;;
esac
case $protocol in
  grpc) http_address="" ;;
  http) http_address=127.0.0.1:0 ;;
  *)
    usage
    ;;
esac
mkdir -p "$work/repo/$model/1"
ln -s "$(realpath "$onnx")" "$work/repo/$model/1/model.onnx"
input=$(/usr/bin/python3 -c "import onnx,sys; print(onnx.load(sys.argv[1], load_external_data=False).graph.input[0].name)" "$onnx")
cat > "$work/repo/$model/config.pbtxt" <<CFG
max_batch_size: 8
parameters { key: "intra_op_threads" value { string_value: "2" } }
model_warmup [ { name: "batch" batch_size: 8 inputs { key: "$input" value { data_type: TYPE_FP32 dims: [ 3, 640, 640 ] random_data: true } } } ]
CFG

side() {  # label, rectifier-perf's GLIBC_TUNABLES ('' = unset), server env assignments...
  local label=$1 client_tunables=$2
  shift 2
  env "$@" "$build/server/rectifier-server" --model-repository "$work/repo" \
    --grpc-address 127.0.0.1:0 --metrics-address "" --http-address "$http_address" \
    --tuning-cache-dir "$work/tuning" > "$work/server.log" 2>&1 &
  local pid=$! port
  port=$(grpc_port "$work/server.log")
  local url=127.0.0.1:$port
  if [ "$protocol" = http ]; then
    url=127.0.0.1:$(grep -o 'HTTP on port [0-9]*' "$work/server.log" | grep -o '[0-9]*$')
  fi
  local faults0
  faults0=$(awk '{print $10}' "/proc/$pid/stat")
  env ${client_tunables:+GLIBC_TUNABLES=$client_tunables} \
    "$build/tools/perf/rectifier-perf" -m "$model" --url "$url" -i "$protocol" -b 8 --concurrency 1 \
    --window-s 4 --max-windows 4 --csv "$work/perf.csv" > /dev/null 2>&1
  local faults1
  faults1=$(awk '{print $10}' "/proc/$pid/stat")
  "$build/tools/client/rectifier-client" --url "127.0.0.1:$port" stats "$model" > "$work/stats.json"
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
  side "glibc defaults" "" GLIBC_TUNABLES=glibc.malloc.tcache_count=7
  side "heap only, M_TOP_PAD 0" "" \
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=268435456
  side "heap only (default)" ""
  side "heap only (default), client at glibc defaults" glibc.malloc.tcache_count=7
done
