#!/usr/bin/env bash
# Builds the local Debian 12 base image the Dockerfile starts from
# (rectifier/debian:bookworm), for machines that cannot pull from a registry:
# debootstrap --variant=minbase + docker import, trimmed like debian:bookworm-slim.
# Where Docker Hub is reachable, build with --build-arg BASE=debian:bookworm-slim
# instead and skip this script.
#
# Usage: sudo docker/make-base-image.sh [TAG]     (needs root, debootstrap, docker)
# Env:   DEBIAN_MIRROR (default http://deb.debian.org/debian)
#        DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security)
#        FORCE=1 rebuilds when TAG already exists.
set -euo pipefail

TAG=${1:-rectifier/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if [ "$(id -u)" -ne 0 ]; then
  echo "make-base-image: debootstrap needs root" >&2
  exit 1
fi
if docker image inspect "$TAG" >/dev/null 2>&1 && [ -z "${FORCE:-}" ]; then
  echo "make-base-image: $TAG exists (FORCE=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "make-base-image: debootstrap missing (scripts/install-deploy-deps.sh installs it)" >&2
  exit 1
}

rootfs=$(mktemp -d /tmp/rectifier-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR"

# Same trimming as the official slim images: no docs, man pages or locales
# from future installs, no recommends, no apt caches in layers.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
cat >"$rootfs/etc/apt/apt.conf.d/docker-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
  "$rootfs"/tmp/* 2>/dev/null || true

tar --numeric-owner -C "$rootfs" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG"
docker image ls "$TAG"
