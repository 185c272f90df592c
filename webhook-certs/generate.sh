#!/usr/bin/env bash
# Makes a throwaway CA and a webhook serving certificate for running kube-changejob outside
# the cluster (see README.md beside this script). Writes into webhook-certs/out/ (gitignored):
#
#   ca.crt, ca.key    the development CA (give ca.crt to the API server as caBundle)
#   tls.crt, tls.key  the serving certificate the operator loads with
#                     --webhook-cert-mode files --webhook-cert-dir webhook-certs/out
#
# The serving certificate covers localhost, host.docker.internal and 127.0.0.1; the API server
# verifies the host of the webhook URL against it, so add the address it will use, e.g.
#   EXTRA_SANS="IP:172.18.0.1,DNS:my-laptop.lan" webhook-certs/generate.sh
# Prints the base64 CA bundle at the end. Certificates are valid for DAYS (default 30) days.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$DIR/out}"
DAYS="${DAYS:-30}"
SANS="DNS:localhost,DNS:host.docker.internal,IP:127.0.0.1${EXTRA_SANS:+,$EXTRA_SANS}"

command -v openssl >/dev/null || { echo "generate.sh: openssl is required" >&2; exit 1; }
mkdir -p "$OUT"
chmod 700 "$OUT"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# CA: P-256 key, self-signed, allowed to sign certificates only.
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key"
openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days "$DAYS" \
  -subj "/CN=kube-changejob development CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out "$OUT/ca.crt" 2>/dev/null

# Serving certificate: the API server checks subjectAltName (the CN is ignored) and serverAuth.
openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/tls.key"
openssl req -new -key "$OUT/tls.key" -subj "/CN=kube-changejob-webhook" -out "$work/tls.csr"
cat > "$work/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$SANS
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
openssl x509 -req -in "$work/tls.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
  -CAserial "$work/ca.srl" -sha256 -days "$DAYS" -extfile "$work/ext.cnf" -out "$OUT/tls.crt" 2>/dev/null
chmod 644 "$OUT/ca.crt" "$OUT/tls.crt"

# Refuse to hand out a certificate the CA does not verify for TLS servers.
openssl verify -purpose sslserver -CAfile "$OUT/ca.crt" "$OUT/tls.crt" >/dev/null

echo "generate.sh: wrote $OUT/{ca.crt,ca.key,tls.crt,tls.key} for $SANS (valid $DAYS days)" >&2
echo "generate.sh: caBundle (base64 of ca.crt):" >&2
base64 < "$OUT/ca.crt" | tr -d '\n'
echo
