#!/usr/bin/env bash
# `make docker-test`: builds the container image from scratch on this machine
# and smoke-tests it, without any registry:
#   1. Debian packages: docker.io and debootstrap (scripts/install-deploy-deps.sh --image);
#   2. the local Debian 12 base rectifier/debian:bookworm (docker/make-base-image.sh:
#      debootstrap + docker import; skipped when the tag exists);
#   3. docker build of docker/Dockerfile (--network host: a daemon started with
#      --bridge=none has no container network; apt in the build reaches the mirror
#      through the host's);
#   4. deploy/test/image-smoke.sh: the image with host networking on loopback:
#      health, Docker's HEALTHCHECK, /metrics, KServe ModelInfer load, uid, and
#      docker stop (SIGTERM through tini) draining under load with exit code 0.
# Prints the time of each step. Needs root (debootstrap) and a running Docker
# daemon (for example `dockerd --bridge=none --iptables=false &` where there is
# no systemd); BUILD_DIR holds the host's rectifier-client and rectifier-perf.
# Usage: deploy/test/docker-test.sh BUILD_DIR [IMAGE_TAG]
# Env:   JOBS (compile jobs in the image build, default 2), DOCKER_BUILD_ARGS,
#        CONTEXT=worktree (default: the working tree, minus .dockerignore) or
#        CONTEXT=head (git archive HEAD: exactly the committed sources).
set -euo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR [IMAGE_TAG]}")
TAG=${2:-rectifier:test}
JOBS=${JOBS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

for b in "$BUILD/tools/client/rectifier-client" "$BUILD/tools/perf/rectifier-perf"; do
  [ -x "$b" ] || { echo "docker-test: missing $b (make build BUILD_DIR=...)" >&2; exit 1; }
done
scripts/install-deploy-deps.sh --live --image
if ! docker info >/dev/null 2>&1; then
  echo "docker-test: no Docker daemon answers (start one: systemctl start docker, or" \
       "dockerd --bridge=none --iptables=false &)" >&2
  exit 1
fi

timed() {  # label, command...
  local label=$1 start=$SECONDS
  shift
  echo "== $label"
  "$@"
  echo "== $label: $((SECONDS - start)) s"
}

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
timed "base image (debootstrap)" $SUDO docker/make-base-image.sh
# DOCKER_BUILDKIT=0: the Dockerfile needs no BuildKit feature, and a CLI
# without the buildx plugin would only warn before falling back to it.
build_args=(--network host -f docker/Dockerfile --build-arg JOBS="$JOBS"
  --build-arg GIT_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" -t "$TAG")
case "${CONTEXT:-worktree}" in
  worktree)
    timed "docker build $TAG (working tree)" env DOCKER_BUILDKIT=0 \
      docker build "${build_args[@]}" ${DOCKER_BUILD_ARGS:-} . ;;
  head)
    ctx=$(mktemp /tmp/rectifier-context.XXXXXX.tar)
    trap 'rm -f "$ctx"' EXIT
    git archive --format=tar HEAD >"$ctx"
    timed "docker build $TAG (HEAD $(git rev-parse --short HEAD))" env DOCKER_BUILDKIT=0 \
      docker build "${build_args[@]}" ${DOCKER_BUILD_ARGS:-} - <"$ctx" ;;
  *) echo "docker-test: CONTEXT is worktree or head" >&2; exit 2 ;;
esac
docker image ls "$TAG" --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'
timed "smoke test" deploy/test/image-smoke.sh "$TAG" "$BUILD"
echo "docker-test: passed"
