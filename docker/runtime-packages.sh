#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given
# binaries load (ldd, resolved to the owning package with dpkg -S), one per
# line. The runtime image installs exactly these, so it carries only the
# libraries the build actually links. Fails if a library is missing or owned
# by no package (a library built or copied by hand would be lost at runtime).
# Usage: docker/runtime-packages.sh BINARY...
set -euo pipefail

libs=$(ldd "$@" | awk '/not found/ {print "MISSING " $1} /=> \// {print $3}' | sort -u)
if grep -q '^MISSING' <<<"$libs"; then
  grep '^MISSING' <<<"$libs" >&2
  exit 1
fi

for lib in $libs; do
  # Merged /usr: dpkg may know the file under /lib or under /usr/lib.
  real=$(readlink -f "$lib")
  pkg=""
  for candidate in "$lib" "$real" "${real#/usr}" "/usr${lib}"; do
    if pkg=$(dpkg -S "$candidate" 2>/dev/null); then break; fi
    pkg=""
  done
  if [ -z "$pkg" ]; then
    echo "runtime-packages: no package owns $lib" >&2
    exit 1
  fi
  echo "${pkg%%:*}" | cut -d, -f1
done | sed 's/:amd64$//' | sort -u
