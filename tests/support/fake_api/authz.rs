//! SubjectAccessReview and TokenReview: answered by test-set policies, every review recorded.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
use serde_json::{Value, json};

use super::FakeApi;
use super::resources::ResourceType;
use super::status::{ApiError, Cause};
use super::store::State;

type SarPolicy = Arc<dyn Fn(&SubjectAccessReviewSpec) -> (bool, String) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Authz {
    policy: Option<SarPolicy>,
    reviews: Vec<SubjectAccessReviewSpec>,
    tokens: HashMap<String, UserInfo>,
    token_reviews: Vec<TokenReviewSpec>,
}

/// Is `rt` one of the review kinds this module answers?
pub(crate) fn answers(rt: &ResourceType) -> bool {
    rt.is("authorization.k8s.io", "subjectaccessreviews")
        || rt.is("authentication.k8s.io", "tokenreviews")
}

/// POST of a review: evaluated, recorded, never stored.
pub(crate) fn review(state: &mut State, rt: &ResourceType, body: Value) -> Result<Value, ApiError> {
    super::commit::check_type_meta(rt, &body)?;
    if rt.plural == "subjectaccessreviews" {
        subject_access_review(state, body)
    } else {
        token_review(state, body)
    }
}

fn subject_access_review(state: &mut State, body: Value) -> Result<Value, ApiError> {
    let review: SubjectAccessReview = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid SubjectAccessReview: {e}")))?;
    let spec = review.spec;
    let mut causes = Vec::new();
    if spec.resource_attributes.is_some() == spec.non_resource_attributes.is_some() {
        causes.push(Cause::new(
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if spec.user.as_deref().unwrap_or("").is_empty()
        && spec.groups.as_ref().is_none_or(Vec::is_empty)
    {
        causes.push(Cause::new(
            "spec.user",
            "Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind(
            "SubjectAccessReview.authorization.k8s.io",
            "authorization.k8s.io",
            "SubjectAccessReview",
            "",
            causes,
        ));
    }
    let (allowed, reason) = match &state.authz.policy {
        Some(policy) => policy(&spec),
        None => (true, String::new()),
    };
    state.authz.reviews.push(spec.clone());
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    Ok(json!({
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

fn token_review(state: &mut State, body: Value) -> Result<Value, ApiError> {
    let review: TokenReview = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid TokenReview: {e}")))?;
    let spec = review.spec;
    state.authz.token_reviews.push(spec.clone());
    let status = match spec
        .token
        .as_deref()
        .and_then(|t| state.authz.tokens.get(t))
    {
        Some(user) => {
            let mut status = json!({"authenticated": true, "user": user});
            if let Some(audiences) = &spec.audiences {
                status["audiences"] = json!(audiences);
            }
            status
        }
        None => json!({"user": {}, "error": "invalid bearer token"}),
    };
    Ok(json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

/// Authentication and authorization reviews, for tests.
impl FakeApi {
    /// Decides SubjectAccessReviews: `(allowed, reason)`. Default: everything allowed. The
    /// closure must not call back into the `FakeApi`.
    pub fn set_sar_policy(
        &self,
        policy: impl Fn(&SubjectAccessReviewSpec) -> (bool, String) + Send + Sync + 'static,
    ) {
        self.lock().authz.policy = Some(Arc::new(policy));
    }

    /// Every SubjectAccessReview received, in order.
    pub fn subject_access_reviews(&self) -> Vec<SubjectAccessReviewSpec> {
        self.lock().authz.reviews.clone()
    }

    /// TokenReviews of `token` authenticate as `user`; unknown tokens do not authenticate.
    pub fn set_token(&self, token: &str, user: UserInfo) {
        self.lock().authz.tokens.insert(token.to_string(), user);
    }

    /// Every TokenReview received, in order.
    pub fn token_reviews(&self) -> Vec<TokenReviewSpec> {
        self.lock().authz.token_reviews.clone()
    }
}
