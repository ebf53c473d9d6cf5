#!/usr/bin/env bash
# The same load over gRPC and over HTTP/REST, alternating, against one
# rectifier-server with the default models (docs/PERFORMANCE.md):
#   bench/server/grpc_vs_http.sh [BUILD_DIR] [ROUNDS]
# scan_classifier batch 1 concurrency 1 and batch 8 concurrency 2 (KServe
# ModelInfer: raw contents on gRPC, binary tensor data on HTTP), and
# road_detector through Detect / POST /v1/models/road_detector/detect.
set -euo pipefail
build=${1:-build}
rounds=${2:-2}
cd "$(dirname "$0")/../.."
perf=$build/tools/perf/rectifier-perf
image=fuzz/corpus/image_decode/ycbcr420_32x16.jpg
grpc_port=18101
http_port=18100
"$build/server/rectifier-server" --model-repository models --grpc-address "127.0.0.1:$grpc_port" \
  --http-address "127.0.0.1:$http_port" --metrics-address "" > /tmp/grpc_vs_http_server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  grep -q "serving gRPC" /tmp/grpc_vs_http_server.log && break
  sleep 0.5
done
for round in $(seq "$rounds"); do
  for protocol in grpc http; do
    port=$([ "$protocol" = grpc ] && echo "$grpc_port" || echo "$http_port")
    run() {
      echo "== round $round $protocol $*"
      "$perf" -i "$protocol" -u "127.0.0.1:$port" --window-s 2 --max-windows 4 "$@" 2>/dev/null |
        tail -n 1
    }
    run -m scan_classifier -b 1 --concurrency 1
    run -m scan_classifier -b 8 --concurrency 2
    run -m road_detector --api detect --image "$image" --concurrency 1
  done
done
