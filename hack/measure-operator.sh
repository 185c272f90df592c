#!/usr/bin/env bash
# Measures the operator's speed and memory targets (docs/performance.md) on this machine,
# against the fake API server (examples/fake_apiserver.rs), with the release binaries:
#
#   latency  50 CTJs x 2 ConfigMaps, 200 changes at 10/s: change→Job latency distribution,
#            exactly one Job per change (examples/load.rs fails otherwise)
#            (client side: write returned → Job seen by a watch; server side: the change's PATCH
#            arriving at the fake → its Job's create arriving, from the fake's write log)
#   steady   then 3 poll intervals without changes: API requests per minute, operator CPU
#   burst    500 CTJs created at once: time until all observed, peak API request rate; then
#            (with steady) 3 poll intervals without changes at 500 CTJs, as above
#   scale    1000 CTJs x 4 of 2000 ConfigMaps of 10 KiB: RSS after setup and after idling
#   memory   100 CTJs, then 5000 unrelated 50 KiB ConfigMaps in their namespace: RSS delta
#   table    for each row NxM or NxM@S of MEASURE_TABLE_ROWS (100x3,1000x3,1000x2@500): N CTJs
#            each watching M of a pool of N ConfigMaps (whole-object fields, as the load generator
#            writes them), spread over S namespaces (1 if not given), default settings (poll
#            60s): time until all baselined, change→Job p50/p99 of 100 changes at
#            MEASURE_TABLE_RATE (2) per second, then
#            MEASURE_TABLE_IDLE (60) seconds at rest: requests per minute to configmaps,
#            changetriggeredjobs and jobs from the API server's own apiserver_request_total,
#            operator RSS and CPU-s per minute, its open metadata watches
#
# Against a real cluster: run with KUBECONFIG set (and MEASURE_FAKE unset). The script then
# starts no fake, runs only the table scenario (unless MEASURE_SCENARIOS says otherwise), runs
# the release operator locally against that cluster (no other kube-changejob may be leading
# there), applies the CRD, uses namespaces measure-<N>, reads /metrics of the API server (you
# need get on that non-resource URL) and deletes the namespaces with kubectl at the end.
#
# Every scenario gets a fresh fake API server and operator. The operator runs with
# --poll-interval 10s (instead of 60s) so that three safety resyncs fit in 30 seconds.
# Knobs (environment): MEASURE_SCENARIOS (comma-separated, default all of the above),
# MEASURE_POLL_INTERVAL (10s), MEASURE_API_QPS (50), MEASURE_API_BURST (100),
# MEASURE_IDLE_SECONDS (60, the scale scenario's idle time), MEASURE_SCALE_CTJS (1000),
# MEASURE_SCALE_CONFIGMAPS (2000), MEASURE_UNRELATED (5000), MEASURE_BURST_CTJS (500).
# Output: a markdown report on stdout and in target/measurements/<date>.md, with the logs and
# raw figures next to it in target/measurements/<date>/. Exit status 1 if a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

REAL=0
if [[ -n "${KUBECONFIG:-}" && -z "${MEASURE_FAKE:-}" ]]; then
    REAL=1
    REAL_KUBECONFIG=$KUBECONFIG
fi
if [[ $REAL == 1 ]]; then
    SCENARIOS=${MEASURE_SCENARIOS:-table}
else
    SCENARIOS=${MEASURE_SCENARIOS:-latency,steady,burst,scale,memory,table}
fi
TABLE_ROWS=${MEASURE_TABLE_ROWS:-100x3,1000x3,1000x2@500}
TABLE_IDLE=${MEASURE_TABLE_IDLE:-60}
# Changes per second in the table's latency part: each fans out to M Jobs, and a Job costs
# about three requests (create, status write, pruning delete) of the apiQps budget.
TABLE_RATE=${MEASURE_TABLE_RATE:-2}
POLL=${MEASURE_POLL_INTERVAL:-10s}
QPS=${MEASURE_API_QPS:-50}
BURST=${MEASURE_API_BURST:-100}
IDLE=${MEASURE_IDLE_SECONDS:-60}
SCALE_CTJS=${MEASURE_SCALE_CTJS:-1000}
SCALE_CMS=${MEASURE_SCALE_CONFIGMAPS:-2000}
UNRELATED=${MEASURE_UNRELATED:-5000}
BURST_CTJS=${MEASURE_BURST_CTJS:-500}
POLL_SECONDS=${POLL%s}
TARGET=${CARGO_TARGET_DIR:-target}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT="$TARGET/measurements/$STAMP"
mkdir -p "$OUT"
STARTED=$(date +%s)
TICKS=$(getconf CLK_TCK)

