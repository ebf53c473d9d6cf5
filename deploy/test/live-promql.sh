#!/usr/bin/env bash
# Live check of the metrics and of every PromQL expression Rectifier ships:
# runs the real rectifier-server on loopback with a generated model
# (y = Relu(2x), activation statistics on) and a model whose config is
# broken, drives bounded load with rectifier-perf plus a few invalid
# requests, scrapes it with a loopback Prometheus (Debian's `prometheus`)
# that also evaluates alerts.yml, then
# asserts through Prometheus' HTTP API that
#   - every dashboard panel query, template variable query and
#     prometheus-adapter rule parses and returns at least one series,
#   - every alert rule evaluated without error, every metric an alert reads
#     has series, and RectifierModelNotReady's expression selects the broken
#     model (and only it),
#   - the counters, histograms and gauges moved as the load implies
#     (requests, failures by reason, latency/queue/batch histograms,
#     inferences vs executions, in-flight requests, model states,
#     activation statistics),
# and finally that SIGTERM makes the server exit 0.
# With --tls the server runs with mutual TLS and bearer tokens (a throwaway
# CA, server and client certificates made with openssl), rectifier-client
# and rectifier-perf connect with --tls-ca/--tls-cert/--tls-key and
# RECTIFIER_TOKEN, and Prometheus scrapes https://.../metrics presenting a
# client certificate (tls_config); a scrape without one must fail.
# Usage: deploy/test/live-promql.sh BUILD_DIR [--tls]
# Exit status: 0 passed, 1 failed, 77 skipped (no `prometheus` binary: install
# it with scripts/install-deps.sh or scripts/install-deploy-deps.sh).
# Needs: BUILD_DIR/server/rectifier-server, tools/client/rectifier-client,
# tools/perf/rectifier-perf; prometheus; /usr/bin/python3 with onnx, numpy
# and yaml. Runs as the ctest `deploy_live_promql` (make test) and in
# scripts/check-deploy.sh --live BUILD_DIR; with --tls as the ctest
# `deploy_live_promql_tls`. Takes about 20 s.
set -euo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR [--tls]}")
TLS=0
[ "${2:-}" = "--tls" ] && TLS=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$BUILD/server/rectifier-server
CLIENT=$BUILD/tools/client/rectifier-client
PERF=$BUILD/tools/perf/rectifier-perf
PY=/usr/bin/python3
if ! command -v prometheus >/dev/null; then
  echo "live-promql: SKIPPED: no prometheus binary on PATH (apt-get install prometheus)"
  exit 77
fi
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
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_ok() {  # url: exit 0 when it answers 2xx
  $PY -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
}
GRPC_PORT=$(free_port)
METRICS_PORT=$(free_port)
PROM_PORT=$(free_port)

# The models: double (y = Relu(2x), x FP32 [batch, 3, 2, 2], dynamic batching,
# activation statistics sampled on every execution) and broken (the same file
# with an invalid config: its load fails).
mkdir -p "$tmp/models/double/1" "$tmp/models/broken/1"
$PY - "$tmp/models/double/1/model.onnx" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2, 2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2, 2])
two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["x2"]),
                           helper.make_node("Relu", ["x2"], ["y"])], "double", [x], [y], [two])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
PY
cp "$tmp/models/double/1/model.onnx" "$tmp/models/broken/1/model.onnx"

SERVER_TLS=()
CLIENT_TLS=()
SCHEME=http
if [ "$TLS" = 1 ]; then
  (
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=live-ca -keyout ca.key -out ca.crt
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    for name in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr"
      ext=()
      [ "$name" = server ] && ext=(-extfile san.ext)
      openssl x509 -req -days 1 -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$name.crt" "${ext[@]}"
    done
    printf 'infer %s\n' "$(openssl rand -hex 24)" >tokens
  ) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; exit 1; }
  SERVER_TLS=(--tls-cert "$tmp/server.crt" --tls-key "$tmp/server.key"
              --tls-client-ca "$tmp/ca.crt" --auth-tokens "$tmp/tokens")
  CLIENT_TLS=(--tls-ca "$tmp/ca.crt" --tls-cert "$tmp/client.crt" --tls-key "$tmp/client.key")
  RECTIFIER_TOKEN=$(awk '{print $2}' "$tmp/tokens")
  export RECTIFIER_TOKEN
  SCHEME=https
fi
cat >"$tmp/models/double/config.pbtxt" <<'CFG'
name: "double"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 1000 }
instance_group [{ count: 1 kind: KIND_CPU }]
activation { statistics { sample_every: 1 } }
CFG
echo 'max_batch_size: -3' >"$tmp/models/broken/config.pbtxt"

"$SERVER" --model-repository "$tmp/models" --grpc-address "127.0.0.1:$GRPC_PORT" \
  --metrics-address "127.0.0.1:$METRICS_PORT" --http-address "" --exit-timeout 5 --intra-op-threads 1 \
  "${SERVER_TLS[@]}" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
  "$CLIENT" "${CLIENT_TLS[@]}" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.5
