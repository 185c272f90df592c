//! GET and LIST: NotFound Status, namespaces, label and field selectors, metadata-only.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::core::PartialObjectMeta;
use serde_json::Value;

use crate::helpers::{config_map, status_of};
use crate::support::fake_api::FakeApi;

#[tokio::test]
async fn missing_objects_are_not_found_with_the_api_server_status() {
    let fake = FakeApi::new();
    let client = fake.client();
    let request = http::Request::get("/api/v1/namespaces/default/configmaps/x")
        .body(vec![])
        .expect("request");
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("response");
    assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let status: Value = serde_json::from_slice(&body).expect("JSON Status");
    assert_eq!(
        status,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "configmaps \"x\" not found",
            "reason": "NotFound",
            "details": {"name": "x", "kind": "configmaps"},
            "code": 404,
        })
    );
    let jobs: Api<Job> = Api::default_namespaced(client);
    let status = status_of(jobs.get("j").await.expect_err("missing job"));
    assert_eq!(status.message, "jobs.batch \"j\" not found");
    assert_eq!(status.details.expect("details").group, "batch");
    assert!(jobs.get_opt("j").await.expect("get_opt").is_none());
}

#[tokio::test]
async fn list_spans_all_namespaces_or_one() {
    let fake = FakeApi::new();
    let client = fake.client();
    for ns in ["default", "kube-system"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &config_map("x", &[], &[]))
            .await
            .expect("create");
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let everything = all.list(&ListParams::default()).await.expect("list all");
    assert_eq!(everything.items.len(), 2);
    assert_eq!(
        everything.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    assert_eq!(everything.types.kind, "ConfigMapList");
    let one: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let listed = one
        .list(&ListParams::default().limit(1))
        .await
        .expect("list one");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].metadata.namespace.as_deref(),
        Some("kube-system")
    );
}

#[tokio::test]
async fn label_selectors_support_every_operator() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    for (name, labels) in [
        ("web", vec![("app", "web"), ("tier", "front")]),
        ("db", vec![("app", "db"), ("tier", "back")]),
        ("cache", vec![("app", "cache")]),
        ("plain", vec![]),
    ] {
        api.create(&PostParams::default(), &config_map(name, &labels, &[]))
            .await
            .expect("create");
    }
    let names = |selector: &'static str| {
        let api = api.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .expect("list");
            let mut names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(names("app=web").await, ["web"]);
    assert_eq!(names("app==db").await, ["db"]);
    assert_eq!(names("app!=web").await, ["cache", "db", "plain"]);
    assert_eq!(names("app in (web, db)").await, ["db", "web"]);
    assert_eq!(names("app notin (web,db)").await, ["cache", "plain"]);
    assert_eq!(names("tier").await, ["db", "web"]);
    assert_eq!(names("!tier").await, ["cache", "plain"]);
    assert_eq!(names("app,tier=back").await, ["db"]);
    let status = status_of(
        api.list(&ListParams::default().labels("app=("))
            .await
            .expect_err("bad selector"),
    );
    assert_eq!(status.code, 400);
}

#[tokio::test]
async fn field_selectors_match_name_and_namespace() {
    let fake = FakeApi::new();
    let client = fake.client();
    for ns in ["default", "kube-system"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in ["a", "b"] {
            api.create(&PostParams::default(), &config_map(name, &[], &[]))
                .await
                .expect("create");
        }
    }
    let all: Api<ConfigMap> = Api::all(client);
    let count = |fields: &'static str| {
        let all = all.clone();
        async move {
            all.list(&ListParams::default().fields(fields))
                .await
                .expect("list")
                .items
                .len()
        }
    };
    assert_eq!(count("metadata.name=a").await, 2);
    assert_eq!(count("metadata.name=a,metadata.namespace=default").await, 1);
    assert_eq!(count("metadata.namespace!=default").await, 2);
    assert_eq!(count("metadata.name==b").await, 2);
    let status = status_of(
        all.list(&ListParams::default().fields("spec.foo=x"))
            .await
            .expect_err("unsupported"),
    );
    assert_eq!(
        (status.code, status.message.as_str()),
        (400, "field label not supported: spec.foo")
    );
}

