// Prints every PromQL expression of a dashboard, one JSON object per line
// ({panel, refId, expr}), with the template variables replaced by values a
// test Prometheus can evaluate. Also checks what the schema cannot: panel ids
// are unique and every panel fits the 24-column grid.
// Usage: node queries.mjs [DASHBOARD.json] [--job NAME] [--rate-interval 1m]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : dflt;
};
const job = opt('--job', 'rectifier');
const rateInterval = opt('--rate-interval', '1m');
const file = args[0] ?? new URL('../dashboards/rectifier.json', import.meta.url).pathname;
const dashboard = JSON.parse(readFileSync(file, 'utf8'));

const substitute = (expr) =>
  expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('$__interval', rateInterval)
    .replaceAll('$job', job)
    .replaceAll('$instance', '.*')
    .replaceAll('$model', '.*');

const ids = new Set();
let failed = false;
for (const panel of dashboard.panels) {
  if (ids.has(panel.id)) {
    console.error(`duplicate panel id ${panel.id} (${panel.title})`);
    failed = true;
  }
  ids.add(panel.id);
  const { x, w } = panel.gridPos;
  if (x < 0 || w < 1 || x + w > 24) {
    console.error(`panel "${panel.title}" does not fit the grid: x=${x} w=${w}`);
    failed = true;
  }
  for (const target of panel.targets ?? []) {
    const expr = substitute(target.expr);
    if (expr.includes('$')) {
      console.error(`panel "${panel.title}" ${target.refId}: unknown variable in ${expr}`);
      failed = true;
    }
    console.log(JSON.stringify({ panel: panel.title, refId: target.refId, expr }));
  }
}
for (const v of dashboard.templating?.list ?? []) {
  const q = typeof v.query === 'object' ? v.query.query : null;
  const m = q && /^label_values\((.*),\s*\w+\)$/.exec(q);
  if (m) console.log(JSON.stringify({ panel: `variable ${v.name}`, refId: '-', expr: substitute(m[1]) }));
}
process.exit(failed ? 1 : 0);
