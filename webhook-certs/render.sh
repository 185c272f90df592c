#!/usr/bin/env bash
# Prints webhook configurations that point the API server at an operator running outside the
# cluster: webhook-configurations.yaml.tpl with the URL and the CA bundle of out/ca.crt.
#
#   webhook-certs/render.sh https://172.18.0.1:9443 | kubectl apply -f -
#
# The URL's host must be reachable from the API server and covered by the serving
# certificate (see EXTRA_SANS in generate.sh).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$DIR/out}"
url="${1:-}"
if [[ ! "$url" =~ ^https://[^/]+$ ]]; then
  echo "usage: render.sh https://<host-reachable-address>:<port>   (no path, no trailing slash)" >&2
  exit 2
fi
if [ ! -s "$OUT/ca.crt" ]; then
  echo "render.sh: $OUT/ca.crt is missing; run webhook-certs/generate.sh first" >&2
  exit 1
fi
# The API server verifies the URL's host against the certificate; say so early if it will fail.
host="${url#https://}"
host="${host%:*}"
host="${host#[}"
host="${host%]}"
if ! openssl x509 -in "$OUT/tls.crt" -noout -checkhost "$host" 2>/dev/null | grep -q 'does match' \
  && ! openssl x509 -in "$OUT/tls.crt" -noout -checkip "$host" 2>/dev/null | grep -q 'does match'; then
  echo "render.sh: warning: $host is not in the serving certificate; rerun generate.sh with EXTRA_SANS" >&2
fi
ca_bundle="$(base64 < "$OUT/ca.crt" | tr -d '\n')"
sed -e "s|__WEBHOOK_URL__|$url|g" -e "s|__CA_BUNDLE__|$ca_bundle|g" "$DIR/webhook-configurations.yaml.tpl"