done
"$CLIENT" "${CLIENT_TLS[@]}" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health >/dev/null
# The Kubernetes readiness probe asks for this service by name.
"$CLIENT" "${CLIENT_TLS[@]}" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health --service inference.GRPCInferenceService >/dev/null

cp "$ROOT/deploy/prometheus/alerts.yml" "$tmp/alerts.yml"
cat >"$tmp/prometheus.yml" <<CFG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: rectifier
    scheme: $SCHEME
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
CFG
if [ "$TLS" = 1 ]; then
  cat >>"$tmp/prometheus.yml" <<CFG
    tls_config:
      ca_file: $tmp/ca.crt
      cert_file: $tmp/client.crt
      key_file: $tmp/client.key
CFG
  # Without a client certificate the endpoint refuses the connection.
  if $PY - "$METRICS_PORT" "$tmp/ca.crt" <<'PY' 2>/dev/null; then
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
urllib.request.urlopen(f"https://127.0.0.1:{sys.argv[1]}/metrics", context=context, timeout=5).read()
PY
    echo "live-promql: /metrics answered a client without a certificate" >&2
    exit 1
  fi
fi
prometheus --config.file="$tmp/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
  --storage.tsdb.path="$tmp/tsdb" >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 60); do
  http_ok "http://127.0.0.1:$PROM_PORT/-/ready" && break
  kill -0 "$prom_pid" 2>/dev/null || { cat "$tmp/prometheus.log" >&2; exit 1; }
  sleep 0.5
done

# Bounded load: 3 concurrency levels x at most 3 windows of 1 s, then
# 5 requests with a wrong shape (INVALID_ARGUMENT, counted as failures).
"$PERF" "${CLIENT_TLS[@]}" -m double --url "127.0.0.1:$GRPC_PORT" --concurrency 1:4:x2 --window-s 1 \
  --max-windows 3 --max-requests 20000 >"$tmp/perf.log" 2>&1 || { cat "$tmp/perf.log" >&2; exit 1; }
$PY -c 'import numpy as np, sys; np.save(sys.argv[1], np.zeros((1, 2, 2, 2), np.float32))' "$tmp/bad.npy"
for _ in 1 2 3 4 5; do
  "$CLIENT" "${CLIENT_TLS[@]}" --url "127.0.0.1:$GRPC_PORT" --timeout 5 infer double --input "x=$tmp/bad.npy" >/dev/null 2>&1 || true
done
sleep 3  # a few scrapes after the load

$PY "$ROOT/deploy/test/promql_queries.py" --rate-interval 1m --group-by instance \
  --matchers 'job="rectifier"' >"$tmp/exprs.jsonl"

# The checks, in two phases around 20 more requests sent one at a time:
# `snapshot` records the counters, `check` runs every check, including that
# each counter moved by exactly what those requests imply.
cat >"$tmp/check.py" <<'PY'
import json
import re
import sys
import urllib.parse
import urllib.request

mode, api, exprs_file, snapshot_file, extra = sys.argv[1:6]
extra = int(extra)
failed = False
# What one more successful batch-1 request sent alone adds to each counter.
PER_REQUEST = {
    "rectifier_requests_total": 'sum(rectifier_requests_total{model="double", outcome="success"})',
    "rectifier_request_failures_total": 'sum(rectifier_request_failures_total{model="double"})',
    "rectifier_request_duration_seconds_count": 'sum(rectifier_request_duration_seconds_count{model="double"})',
    "rectifier_queue_duration_seconds_count": 'sum(rectifier_queue_duration_seconds_count{model="double"})',
    "rectifier_inferences_total": 'sum(rectifier_inferences_total{model="double"})',
    "rectifier_executions_total": 'sum(rectifier_executions_total{model="double"})',
    "rectifier_batch_size_count": 'sum(rectifier_batch_size_count{model="double"})',
    "rectifier_batch_size_sum": 'sum(rectifier_batch_size_sum{model="double"})',
    "rectifier_batch_size_bucket{le=1}": 'sum(rectifier_batch_size_bucket{model="double", le="1"})',
}
# Failures must not move.
EXPECTED_DELTA = {name: (0 if name == "rectifier_request_failures_total" else extra)
                  for name in PER_REQUEST}


def query(expr):
    url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)["data"]["result"], None
    except urllib.error.HTTPError as e:
        return None, e.read().decode(errors="replace")


def check(label, expr, want_series=True):
    global failed
    result, error = query(expr)
    if result is None:
        print(f"FAIL {label}: query error: {error}")
        failed = True
    elif want_series and not result:
        print(f"FAIL {label}: no series: {expr}")
        failed = True
    else:
        print(f"ok   {label} ({len(result)} series)")
    return result or []


