// Prints the PromQL of every prometheus-adapter rule in
// ../prometheus-adapter/values.yaml, one JSON object per line ({panel, refId,
// expr}), with the adapter's template filled in the way the adapter fills it
// for an HPA request. Used by scripts/check-deploy.sh to parse them offline
// (promtool) and to run them against a live Prometheus.
// Usage: node adapter-queries.mjs [--group-by pod] [--matchers 'namespace="default"']
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const groupBy = opt('--group-by', 'pod');
const matchers = opt('--matchers', 'namespace="default",pod=~"rectifier-.*"');
const values = parse(readFileSync(new URL('../prometheus-adapter/values.yaml', import.meta.url), 'utf8'));
for (const rule of values.rules.custom) {
  const expr = rule.metricsQuery
    .replaceAll('<<.GroupBy>>', groupBy)
    .replaceAll('<<.LabelMatchers>>', matchers)
    .trim();
  if (expr.includes('<<')) {
    console.error(`${rule.name.as}: unknown template field in ${expr}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ panel: `adapter ${rule.name.as}`, refId: '-', expr }));
}
