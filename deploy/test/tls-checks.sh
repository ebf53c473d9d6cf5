#!/usr/bin/env bash
# Checks of the TLS deployment files that need no server build (~10 s):
#   1. deploy/compose/make-certs.sh into a temporary folder: every file there
#      with its mode; server, Prometheus and client certificates chain to the
#      CA for their purposes (server: TLS server and client; the others: TLS
#      client only); the server certificate's names (rectifier, localhost,
#      127.0.0.1, RECTIFIER_CERT_SANS) and nothing else; keys match
#      certificates; two distinct random tokens, copied for the client; a
#      second run changes nothing; a partial set is refused.
#   2. A real Prometheus scrapes, over mutual TLS, an `openssl s_server` that
#      requires a client certificate signed by the CA, with the tls_config of
#      prometheus-tls.yml and prometheus-k8s-tls.yml (server_name "rectifier"
#      on an IP target) and those certificates: both are up; the same job
#      without a client certificate, and one expecting another server name,
#      are down (so the first two prove something). Skipped without prometheus.
#   3. docker-compose.yml + docker-compose.tls.yml merge (docker compose or
#      docker-compose config; PyYAML otherwise), every TLS file the server and
#      its healthcheck name is under a read-only mount, and Prometheus gets
#      prometheus-tls.yml.
#   4. kubectl kustomize deploy/k8s/overlays/tls + validate.mjs (with
#      certificate.example.yaml): skipped without kubectl or the validator's
#      npm packages (scripts/check-deploy.sh installs them).
# Usage: deploy/test/tls-checks.sh. Exit status 0 passed, 1 failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3
MAKE_CERTS=$ROOT/deploy/compose/make-certs.sh
tmp=$(mktemp -d /tmp/rectifier-tls-checks.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
failed=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failed=1; }
check() {  # description, command...: ok when the command succeeds
  local what=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' "$tmp/out"; fi
}

# --- 1. make-certs.sh ---------------------------------------------------------
certs=$tmp/certs
me=$(id -u)
if ! RECTIFIER_UID=$me PROMETHEUS_UID=$me RECTIFIER_CERT_SANS="DNS:rectifier.example.com,IP:10.1.2.3" \
    "$MAKE_CERTS" "$certs" >"$tmp/out" 2>&1; then
  bad "make-certs.sh"
  cat "$tmp/out"
  exit 1
fi
ok "make-certs.sh made a set"

modes() {
  local expected actual
  expected=$(printf '%s\n' \
    "755 ." "644 ca.crt" "600 ca.key" "755 auth" "600 auth/auth-tokens" \
    "755 client" "600 client/admin.token" "644 client/ca.crt" "600 client/infer.token" \
    "644 client/tls.crt" "600 client/tls.key" "755 prometheus" "644 prometheus/ca.crt" \
    "644 prometheus/tls.crt" "600 prometheus/tls.key" "755 server" "644 server/ca.crt" \
    "644 server/tls.crt" "600 server/tls.key" | sort -k2)
  actual=$(cd "$certs" && find . -printf '%m %P\n' | sed 's/ $/ ./' | sort -k2)
  diff <(echo "$expected") <(echo "$actual")
}
check "files and modes (keys and tokens 0600, certificates 0644)" modes

chains() (
  cd "$certs" &&
    openssl verify -CAfile ca.crt -purpose sslserver server/tls.crt &&
    openssl verify -CAfile ca.crt -purpose sslclient server/tls.crt prometheus/tls.crt client/tls.crt &&
    cmp ca.crt server/ca.crt && cmp ca.crt prometheus/ca.crt && cmp ca.crt client/ca.crt &&
    for c in prometheus client; do
      if openssl verify -CAfile ca.crt -purpose sslserver "$c/tls.crt"; then
        echo "$c/tls.crt is accepted as a server certificate"
        exit 1
      fi
    done
)
check "certificates chain to the CA, each for its purposes" chains

