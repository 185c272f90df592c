//! The measurement side channel of `serve_http_with_stats` (used by hack/measure-operator.sh
//! through examples/fake_apiserver.rs): request counts by client, the write log with arrival
//! times and bodies, and the reset.

use http::HeaderValue;
use http::header::USER_AGENT;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::helpers::config_map;
use crate::support::fake_api::FakeApi;
use crate::support::fake_api::http::serve_http_with_stats;

async fn side(client: &kube::Client, path: &str, method: http::Method) -> Value {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .expect("request");
    client.request(request).await.expect(path)
}

#[tokio::test]
async fn stats_count_by_client_writes_list_bodies_and_reset_clears() {
    let fake = FakeApi::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve_http_with_stats(fake.clone(), listener));
    let mut config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static("measure-test/1.0")));
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    api.create(&PostParams::default(), &config_map("a", &[], &[("v", "1")]))
        .await
        .expect("create");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .expect("patch");
    api.get("a").await.expect("get");

    let stats = side(&client, "/__fake/stats?arrivals=true", http::Method::GET).await;
    let mine = &stats["clients"]["measure-test"];
    assert_eq!(mine["total"], 3, "{stats:#}");
    let requests = mine["requests"].as_array().expect("requests");
    for verb in ["create", "patch", "get"] {
        assert!(
            requests.contains(&json!({"verb": verb, "resource": "configmaps", "count": 1})),
            "{verb}: {requests:?}"
        );
    }
    let arrivals = mine["arrivals_without_leases"]
        .as_array()
        .expect("arrivals");
    assert_eq!(arrivals.len(), 3);
    let at: Vec<f64> = arrivals.iter().filter_map(Value::as_f64).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");

    // The write log: the create (named in its body) and the patch (named in its path), in
    // order, with their bodies; the GET and the side-channel requests are not in it.
    let log = side(
        &client,
        "/__fake/writes?resource=configmaps",
        http::Method::GET,
    )
    .await;
    let writes = log["writes"].as_array().expect("writes");
    assert_eq!(writes.len(), 2, "{log:#}");
    assert_eq!(writes[0]["verb"], "create");
    assert_eq!(writes[0]["body"]["metadata"]["name"], "a");
    assert_eq!(writes[1]["verb"], "patch");
    assert_eq!(writes[1]["name"], "a");
    assert_eq!(writes[1]["namespace"], "default");
    assert_eq!(writes[1]["body"]["data"]["v"], "2");
    assert_eq!(writes[1]["user_agent"], "measure-test/1.0");
    let first = writes[0]["at"].as_f64().expect("at");
    let second = writes[1]["at"].as_f64().expect("at");
    assert!(first <= second, "{first} > {second}");
    let jobs = side(&client, "/__fake/writes?resource=jobs", http::Method::GET).await;
    assert_eq!(jobs["writes"], json!([]));

    assert_eq!(
        side(&client, "/__fake/reset", http::Method::POST).await,
        json!({"reset": true})
    );
    let stats = side(&client, "/__fake/stats", http::Method::GET).await;
    assert_eq!(stats["total"], 0, "{stats:#}");
    let log = side(
        &client,
        "/__fake/writes?resource=configmaps",
        http::Method::GET,
    )
    .await;
    assert_eq!(log["writes"], json!([]));
    // The store itself is untouched by the reset.
    assert_eq!(
        api.get("a").await.expect("get").data.unwrap_or_default()["v"],
        "2"
    );
}
