#!/usr/bin/env bash
# promtool checks of the Prometheus files, run by `make test` (ctest
# deploy_promtool) and, step by step, by scripts/check-deploy.sh:
#   promtool check config deploy/prometheus/prometheus.yml
#   promtool check config deploy/prometheus/prometheus-tls.yml and
#     prometheus-k8s-tls.yml (certificate paths moved to empty stand-ins,
#     Kubernetes discovery swapped for a static target), and each TLS config
#     equals its plain twin apart from scheme and tls_config
#   promtool check rules  deploy/prometheus/alerts.yml
#   promtool test rules   deploy/prometheus/alerts_test.yml
#   every dashboard, adapter and alert PromQL expression parses
#     (deploy/test/promql_queries.py, each expression as a recording rule)
# Exit status: 0 passed, 1 failed, 77 skipped (no promtool: it comes with
# Debian's prometheus package, installed by scripts/install-deps.sh).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if ! command -v promtool >/dev/null; then
  echo "promtool-checks: SKIPPED: no promtool on PATH (apt-get install prometheus)"
  exit 77
fi
tmp=$(mktemp -d /tmp/rectifier-promtool.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0
run() {
  if "$@" >"$tmp/out" 2>&1; then
    echo "ok   $*"
  else
    echo "FAIL $*"
    sed 's/^/     /' "$tmp/out"
    failed=1
  fi
}
run promtool check config deploy/prometheus/prometheus.yml

# The TLS scrape configs name certificate files, which promtool checks exist:
# point them at empty stand-ins. Debian's Prometheus has no Kubernetes
# discovery: the k8s job gets a static target instead.
mkdir -p "$tmp/tls" && touch "$tmp/tls/ca.crt" "$tmp/tls/tls.crt" "$tmp/tls/tls.key"
cp deploy/prometheus/alerts.yml "$tmp/"
sed "s|/etc/prometheus/rectifier-tls/|$tmp/tls/|" deploy/prometheus/prometheus-tls.yml \
  >"$tmp/prometheus-tls.yml"
sed -e "s|/etc/prometheus/rectifier-tls/|$tmp/tls/|" \
  -e '/kubernetes_sd_configs:/,/role: pod/c\    static_configs:\n      - targets: ["pod:8002"]' \
  deploy/prometheus/prometheus-k8s-tls.yml >"$tmp/prometheus-k8s-tls.yml"
run promtool check config "$tmp/prometheus-tls.yml"
run promtool check config "$tmp/prometheus-k8s-tls.yml"
same_but_tls() {  # PLAIN TLS: equal once scheme and tls_config are dropped
  /usr/bin/python3 -c '
import sys, yaml
def load(path, strip):
    config = yaml.safe_load(open(path))
    for job in config["scrape_configs"]:
        if strip and job["job_name"] == "rectifier":
            if job.pop("scheme", None) != "https" or not job.pop("tls_config", {}).get("ca_file"):
                sys.exit(f"{path}: job rectifier lacks scheme: https or tls_config.ca_file")
    return config
plain, tls = load(sys.argv[1], False), load(sys.argv[2], True)
if plain != tls:
    sys.exit(f"{sys.argv[2]} differs from {sys.argv[1]} beyond scheme and tls_config")' "$1" "$2"
}
run same_but_tls deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-tls.yml
run same_but_tls deploy/prometheus/prometheus-k8s.yml deploy/prometheus/prometheus-k8s-tls.yml
run promtool check rules deploy/prometheus/alerts.yml
run promtool test rules deploy/prometheus/alerts_test.yml
if /usr/bin/python3 deploy/test/promql_queries.py >"$tmp/exprs.jsonl"; then
  /usr/bin/python3 -c '
import json, sys
rules = [{"record": f"check:expr_{i}", "expr": json.loads(line)["expr"]}
         for i, line in enumerate(l for l in open(sys.argv[1]) if l.strip())]
print(json.dumps({"groups": [{"name": "promql-parse-check", "rules": rules}]}))' \
    "$tmp/exprs.jsonl" >"$tmp/exprs-rules.yml"
  run promtool check rules "$tmp/exprs-rules.yml"
else
  echo "FAIL deploy/test/promql_queries.py"
  failed=1
fi
exit $failed
