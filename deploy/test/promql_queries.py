#!/usr/bin/python3
"""Prints every PromQL expression Rectifier ships, one JSON object per line
({"source", "name", "expr"}), ready for a test Prometheus to evaluate:

  dashboard  every panel target and template-variable query of
             deploy/grafana/dashboards/rectifier.json, with Grafana's
             variables replaced ($job, $instance and $model match anything,
             $__rate_interval becomes --rate-interval);
  adapter    every prometheus-adapter rule of
             deploy/k8s/prometheus-adapter/values.yaml, with the adapter's
             template filled the way it fills it for an HPA request;
  alert      every alert rule's expression in deploy/prometheus/alerts.yml.

Also checks what Grafana's schema cannot: panel ids are unique, every panel
fits the 24-column grid, and no unknown variable or template field is left.
Exits 1 (after printing the rest) when a check fails.

Used by scripts/check-deploy.sh (each expression parsed offline by promtool)
and deploy/test/live-promql.sh (each run against a live Prometheus).
Needs only the standard library and PyYAML (Debian python3-yaml).

Usage: promql_queries.py [--job rectifier] [--rate-interval 1m]
                         [--group-by pod] [--matchers 'namespace="default",pod=~"rectifier-.*"']
"""
import argparse
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default="rectifier")
    parser.add_argument("--rate-interval", default="1m")
    parser.add_argument("--group-by", default="pod")
    parser.add_argument("--matchers", default='namespace="default",pod=~"rectifier-.*"')
    parser.add_argument("--dashboard", default=ROOT / "deploy/grafana/dashboards/rectifier.json")
    args = parser.parse_args()
    failed = False

    def emit(source, name, expr):
        print(json.dumps({"source": source, "name": name, "expr": expr}))

    def substitute(expr):
        for var, value in (("$__rate_interval", args.rate_interval),
                           ("$__interval", args.rate_interval), ("$job", args.job),
                           ("$instance", ".*"), ("$model", ".*")):
            expr = expr.replace(var, value)
        return expr

    dashboard = json.loads(pathlib.Path(args.dashboard).read_text())
    ids = set()
    for panel in dashboard["panels"]:
        title = panel.get("title", "")
        if panel["id"] in ids:
            print(f"duplicate panel id {panel['id']} ({title})", file=sys.stderr)
            failed = True
        ids.add(panel["id"])
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        if x < 0 or w < 1 or x + w > 24:
            print(f'panel "{title}" does not fit the grid: x={x} w={w}', file=sys.stderr)
            failed = True
        for target in panel.get("targets", []):
            expr = substitute(target["expr"])
            if "$" in expr:
                print(f'panel "{title}" {target["refId"]}: unknown variable in {expr}',
                      file=sys.stderr)
                failed = True
            emit("dashboard", f"{title} {target['refId']}", expr)
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else None
        match = query and re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        if match:
            emit("dashboard", f"variable {var['name']}", substitute(match.group(1)))

    values = yaml.safe_load((ROOT / "deploy/k8s/prometheus-adapter/values.yaml").read_text())
    for rule in values["rules"]["custom"]:
        expr = (rule["metricsQuery"].replace("<<.GroupBy>>", args.group_by)
                .replace("<<.LabelMatchers>>", args.matchers).strip())
        if "<<" in expr:
            print(f"{rule['name']['as']}: unknown template field in {expr}", file=sys.stderr)
            failed = True
        emit("adapter", rule["name"]["as"], expr)

    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            emit("alert", rule.get("alert") or rule.get("record"), rule["expr"].strip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
