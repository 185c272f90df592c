#!/usr/bin/env bash
# Checks the Helm chart at the repository root without a helm binary (none is packaged for
# this platform's package managers): builds hack/render-chart, a Go emulation of
# `helm template` made from Debian's Go packages, tests it, then runs hack/chart-check.py
# (rendering scenarios, Kubernetes schema validation, invariants, values schema, Chart.lock
# digest, package contents and size).
#
# Installs what it needs: Debian packages (golang-go 1.19, sprig, sigs.k8s.io/yaml,
# gojsonschema) and a Python virtualenv with pinned packages. Takes about a minute once
# installed. Usage: bash hack/chart-check.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KUBE_CHANGEJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-changejob}"
VENV="$CACHE/chart-check-venv"
PY_PACKAGES=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3)
GOCODE=/usr/share/gocode
DEB_PACKAGES=(golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev golang-github-xeipuuv-gojsonschema-dev)

log() { printf 'chart-check: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

# 1. Go and the Go libraries, from Debian (GOPATH layout under /usr/share/gocode).
if ! command -v go >/dev/null \
  || [ ! -d "$GOCODE/src/github.com/Masterminds/sprig" ] \
  || [ ! -d "$GOCODE/src/sigs.k8s.io/yaml" ] \
  || [ ! -d "$GOCODE/src/github.com/xeipuuv/gojsonschema" ]; then
  log "installing ${DEB_PACKAGES[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${DEB_PACKAGES[@]}" >/dev/null
fi

# 2. Python tools, pinned, in a virtualenv kept between runs.
mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
  || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
  log "installing ${PY_PACKAGES[*]}"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" > "$VENV/.pins"
fi

# 3. Build and test render-chart offline (GOPATH mode: Debian ships sources, not modules).
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export GO111MODULE=off GOPATH="$GOCODE" GOCACHE="$CACHE/go-build" GOFLAGS= CGO_ENABLED=0
cd "$ROOT"
unformatted="$(gofmt -l hack/render-chart)"
if [ -n "$unformatted" ]; then
  log "gofmt needed: $unformatted"
  exit 1
fi
go vet ./hack/render-chart
go test ./hack/render-chart
go build -o "$WORK/render-chart" ./hack/render-chart

# 4. The checks.
"$VENV/bin/python" hack/chart-check.py --render-chart "$WORK/render-chart"
