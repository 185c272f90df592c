#!/usr/bin/env bash
# Measures admission latency (p50/p99) and throughput of /mutate and /validate on loopback,
# with the in-process fake API server answering instantly. See benches/admission.rs.
#   BENCH_REQUESTS=2000 BENCH_CONCURRENCY=16 BENCH_SECONDS=5 hack/bench-admission.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench admission "$@"
