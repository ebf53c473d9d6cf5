// Validates Kubernetes manifests for Rectifier.
//   node validate.mjs FILE.yaml...   (or - for stdin, e.g. kubectl kustomize output)
// 1. Every document is validated against the Kubernetes OpenAPI schema of its
//    kind (kubernetes-models, Kubernetes 1.27): types, required fields, formats.
//    The schemas accept unknown fields, so a misspelt field is not caught here.
//    cert-manager objects (overlays/tls/certificate.example.yaml) have no
//    schema here and get only the checks in 2.
// 2. Rectifier's own invariants: replicas and HPA minimum >= 2, non-root and
//    read-only root, CPU request == limit, a grace period longer than preStop
//    + --exit-timeout + the metrics endpoint's stop, a gRPC Service, a PDB and
//    an HPA that point at the Deployment. Probes: gRPC probes on 8001, or,
//    when the server runs with --tls-cert (overlays/tls), exec probes running
//    rectifier-client against 127.0.0.1 with the TLS flags it needs; then also
//    every TLS and token file comes from a Secret volume mounted whole (so
//    rotation reaches it), the pods say prometheus.io/scheme: https, a
//    NetworkPolicy admits 8002 only from selected namespaces, and a
//    Certificate for the mounted Secret names what the probes verify.
// Exits 1 on the first kind of failure, after printing every problem.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as policy from 'kubernetes-models/policy/v1';

const models = {
  'v1/ConfigMap': core.ConfigMap,
  'v1/PersistentVolumeClaim': core.PersistentVolumeClaim,
  'v1/Service': core.Service,
  'v1/ServiceAccount': core.ServiceAccount,
  'apps/v1/Deployment': apps.Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': networking.NetworkPolicy,
  'policy/v1/PodDisruptionBudget': policy.PodDisruptionBudget,
};
const schemaless = new Set(['cert-manager.io/v1/Certificate', 'cert-manager.io/v1/ClusterIssuer',
                            'cert-manager.io/v1/Issuer']);

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
    if (schemaless.has(key)) {
      objects.push(obj);
      continue;
    }
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

// The value of --NAME=VALUE or --NAME VALUE in an argument list, else undefined.
function flagValue(args = [], name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
    if (args[i] === `--${name}`) return args[i + 1] ?? '';
  }
  return undefined;
}

