//! The whole operator process (`run_with_clients`) against the fake API: start-up wiring, a
//! Job end to end, and the shutdown order — stop reconciling, release the Lease, finish
//! in-flight admission requests, return cleanly.

mod support;
mod support_webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use kube_changejob::api::{ChangeTriggeredJob, OWNER_LABEL};
use kube_changejob::client::install_crypto_provider;
use kube_changejob::config::Settings;
use kube_changejob::run::run_with_clients;
use support::fake_api::FakeApi;
use support_webhook::https::tls_connect;
use support_webhook::reviews::{User, base_ctj, review};

const OPERATOR_NS: &str = "kube-changejob-system";
const SERVICE_HOST: &str = "kube-changejob-webhook.kube-changejob-system.svc";

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs `body` over HTTPS, trusting `ca`; returns status and body.
async fn post(
    addr: SocketAddr,
    ca: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, Value), String> {
    let tls = tls_connect(
        addr,
        ca,
        SERVICE_HOST,
        &[b"http/1.1"],
        rustls::DEFAULT_VERSIONS,
    )
    .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header(http::header::HOST, SERVICE_HOST)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).map_err(|e| e.to_string())?,
        )))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn lease_holder(fake: &FakeApi) -> Option<String> {
    fake.get_object::<Lease>(Some(OPERATOR_NS), "kube-changejob")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_serves_reconciles_and_shuts_down_in_order() {
    install_crypto_provider();
    let fake = FakeApi::new();
    fake.create_namespace(OPERATOR_NS);
    fake.install_crd(&ChangeTriggeredJob::crd());
    let webhook_addr = free_port();
    let settings = Arc::new(Settings {
        operator_namespace: OPERATOR_NS.into(),
        pod_name: "replica-a".into(),
        webhook_bind_address: webhook_addr,
        metrics_bind_address: free_port(),
        ..Settings::default()
    });
    let shutdown = CancellationToken::new();
    let process = tokio::spawn(run_with_clients(
        settings,
        fake.client(),
        fake.client(),
        shutdown.clone(),
    ));

    eventually("the Lease to be held", Duration::from_secs(10), || {
        lease_holder(&fake).as_deref() == Some("replica-a")
    })
    .await;
    eventually(
        "the webhook certificate Secret",
        Duration::from_secs(10),
        || {
            fake.get_object::<Secret>(Some(OPERATOR_NS), "kube-changejob-webhook-tls")
                .is_some()
        },
    )
    .await;
    let ca = fake
        .get_object::<Secret>(Some(OPERATOR_NS), "kube-changejob-webhook-tls")
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get("ca.crt")
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .expect("ca.crt in the Secret");

    // The reconcile loop works through the wiring.
    fake.put(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "default"}, "data": {"k": "1"}}));
    let ctj = base_ctj("wired");
    fake.insert(&ctj);
    eventually("first observation", Duration::from_secs(10), || {
        fake.get_json(
            "triggers.changejob.dev/v1alpha",
            "changetriggeredjobs",
            Some("default"),
            "wired",
        )
        .is_some_and(|c| {
            c["status"]["resourceHashes"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        })
    })
    .await;
    fake.put(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "default"}, "data": {"k": "2"}}));
    let jobs = |fake: &FakeApi| {
        fake.list_json("batch/v1", "jobs", Some("default"))
            .into_iter()
            .filter(|j| j["metadata"]["labels"][OWNER_LABEL] == "wired")
            .count()
    };
    eventually("a Job", Duration::from_secs(10), || jobs(&fake) == 1).await;

    // An admission request that is still running when SIGTERM arrives is answered.
    let (status, answer) = post(
        webhook_addr,
        &ca,
        "/mutate",
        &review(
            "CREATE",
            Some(&base_ctj("fresh")),
            None,
            &User::named("alice"),
        ),
    )
    .await
    .expect("admission request");
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
    fake.set_latency(Some(Duration::from_millis(800)));
    let in_flight = tokio::spawn({
        let ca = ca.clone();
        async move {
            post(
                webhook_addr,
                &ca,
                "/validate",
                &review(
                    "CREATE",
                    Some(&base_ctj("slow")),
                    None,
                    &User::named("alice"),
                ),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::time::Instant::now();
    shutdown.cancel();

    let (status, answer) = in_flight
        .await
        .expect("join")
        .expect("the in-flight request completes");
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let result = tokio::time::timeout(Duration::from_secs(20), process)
        .await
        .expect("the process stops")
        .expect("join");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        stopping.elapsed()
    );
    fake.set_latency(None);
    assert_eq!(
        lease_holder(&fake),
        None,
        "the Lease is released so a standby takes over at once"
    );

    // Reconciling stopped: a change after shutdown creates nothing.
    fake.put(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "default"}, "data": {"k": "3"}}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(jobs(&fake), 1);
    // The servers are closed.
    assert!(
        tokio::net::TcpStream::connect(webhook_addr).await.is_err(),
        "the admission port is closed"
    );
}