names() {
  local sans
  sans=$(openssl x509 -in "$certs/server/tls.crt" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')
  [ "$sans" = "DNS:rectifier,DNS:localhost,IPAddress:127.0.0.1,DNS:rectifier.example.com,IPAddress:10.1.2.3" ] ||
    { echo "server SANs: $sans"; return 1; }
  openssl verify -CAfile "$certs/ca.crt" -verify_hostname rectifier "$certs/server/tls.crt" &&
    openssl verify -CAfile "$certs/ca.crt" -verify_ip 127.0.0.1 "$certs/server/tls.crt" &&
    ! openssl verify -CAfile "$certs/ca.crt" -verify_hostname rectifier.invalid "$certs/server/tls.crt"
}
check "server certificate names: rectifier, localhost, 127.0.0.1 and the extra SANs" names

keys_match() {
  for d in server prometheus client; do
    cmp <(openssl pkey -in "$certs/$d/tls.key" -pubout) <(openssl x509 -in "$certs/$d/tls.crt" -noout -pubkey) ||
      { echo "$d: key does not match certificate"; return 1; }
  done
  ! openssl x509 -in "$certs/ca.crt" -noout -ext basicConstraints | grep -q 'CA:FALSE'
}
check "keys match their certificates" keys_match

tokens() {
  $PY - "$certs" <<'PY'
import pathlib, re, sys
d = pathlib.Path(sys.argv[1])
lines = [l.split() for l in (d / "auth/auth-tokens").read_text().splitlines()
         if l.strip() and not l.startswith("#")]
roles = dict(lines)
assert [l[0] for l in lines] == ["admin", "infer"] and all(len(l) == 2 for l in lines), lines
for role, token in roles.items():
    assert re.fullmatch(r"[0-9a-f]{48}", token), f"{role}: not 48 hex characters"
    assert (d / f"client/{role}.token").read_text().strip() == token, f"client/{role}.token differs"
assert roles["admin"] != roles["infer"], "the two tokens are equal"
PY
}
check "auth-tokens: one admin and one infer token, 48 random hex characters, client copies" tokens

rerun() {
  local before after
  before=$(cd "$certs" && find . -type f -exec sha256sum {} + | sort)
  RECTIFIER_UID=$me PROMETHEUS_UID=$me "$MAKE_CERTS" "$certs" || return 1
  after=$(cd "$certs" && find . -type f -exec sha256sum {} + | sort)
  [ "$before" = "$after" ]
}
check "a second run makes nothing and changes nothing" rerun

partial() {
  cp -a "$certs" "$tmp/partial" && rm "$tmp/partial/client/tls.key" || return 1
  local before
  before=$(cd "$tmp/partial" && find . -type f -exec sha256sum {} + | sort)
  if RECTIFIER_UID=$me PROMETHEUS_UID=$me "$MAKE_CERTS" "$tmp/partial" 2>"$tmp/partial.err"; then return 1; fi
  grep 'refusing to overwrite' "$tmp/partial.err" || return 1
  [ "$before" = "$(cd "$tmp/partial" && find . -type f -exec sha256sum {} + | sort)" ]
}
check "a partial set is refused and left as it was" partial

# --- 2. Prometheus scraping over mutual TLS -----------------------------------
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if ! command -v prometheus >/dev/null; then
  echo "skip Prometheus over mutual TLS: no prometheus binary (apt-get install prometheus)"
else
  tls_port=$(free_port)
  prom_port=$(free_port)
  mkdir -p "$tmp/www" "$tmp/prom"
  printf '# TYPE tls_check_metric gauge\ntls_check_metric 42\n' >"$tmp/www/metrics"
  # -WWW serves ./metrics; -Verify 1 + -verify_return_error: no connection
  # without a client certificate signed by ca.crt.
  (cd "$tmp/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$tls_port" \
    -cert "$certs/server/tls.crt" -key "$certs/server/tls.key" -CAfile "$certs/ca.crt" \
    -Verify 1 -verify_return_error) >"$tmp/s_server.log" 2>&1 &
  pids+=($!)
  # The jobs of the two TLS configs (targets and file paths moved here), plus
  # two that must fail.
  $PY - "$certs/prometheus" "$tls_port" >"$tmp/prom/prometheus.yml" <<'PY' || bad "Prometheus test config"
import copy, sys, yaml
certs, port = sys.argv[1], sys.argv[2]
def rectifier_job(path):
    job = next(j for j in yaml.safe_load(open(path))["scrape_configs"] if j["job_name"] == "rectifier")
    for key in ("ca_file", "cert_file", "key_file"):
        job["tls_config"][key] = job["tls_config"][key].replace("/etc/prometheus/rectifier-tls", certs)
    job.pop("kubernetes_sd_configs", None)
    job.pop("relabel_configs", None)
    return job
compose = rectifier_job("deploy/prometheus/prometheus-tls.yml")
compose["static_configs"] = [{"targets": [f"localhost:{port}"]}]
k8s = rectifier_job("deploy/prometheus/prometheus-k8s-tls.yml")
k8s.update(job_name="k8s", static_configs=[{"targets": [f"127.0.0.1:{port}"]}])
no_cert = copy.deepcopy(compose)
no_cert["job_name"] = "no_cert"
del no_cert["tls_config"]["cert_file"], no_cert["tls_config"]["key_file"]
other_name = copy.deepcopy(k8s)
other_name["job_name"] = "other_name"
other_name["tls_config"]["server_name"] = "rectifier.invalid"
print(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                      "scrape_configs": [compose, k8s, no_cert, other_name]}))
PY
  prometheus --config.file="$tmp/prom/prometheus.yml" --storage.tsdb.path="$tmp/prom/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prom/log" 2>&1 &
  pids+=($!)
  scrape() {
    $PY - "$prom_port" <<'PY'
import json, sys, time, urllib.parse, urllib.request
port = sys.argv[1]
def query(q):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=2) as r:
        return {s["metric"]["job"]: s["value"][1] for s in json.load(r)["data"]["result"]}
