#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Rectifier needs to build, test, lint and run.
# Idempotent and non-interactive; returns in well under a second when all are present.
# Why each package is here: docs/DEPENDENCIES.md.
#   scripts/install-deps.sh               everything (make run, make test, make lint)
#   scripts/install-deps.sh --build-only  what building the binaries needs (container build stage)
set -euo pipefail

BUILD_PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config make git
  # RPC and serialization
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # inference engine: oneDNN (its OpenCL runtime needs the ICD loader) and ONNX protobufs
  libdnnl-dev ocl-icd-opencl-dev libonnx-dev
  # imaging
  libopencv-dev libdcmtk-dev dcmtk
  # logging, metrics, HTTP/REST (civetweb), CLI, JSON
  libspdlog-dev prometheus-cpp-dev libcivetweb-dev libcli11-dev nlohmann-json3-dev
  # TLS for /metrics, certificate and token checks (OpenSSL; gRPC brings its own TLS)
  libssl-dev
)
DEV_PACKAGES=(
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libonnx-testdata
  # reference models and engine parity checks (torchvision export, PyTorch as the peer)
  python3-torch python3-torchvision python3-onnx
  # Python interoperability test: a second language's generated client
  python3-grpcio python3-protobuf python3-numpy python3-pil
  # HTTP/REST endpoint test (curl as users type it)
  curl
  # lint
  clang-format clang-tidy
  # fuzzing (make fuzz; the fuzz replay in make test): clang with its ASan/UBSan and
  # libFuzzer runtimes, LLVM's OpenMP (clang links libomp), llvm-symbolizer for stacks
  clang-14 libclang-rt-14-dev libomp-14-dev llvm-14
  # deployment tests in make test (tests/deploy): promtool and a loopback
  # Prometheus (deploy/test/promtool-checks.sh, live-promql.sh); PyYAML reads
  # the alert and adapter rules (deploy/test/promql_queries.py); nginx is the
  # gRPC load balancer of the two-replica test (deploy/test/replicas-nginx.sh)
  prometheus python3-yaml nginx
  # the security tests make throwaway CAs and certificates with the openssl command
  openssl
)

PACKAGES=("${BUILD_PACKAGES[@]}")
case "${1:-}" in
  --build-only) ;;
  "") PACKAGES+=("${DEV_PACKAGES[@]}") ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

# One dpkg-query for all packages (one per package costs seconds on a busy machine).
# It exits 1 when any package is unknown to dpkg (a clean machine): that is
# the normal case here, not an error (under pipefail it would end the script).
installed=" $( { dpkg-query -W -f='${Package}:${db:Status-Abbrev} ' "${PACKAGES[@]}" 2>/dev/null || true; } |
               tr ' ' '\n' | sed -n 's/:ii$//p' | tr '\n' ' ') "
missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$installed" == *" $p "* ]] || missing+=("$p")
done

# The ONNX Runtime peer (bench/peer: parity tests, make bench-compare) runs on
# Node.js >= 18. A newer node already on PATH is accepted; otherwise Debian's.
need_full=0
[ "${1:-}" = "--build-only" ] || need_full=1
if [ $need_full -eq 1 ]; then
  if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
  elif ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
  fi
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The prometheus and nginx packages enable system services (:9090, :80); the
  # tests start their own on loopback. Stop and disable the ones installed here.
  if [ -d /run/systemd/system ]; then
    for service in prometheus nginx; do
      if [[ " ${missing[*]} " == *" $service "* ]]; then
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

if [ $need_full -eq 1 ]; then
  node_version=$(node --version)  # v20.20.2
  node_major=${node_version#v}
  node_major=${node_major%%.*}
  if [ "$node_major" -lt 18 ]; then
    echo "install-deps: node $node_version at $(command -v node) is older than 18;" \
         "onnxruntime-node 1.30 needs >= 18 (remove it or put a newer one first on PATH)" >&2
    exit 1
  fi
  # onnxruntime-node, pinned in bench/peer/package.json. ONNXRUNTIME_NODE_INSTALL=skip
  # (also in bench/peer/.npmrc) skips its postinstall download of CUDA providers;
  # the package itself carries the linux-x64 CPU library. Skipped when present.
  peer="$(cd "$(dirname "$0")/.." && pwd)/bench/peer"
  ort_version=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' "$peer/package.json")
  ort_pkg="$peer/node_modules/onnxruntime-node"
  if ! grep -q "\"version\": *\"$ort_version\"" "$ort_pkg/package.json" 2>/dev/null ||
     [ ! -e "$ort_pkg/bin/napi-v6/linux/x64/libonnxruntime.so.1" ]; then
    echo "install-deps: npm install onnxruntime-node@$ort_version in bench/peer" >&2
    npm_log=$(mktemp)
    if ! (cd "$peer" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
            --loglevel=error) 2>"$npm_log"; then
      cat "$npm_log" >&2
      # Behind a TLS-inspecting proxy npm needs the proxy's CA certificate.
      if grep -qiE 'certificate|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|CERT_' "$npm_log"; then
        echo "install-deps: npm could not verify the registry's TLS certificate. If your" \
             "network re-signs TLS with its own CA, give npm that CA:" \
             "export NODE_EXTRA_CA_CERTS=/path/to/ca.pem (or: npm config set cafile" \
             "/path/to/ca.pem), then run this again." >&2
      fi
      rm -f "$npm_log"
      exit 1
    fi
    rm -f "$npm_log"
  fi
fi
