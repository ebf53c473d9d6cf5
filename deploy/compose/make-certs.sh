#!/usr/bin/env bash
# Makes THROWAWAY TLS material and API tokens for trying the TLS variant of the
# compose stack (docker-compose.tls.yml) on one machine. FOR LOCAL USE ONLY:
# the CA key sits next to the certificates it signs, nothing is revoked, and
# anyone holding the folder can mint certificates. Production certificates come
# from your own CA or cert-manager (docs/DEPLOYMENT.md, Kubernetes).
#
#   sudo deploy/compose/make-certs.sh deploy/compose/certs
#
# Needs only the openssl CLI. Writes, under OUTDIR:
#   ca.crt, ca.key              the CA (EC P-256), valid RECTIFIER_CERT_DAYS
#   server/tls.crt, tls.key     the server: DNS rectifier, DNS localhost,
#          ca.crt               IP 127.0.0.1 and RECTIFIER_CERT_SANS; usages
#                               server AND client auth, so the healthcheck in
#                               the container can present it under mutual TLS
#   auth/auth-tokens            one random admin and one random infer token
#   prometheus/tls.crt, tls.key, ca.crt
#                               client certificate Prometheus scrapes with
#   client/tls.crt, tls.key, ca.crt, admin.token, infer.token
#                               client certificate and token copies for
#                               rectifier-client / rectifier-perf on the host
# The file names are those cert-manager writes into a kubernetes.io/tls Secret,
# so the server flags are the same in compose and on Kubernetes.
#
# Modes: keys and tokens 0600, certificates 0644, folders 0755. Each container
# reads its files as its own user, so ownership matters for bind mounts:
#   server/tls.key, auth/auth-tokens   -> RECTIFIER_UID (default 10001, the
#                                         user compose runs the server as)
#   prometheus/tls.key                 -> PROMETHEUS_UID (default 65534,
#                                         "nobody", the prom/prometheus user)
#   everything else                    -> you (SUDO_UID under sudo)
# Handing files to other users needs root, hence sudo. Without root the script
# still makes the files, then stops with exit status 1 and says what to run.
# Set RECTIFIER_UID and PROMETHEUS_UID to your own uid (id -u) to keep every
# file yours: for a server run on the host, or to load the files into
# Kubernetes Secrets. With user-namespace remapping or rootless Docker, set
# them to the host uids the container users map to.
#
# Idempotent: when every file is already there it makes nothing and only
# re-applies modes and ownership (so a second run under sudo finishes a first
# run without root). When only some are there it refuses and changes nothing.
# New files are made in a temporary folder and moved in at the end, so a
# failed run leaves no partial set. To start over, delete OUTDIR.
#
# Environment: RECTIFIER_CERT_SANS extra server names, comma-separated openssl
# SAN entries (e.g. "DNS:rectifier.example.com,IP:10.0.0.5"); RECTIFIER_CERT_DAYS
# (default 365); RECTIFIER_UID; PROMETHEUS_UID.
set -Eeuo pipefail