alert_exprs = {}
for line in open(exprs_file) if mode == "check" else []:
    q = json.loads(line)
    if q["source"] == "alert":
        alert_exprs[q["name"]] = q["expr"]
        # Alerts select nothing while all is well: they must evaluate, and
        # every metric they read must exist (a misspelt name never fires).
        check(f"alert {q['name']} evaluates", q["expr"], want_series=False)
        for metric in sorted(set(re.findall(r"\b(rectifier_\w+|up)\b(?=\s*[{\[)])", q["expr"]))):
            check(f"alert {q['name']} reads {metric}", f"count({metric})")
    else:
        check(f"{q['source']} {q['name']}", q["expr"])

if mode == "snapshot":
    values = {}
    for name, expr in PER_REQUEST.items():
        result = query(expr)[0]
        values[name] = float(result[0]["value"][1]) if result else None
    json.dump(values, open(snapshot_file, "w"))
    sys.exit(0)

before = json.load(open(snapshot_file))
for name, expr in PER_REQUEST.items():
    result = query(expr)[0]
    after = float(result[0]["value"][1]) if result else None
    if before[name] is None or after is None or after - before[name] != EXPECTED_DELTA[name]:
        print(f"FAIL {name} moved {before[name]} -> {after}, expected +{EXPECTED_DELTA[name]}")
        failed = True
    else:
        print(f"ok   {name} moved by exactly {EXPECTED_DELTA[name]} ({before[name]:g} -> {after:g})")

# The load shows up as it should.
checks = [
    ("successes counted", 'sum(rectifier_requests_total{model="double", outcome="success"}) > 100'),
    ("invalid inputs counted",
     'sum(rectifier_request_failures_total{model="double", reason="invalid_input"}) >= 5'),
    ("every success observed in the latency histogram",
     'sum(rectifier_request_duration_seconds_count{model="double"})'
     ' >= sum(rectifier_requests_total{model="double", outcome="success"})'),
    ("inferences >= executions > 0",
     'sum(rectifier_inferences_total{model="double"}) >= sum(rectifier_executions_total{model="double"}) > 0'),
    ("batch size histogram counts executions",
     'sum(rectifier_batch_size_count{model="double"}) == sum(rectifier_executions_total{model="double"})'),
    ("queue time observed", 'sum(rectifier_queue_duration_seconds_count{model="double"}) > 0'),
    ("one instance", 'rectifier_model_instances{model="double"} == 1'),
    ("requests were in flight during the load",
     'max_over_time(rectifier_inflight_requests{model="double"}[1m]) >= 1'),
    ("nothing in flight after the load", 'rectifier_inflight_requests{model="double"} == 0'),
    ("double v1 ready", 'rectifier_model_state{model="double", version="1", state="ready"} == 1'),
    ("double v1 in exactly one state", 'sum(rectifier_model_state{model="double", version="1"}) == 1'),
    ("broken unavailable, without a version",
     'rectifier_model_state{model="broken", version="", state="unavailable"} == 1'),
    ("target up", 'up{job="rectifier"} == 1'),
    ("activation layer sampled: 3 channels",
     'rectifier_activation_channels{model="double", version="1", layer="y"} == 3'),
    ("activation zero fraction in [0, 1]",
     'rectifier_activation_zero_fraction{model="double", version="1", layer="y"} >= 0 <= 1'),
]
for label, expr in checks:
    check(label, expr)
not_ready = query(alert_exprs["RectifierModelNotReady"])[0] or []
models = sorted(s["metric"].get("model", "") for s in not_ready)
if models != ["broken"]:
    print(f"FAIL RectifierModelNotReady selects {models}, expected ['broken']")
    failed = True
else:
    print("ok   RectifierModelNotReady selects the broken model only")

# Every alert rule evaluated cleanly against real series.
with urllib.request.urlopen(f"{api}/rules", timeout=10) as answer:
    rules = [r for g in json.load(answer)["data"]["groups"] for r in g["rules"]]
bad = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
if not rules or bad:
    print(f"FAIL alert rules: {bad or 'no rules loaded'}")
    failed = True
else:
    print("ok   alert rules evaluated: " + " ".join(f"{r['name']}={r['state']}" for r in rules))
sys.exit(1 if failed else 0)
PY
API="http://127.0.0.1:$PROM_PORT/api/v1"
failed=0
$PY "$tmp/check.py" snapshot "$API" "$tmp/exprs.jsonl" "$tmp/snapshot.json" 20 || failed=1
$PY -c 'import numpy as np, sys; np.save(sys.argv[1], np.ones((1, 3, 2, 2), np.float32))' "$tmp/good.npy"
for _ in $(seq 1 20); do
  "$CLIENT" "${CLIENT_TLS[@]}" --url "127.0.0.1:$GRPC_PORT" --timeout 5 infer double --input "x=$tmp/good.npy" >/dev/null ||
    { echo "FAIL a single request failed"; failed=1; }
done
sleep 4  # a few scrapes and rule evaluations after the last request
$PY "$tmp/check.py" check "$API" "$tmp/exprs.jsonl" "$tmp/snapshot.json" 20 || failed=1

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