want = {"rectifier": "1", "k8s": "1", "no_cert": "0", "other_name": "0"}
up = {}
for _ in range(60):  # up to ~30 s for Prometheus to start and scrape
    try:
        up = query("up")
        if up == want and query("tls_check_metric") == {"rectifier": "42", "k8s": "42"}:
            print("up:", up)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
print(f"up: {up}, wanted {want}")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2) as r:
        for t in json.load(r)["data"]["activeTargets"]:
            print(t["labels"]["job"], t["health"], t["lastError"])
except OSError as e:
    print(e)
sys.exit(1)
PY
  }
  check "Prometheus scrapes over mutual TLS with both TLS configs; no client certificate or another name fails" scrape
  [ $failed -eq 0 ] || tail -n 5 "$tmp/s_server.log" "$tmp/prom/log"
fi

# --- 3. compose ---------------------------------------------------------------
compose_files=(-f deploy/compose/docker-compose.yml -f deploy/compose/docker-compose.tls.yml)
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  compose=()
fi
compose_tls() {
  if [ ${#compose[@]} -ne 0 ]; then
    RECTIFIER_CERTS="$certs" "${compose[@]}" "${compose_files[@]}" config >"$tmp/compose.yml" || return 1
  else
    echo "(no docker compose: merging with PyYAML, a rougher check)"
    $PY - "$certs" >"$tmp/compose.yml" <<'PY' || return 1
import sys, yaml
base = yaml.safe_load(open("deploy/compose/docker-compose.yml"))
tls = yaml.safe_load(open("deploy/compose/docker-compose.tls.yml"))
for name, over in tls["services"].items():
    service = base["services"][name]
    by_target = {v.split(":")[1]: v for v in service.get("volumes", [])}
    for v in over.pop("volumes", []):
        v = v.replace("${RECTIFIER_CERTS:-./certs}", sys.argv[1])
        by_target[v.split(":")[1]] = v
    service["volumes"] = list(by_target.values())
    service.update(over)
print(yaml.safe_dump(base))
PY
  fi
  $PY - "$tmp/compose.yml" "$certs" <<'PY'
import shlex, sys, yaml
config, certs = yaml.safe_load(open(sys.argv[1])), sys.argv[2]
def mounts(service):
    out = {}
    for v in service["volumes"]:
        if isinstance(v, dict):
            out[v["target"]] = (v["source"], v.get("read_only", False))
        else:
            parts = v.split(":")
            out[parts[1]] = (parts[0], len(parts) > 2 and parts[2] == "ro")
    return out
def under_ro_mount(service, path):
    for target, (source, ro) in mounts(service).items():
        if path.startswith(target.rstrip("/") + "/"):
            assert ro, f"{target} is not read-only"
            return source + path[len(target.rstrip("/")):]
    raise AssertionError(f"{path} is not under a mount")
server = config["services"]["rectifier"]
flags = dict(a[2:].split("=", 1) for a in server["command"] if a.startswith("--tls") or a.startswith("--auth"))
assert set(flags) >= {"tls-cert", "tls-key", "tls-client-ca", "auth-tokens"}, flags
for flag in ("tls-cert", "tls-key", "tls-client-ca", "auth-tokens"):
    host = under_ro_mount(server, flags[flag])
    assert host.startswith(certs), f"--{flag} comes from {host}, not make-certs.sh's folder"
test = server["healthcheck"]["test"]
health = shlex.split(test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:]))
h = dict(zip(health, health[1:]))
assert h["--url"] == "127.0.0.1:8001" and "health" in health, health
assert h["--tls-server-name"] == "rectifier", health
for flag in ("--tls-ca", "--tls-cert", "--tls-key"):
    under_ro_mount(server, h[flag])
prometheus = config["services"]["prometheus"]
assert mounts(prometheus)["/etc/prometheus/prometheus.yml"][0].endswith("prometheus-tls.yml")
tls_config = next(j for j in yaml.safe_load(open("deploy/prometheus/prometheus-tls.yml"))["scrape_configs"]
                  if j["job_name"] == "rectifier")["tls_config"]
for path in tls_config.values():
    under_ro_mount(prometheus, path)
print("server flags, healthcheck and Prometheus files all under read-only mounts")
PY
}
check "docker-compose.yml + docker-compose.tls.yml merge; TLS files under read-only mounts" compose_tls

# --- 4. Kubernetes overlay ----------------------------------------------------
if ! command -v kubectl >/dev/null; then
  echo "skip Kubernetes TLS overlay: no kubectl"
elif [ ! -d deploy/k8s/validate/node_modules/kubernetes-models ]; then
  echo "skip Kubernetes TLS overlay: run npm install in deploy/k8s/validate (scripts/check-deploy.sh does)"
else
  k8s_tls() {
    kubectl kustomize deploy/k8s/overlays/tls >"$tmp/k8s-tls.yaml" &&
      node deploy/k8s/validate/validate.mjs "$tmp/k8s-tls.yaml" deploy/k8s/overlays/tls/certificate.example.yaml
  }
  check "kubectl kustomize deploy/k8s/overlays/tls + validate.mjs (with certificate.example.yaml)" k8s_tls
fi

exit $failed
