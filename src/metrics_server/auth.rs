//! Who may scrape `/metrics`: the same check as kube-rbac-proxy and controller-runtime's
//! `WithAuthenticationAndAuthorization` filter. The bearer token is authenticated with a
//! TokenReview, then its user is authorized with a SubjectAccessReview for the non-resource URL
//! `/metrics`, verb `get` — so a ClusterRole with `nonResourceURLs: ["/metrics"]` grants access.
//!
//! Decisions are cached by the token's SHA-256 (never the token itself), so a scrape every 15 s
//! costs no API calls in steady state; reviews of unknown tokens have their own small budget so
//! a flood of bad tokens cannot use up the client's API rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{error, warn};

use crate::client::TokenBucket;

/// The path and verb authorized, as in a ClusterRole's `nonResourceURLs` rule.
const METRICS_PATH: &str = "/metrics";
const METRICS_VERB: &str = "get";

/// How long decisions are remembered.
const ALLOWED_TTL: Duration = Duration::from_secs(60);
const DENIED_TTL: Duration = Duration::from_secs(10);
/// Most tokens remembered at once.
const CACHE_CAPACITY: usize = 1024;
/// Reviews of tokens not in the cache: sustained per second, and burst.
const REVIEW_QPS: u32 = 5;
const REVIEW_BURST: u32 = 20;

/// Outcome of checking a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The token's user may `get /metrics`.
    Allowed,
    /// The token is valid but its user may not `get /metrics`.
    Denied,
    /// The API server does not accept the token.
    Unauthenticated,
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A review call failed.
    #[error("review failed: {0}")]
    Api(#[from] kube::Error),
    /// Too many uncached tokens reviewed recently.
    #[error("too many token reviews")]
    Throttled,
}

/// Decisions by token digest, each with its expiry.
#[derive(Debug, Default)]
pub struct DecisionCache {
    entries: HashMap<[u8; 32], (Decision, Instant)>,
}

impl DecisionCache {
    /// The decision for `key` if still fresh at `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Decision> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(decision, _)| *decision)
    }

    /// Remembers `decision` for its TTL; when full, drops expired entries, then the entry that
    /// expires soonest.
    pub fn insert(&mut self, key: [u8; 32], decision: Decision, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= CACHE_CAPACITY {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        let ttl = match decision {
            Decision::Allowed => ALLOWED_TTL,
            Decision::Denied | Decision::Unauthenticated => DENIED_TTL,
        };
        self.entries.insert(key, (decision, now + ttl));
    }

    /// Entries held, fresh or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reviews tokens against the API server, with a cache in front.
pub struct Authorizer {
    client: Client,
    cache: Mutex<DecisionCache>,
    review_budget: Mutex<TokenBucket>,
}

impl Authorizer {
    /// An authorizer asking the API server behind `client`.
    pub fn new(client: Client) -> Self {
        Authorizer {
            client,
            cache: Mutex::new(DecisionCache::default()),
            review_budget: Mutex::new(TokenBucket::new(REVIEW_QPS, REVIEW_BURST)),
        }
    }

    /// Whether `token` may scrape metrics.
    pub async fn decide(&self, token: &str) -> Result<Decision, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key, Instant::now());
        if let Some(decision) = cached {
            return Ok(decision);
        }
        let within_budget = self
            .review_budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(Instant::now());
        if !within_budget {
            return Err(AuthError::Throttled);
        }
        let decision = self.review(token).await?;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, decision, Instant::now());
        Ok(decision)
    }

    async fn review(&self, token: &str) -> Result<Decision, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                // Empty: the API server's own audiences, as for service account tokens.
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Decision::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(METRICS_PATH.to_string()),
                    verb: Some(METRICS_VERB.to_string()),
                }),
                resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        let allowed = reviewed.status.is_some_and(|s| s.allowed);
        Ok(if allowed {
            Decision::Allowed
        } else {
            Decision::Denied
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "Unauthorized\n",
    )
        .into_response()
}

/// Middleware: lets the request through only for an authorized bearer token.
pub async fn require_authorization(
    State(authorizer): State<Arc<Authorizer>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return unauthorized();
    };
    match authorizer.decide(&token).await {
        Ok(Decision::Allowed) => next.run(request).await,
        Ok(Decision::Denied) => (StatusCode::FORBIDDEN, "Forbidden\n").into_response(),
        Ok(Decision::Unauthenticated) => unauthorized(),
        Err(AuthError::Throttled) => {
            warn!("metrics request refused: too many unknown tokens reviewed recently");
            (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
        }
        Err(AuthError::Api(e)) => {
            // The details stay in our log; the caller learns nothing about the cluster.
            error!(error = %e, "could not review a metrics request's token");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> [u8; 32] {
        Sha256::digest(n.to_be_bytes()).into()
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            "Bearer abc".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            "bearer  abc ".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            "Basic abc".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            "Bearer ".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(bearer_token(&h), None);
    }

    #[tokio::test(start_paused = true)]
    async fn allowed_is_remembered_longer_than_denied() {
        let mut cache = DecisionCache::default();
        let now = Instant::now();
        cache.insert(key(1), Decision::Allowed, now);
        cache.insert(key(2), Decision::Denied, now);
        cache.insert(key(3), Decision::Unauthenticated, now);
        let at = |s| now + Duration::from_secs(s);
        assert_eq!(cache.get(&key(1), at(59)), Some(Decision::Allowed));
        assert_eq!(cache.get(&key(1), at(60)), None);
        assert_eq!(cache.get(&key(2), at(9)), Some(Decision::Denied));
        assert_eq!(cache.get(&key(2), at(10)), None);
        assert_eq!(cache.get(&key(3), at(10)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_never_grows_past_its_capacity() {
        let mut cache = DecisionCache::default();
        let now = Instant::now();
        for n in 0..(CACHE_CAPACITY as u32 * 3) {
            cache.insert(
                key(n),
                Decision::Denied,
                now + Duration::from_millis(u64::from(n)),
            );
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        // The newest entries survive; the soonest-expiring went first.
        let newest = CACHE_CAPACITY as u32 * 3 - 1;
        assert_eq!(cache.get(&key(newest), now), Some(Decision::Denied));
        assert_eq!(cache.get(&key(0), now), None);
    }
}
