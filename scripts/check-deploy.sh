#!/usr/bin/env bash
# Offline validation of everything under docker/ and deploy/. Exits non-zero if
# any check fails (all checks run; failures are listed at the end).
#   scripts/check-deploy.sh                      offline checks (no server, no Docker daemon)
#   scripts/check-deploy.sh --live BUILD_DIR     + deploy/test/live-promql.sh against a real
#                                                server and Prometheus on loopback, and
#                                                deploy/test/replicas-nginx.sh
# Installs what it needs: Debian packages via scripts/install-deploy-deps.sh,
# npm packages inside deploy/grafana/validate and deploy/k8s/validate.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LIVE_BUILD=""
case "${1:-}" in
  --live) LIVE_BUILD=${2:?usage: $0 [--live BUILD_DIR]} ;;
  "") ;;
  *) echo "usage: $0 [--live BUILD_DIR]" >&2; exit 2 ;;
esac

if [ -n "$LIVE_BUILD" ]; then
  scripts/install-deploy-deps.sh --live || exit 1
else
  scripts/install-deploy-deps.sh || exit 1
fi

tmp=$(mktemp -d /tmp/rectifier-check-deploy.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=()
step() {  # name, command...: runs the command, logs its output on failure
  local name=$1 start=$SECONDS
  shift
  if "$@" >"$tmp/out" 2>&1; then
    printf 'ok    %-58s %3ds\n' "$name" $((SECONDS - start))
  else
    printf 'FAIL  %-58s %3ds\n' "$name" $((SECONDS - start))
    sed 's/^/      /' "$tmp/out" | tail -40
    failures+=("$name")
  fi
}

npm_install() {  # dir: npm install when package.json changed since the last install
  local dir=$1 stamp="$1/node_modules/.rectifier-package-json"
  if [ -f "$stamp" ] && cmp -s "$dir/package.json" "$stamp"; then return 0; fi
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error) && cp "$dir/package.json" "$stamp"
}

# Every PromQL expression in a JSON-lines stream ({expr}) becomes a recording
# rule, so promtool parses it offline.
promql_as_rules() {
  /usr/bin/python3 -c '
import json, sys
rules = [{"record": f"check:expr_{i}", "expr": json.loads(line)["expr"]}
         for i, line in enumerate(l for l in sys.stdin if l.strip())]
print(json.dumps({"groups": [{"name": "promql-parse-check", "rules": rules}]}))'
}

# The k8s scrape job uses kubernetes_sd_configs, which Debian's Prometheus is
# built without: check it with the discovery swapped for a static target.
check_k8s_prometheus_config() {
  sed -e '/kubernetes_sd_configs:/,/role: pod/c\    static_configs:\n      - targets: ["pod:8002"]' \
    deploy/prometheus/prometheus-k8s.yml >"$tmp/prometheus-k8s.yml" &&
    grep -q kubernetes_sd_configs deploy/prometheus/prometheus-k8s.yml &&
    cp deploy/prometheus/alerts.yml "$tmp/alerts.yml" &&
    promtool check config "$tmp/prometheus-k8s.yml"
}

# Dashboard, adapter and alert expressions (deploy/test/promql_queries.py also
# checks panel ids, the grid and leftover variables).
check_dashboard_promql() {
  /usr/bin/python3 deploy/test/promql_queries.py >"$tmp/dash.jsonl" &&
    promql_as_rules <"$tmp/dash.jsonl" >"$tmp/dash-rules.yml" &&
    promtool check rules "$tmp/dash-rules.yml"
}

kustomize_build() { kubectl kustomize deploy/k8s/base >"$tmp/k8s.yaml"; }
validate_k8s() { node deploy/k8s/validate/validate.mjs "$tmp/k8s.yaml"; }
same_rules() { cmp deploy/prometheus/alerts.yml deploy/k8s/base/alerts.yml; }

# Compose: syntax and schema, and the stop grace period outlasting the drain.
check_compose() {
  docker-compose -f deploy/compose/docker-compose.yml config -q || return 1
  local grace exit_timeout
  grace=$(docker-compose -f deploy/compose/docker-compose.yml config |
    awk '/^  rectifier:/{s=1} s && /stop_grace_period:/{print $2; exit}')
  exit_timeout=$(grep -o -- '--exit-timeout=[0-9.]*' deploy/compose/docker-compose.yml | head -1 | cut -d= -f2)
  grace=${grace%s}
  echo "stop_grace_period ${grace}s, --exit-timeout ${exit_timeout}s"
  [ -n "$grace" ] && [ -n "$exit_timeout" ] &&
    node -e 'process.exit(+process.argv[1] > +process.argv[2] + 2 ? 0 : 1)' "$grace" "$exit_timeout"
}

# The replicas variant: compose file, its Prometheus config, nginx syntax (the
# upstream host names only resolve inside compose, so they become loopback,
# and its /tmp paths move to the check's own temporary folder).
check_compose_replicas() {
  docker-compose -f deploy/compose/docker-compose.replicas.yml config -q &&
    cp deploy/compose/prometheus-replicas.yml deploy/prometheus/alerts.yml "$tmp/" &&
    promtool check config "$tmp/prometheus-replicas.yml" &&
    sed -e 's/rectifier-[ab]:8001/127.0.0.1:8001/' -e "s|/tmp/|$tmp/nginx/|" deploy/compose/nginx.conf \
      >"$tmp/nginx.conf" &&
    mkdir -p "$tmp/nginx" && nginx -t -q -c "$tmp/nginx.conf" -p "$tmp/nginx" -g "error_log stderr;"
}

check_shell() {
  bash -n docker/make-base-image.sh docker/runtime-packages.sh deploy/test/*.sh &&
    /usr/bin/python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' deploy/test/*.py
}

step "promtool check config (compose)"           promtool check config deploy/prometheus/prometheus.yml
step "promtool check config (kubernetes)"        check_k8s_prometheus_config
step "promtool check rules alerts.yml"           promtool check rules deploy/prometheus/alerts.yml
step "promtool test rules alerts_test.yml"       promtool test rules deploy/prometheus/alerts_test.yml
step "k8s rules ConfigMap == alerts.yml"         same_rules
step "docker-compose config"                     check_compose
step "compose replicas + nginx grpc_pass config"  check_compose_replicas
step "shell/Python syntax (docker/, deploy/test/)"  check_shell
step "npm install deploy/grafana/validate"       npm_install deploy/grafana/validate
step "npm install deploy/k8s/validate"           npm_install deploy/k8s/validate
step "dashboard schema (tsc + @grafana/schema)"  npx --prefix deploy/grafana/validate tsc --noEmit -p deploy/grafana/validate
step "dashboard + adapter + alert PromQL parse (promtool)" check_dashboard_promql
step "kubectl kustomize deploy/k8s/base"         kustomize_build
step "k8s manifests (kubernetes-models + rules)" validate_k8s
step "TLS: certificates, mutual-TLS scrape, compose + k8s overlays" deploy/test/tls-checks.sh
if [ -n "$LIVE_BUILD" ]; then
  step "live PromQL (server + Prometheus)"       deploy/test/live-promql.sh "$LIVE_BUILD"
  step "live PromQL over mutual TLS + tokens"     deploy/test/live-promql.sh "$LIVE_BUILD" --tls
  step "two replicas behind nginx, one killed"   deploy/test/replicas-nginx.sh "$LIVE_BUILD"
fi

if [ ${#failures[@]} -ne 0 ]; then
  echo "check-deploy: ${#failures[@]} failed: ${failures[*]}"
  exit 1
fi
echo "check-deploy: all passed"