// The server under TLS (--tls-cert): files from whole Secret volumes, exec
// probes that work under TLS, https scraping, a NetworkPolicy on 8002, and a
// Certificate (when one is given) that matches what the probes verify.
function checkTls(d, c, where) {
  const spec = d.spec.template.spec;
  const volumes = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]));
  const secretOf = (file) => {  // the Secret a file is read from, checked
    const m = (c.volumeMounts ?? []).find((x) => file.startsWith(`${x.mountPath.replace(/\/$/, '')}/`));
    const v = m && volumes[m.name];
    if (!v?.secret) {
      fail(`${where}: ${file} is not on a Secret volume`);
    } else if (m.subPath || m.subPathExpr) {
      fail(`${where}: ${file} is mounted with subPath: the kubelet never updates it`);
    } else {
      if (!m.readOnly) fail(`${where}: ${m.mountPath} is not mounted read-only`);
      return v.secret.secretName;
    }
    return undefined;
  };
  const files = {};
  for (const flag of ['tls-cert', 'tls-key', 'tls-client-ca', 'auth-tokens']) {
    const file = flagValue(c.args, flag);
    if (file !== undefined) files[flag] = { file, secret: secretOf(file) };
  }
  if (!files['tls-key']) fail(`${where}: --tls-cert without --tls-key`);
  const mutual = files['tls-client-ca'] !== undefined;

  const serverNames = new Set();
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const p = c[probe];
    const cmd = p?.exec?.command ?? [];
    const at = `${where}: ${probe}`;
    if (p?.grpc || p?.httpGet || p?.tcpSocket || !cmd.length) {
      fail(`${at}: under TLS it must be an exec probe (the kubelet's gRPC probe cannot do TLS)`);
      continue;
    }
    if (!cmd[0].endsWith('rectifier-client') || !cmd.includes('health')) fail(`${at}: does not run rectifier-client ... health`);
    if (flagValue(cmd, 'url') !== '127.0.0.1:8001') fail(`${at}: --url is not 127.0.0.1:8001`);
    const ca = flagValue(cmd, 'tls-ca');
    if (!ca) fail(`${at}: no --tls-ca`);
    else secretOf(ca);
    const name = flagValue(cmd, 'tls-server-name');
    if (!name) fail(`${at}: no --tls-server-name (the certificate does not name 127.0.0.1)`);
    else serverNames.add(name);
    if (mutual) {
      const cert = flagValue(cmd, 'tls-cert');
      const key = flagValue(cmd, 'tls-key');
      if (!cert || !key) fail(`${at}: the server wants client certificates (--tls-client-ca) but the probe sends none`);
      else { secretOf(cert); secretOf(key); }
    }
    const clientTimeout = parseFloat(flagValue(cmd, 'timeout') ?? '10');
    if (!(clientTimeout < (p.timeoutSeconds ?? 1))) fail(`${at}: rectifier-client --timeout ${clientTimeout} is not under timeoutSeconds ${p.timeoutSeconds ?? 1}`);
    if (probe === 'readinessProbe' && flagValue(cmd, 'service') !== 'inference.GRPCInferenceService') {
      fail(`${at}: does not ask for the service inference.GRPCInferenceService`);
    }
  }

  const ann = d.spec.template.metadata.annotations ?? {};
  if (ann['prometheus.io/scheme'] !== 'https') fail(`${where}: /metrics is https but prometheus.io/scheme is not`);

  const podLabels = d.spec.template.metadata.labels;
  const selects = (np) => Object.entries(np.spec.podSelector?.matchLabels ?? {}).every(([k, v]) => podLabels[k] === v);
  const covers = (rule, port, portName) => !rule.ports?.length || rule.ports.some((x) => x.port === port || x.port === portName);
  const policies = byKind('NetworkPolicy').filter(selects);
  if (policies.length === 0) fail(`${where}: no NetworkPolicy selects the pods`);
  for (const np of policies) {
    const at = `NetworkPolicy/${np.metadata.name}`;
    if (!(np.spec.policyTypes ?? ['Ingress']).includes('Ingress')) fail(`${at}: no Ingress policy`);
    const rules = np.spec.ingress ?? [];
    for (const rule of rules.filter((r) => covers(r, 8002, 'metrics'))) {
      const narrow = (rule.from ?? []).length > 0 && rule.from.every((peer) =>
        !peer.ipBlock && Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length +
          (peer.namespaceSelector?.matchExpressions ?? []).length > 0);
      if (!narrow) fail(`${at}: a rule admits port 8002 from anywhere; only selected namespaces may scrape`);
    }
    if (!rules.some((r) => covers(r, 8001, 'grpc'))) fail(`${at}: no rule admits gRPC on 8001`);
  }

  // A Certificate writing the Secret the server's certificate comes from.
  const certificates = byKind('Certificate');
  if (certificates.length) {
    const secret = files['tls-cert']?.secret;
    const cert = certificates.find((x) => x.spec?.secretName === secret);
    if (!cert) {
      fail(`${where}: no Certificate writes the Secret ${secret}`);
    } else {
      const at = `Certificate/${cert.metadata.name}`;
      const dns = cert.spec.dnsNames ?? [];
      for (const name of serverNames) {
        if (!dns.includes(name)) fail(`${at}: dnsNames lack ${name}, the name the probes verify`);
      }
      const usages = cert.spec.usages ?? [];
      if (!usages.includes('server auth')) fail(`${at}: usages lack server auth`);
      if (mutual && !usages.includes('client auth')) fail(`${at}: usages lack client auth (the probes present this certificate)`);
    }
  }
}
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
  if (flagValue(c.args, 'tls-cert') === undefined) {
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      if (c[probe]?.grpc?.port !== 8001) fail(`${where}: ${probe} is not a gRPC probe on 8001`);
    }
  } else {
    checkTls(d, c, where);
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
