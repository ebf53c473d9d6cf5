#!/usr/bin/env bash
# Live check of every PromQL expression Rectifier ships: runs the real
# rectifier-server on loopback with a generated one-op model (y = 2x), drives
# bounded load with rectifier-perf plus a few invalid requests, scrapes it with
# a loopback Prometheus (Debian's `prometheus`) that also evaluates alerts.yml,
# then asserts through the HTTP API that
#   - every dashboard panel query, template variable query and
#     prometheus-adapter rule parses and returns at least one series,
#   - the counters and histograms moved as the load implies,
#   - every alert rule evaluated without error,
# and finally that SIGTERM makes the server exit 0.
# Usage: deploy/test/live-promql.sh BUILD_DIR
# Needs: BUILD_DIR/server/rectifier-server, tools/client/rectifier-client,
# tools/perf/rectifier-perf; prometheus, /usr/bin/python3 with onnx, node, curl;
# npm dependencies installed in deploy/grafana/validate and deploy/k8s/validate
# (scripts/check-deploy.sh --live BUILD_DIR does all of this).
set -euo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$BUILD/server/rectifier-server
CLIENT=$BUILD/tools/client/rectifier-client
PERF=$BUILD/tools/perf/rectifier-perf
for b in "$SERVER" "$CLIENT" "$PERF"; do
  [ -x "$b" ] || { echo "live-promql: missing $b" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/rectifier-live.XXXXXX)
server_pid=""
prom_pid=""
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
GRPC_PORT=$(free_port)
METRICS_PORT=$(free_port)
PROM_PORT=$(free_port)

# The model: y = x * 2, x FP32 [batch, 3, 2, 2], with dynamic batching.
mkdir -p "$tmp/models/double/1"
/usr/bin/python3 - "$tmp/models/double/1/model.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2, 2])
two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
PY
cat >"$tmp/models/double/config.pbtxt" <<'CFG'
name: "double"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [{ count: 1 kind: KIND_CPU }]
CFG

"$SERVER" --model-repository "$tmp/models" --grpc-address "127.0.0.1:$GRPC_PORT" \
  --metrics-address "127.0.0.1:$METRICS_PORT" --exit-timeout 5 --intra-op-threads 1 \
  >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
  "$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.5
done
"$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health >/dev/null
# The Kubernetes readiness probe asks for this service by name.
"$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health --service inference.GRPCInferenceService >/dev/null

cp "$ROOT/deploy/prometheus/alerts.yml" "$tmp/alerts.yml"
cat >"$tmp/prometheus.yml" <<CFG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: rectifier
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
CFG
prometheus --config.file="$tmp/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
  --storage.tsdb.path="$tmp/tsdb" >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
API="http://127.0.0.1:$PROM_PORT/api/v1"
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null && break
  kill -0 "$prom_pid" 2>/dev/null || { cat "$tmp/prometheus.log" >&2; exit 1; }
  sleep 0.5
done

# Bounded load: 3 concurrency levels x at most 3 windows of 1 s, then
# 5 requests with a wrong shape (INVALID_ARGUMENT, counted as failures).
"$PERF" -m double --url "127.0.0.1:$GRPC_PORT" --concurrency 1:4:x2 --window-s 1 \
  --max-windows 3 --max-requests 20000 >"$tmp/perf.log" 2>&1 || { cat "$tmp/perf.log" >&2; exit 1; }
/usr/bin/python3 -c 'import numpy as np; np.save("'"$tmp"'/bad.npy", np.zeros((1, 2, 2, 2), np.float32))'
for _ in 1 2 3 4 5; do
  "$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 5 infer double --input "x=$tmp/bad.npy" >/dev/null 2>&1 || true
done
sleep 4  # a few scrapes and rule evaluations after the load

failed=0
query() {  # prints the JSON answer of an instant query
  curl -sf "$API/query" --data-urlencode "query=$1"
}
check_series() {  # label, expr: the query must succeed and return >= 1 series
  local answer count
  if ! answer=$(query "$2"); then
    echo "FAIL $1: query error: $(curl -s "$API/query" --data-urlencode "query=$2")"
    failed=1
    return
  fi
  count=$(node -e 'const a=JSON.parse(process.argv[1]); console.log(a.data.result.length)' "$answer")
  if [ "$count" -eq 0 ]; then
    echo "FAIL $1: no series: $2"
    failed=1
  else
    echo "ok   $1 ($count series)"
  fi
}

exprs=$( (node "$ROOT/deploy/grafana/validate/queries.mjs" --rate-interval 1m
          node "$ROOT/deploy/k8s/validate/adapter-queries.mjs" --group-by instance --matchers 'job="rectifier"') )
while IFS= read -r line; do
  label=$(node -e 'const q=JSON.parse(process.argv[1]); console.log(q.panel + " " + q.refId)' "$line")
  expr=$(node -e 'console.log(JSON.parse(process.argv[1]).expr)' "$line")
  check_series "$label" "$expr"
done <<<"$exprs"

# The load shows up as it should.
check_series "successes counted" 'sum(rectifier_requests_total{model="double", outcome="success"}) > 100'
check_series "invalid inputs counted" 'sum(rectifier_request_failures_total{model="double", reason="invalid_input"}) >= 5'
check_series "every success observed in the latency histogram" \
  'sum(rectifier_request_duration_seconds_count{model="double"}) >= sum(rectifier_requests_total{model="double", outcome="success"})'
check_series "inferences >= executions > 0" \
  'sum(rectifier_inferences_total{model="double"}) >= sum(rectifier_executions_total{model="double"}) > 0'
check_series "batch size histogram counts executions" \
  'sum(rectifier_batch_size_count{model="double"}) == sum(rectifier_executions_total{model="double"})'
check_series "queue time observed" 'sum(rectifier_queue_duration_seconds_count{model="double"}) > 0'
check_series "one instance" 'rectifier_model_instances{model="double"} == 1'
check_series "target up" 'up{job="rectifier"} == 1'

# Every alert rule evaluated cleanly against real series.
rules=$(curl -sf "$API/rules")
bad=$(node -e '
  const r = JSON.parse(process.argv[1]).data.groups.flatMap((g) => g.rules);
  const bad = r.filter((x) => x.health !== "ok").map((x) => `${x.name}: ${x.health} ${x.lastError ?? ""}`);
  if (r.length === 0) bad.push("no rules loaded");
  console.log(bad.join("\n"));' "$rules")
if [ -n "$bad" ]; then
  echo "FAIL alert rules: $bad"
  failed=1
else
  echo "ok   alert rules evaluated: $(node -e 'console.log(JSON.parse(process.argv[1]).data.groups.flatMap((g) => g.rules).map((r) => r.name + "=" + r.state).join(" "))' "$rules")"
fi

# SIGTERM drain: exit 0 within the exit timeout (+ the metrics endpoint's stop).
kill -TERM "$server_pid"
rc=0
timeout 15 tail --pid="$server_pid" -f /dev/null || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "FAIL server did not exit within 15 s of SIGTERM"
  failed=1
else
  wait "$server_pid" && code=0 || code=$?
  server_pid=""
  if [ "$code" -ne 0 ]; then echo "FAIL server exited $code after SIGTERM"; failed=1; else echo "ok   SIGTERM: server exited 0"; fi
fi

if [ "$failed" -ne 0 ]; then
  echo "--- server log (tail)"; tail -20 "$tmp/server.log"
  exit 1
fi
echo "live-promql: all checks passed"