#[tokio::test]
async fn metadata_only_requests_get_partial_object_metadata() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(
        &PostParams::default(),
        &config_map("x", &[("a", "b")], &[("secret", "value")]),
    )
    .await
    .expect("create");

    let meta = api.get_metadata("x").await.expect("get_metadata");
    let types = meta.types.expect("types");
    assert_eq!(
        (types.api_version.as_str(), types.kind.as_str()),
        ("meta.k8s.io/v1", "PartialObjectMetadata")
    );
    assert_eq!(meta.metadata.labels.expect("labels")["a"], "b");
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.items.len(), 1);

    let partial: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    assert_eq!(
        partial
            .get("x")
            .await
            .expect("typed partial")
            .metadata
            .name
            .as_deref(),
        Some("x")
    );
    let accepts: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.accept.clone())
        .collect();
    assert!(
        accepts
            .contains(&"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1".to_string())
    );
    assert!(
        accepts.contains(
            &"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1".to_string()
        )
    );

    let raw = http::Request::get("/api/v1/namespaces/default/configmaps/x")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(vec![])
        .expect("request");
    let body: Value = client.request(raw).await.expect("raw metadata get");
    assert!(body.get("data").is_none(), "only metadata: {body}");
}

#[tokio::test]
async fn list_items_of_built_in_kinds_carry_no_type_meta() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &config_map("x", &[], &[]))
        .await
        .expect("create");
    let raw = http::Request::get("/api/v1/namespaces/default/configmaps")
        .body(vec![])
        .expect("request");
    let list: Value = client.request(raw).await.expect("raw list");
    assert_eq!(list["kind"], "ConfigMapList");
    assert!(
        list["items"][0].get("kind").is_none(),
        "as the API server serves built-in lists"
    );
}

/// `limit` pages a LIST as the API server does: a `continue` token on every page but the last,
/// `remainingItemCount` without selectors, the first page's resourceVersion throughout; a bad
/// token is a 400 and a token from before a compaction a 410.
#[tokio::test]
async fn limit_pages_a_list_with_continue_tokens() {
    let fake = FakeApi::new();
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b", "c", "d", "e"] {
        api.create(&PostParams::default(), &config_map(name, &[], &[]))
            .await
            .expect("create");
    }
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    let names = |l: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect()
    };
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let listed_at = first.metadata.resource_version.clone();
    let token = first.metadata.continue_.clone().expect("a continue token");
    // A write between pages does not move the list's resourceVersion.
    api.create(&PostParams::default(), &config_map("f", &[], &[]))
        .await
        .expect("create f");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(names(&second), ["c", "d"]);
    assert_eq!(second.metadata.resource_version, listed_at);
    let last_token = second.metadata.continue_.clone().expect("a continue token");
    let last = api
        .list(&ListParams::default().limit(2).continue_token(&last_token))
        .await
        .expect("page 3");
    assert_eq!(names(&last), ["e", "f"]);
    assert!(last.metadata.continue_.as_deref().unwrap_or("").is_empty());
    assert_eq!(last.metadata.remaining_item_count, None);

    let selected = api
        .list(&ListParams::default().limit(2).labels("absent!=x"))
        .await
        .expect("selected page");
    assert_eq!(names(&selected), ["a", "b"]);
    assert_eq!(selected.metadata.remaining_item_count, None);
    assert!(selected.metadata.continue_.is_some());

    let metadata: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
    let meta_page = metadata
        .list_metadata(&ListParams::default().limit(4))
        .await
        .expect("metadata page");
    assert_eq!(meta_page.items.len(), 4);
    assert_eq!(meta_page.metadata.remaining_item_count, Some(2));

    let bad = api
        .list(&ListParams::default().limit(2).continue_token("not-a-token"))
        .await
        .expect_err("bad token");
    assert_eq!(status_of(bad).code, 400);
    fake.compact();
    let expired = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect_err("token from before the compaction");
    let status = status_of(expired);
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
}
