#!/usr/bin/env bash
# promtool checks of the Prometheus files, run by `make test` (ctest
# deploy_promtool) and, step by step, by scripts/check-deploy.sh:
#   promtool check config deploy/prometheus/prometheus.yml
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
