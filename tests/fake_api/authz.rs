//! SubjectAccessReview and TokenReview answers.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::helpers::status_of;
use crate::support::fake_api::FakeApi;

fn review(user: &str, verb: &str, resource: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn subject_access_reviews_follow_the_policy_and_are_recorded() {
    let fake = FakeApi::new();
    let reviews: Api<SubjectAccessReview> = Api::all(fake.client());
    let answer = reviews
        .create(&PostParams::default(), &review("alice", "get", "secrets"))
        .await
        .expect("review");
    assert!(answer.status.expect("status").allowed, "allowed by default");

    fake.set_sar_policy(|spec| {
        let verb = spec
            .resource_attributes
            .as_ref()
            .and_then(|r| r.verb.as_deref());
        match (spec.user.as_deref(), verb) {
            (Some("alice"), Some("get")) => (true, "alice may read".into()),
            _ => (false, "not allowed by the test policy".into()),
        }
    });
    let allowed = reviews
        .create(&PostParams::default(), &review("alice", "get", "secrets"))
        .await
        .expect("review");
    let status = allowed.status.expect("status");
    assert!(status.allowed);
    assert_eq!(status.reason.as_deref(), Some("alice may read"));
    let denied = reviews
        .create(&PostParams::default(), &review("bob", "create", "jobs"))
        .await
        .expect("review");
    assert!(!denied.status.expect("status").allowed);

    let recorded = fake.subject_access_reviews();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[2].user.as_deref(), Some("bob"));
    assert_eq!(
        recorded[2]
            .resource_attributes
            .as_ref()
            .and_then(|r| r.resource.as_deref()),
        Some("jobs")
    );
    assert!(
        fake.list_json("authorization.k8s.io/v1", "subjectaccessreviews", None)
            .is_empty(),
        "never stored"
    );
}

#[tokio::test]
async fn subject_access_reviews_without_subject_or_attributes_are_invalid() {
    let fake = FakeApi::new();
    let reviews: Api<SubjectAccessReview> = Api::all(fake.client());
    let status = status_of(
        reviews
            .create(&PostParams::default(), &SubjectAccessReview::default())
            .await
            .expect_err("invalid"),
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status_of(reviews.get("x").await.expect_err("create only")).code,
        405
    );
}

#[tokio::test]
async fn token_reviews_authenticate_known_tokens_only() {
    let fake = FakeApi::new();
    fake.set_token(
        "good-token",
        UserInfo {
            username: Some("system:serviceaccount:monitoring:prometheus".into()),
            ..Default::default()
        },
    );
    let api: Api<TokenReview> = Api::all(fake.client());
    let ask = |token: &str| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let good = api
        .create(&PostParams::default(), &ask("good-token"))
        .await
        .expect("review")
        .status
        .expect("status");
    assert_eq!(good.authenticated, Some(true));
    assert_eq!(
        good.user.and_then(|u| u.username).as_deref(),
        Some("system:serviceaccount:monitoring:prometheus")
    );
    let bad = api
        .create(&PostParams::default(), &ask("nope"))
        .await
        .expect("review")
        .status
        .expect("status");
    assert_ne!(bad.authenticated, Some(true));
    assert_eq!(fake.token_reviews().len(), 2);
}
