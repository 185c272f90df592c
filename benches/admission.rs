//! Admission latency and throughput on loopback: the real TLS server, HTTP/1.1 keep-alive
//! connections, the in-process fake API server answering discovery, SubjectAccessReviews and
//! dry-run Job creates without delay.
//!
//! `cargo bench --bench admission` (or `hack/bench-admission.sh`). Knobs (environment):
//! `BENCH_REQUESTS` sequential requests per endpoint for latency (default 2000),
//! `BENCH_CONCURRENCY` connections for throughput (default 16), `BENCH_SECONDS` per
//! throughput run (default 5).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support_webhook/mod.rs"]
mod support_webhook;

use std::time::{Duration, Instant};

use serde_json::Value;
use support_webhook::harness::{self, Harness, Options};
use support_webhook::reviews::{User, base_ctj, review};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The body of one request: a fresh uid each time, like the API server sends.
fn body(path: &str, object: &Value) -> Vec<u8> {
    let _ = path;
    serde_json::to_vec(&review("CREATE", Some(object), None, &User::named("bench")))
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn latency(
    h: &Harness,
    path: &str,
    object: &Value,
    requests: u64,
) -> (Duration, Duration, Duration) {
    let mut conn = h.connect().await;
    for _ in 0..200 {
        let _ = conn.send("POST", path, body(path, object)).await;
    }
    let mut samples = Vec::with_capacity(requests as usize);
    for _ in 0..requests {
        let b = body(path, object);
        let started = Instant::now();
        let reply = conn
            .send("POST", path, b)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        samples.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    samples.sort();
    (
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        percentile(&samples, 100.0),
    )
}

async fn throughput(
    h: &Harness,
    path: &'static str,
    object: &Value,
    connections: u64,
    seconds: u64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let mut conn = h.connect().await;
        let object = object.clone();
        workers.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let reply = conn
                    .send("POST", path, body(path, &object))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(reply.status, 200);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap_or(0);
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let requests = env("BENCH_REQUESTS", 2000);
    let connections = env("BENCH_CONCURRENCY", 16);
    let seconds = env("BENCH_SECONDS", 5);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let full = harness::start().await;
        let pure = harness::start_with(Options {
            authorize_users: false,
            dry_run: false,
            ..Options::default()
        })
        .await;
        let object = base_ctj("bench");
        println!(
            "admission benchmark: {} CPUs, {requests} sequential requests per row (keep-alive), {connections} connections x {seconds}s for throughput",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );
        println!("{:<44} {:>10} {:>10} {:>10} {:>12}", "endpoint", "p50", "p99", "max", "requests/s");
        let rows: [(&str, &Harness, &'static str); 3] = [
            ("/mutate", &full, "/mutate"),
            ("/validate (discovery, 2 SARs, dry run)", &full, "/validate"),
            ("/validate (discovery only)", &pure, "/validate"),
        ];
        for (label, h, path) in rows {
            let (p50, p99, max) = latency(h, path, &object, requests).await;
            let rps = throughput(h, path, &object, connections, seconds).await;
            println!("{label:<44} {:>10} {:>10} {:>10} {:>12.0}", ms(p50), ms(p99), ms(max), rps);
        }
        full.shutdown.cancel();
        pure.shutdown.cancel();
    });
}
