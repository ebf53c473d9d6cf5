#!/usr/bin/env bash
# Installs the Debian 12 packages the deployment checks need (scripts/check-deploy.sh).
# Idempotent and non-interactive; returns at once when everything is present.
#   scripts/install-deploy-deps.sh           promtool, docker-compose, nginx (config test and the
#                                            two-replica test), node + npm, kubectl, PyYAML
#   scripts/install-deploy-deps.sh --live    + python3-onnx (a test model for the live PromQL check)
#   scripts/install-deploy-deps.sh --image   + docker.io and debootstrap (building the image)
# npm packages are not installed here: each validation folder under deploy/
# installs its own (npm install there, no lock file).
set -euo pipefail

want=(prometheus docker-compose nginx python3-yaml)
for arg in "$@"; do
  case "$arg" in
    --live) want+=(python3-onnx) ;;
    --image) want+=(docker.io debootstrap) ;;
    *) echo "usage: $0 [--live] [--image]" >&2; exit 2 ;;
  esac
done
# Keep a Node.js that is already there (>= 18); Debian's is 18.
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
  want+=(nodejs)
fi
command -v npm >/dev/null || want+=(npm)
# Any kubectl with kustomize will do; Debian's kubernetes-client (1.20) has kustomize v2.
command -v kubectl >/dev/null || want+=(kubernetes-client)

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deploy-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The prometheus and nginx packages enable system services listening on every
# interface (:9090, :80). The checks only need promtool and `nginx -t`, and
# start their own loopback servers: stop and disable the services this script
# installed on a systemd host.
if [ -d /run/systemd/system ]; then
  for service in prometheus nginx; do
    if [[ " ${missing[*]} " == *" $service "* ]]; then
      $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi
