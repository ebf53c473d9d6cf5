#!/usr/bin/env bash
# Smoke test of a built image on loopback: runs IMAGE with host networking on
# non-default ports, read-only root, a tmpfs /tmp, all capabilities dropped,
# and a generated model repository mounted at /models; then checks
#   - rectifier-client health from the host (SERVING),
#   - Docker's HEALTHCHECK reports healthy,
#   - /metrics answers (model instances, model state ready),
#   - a KServe ModelInfer call (rectifier-client infer) returns y = 2x exactly,
#   - a vision Classify call on the default scan_classifier (when the checkout
#     has it) answers a label of the model for each of 3 generated scans,
#   - bounded load (rectifier-perf) succeeds and is counted in /metrics,
#   - the process runs as UID 10001,
#   - docker stop (SIGTERM through tini) while rectifier-perf keeps 4 requests
#     in flight ends it with exit code 0 within the grace period (drain).
# Usage: deploy/test/image-smoke.sh IMAGE BUILD_DIR
# BUILD_DIR holds the host's rectifier-client and rectifier-perf builds; needs
# a running Docker daemon, /usr/bin/python3 with onnx, curl.
set -euo pipefail

IMAGE=${1:?usage: $0 IMAGE BUILD_DIR}
BUILD=$(realpath "${2:?usage: $0 IMAGE BUILD_DIR}")
CLIENT=$BUILD/tools/client/rectifier-client
PERF=$BUILD/tools/perf/rectifier-perf
GRPC_PORT=${GRPC_PORT:-18301}
METRICS_PORT=${METRICS_PORT:-18302}
GRACE=40
name=rectifier-smoke-$$
tmp=$(mktemp -d /tmp/rectifier-smoke.XXXXXX)
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

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
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
PY
# The default scan classifier, when this checkout has it, for a vision
# Classify call (with synthetic scans from its generator).
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
classify=0
if [ -f "$ROOT/models/scan_classifier/1/model.onnx" ] && "$CLIENT" --help | grep -q classify; then
  cp -r "$ROOT/models/scan_classifier" "$tmp/models/"
  /usr/bin/python3 "$ROOT/models/tools/synth.py" scan --seed 11 --count 3 --out "$tmp/scans" >/dev/null
  classify=1
fi
chmod -R a+rX "$tmp/models"

docker run -d --name "$name" --network host --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges --stop-timeout "$GRACE" \
  -e RECTIFIER_HEALTH_URL="127.0.0.1:$GRPC_PORT" \
  -v "$tmp/models:/models:ro" "$IMAGE" \
  --model-repository=/models --grpc-address="127.0.0.1:$GRPC_PORT" \
  --metrics-address="127.0.0.1:$METRICS_PORT" --http-address="" --exit-timeout=30 >/dev/null

for _ in $(seq 1 60); do
  "$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 1 health >/dev/null 2>&1 && break
  [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] || { docker logs "$name"; exit 1; }
  sleep 0.5
done
"$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 2 health
echo "ok   health from the host"

for _ in $(seq 1 30); do
  status=$(docker inspect -f '{{.State.Health.Status}}' "$name")
  [ "$status" = healthy ] && break
  sleep 1
done
[ "$status" = healthy ] || { echo "FAIL docker health: $status"; docker inspect -f '{{json .State.Health}}' "$name"; exit 1; }
echo "ok   docker inspect: healthy"

metrics=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics")
grep -q '^rectifier_model_instances{.*model="double"' <<<"$metrics" || { echo "FAIL /metrics lacks the model"; exit 1; }
grep -q '^rectifier_model_state{model="double",state="ready",version="1"} 1' <<<"$metrics" ||
  { echo "FAIL /metrics: double v1 is not ready"; grep '^rectifier_model_state' <<<"$metrics"; exit 1; }
echo "ok   /metrics (model double v1 ready)"

/usr/bin/python3 -c 'import numpy as np, sys; np.save(sys.argv[1], np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2))' "$tmp/x.npy"
mkdir -p "$tmp/out"
"$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 10 infer double --input "x=$tmp/x.npy" --output-dir "$tmp/out" >/dev/null
/usr/bin/python3 -c '
import numpy as np, sys
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if y.shape == x.shape and np.array_equal(y, 2 * x) else 1)' "$tmp/x.npy" "$tmp/out/y.npy" ||
  { echo "FAIL ModelInfer: y != 2x"; exit 1; }
echo "ok   KServe ModelInfer: y = 2x"

if [ "$classify" -eq 1 ]; then
  "$CLIENT" --url "127.0.0.1:$GRPC_PORT" --timeout 30 --json classify scan_classifier \
    "$tmp"/scans/scan_000{0,1,2}.png >"$tmp/classify.json"
  /usr/bin/python3 - "$tmp/classify.json" "$tmp/scans/ground_truth.json" <<'PY' || exit 1
import json, sys
answer, truth = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
labels = set(truth["labels"])
top = [r["classes"][0]["label"] if r["classes"] else None for r in answer["results"]]
if len(top) != 3 or not all(t in labels for t in top):
    print(f"FAIL Classify answered {top}, expected labels from {sorted(labels)}")
    sys.exit(1)
right = sum(t == s["label"] for t, s in zip(top, truth["samples"]))
print(f"ok   vision Classify: {top} ({right}/3 match the generator's labels)")
PY
else
  echo "--   vision Classify skipped: no models/scan_classifier or no classify command in $CLIENT"
fi

"$PERF" -m double --url "127.0.0.1:$GRPC_PORT" --concurrency 2 --window-s 1 --max-windows 3 \
  --max-requests 20000 --fail-on-error >"$tmp/perf.log" 2>&1 || { cat "$tmp/perf.log"; exit 1; }
ok=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
  awk '/^rectifier_requests_total\{/ && /outcome="success"/ && /model="double"/ { n += $NF } END { print n + 0 }')
[ "$ok" -gt 0 ] || { echo "FAIL no successful inference counted"; cat "$tmp/perf.log"; exit 1; }
echo "ok   load without errors: $ok successful inferences"; sed 's/^/     /' "$tmp/perf.log" | tail -2

uid=$(docker exec "$name" id -u)
[ "$uid" = 10001 ] || { echo "FAIL runs as uid $uid"; exit 1; }
echo "ok   runs as uid $uid"

# Stop under load: 4 requests in flight when SIGTERM arrives.
"$PERF" -m double --url "127.0.0.1:$GRPC_PORT" --concurrency 4 --window-s 1 --max-windows 10 \
  --max-requests 1000000 >"$tmp/perf-stop.log" 2>&1 &
perf_pid=$!
sleep 1.5
start=$(date +%s.%N)
docker stop -t "$GRACE" "$name" >/dev/null
wait "$perf_pid" || true
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "FAIL exit code $code after docker stop"; docker logs --tail 20 "$name"; exit 1; }
echo "ok   docker stop: exit 0 after ${elapsed}s (grace ${GRACE}s)"
docker logs --tail 3 "$name" 2>&1 | sed 's/^/     /'
echo "image-smoke: all checks passed"
