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
  # logging, metrics, CLI, JSON
  libspdlog-dev prometheus-cpp-dev libcli11-dev nlohmann-json3-dev
)
DEV_PACKAGES=(
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev libonnx-testdata
  # reference models and engine parity checks (torchvision export, PyTorch as the peer)
  python3-torch python3-torchvision python3-onnx
  # Python interoperability test: a second language's generated client
  python3-grpcio python3-protobuf python3-numpy
  # lint
  clang-format clang-tidy
)

PACKAGES=("${BUILD_PACKAGES[@]}")
case "${1:-}" in
  --build-only) ;;
  "") PACKAGES+=("${DEV_PACKAGES[@]}") ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