usage() { echo "usage: $0 OUTDIR   (see the comment at the top of this file)" >&2; exit 2; }
[ $# -eq 1 ] || usage
OUT=$1
DAYS=${RECTIFIER_CERT_DAYS:-365}
EXTRA_SANS=${RECTIFIER_CERT_SANS:-}
RECTIFIER_UID=${RECTIFIER_UID:-10001}
PROMETHEUS_UID=${PROMETHEUS_UID:-65534}
command -v openssl >/dev/null || { echo "make-certs: needs the openssl CLI" >&2; exit 1; }
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || { echo "make-certs: RECTIFIER_CERT_DAYS must be a positive integer" >&2; exit 2; }

PUBLIC=(ca.crt server/tls.crt server/ca.crt prometheus/tls.crt prometheus/ca.crt
        client/tls.crt client/ca.crt)
SECRET=(ca.key server/tls.key auth/auth-tokens prometheus/tls.key client/tls.key
        client/admin.token client/infer.token)
DIRS=(server auth prometheus client)

mkdir -p "$OUT"
present=() missing=()
for f in "${PUBLIC[@]}" "${SECRET[@]}"; do
  if [ -e "$OUT/$f" ]; then present+=("$f"); else missing+=("$f"); fi
done
all=$((${#PUBLIC[@]} + ${#SECRET[@]}))

# quiet COMMAND...: runs it, shows its stderr only when it fails (openssl x509
# -req reports every signature it makes on stderr).
quiet() { "$@" 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }; }
key() { quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
          -pkeyopt ec_param_enc:named_curve -out "$1"; }
# sign CSR_SUBJECT KEY OUT EXTFILE: a certificate for KEY signed by the CA
# (a fresh random serial, so no serial file is written).
sign() {
  openssl req -new -key "$2" -subj "$1" -out "$work/req.csr"
  quiet openssl x509 -req -in "$work/req.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 -extfile "$4" -out "$3"
}

if [ ${#present[@]} -eq 0 ]; then
  umask 077
  work=$(mktemp -d "$OUT/.make-certs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  trap 'echo "make-certs: failed; nothing was written to $OUT" >&2' ERR
  mkdir -p "${DIRS[@]/#/$work/}"

  # The CA: self-signed, may sign end-entity certificates only (pathlen 0).
  key "$work/ca.key"
  cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -new -key "$work/ca.key" -subj "/O=Rectifier local/CN=Rectifier throwaway CA (local use only)" \
    -out "$work/ca.csr"
  quiet openssl x509 -req -in "$work/ca.csr" -signkey "$work/ca.key" -days "$DAYS" -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/ca.ext" -out "$work/ca.crt"

  sans="DNS:rectifier,DNS:localhost,IP:127.0.0.1${EXTRA_SANS:+,$EXTRA_SANS}"
  leaf_ext() {  # extended key usages, then optional subjectAltName
    printf '%s\n' "basicConstraints = critical, CA:FALSE" \
      "keyUsage = critical, digitalSignature" "extendedKeyUsage = $1" \
      "subjectKeyIdentifier = hash" "authorityKeyIdentifier = keyid"
    [ -z "${2:-}" ] || echo "subjectAltName = $2"
  }
  leaf_ext "serverAuth, clientAuth" "$sans" >"$work/server.ext"
  leaf_ext "clientAuth" >"$work/client.ext"

  key "$work/server/tls.key"
  sign "/O=Rectifier local/CN=rectifier" "$work/server/tls.key" "$work/server/tls.crt" "$work/server.ext"
  key "$work/prometheus/tls.key"
  sign "/O=Rectifier local/CN=prometheus" "$work/prometheus/tls.key" "$work/prometheus/tls.crt" "$work/client.ext"
  key "$work/client/tls.key"
  sign "/O=Rectifier local/CN=rectifier-client" "$work/client/tls.key" "$work/client/tls.crt" "$work/client.ext"
  for d in server prometheus client; do cp "$work/ca.crt" "$work/$d/ca.crt"; done

  # 24 random bytes each (48 hex characters; the server wants at least 16).
  admin=$(openssl rand -hex 24)
  infer=$(openssl rand -hex 24)
  printf '%s\n' "# Rectifier API tokens (ROLE TOKEN), made by make-certs.sh: local use only." \
    "admin $admin" "infer $infer" >"$work/auth/auth-tokens"
  echo "$admin" >"$work/client/admin.token"
  echo "$infer" >"$work/client/infer.token"

  for f in "${PUBLIC[@]}" "${SECRET[@]}"; do
    [ ! -e "$OUT/$f" ] || { echo "make-certs: $OUT/$f appeared while running; nothing moved" >&2; exit 1; }
  done
  mkdir -p "${DIRS[@]/#/$OUT/}"
  for f in "${PUBLIC[@]}" "${SECRET[@]}"; do mv "$work/$f" "$OUT/$f"; done
  trap - ERR
  echo "make-certs: made a throwaway CA, server, Prometheus and client certificates and two tokens in $OUT (local use only)"
elif [ ${#present[@]} -eq "$all" ]; then
  echo "make-certs: every file is already in $OUT; made nothing (delete the folder to start over)"
else
  echo "make-certs: $OUT holds ${#present[@]} of the $all files (missing: ${missing[*]});" >&2
  echo "make-certs: refusing to overwrite the others. Delete $OUT and run again." >&2
  exit 1
fi

# Modes and ownership, re-applied on every run.
chmod 0755 "$OUT" "${DIRS[@]/#/$OUT/}"
for f in "${PUBLIC[@]}"; do chmod 0644 "$OUT/$f"; done
for f in "${SECRET[@]}"; do chmod 0600 "$OUT/$f"; done
# "FILE UID" pairs: the secrets a container reads as its own user.
handed=("server/tls.key $RECTIFIER_UID" "auth/auth-tokens $RECTIFIER_UID"
        "prometheus/tls.key $PROMETHEUS_UID")
me=$(id -u)
if [ "$me" -eq 0 ]; then
  if [ -n "${SUDO_UID:-}" ]; then chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"; fi
  for pair in "${handed[@]}"; do
    set -- $pair
    chown "$2:$2" "$OUT/$1"
  done
else
  todo=()
  for pair in "${handed[@]}"; do
    set -- $pair
    [ -n "$(find "$OUT/$1" -user "$2")" ] || todo+=("$OUT/$1  (wants uid $2)")
  done
  if [ ${#todo[@]} -ne 0 ]; then
    echo "make-certs: not root, so these files are still yours and the containers cannot read them:" >&2
    printf '  %s\n' "${todo[@]}" >&2
    echo "make-certs: run 'sudo $0 $OUT' (keeps the files, fixes ownership), or set" >&2
    echo "make-certs: RECTIFIER_UID and PROMETHEUS_UID to $me if no container reads them." >&2
    exit 1
  fi
fi