has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
log() { echo "measure [$(($(date +%s) - STARTED))s]: $*" >&2; }

log "building release binaries"
cargo build --release --quiet --bin kube-changejob --example fake_apiserver --example load \
    --example apiserver_requests
BIN="$TARGET/release/kube-changejob"
REQUESTS_BIN="$TARGET/release/examples/apiserver_requests"
FAKE_BIN="$TARGET/release/examples/fake_apiserver"
LOAD_BIN="$TARGET/release/examples/load"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Results, one "key value" per line, rendered at the end.
RESULTS="$OUT/results.txt"
: >"$RESULTS"
put() { echo "$1 $2" >>"$RESULTS"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# utime + stime in clock ticks; the command name in field 2 may contain spaces.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Nanoseconds on CPU, summed over the live threads (/proc/PID/task/*/schedstat): exact where
# clock ticks (10 ms) are too coarse for a quiet minute.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
now_ms() { date +%s%3N; }

# start_stack NAME: a fresh fake API server and operator; sets FAKE_URL, KUBECONFIG, OP_PID.
start_stack() {
    local name=$1
    local port mport
    port=$(free_port)
    mport=$(free_port)
    if [[ $REAL == 1 ]]; then
        start_operator "$name" "$mport" "$POLL"
        return
    fi
    FAKE_URL="http://127.0.0.1:$port"
    export KUBECONFIG="$OUT/$name.kubeconfig"
    "$FAKE_BIN" "127.0.0.1:$port" "$KUBECONFIG" 2>"$OUT/$name.fake.log" &
    FAKE_PID=$!
    PIDS+=("$FAKE_PID")
    for _ in $(seq 100); do
        curl -sf "$FAKE_URL/version" >/dev/null && break
        sleep 0.1
    done
    # The CRD, as `kubectl apply --server-side` would send it.
    "$BIN" crd >"$OUT/crd.yaml"
    curl -sf -X PATCH -H 'Content-Type: application/apply-patch+yaml' --data-binary @"$OUT/crd.yaml" \
        "$FAKE_URL/apis/apiextensions.k8s.io/v1/customresourcedefinitions/changetriggeredjobs.triggers.changejob.dev?fieldManager=measure&force=true" \
        >/dev/null
    start_operator "$name" "$mport" "$POLL"
}

# start_operator NAME METRICS_PORT POLL: the release operator against $KUBECONFIG; sets OP_PID.
start_operator() {
    local name=$1 mport=$2 poll=$3
    METRICS_URL="http://127.0.0.1:$mport/metrics"
    "$BIN" run --webhook-enabled=false --metrics-secure=false \
        --metrics-bind-address "127.0.0.1:$mport" --leader-election=true \
        --operator-namespace kube-changejob-system --pod-name measure \
        --poll-interval "$poll" --api-qps "$QPS" --api-burst "$BURST" \
        >"$OUT/$name.operator.log" 2>&1 &
    OP_PID=$!
    PIDS+=("$OP_PID")
    for _ in $(seq 300); do
        if curl -sf "$METRICS_URL" 2>/dev/null | grep -q '^changejob_leader 1'; then
            log "$name: operator (pid $OP_PID) leads; fake API at $FAKE_URL"
            return 0
        fi
        kill -0 "$OP_PID" 2>/dev/null || { log "$name: the operator exited; see $OUT/$name.operator.log"; exit 1; }
        sleep 0.1
    done
    log "$name: the operator did not take the Lease within 30s"
    exit 1
}

stop_stack() {
    local name=$1
    # The operator first: on SIGTERM it releases its Lease, which needs the API.
    kill "$OP_PID" 2>/dev/null || true
    wait "$OP_PID" 2>/dev/null || true
    if [[ $REAL == 0 ]]; then
        kill "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
    fi
    put "$name.log.warn" "$(grep -c ' WARN ' "$OUT/$name.operator.log" || true)"
    put "$name.log.error" "$(grep -c ' ERROR ' "$OUT/$name.operator.log" || true)"
    put "$name.log.panic" "$(grep -c 'panicked' "$OUT/$name.operator.log" || true)"
}

reset_stats() { curl -sf -X POST "$FAKE_URL/__fake/reset" >/dev/null; }
save_stats() { curl -sf "$FAKE_URL/__fake/stats?arrivals=true" >"$OUT/$1.stats.json"; }

# sample KEY: RSS, peak RSS and CPU time of the operator, and the time, under KEY.
sample() {
    put "$1.rss" "$(rss_kib "$OP_PID")"
    put "$1.hwm" "$(hwm_kib "$OP_PID")"
    put "$1.cpu" "$(cpu_ticks "$OP_PID")"
    put "$1.cpuns" "$(cpu_ns "$OP_PID")"
    put "$1.ms" "$(now_ms)"
    put "$1.reconciles" "$(curl -sf "$METRICS_URL" | awk '/^changejob_reconciles_total/ {s += $2} END {print s + 0}')"
}

# load NAME ARGS...: runs the load generator, its report in NAME.load.json.
load() {
    local name=$1
    shift
    if "$LOAD_BIN" --json "$OUT/$name.load.json" "$@" 2>&1 | tee "$OUT/$name.load.log" >&2; then
        put "$name.ok" 1
    else
        put "$name.ok" 0
    fi
}

put loadavg.start "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"

if has latency || has steady; then
    start_stack latency
    sleep 5
    sample baseline
    if has latency; then
        log "latency: 50 CTJs x 2 ConfigMaps, 200 changes at 10/s"
        sample latency.before
        load latency --namespace latency --configmaps 100 --configmap-size 1Ki --ctjs 50 \
            --objects-per-ctj 2 --changes 200 --rate 10
        sample latency.after
    else
        load latency --namespace latency --configmaps 100 --configmap-size 1Ki --ctjs 50 \
            --objects-per-ctj 2 --changes 0
    fi
    if has steady; then
        log "steady: $((3 * POLL_SECONDS))s (3 poll intervals of $POLL) without changes"
        sleep 2
        reset_stats
        sample steady.before
        sleep $((3 * POLL_SECONDS))
        sample steady.after
        save_stats steady
    fi
    stop_stack latency
fi

if has burst; then
    start_stack burst
    load burst-setup --namespace burst --configmaps $((BURST_CTJS * 2)) --configmap-size 1Ki \
        --configmaps-only
    sleep 2
    log "burst: $BURST_CTJS CTJs created at once"
    reset_stats
    sample burst.before
    load burst --namespace burst --reuse-configmaps --configmaps $((BURST_CTJS * 2)) \
        --ctjs "$BURST_CTJS" --objects-per-ctj 2 --changes 0 --create-concurrency 64
    sample burst.after
    save_stats burst
    if has steady; then
        log "steady500: $((3 * POLL_SECONDS))s (3 poll intervals of $POLL) without changes at $BURST_CTJS CTJs"
        # Let the last status writes of the burst settle first.
        sleep 2
        reset_stats
        sample steady500.before
        sleep $((3 * POLL_SECONDS))
        sample steady500.after
        save_stats steady500
    fi
    stop_stack burst
fi

if has scale; then
    start_stack scale
    sleep 5
    sample scale.empty
    log "scale: $SCALE_CTJS CTJs x 4 of $SCALE_CMS ConfigMaps of 10 KiB"
    load scale --namespace scale --configmaps "$SCALE_CMS" --configmap-size 10Ki \
        --ctjs "$SCALE_CTJS" --objects-per-ctj 4 --changes 0 --create-concurrency 32
    sleep 2
    sample scale.setup
    reset_stats
    log "scale: idle for ${IDLE}s"
    sleep "$IDLE"
    sample scale.idle
    save_stats scale-idle
    stop_stack scale
fi

if has memory; then
    start_stack memory
    load memory --namespace memory --configmaps 200 --configmap-size 10Ki --ctjs 100 \
        --objects-per-ctj 2 --changes 0
    sleep $((POLL_SECONDS + 2))
    sample memory.before
    log "memory: $UNRELATED unrelated ConfigMaps of 50 KiB in the watched namespace"
    reset_stats
    load memory-unrelated --namespace memory --configmaps 200 --reuse-configmaps --configmaps-only \
        --unrelated "$UNRELATED" --unrelated-size 50Ki
    # Let the watch deliver them and two safety resyncs run.
    sleep $((2 * POLL_SECONDS + 2))
    sample memory.after
    save_stats memory
    stop_stack memory
fi

# requests_json: the API server's apiserver_request_total for the operator's resources.
requests_json() { "$REQUESTS_BIN" configmaps changetriggeredjobs jobs; }

TABLE="$OUT/table.md"
if has table; then
    if [[ $REAL == 1 ]]; then
        kubectl create namespace kube-changejob-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    fi
    {
        echo "| N × M | namespaces | change→Job p50 / p99 | requests/min at rest | RSS | CPU at rest | all baselined after | metadata watches (per namespace / cluster-wide) | kill -9: new leader after / first pass done after / its requests |"
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    } >"$TABLE"
    for row in ${TABLE_ROWS//,/ }; do
        spread=1
        if [[ $row == *@* ]]; then
            spread=${row#*@}
            row=${row%@*}
        fi
        n=${row%x*}
        m=${row#*x}
        name="table-$n-$spread"
        # Default settings: the poll interval is the product's 60s here.
        POLL_SAVED=$POLL
        POLL=60s
        start_stack "$name"
        POLL=$POLL_SAVED
        log "table: $n CTJs x $m of $n ConfigMaps"
        crd_flag=()
        [[ $REAL == 1 ]] && crd_flag=(--apply-crd)
        load "$name" "${crd_flag[@]}" --namespace "measure-$n" --namespaces "$spread" \
            --configmaps "$n" --configmap-size 1Ki \
            --ctjs "$n" --objects-per-ctj "$m" --changes 100 --rate "$TABLE_RATE" --create-concurrency 64 \
            --observe-timeout 1800
        sleep 5
        requests_json >"$OUT/$name.requests.before.json"
        curl -sf "$METRICS_URL" >"$OUT/$name.metrics.before.txt" || true
        sample "$name.rest.before"
        log "table: ${TABLE_IDLE}s at rest"
        sleep "$TABLE_IDLE"
        requests_json >"$OUT/$name.requests.after.json"
        curl -sf "$METRICS_URL" >"$OUT/$name.metrics.after.txt" || true
        sample "$name.rest.after"
        curl -sf "$METRICS_URL" | awk '/^changejob_metadata_watches\{scope="namespace"\}/ {print "'"$name"'.watches.namespace", $2}
            /^changejob_metadata_watches\{scope="cluster"\}/ {print "'"$name"'.watches.cluster", $2}' >>"$RESULTS"
        # Failover: a standby replica, then kill -9 of the leader. The standby takes the Lease
        # when it expires (leaseDuration 15 s) and makes its first pass from nothing.
        standby_port=$(free_port)
        "$BIN" run --webhook-enabled=false --metrics-secure=false \
            --metrics-bind-address "127.0.0.1:$standby_port" --leader-election=true \
            --operator-namespace kube-changejob-system --pod-name measure-standby \
            --api-qps "$QPS" --api-burst "$BURST" >"$OUT/$name.standby.log" 2>&1 &
        standby_pid=$!
        PIDS+=("$standby_pid")
        sleep 3
        requests_json >"$OUT/$name.failover.before.json"
        log "table: kill -9 of the leader (pid $OP_PID)"
        kill -9 "$OP_PID" 2>/dev/null || true
        wait "$OP_PID" 2>/dev/null || true
        killed=$(now_ms)
        led=""
        for _ in $(seq 600); do
            if curl -sf "http://127.0.0.1:$standby_port/metrics" 2>/dev/null | grep -q '^changejob_leader 1'; then
                led=$(now_ms)
                break
            fi
            sleep 0.1
        done
        put "$name.failover.lead_ms" "$(( ${led:-$killed} - killed ))"
        # Its first pass: every CTJ reconciled once.
        first_pass=""
        for _ in $(seq 1800); do
            done_count=$(curl -sf "http://127.0.0.1:$standby_port/metrics" 2>/dev/null |
                awk '/^changejob_reconciles_total/ {s += $2} END {print s + 0}' || true)
            if [[ ${done_count:-0} -ge $n ]]; then
                first_pass=$(now_ms)
                break
            fi
            sleep 0.1
        done
        put "$name.failover.pass_ms" "$(( ${first_pass:-$killed} - killed ))"
        requests_json >"$OUT/$name.failover.after.json"
        OP_PID=$standby_pid
        python3 - "$OUT" "$name" "$n" "$m" "$TICKS" "$spread" >>"$TABLE" <<'PY'
import json, os, sys
out, name, n, m, ticks, spread = sys.argv[1:7]
ticks = int(ticks)
r = {}
for line in open(os.path.join(out, "results.txt")):
    k, _, v = line.strip().partition(" ")
    r[k] = v
d = json.load(open(os.path.join(out, f"{name}.load.json")))
lat = d.get("changes", {}).get("latency", {})
before = json.load(open(os.path.join(out, f"{name}.requests.before.json")))
after = json.load(open(os.path.join(out, f"{name}.requests.after.json")))
secs = (float(r[f"{name}.rest.after.ms"]) - float(r[f"{name}.rest.before.ms"])) / 1000
delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
delta = {k: v for k, v in delta.items() if v > 0}
total = sum(delta.values())
what = ", ".join(f"{k} {60 * v / secs:.1f}" for k, v in sorted(delta.items())) or "none"
if f"{name}.rest.after.cpuns" in r and f"{name}.rest.before.cpuns" in r:
    cpu = (float(r[f"{name}.rest.after.cpuns"]) - float(r[f"{name}.rest.before.cpuns"])) / 1e9
else:
    cpu = (float(r[f"{name}.rest.after.cpu"]) - float(r[f"{name}.rest.before.cpu"])) / ticks
rss = float(r[f"{name}.rest.after.rss"]) / 1024
p50, p99 = lat.get("p50_ms"), lat.get("p99_ms")
fmt = lambda ms: "—" if ms is None else f"{ms / 1000:.2f} s"
watches = f"{r.get(f'{name}.watches.namespace', '?')} / {r.get(f'{name}.watches.cluster', '?')}"
fo_before = json.load(open(os.path.join(out, f"{name}.failover.before.json")))
fo_after = json.load(open(os.path.join(out, f"{name}.failover.after.json")))
fo = {k: fo_after.get(k, 0) - fo_before.get(k, 0) for k in fo_after}
fo = ", ".join(f"{k} {v:.0f}" for k, v in sorted(fo.items()) if v > 0) or "none"
failover = (f"{float(r[f'{name}.failover.lead_ms']) / 1000:.1f} s / "
            f"{float(r[f'{name}.failover.pass_ms']) / 1000:.1f} s / {fo}")
print(f"| {int(n):,} × {m} | {int(spread):,} | {fmt(p50)} / {fmt(p99)} | {60 * total / secs:.1f} ({what}) | {rss:.0f} MiB | "
      f"{60 * cpu / secs:.3f} CPU-s/min | {d.get('time_to_observe_all_s')} s | {watches} | {failover} |")
PY
        stop_stack "$name"
        if [[ $REAL == 1 ]]; then
            if [[ $spread == 1 ]]; then
                kubectl delete namespace "measure-$n" --wait=false >/dev/null || true
            else
                for s in $(seq 0 $((spread - 1))); do echo "measure-$n-$s"; done |
                    xargs -n 50 kubectl delete namespace --wait=false >/dev/null || true
            fi
        fi
    done
fi

put loadavg.end "$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')"
put runtime.s $(($(date +%s) - STARTED))

REPORT="$TARGET/measurements/$STAMP.md"
python3 - "$OUT" "$SCENARIOS" "$POLL" "$QPS" "$BURST" "$IDLE" "$TICKS" >"$REPORT" <<'PY'
import json, os, sys

out, scenarios, poll, qps, burst, idle, ticks = sys.argv[1:8]
scenarios = scenarios.split(",")
qps, burst, idle, ticks = int(qps), int(burst), int(idle), int(ticks)
r = {}
for line in open(os.path.join(out, "results.txt")):
    k, _, v = line.strip().partition(" ")
    r[k] = v
failed = []

def num(k):
    return float(r[k])

def mib(kib):
    return f"{float(kib) / 1024:.1f} MiB"

def load(name):
    try:
        return json.load(open(os.path.join(out, f"{name}.load.json")))
    except (OSError, ValueError):
        return {}

def stats(name):
    try:
        return json.load(open(os.path.join(out, f"{name}.stats.json")))
    except (OSError, ValueError):
        return {}

def cpu_pct(a, b):
    secs = (num(f"{b}.ms") - num(f"{a}.ms")) / 1000
    used = (num(f"{b}.cpu") - num(f"{a}.cpu")) / ticks
    return f"{100 * used / secs:.1f}% of one core ({used:.2f}s CPU in {secs:.0f}s)"

def per_reconcile(a, b):
    reconciles = num(f"{b}.reconciles") - num(f"{a}.reconciles")
    used = (num(f"{b}.cpu") - num(f"{a}.cpu")) / ticks
    return f"{1000 * used / reconciles:.2f} ms" if reconciles else "—"

def check(ok, what):
    if not ok:
        failed.append(what)
    return "ok" if ok else "**FAILED**"

def load_ok(name, data):
    ok = r.get(f"{name}.ok") == "1"
    if not ok:
        failed.append(f"{name}: load generator failed: {data.get('error') or '; '.join(data.get('problems', []))}")
    return ok

print(f"# kube-changejob measurements, {os.path.basename(out)}")
print()
print(f"Machine: {os.cpu_count()} cores, load average {r.get('loadavg.start')} at the start and "
      f"{r.get('loadavg.end')} at the end. Fake API server (in-process store, no etcd) on the same "
      f"machine. Operator flags: `--poll-interval {poll} --api-qps {qps} --api-burst {burst}`, "
      f"leader election on, webhook off. Script runtime {r.get('runtime.s')} s.")
print()

if "baseline.rss" in r:
    print("## Memory with no ChangeTriggeredJobs")
    print()
    print(f"RSS {mib(r['baseline.rss'])} (peak {mib(r['baseline.hwm'])}), 5 s after taking the Lease.")
    print()

if "latency" in scenarios and "latency.before.rss" in r:
    d = load("latency")
    ok = load_ok("latency", d)
    c = d.get("changes", {})
    lat = c.get("latency", {})
    print("## Latency: 50 CTJs x 2 ConfigMaps, 200 changes at 10/s")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| time to observe all 50 CTJs (first create → last status) | {d.get('time_to_observe_all_s')} s |")
    print(f"| changes made (achieved rate) | {c.get('count')} ({c.get('rate_achieved')}/s; {c.get('waited_for_earlier_job')} waited for an earlier Job) |")
    print(f"| Jobs expected / missing / extra | {c.get('jobs_expected')} / {c.get('jobs_missing')} / {c.get('jobs_extra')} — {check(ok, 'latency: one Job per change')} |")
    print(f"| change→Job latency count | {lat.get('count')} |")
    srv = c.get("latency_server") or {}
    print("| change→Job latency, client side (write returned → Job seen by a watch) / server side (PATCH arrived → Job create arrived) | |")
    for p in ["min", "p50", "p90", "p95", "p99", "max"]:
        print(f"| change→Job latency {p} | {lat.get(p + '_ms')} ms / {srv.get(p + '_ms', '—')} ms |")
    print(f"| server-side samples | {srv.get('count', 0)} |")
    p99 = lat.get("p99_ms")
    print(f"| p99 within 1 s | {check(p99 is not None and p99 <= 1000, 'latency: p99 above 1 s')} |")
    print(f"| operator CPU during the phase | {cpu_pct('latency.before', 'latency.after')} |")
    print(f"| operator RSS after (peak) | {mib(r['latency.after.rss'])} ({mib(r['latency.after.hwm'])}) |")
    print()

def steady(name, ctjs):
    s = stats(name)
    secs = s.get("seconds", 1)
    op = s.get("clients", {}).get("kube-changejob", {})
    print(f"## Steady state: {ctjs} CTJs, {secs:.0f} s (3 poll intervals of {poll}) without changes")
    print()
    print("Operator API requests, per minute:")
    print()
    print("| verb | resource | requests | per minute |")
    print("| --- | --- | --- | --- |")
    counts = {}
    for q in op.get("requests", []):
        counts[(q["verb"], q["resource"])] = q["count"]
        print(f"| {q['verb']} | {q['resource']} | {q['count']} | {60 * q['count'] / secs:.1f} |")
    if not op.get("requests"):
        print("| — | — | 0 | 0 |")
    print()
    gets = sum(v for (verb, res), v in counts.items() if verb == "get" and res == "configmaps")
    status = sum(v for (verb, res), v in counts.items() if res == "changetriggeredjobs" and verb in ("patch", "update"))
    jobs = sum(v for (verb, res), v in counts.items() if res == "jobs" and verb in ("create", "delete"))
    print("| check | value | |")
    print("| --- | --- | --- |")
    print(f"| GETs of watched ConfigMaps | {gets} | {check(gets == 0, f'{name}: GETs of watched objects')} |")
    print(f"| status writes (patch/update of changetriggeredjobs) | {status} | {check(status == 0, f'{name}: status writes without changes')} |")
    print(f"| Job creates/deletes | {jobs} | {check(jobs == 0, f'{name}: Jobs without changes')} |")
    print(f"| all operator requests | {op.get('total', 0)} ({60 * op.get('total', 0) / secs:.1f}/min) | |")
    print(f"| reconciles (safety resyncs) | {num(f'{name}.after.reconciles') - num(f'{name}.before.reconciles'):.0f} | |")
    print(f"| operator CPU per reconcile (all CPU / reconciles) | {per_reconcile(f'{name}.before', f'{name}.after')} | |")
    print(f"| operator CPU | {cpu_pct(f'{name}.before', f'{name}.after')} | |")
    print(f"| operator RSS (peak) | {mib(r[f'{name}.after.rss'])} ({mib(r[f'{name}.after.hwm'])}) | |")
    print()

if "steady" in scenarios and "steady.after.rss" in r:
    steady("steady", 50)

if "burst" in scenarios and "burst.after.rss" in r:
    d = load("burst")
    ok = load_ok("burst", d)
    s = stats("burst")
    op = s.get("clients", {}).get("kube-changejob", {})
    n = d.get("ctjs")
    peak = op.get("peak_per_second_without_leases", 0)
    t = d.get("time_to_observe_all_s") or 0
    print(f"## Burst: {n} CTJs (2 ConfigMaps each) created at once")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| client rate limit of the operator | `--api-qps {qps} --api-burst {burst}` |")
    print(f"| load generator: all {n} created in | {d.get('ctjs_create_s')} s |")
    print(f"| time until all observed (first create → last status) | {t} s — {check(ok, 'burst: load generator')} |")
    arrivals = op.get("arrivals_without_leases", [])
    # The smallest bucket that lets these arrivals through at `qps`: the most requests in any
    # interval beyond what `qps` refills during it.
    needed, best = 0.0, float("-inf")
    for j, at in enumerate(arrivals):
        best = max(best, qps * at - j)
        needed = max(needed, j + 1 - qps * at + best)
    # The fake timestamps requests when they arrive, not when the operator's limiter let them
    # go; delays that differ between requests (two loaded cores) look like extra tokens.
    # Allow up to half a second of such jitter; a missing or wrong limiter shows hundreds.
    allowance = qps * 0.5
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0
    sustained = (len(arrivals) - burst) / span if span > 0 and len(arrivals) > burst else 0
    print(f"| operator requests until all observed (reconcile client, without the Lease's) | {len(arrivals)} |")
    print(f"| peak requests in any 1 s window, as the fake timestamps them | {peak} |")
    print(f"| smallest token bucket at {qps}/s that the arrivals fit | {needed:.1f} (burst {burst}; the excess is {max(needed - burst, 0) / qps * 1000:.0f} ms of arrival jitter, at most 500 ms allowed: {check(needed <= burst + allowance, 'burst: the operator exceeded its client rate limit')}) |")
    print(f"| rate after the burst tokens are spent | {sustained:.1f}/s (qps {qps}) |")
    per = ", ".join(f"{q['verb']} {q['resource']} {q['count']}" for q in op.get("requests", []))
    print(f"| operator requests by verb/resource | {per} |")
    print(f"| operator CPU during the burst | {cpu_pct('burst.before', 'burst.after')} |")
    print(f"| operator RSS after (peak) | {mib(r['burst.after.rss'])} ({mib(r['burst.after.hwm'])}) |")
    print()

if "steady" in scenarios and "steady500.after.rss" in r:
    steady("steady500", load("burst").get("ctjs"))

if "scale" in scenarios and "scale.idle.rss" in r:
    d = load("scale")
    ok = load_ok("scale", d)
    s = stats("scale-idle")
    op = s.get("clients", {}).get("kube-changejob", {})
    secs = s.get("seconds", 1)
    print(f"## Scale: {d.get('ctjs')} CTJs x {d.get('objects_per_ctj')} of {d.get('configmaps')} ConfigMaps of {d.get('configmap_size', 0) // 1024} KiB")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| RSS before any CTJ | {mib(r['scale.empty.rss'])} |")
    print(f"| time until all observed | {d.get('time_to_observe_all_s')} s — {check(ok, 'scale: load generator')} |")
    print(f"| RSS after setup (peak so far) | {mib(r['scale.setup.rss'])} ({mib(r['scale.setup.hwm'])}) |")
    print(f"| RSS after {idle} s idle (peak) | {mib(r['scale.idle.rss'])} ({mib(r['scale.idle.hwm'])}) |")
    print(f"| reconciles while idle (safety resyncs) | {num('scale.idle.reconciles') - num('scale.setup.reconciles'):.0f} |")
    print(f"| operator CPU per reconcile (all CPU / reconciles) | {per_reconcile('scale.setup', 'scale.idle')} |")
    print(f"| operator CPU while idle | {cpu_pct('scale.setup', 'scale.idle')} |")
    per = ", ".join(f"{q['verb']} {q['resource']} {60 * q['count'] / secs:.1f}" for q in op.get("requests", [])) or "none"
    print(f"| operator requests per minute while idle | {per} |")
    print()

if "memory" in scenarios and "memory.after.rss" in r:
    d = load("memory-unrelated")
    ok = load_ok("memory", load("memory")) and load_ok("memory-unrelated", d)
    s = stats("memory")
    op = s.get("clients", {}).get("kube-changejob", {})
    delta = num("memory.after.rss") - num("memory.before.rss")
    volume = d.get("unrelated", 0) * d.get("unrelated_size", 0) / 1024
    gets = sum(q["count"] for q in op.get("requests", []) if q["verb"] == "get" and q["resource"] == "configmaps")
    print(f"## Memory: {d.get('unrelated')} unrelated {d.get('unrelated_size', 0) // 1024} KiB ConfigMaps in a watched namespace")
    print()
    print("100 CTJs watch 200 ConfigMaps of 10 KiB in the namespace; then the unrelated ConfigMaps "
          "(watched by nobody) are created in it.")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| RSS before (peak) | {mib(r['memory.before.rss'])} ({mib(r['memory.before.hwm'])}) |")
    print(f"| RSS after (peak) | {mib(r['memory.after.rss'])} ({mib(r['memory.after.hwm'])}) |")
    print(f"| RSS delta | {delta / 1024:+.1f} MiB for {volume / 1024:.0f} MiB of unrelated data — {check(delta < volume / 10, 'memory: RSS grows with unrelated objects')} |")
    print(f"| operator GETs of ConfigMaps meanwhile | {gets} — {check(gets == 0, 'memory: unrelated objects read')} |")
    print(f"| load generator: unrelated created in | {d.get('unrelated_create_s')} s |")
    print()

logs = sorted({k.split(".")[0] for k in r if k.endswith(".log.warn")})
if logs:
    print("## Operator logs")
    print()
    print("| run | WARN lines | ERROR lines | panics |")
    print("| --- | --- | --- | --- |")
    for name in logs:
        panics = int(r[f"{name}.log.panic"])
        print(f"| {name} | {r[f'{name}.log.warn']} | {r[f'{name}.log.error']} | {panics} {check(panics == 0, f'{name}: panic in the operator log') if panics else ''} |")
    print()

if failed:
    print("## Failed checks")
    print()
    for f in failed:
        print(f"- {f}")
    print()
with open(os.path.join(out, "failed"), "w") as f:
    f.write("\n".join(failed))
PY
if [[ -s "$TABLE" ]]; then
    {
        echo "## Table: N CTJs x M ConfigMaps, default settings"
        echo
        if [[ $REAL == 1 ]]; then
            echo "Against the cluster of \`$REAL_KUBECONFIG\`; requests from its \`apiserver_request_total\`."
        else
            echo "Against the fake API server (its \`apiserver_request_total\` counts every client's requests since the last reset)."
        fi
        echo
        cat "$TABLE"
        echo
    } >>"$REPORT"
fi
cat "$REPORT"
log "report: $REPORT (logs and raw figures in $OUT/)"
if [[ -s "$OUT/failed" ]]; then
    exit 1
fi
