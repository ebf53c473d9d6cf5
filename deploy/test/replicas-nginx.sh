#!/usr/bin/env bash
# Two replicas behind nginx on loopback, one killed mid-load:
#   - replica A serves model `double` as version 1, replica B as version 2
#     (both y = 2x), each a real rectifier-server on free loopback ports;
#   - nginx runs deploy/compose/nginx.conf (grpc_pass, retry on connection
#     errors only, max_fails=1 fail_timeout=5s) with the upstreams, listen
#     address and temp paths moved to loopback and a temporary folder;
#   - deploy/test/replica_load.py sends 3000 requests with 8 in flight through
#     nginx, retrying UNAVAILABLE (the documented client policy), SIGKILLs A
#     after 1000 answers, and accounts for every request (see that file).
# Usage: deploy/test/replicas-nginx.sh BUILD_DIR [replica_load.py options]
# Runs as the ctest deploy_replicas_nginx (make test), by make replica-test and
# by scripts/check-deploy.sh --live. Exit status 77 (skipped) only without nginx.
# Takes about 20 s.
# Needs: BUILD_DIR/server/rectifier-server, nginx, protoc + grpc_python_plugin,
# /usr/bin/python3 with grpcio, protobuf, numpy, onnx.
set -euo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR [replica_load.py options]}")
shift
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$BUILD/server/rectifier-server
PY=/usr/bin/python3
[ -x "$SERVER" ] || { echo "replicas-nginx: missing $SERVER" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
  echo "replicas-nginx: SKIPPED: no nginx (apt-get install nginx; scripts/install-deps.sh installs it)"
  exit 77
fi

tmp=$(mktemp -d /tmp/rectifier-replicas.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
A_GRPC=$(free_port); A_METRICS=$(free_port); B_GRPC=$(free_port); B_METRICS=$(free_port)
LB=$(free_port)

# A: double version 1, B: double version 2; the same y = 2x.
mkdir -p "$tmp/a/double/1" "$tmp/b/double/2"
$PY - "$tmp/a/double/1/model.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2, 2])
two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
PY
cp "$tmp/a/double/1/model.onnx" "$tmp/b/double/2/model.onnx"
for r in a b; do
  printf 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500 }\n' \
    >"$tmp/$r/double/config.pbtxt"
done

start_server() {  # name, grpc port, metrics port
  "$SERVER" --model-repository "$tmp/$1" --grpc-address "127.0.0.1:$2" \
    --metrics-address "127.0.0.1:$3" --http-address "" --exit-timeout 5 --intra-op-threads 1 \
    >"$tmp/$1.log" 2>&1 &
  pids+=($!)
}
start_server a "$A_GRPC" "$A_METRICS"
A_PID=$!
start_server b "$B_GRPC" "$B_METRICS"
B_PID=$!

# The compose nginx.conf, moved to loopback.
mkdir -p "$tmp/nginx"
chmod 777 "$tmp/nginx"
sed -e "s/rectifier-a:8001/127.0.0.1:$A_GRPC/" -e "s/rectifier-b:8001/127.0.0.1:$B_GRPC/" \
  -e "s/listen 8001 http2;/listen 127.0.0.1:$LB http2;/" -e "s|/tmp/|$tmp/nginx/|g" \
  -e "s|error_log /dev/stderr warn;|error_log $tmp/nginx/error.log warn;|" \
  "$ROOT/deploy/compose/nginx.conf" >"$tmp/nginx.conf"
grep -q "127.0.0.1:$A_GRPC" "$tmp/nginx.conf" && grep -q "listen 127.0.0.1:$LB" "$tmp/nginx.conf" ||
  { echo "replicas-nginx: could not adapt deploy/compose/nginx.conf" >&2; exit 1; }
"$NGINX" -c "$tmp/nginx.conf" -p "$tmp/nginx" -g "daemon off;" &
pids+=($!)

ready() {  # metrics port: the model is ready on that replica
  $PY -c '
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
ready = r"^rectifier_model_state\{model=\"double\",state=\"ready\",version=\"\d+\"\} 1$"
sys.exit(0 if re.search(ready, text, re.M) else 1)' "$1" 2>/dev/null
}
for _ in $(seq 1 120); do
  ready "$A_METRICS" && ready "$B_METRICS" && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp"/*.log "$tmp/nginx/error.log" 2>/dev/null >&2; exit 1; }
  done
  sleep 0.5
done
ready "$A_METRICS" && ready "$B_METRICS" || { echo "replicas-nginx: replicas not ready" >&2; exit 1; }

status=0
$PY "$ROOT/deploy/test/replica_load.py" --nginx "127.0.0.1:$LB" --b-grpc "127.0.0.1:$B_GRPC" \
  --a-metrics "http://127.0.0.1:$A_METRICS/metrics" --b-metrics "http://127.0.0.1:$B_METRICS/metrics" \
  --a-pid "$A_PID" "$@" || status=1
# A must have died of the SIGKILL, B must still be serving.
wait "$A_PID" 2>/dev/null && a_code=0 || a_code=$?
[ "$a_code" -eq 137 ] || { echo "FAIL replica A exit status $a_code, expected 137 (SIGKILL)"; status=1; }
kill -0 "$B_PID" 2>/dev/null || { echo "FAIL replica B died"; status=1; }
echo "nginx log (upstream errors after the kill):"
sed 's/^/     /' "$tmp/nginx/error.log" | tail -5
if [ "$status" -ne 0 ]; then
  echo "--- replica B log (tail)"; tail -5 "$tmp/b.log"
  exit 1
fi
echo "replicas-nginx: passed"
