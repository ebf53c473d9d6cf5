// Validates Kubernetes manifests for Rectifier.
//   node validate.mjs FILE.yaml...   (or - for stdin, e.g. kubectl kustomize output)
// 1. Every document is validated against the Kubernetes OpenAPI schema of its
//    kind (kubernetes-models, Kubernetes 1.27): types, required fields, formats.
//    The schemas accept unknown fields, so a misspelt field is not caught here.
// 2. Rectifier's own invariants: replicas and HPA minimum >= 2, gRPC probes,
//    non-root and read-only root, CPU request == limit, a grace period longer
//    than preStop + --exit-timeout + the metrics endpoint's stop, a gRPC
//    Service, a PDB and an HPA that point at the Deployment.
// Exits 1 on the first kind of failure, after printing every problem.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as policy from 'kubernetes-models/policy/v1';

const models = {
  'v1/ConfigMap': core.ConfigMap,
  'v1/PersistentVolumeClaim': core.PersistentVolumeClaim,
  'v1/Service': core.Service,
  'v1/ServiceAccount': core.ServiceAccount,
  'apps/v1/Deployment': apps.Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': policy.PodDisruptionBudget,
};

const problems = [];
const fail = (msg) => problems.push(msg);
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE.yaml... (- for stdin)');
  process.exit(2);
}

const objects = [];
for (const file of files) {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      doc.errors.forEach((e) => fail(`${file}: YAML: ${e.message}`));
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj.kind === 'Kustomization') continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const Model = models[key];
    const name = `${obj.kind}/${obj.metadata?.name}`;
    if (!Model) {
      fail(`${file}: ${name}: no schema for ${key}`);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(`${file}: ${name}: ${e.message}`);
    }
    objects.push(obj);
  }
}

const byKind = (kind) => objects.filter((o) => o.kind === kind);
const cpuCores = (q) => (String(q).endsWith('m') ? parseFloat(q) / 1000 : parseFloat(q));
const deployments = byKind('Deployment');
if (deployments.length !== 1) fail(`expected one Deployment, found ${deployments.length}`);
for (const d of deployments) {
  const spec = d.spec.template.spec;
  const c = spec.containers.find((x) => x.name === 'rectifier');
  const where = `Deployment/${d.metadata.name}`;
  if (!c) {
    fail(`${where}: no container named rectifier`);
    continue;
  }
  if ((d.spec.replicas ?? 1) < 2) fail(`${where}: replicas < 2`);
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    if (c[probe]?.grpc?.port !== 8001) fail(`${where}: ${probe} is not a gRPC probe on 8001`);
  }
  if (c.securityContext?.readOnlyRootFilesystem !== true) fail(`${where}: root filesystem is writable`);
  if (c.securityContext?.allowPrivilegeEscalation !== false) fail(`${where}: privilege escalation allowed`);
  if (spec.securityContext?.runAsNonRoot !== true) fail(`${where}: runAsNonRoot is not set`);
  if (!(spec.securityContext?.runAsUser > 0)) fail(`${where}: runAsUser is root or unset`);
  const { requests = {}, limits = {} } = c.resources ?? {};
  if (!limits.cpu || cpuCores(limits.cpu) !== cpuCores(requests.cpu)) {
    fail(`${where}: CPU request must equal the CPU limit (the server's thread budget)`);
  }
  if (!limits.memory) fail(`${where}: no memory limit`);
  const mounts = Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
  if (!mounts['/models']?.readOnly) fail(`${where}: /models is not mounted read-only`);
  if (!mounts['/tmp']) fail(`${where}: /tmp is not a writable volume`);
  const exitArg = (c.args ?? []).find((a) => a.startsWith('--exit-timeout='));
  const exitTimeout = exitArg ? parseFloat(exitArg.split('=')[1]) : 30;
  const preStop = c.lifecycle?.preStop?.exec?.command;
  const preStopSleep = preStop?.[0] === 'sleep' ? parseFloat(preStop[1]) : 0;
  const grace = spec.terminationGracePeriodSeconds ?? 30;
  const metricsStop = 2;
  if (grace <= preStopSleep + exitTimeout + metricsStop) {
    fail(`${where}: terminationGracePeriodSeconds ${grace} <= preStop ${preStopSleep} + exit timeout ${exitTimeout} + ${metricsStop}`);
  }
  const ann = d.spec.template.metadata.annotations ?? {};
  if (ann['prometheus.io/scrape'] !== 'true' || ann['prometheus.io/port'] !== '8002') {
    fail(`${where}: missing prometheus.io/scrape and port annotations`);
  }
  const selector = d.spec.selector.matchLabels;
  const podLabels = d.spec.template.metadata.labels;
  const matches = (sel) => sel && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
  if (!matches(selector)) fail(`${where}: selector does not match the pod labels`);
  for (const s of byKind('Service')) {
    if (!matches(s.spec.selector)) fail(`Service/${s.metadata.name}: selector does not match the pods`);
    const grpc = s.spec.ports.find((p) => p.name === 'grpc');
    if (grpc?.appProtocol !== 'grpc') fail(`Service/${s.metadata.name}: grpc port lacks appProtocol: grpc`);
  }
  for (const p of byKind('PodDisruptionBudget')) {
    if (!matches(p.spec.selector.matchLabels)) fail(`PodDisruptionBudget/${p.metadata.name}: selector does not match the pods`);
  }
  for (const h of byKind('HorizontalPodAutoscaler')) {
    const t = h.spec.scaleTargetRef;
    if (t.kind !== 'Deployment' || t.name !== d.metadata.name) fail(`HorizontalPodAutoscaler/${h.metadata.name}: does not target ${where}`);
    if ((h.spec.minReplicas ?? 1) < 2) fail(`HorizontalPodAutoscaler/${h.metadata.name}: minReplicas < 2`);
    const kinds = h.spec.metrics.map((m) => m.type);
    if (!kinds.includes('Pods') || !kinds.includes('Resource')) fail(`HorizontalPodAutoscaler/${h.metadata.name}: needs a custom Pods metric and a CPU fallback`);
  }
}
for (const kind of ['Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'ConfigMap']) {
  if (byKind(kind).length === 0) fail(`no ${kind}`);
}

if (problems.length) {
  problems.forEach((p) => console.error(`FAIL ${p}`));
  process.exit(1);
}
console.log(`ok: ${objects.length} objects (${objects.map((o) => o.kind).join(', ')})`);
