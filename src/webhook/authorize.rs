//! Checks that the author of a ChangeTriggeredJob may read every object it watches and create
//! Jobs in its namespace, with SubjectAccessReviews for the requesting user. Without this, the
//! operator's broad read access would let anyone who can create a ChangeTriggeredJob learn
//! when (and, through Job annotations, which) objects they cannot read change.

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::api::ChangeTriggeredJob;
use crate::discovery::KindInfo;
use crate::webhook::validate::resource_field;
use crate::webhook::violation::{Reason, Violation};

/// One permission to check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// `get`, `create`, ...
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name, `None` for "any object" (as for `create`).
    pub name: Option<String>,
}

impl Access {
    /// `secrets "db" in namespace "prod"`, `jobs.batch in namespace "prod"`, `nodes "w1"`.
    pub fn describe(&self) -> String {
        let mut text = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if let Some(name) = &self.name {
            text.push_str(&format!(" {name:?}"));
        }
        if let Some(ns) = &self.namespace {
            text.push_str(&format!(" in namespace {ns:?}"));
        }
        text
    }
}

/// The permissions `ctj` needs from its author, each with the field it comes from: `get` on
/// every watched object whose kind resolved; `get`, `list` and `watch` on the kind (in the
/// entry's namespace) for a selector entry, since it reads whichever objects match, now and
/// later; and `create` on Jobs in `namespace`. Duplicates are dropped (the first field wins).
pub fn required_access(
    ctj: &ChangeTriggeredJob,
    namespace: &str,
    kinds: &[Option<KindInfo>],
) -> Vec<(String, Access)> {
    let mut out: Vec<(String, Access)> = Vec::new();
    for (index, (resource, kind)) in ctj.spec.resources.iter().zip(kinds).enumerate() {
        let Some(kind) = kind else { continue };
        let access = |verb: &str, name: Option<String>| Access {
            verb: verb.into(),
            group: kind.resource.group.clone(),
            resource: kind.resource.plural.clone(),
            namespace: if kind.namespaced {
                resource.namespace.clone().filter(|ns| !ns.is_empty())
            } else {
                None
            },
            name,
        };
        let needed: Vec<Access> = if resource.selector.is_some() && resource.name.is_empty() {
            ["get", "list", "watch"]
                .into_iter()
                .map(|verb| access(verb, None))
                .collect()
        } else {
            vec![access("get", Some(resource.name.clone()))]
        };
        for access in needed {
            if !out.iter().any(|(_, a)| *a == access) {
                out.push((resource_field(index), access));
            }
        }
    }
    out.push((
        "spec.jobTemplate".into(),
        Access {
            verb: "create".into(),
            group: "batch".into(),
            resource: "jobs".into(),
            namespace: Some(namespace.to_string()),
            name: None,
        },
    ));
    out
}

/// The SubjectAccessReview asking whether `user` has `access`.
pub fn review_for(user: &UserInfo, access: &Access) -> SubjectAccessReview {
    SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(access.verb.clone()),
                group: Some(access.group.clone()),
                resource: Some(access.resource.clone()),
                namespace: access.namespace.clone(),
                name: access.name.clone(),
                ..ResourceAttributes::default()
            }),
            non_resource_attributes: None,
        },
        status: None,
    }
}

/// Runs the reviews, at most `concurrency` at a time, and reports each missing permission.
pub async fn check(
    client: &Client,
    user: &UserInfo,
    ctj: &ChangeTriggeredJob,
    namespace: &str,
    kinds: &[Option<KindInfo>],
    concurrency: usize,
) -> Vec<Violation> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let username = user.username.clone().unwrap_or_default();
    let required = required_access(ctj, namespace, kinds);
    let mut answers: Vec<(usize, Option<Violation>)> =
        futures::stream::iter(required.into_iter().enumerate())
            .map(|(order, (field, access))| {
                let api = api.clone();
                let username = username.clone();
                async move {
                    let answer = api
                        .create(&PostParams::default(), &review_for(user, &access))
                        .await;
                    (order, judge(&field, &username, &access, answer))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    answers.sort_by_key(|(order, _)| *order);
    answers.into_iter().filter_map(|(_, v)| v).collect()
}

fn judge(
    field: &str,
    username: &str,
    access: &Access,
    answer: Result<SubjectAccessReview, kube::Error>,
) -> Option<Violation> {
    match answer {
        Ok(review) if review.status.as_ref().is_some_and(|s| s.allowed) => None,
        Ok(_) => Some(Violation::new(
            field,
            Reason::Unauthorized,
            denial_message(username, access),
        )),
        Err(error) => Some(Violation::new(
            field,
            Reason::Unverified,
            format!(
                "could not check whether user {username:?} may {} {} ({error}); retry in a few \
                 seconds",
                access.verb,
                access.describe()
            ),
        )),
    }
}

/// Why a missing permission matters, in the author's terms.
pub fn denial_message(username: &str, access: &Access) -> String {
    let why = if access.verb == "create" {
        "a ChangeTriggeredJob may only create Jobs where its author could create them"
    } else if access.name.is_none() {
        "a selector entry reads every object that matches, now and later, so its author must be \
         allowed to get, list and watch that kind there"
    } else {
        "a ChangeTriggeredJob may only watch objects its author can read"
    };
    format!(
        "user {username:?} may not {} {}; {why}",
        access.verb,
        access.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{ApiResource, GroupVersionKind};
    use serde_json::json;

    fn ctj() -> ChangeTriggeredJob {
        crate::webhook::fixtures::ctj(
            "prod",
            json!([
                { "apiVersion": "v1", "kind": "Secret", "name": "db", "namespace": "prod" },
                { "apiVersion": "v1", "kind": "Node", "name": "w1" },
                { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "prod" },
                { "apiVersion": "v1", "kind": "Secret", "name": "db", "namespace": "prod", "fields": ["data"] }
            ]),
        )
    }

    fn kind(group: &str, kind: &str, plural: &str, namespaced: bool) -> Option<KindInfo> {
        let version = "v1";
        Some(KindInfo {
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            ),
            namespaced,
            verbs: vec!["get".into()],
        })
    }

    #[test]
    fn every_watched_object_needs_get_and_the_namespace_needs_create_jobs() {
        let kinds = [
            kind("", "Secret", "secrets", true),
            kind("", "Node", "nodes", false),
            kind("apps", "Deployment", "deployments", true),
            kind("", "Secret", "secrets", true),
        ];
        let required = required_access(&ctj(), "prod", &kinds);
        let described: Vec<String> = required
            .iter()
            .map(|(f, a)| format!("{f} {} {}", a.verb, a.describe()))
            .collect();
        assert_eq!(
            described,
            vec![
                "spec.resources[0] get secrets \"db\" in namespace \"prod\"",
                "spec.resources[1] get nodes \"w1\"",
                "spec.resources[2] get deployments.apps \"web\" in namespace \"prod\"",
                "spec.jobTemplate create jobs.batch in namespace \"prod\"",
            ]
        );
    }

    #[test]
    fn a_selector_entry_needs_get_list_and_watch_on_the_kind() {
        let ctj = crate::webhook::fixtures::ctj(
            "prod",
            json!([
                { "apiVersion": "v1", "kind": "ConfigMap", "namespace": "prod",
                  "selector": { "matchLabels": { "app": "shop" } } },
                { "apiVersion": "v1", "kind": "Node", "selector": {} }
            ]),
        );
        let kinds = [
            kind("", "ConfigMap", "configmaps", true),
            kind("", "Node", "nodes", false),
        ];
        let described: Vec<String> = required_access(&ctj, "prod", &kinds)
            .iter()
            .map(|(f, a)| format!("{f} {} {}", a.verb, a.describe()))
            .collect();
        assert_eq!(
            described,
            vec![
                "spec.resources[0] get configmaps in namespace \"prod\"",
                "spec.resources[0] list configmaps in namespace \"prod\"",
                "spec.resources[0] watch configmaps in namespace \"prod\"",
                "spec.resources[1] get nodes",
                "spec.resources[1] list nodes",
                "spec.resources[1] watch nodes",
                "spec.jobTemplate create jobs.batch in namespace \"prod\"",
            ]
        );
        let denied = denial_message("bob", &required_access(&ctj, "prod", &kinds)[1].1);
        assert!(
            denied.starts_with(
                "user \"bob\" may not list configmaps in namespace \"prod\"; a selector entry"
            ),
            "{denied}"
        );
    }

    #[test]
    fn unresolved_kinds_are_not_reviewed() {
        let kinds = [None, None, None, None];
        assert_eq!(required_access(&ctj(), "prod", &kinds).len(), 1);
    }

    #[test]
    fn review_carries_the_whole_user() {
        let user = UserInfo {
            username: Some("alice".into()),
            uid: Some("u-1".into()),
            groups: Some(vec!["dev".into()]),
            extra: Some([("scopes".to_string(), vec!["a".to_string()])].into()),
        };
        let access = &required_access(&ctj(), "prod", &[kind("", "Secret", "secrets", true)])[0].1;
        let review = review_for(&user, access);
        assert_eq!(review.spec.user.as_deref(), Some("alice"));
        assert_eq!(review.spec.uid.as_deref(), Some("u-1"));
        assert_eq!(review.spec.groups, Some(vec!["dev".to_string()]));
        assert!(review.spec.extra.is_some());
        let attrs = review.spec.resource_attributes.unwrap_or_default();
        assert_eq!(attrs.verb.as_deref(), Some("get"));
        assert_eq!(attrs.group.as_deref(), Some(""));
        assert_eq!(attrs.resource.as_deref(), Some("secrets"));
        assert_eq!(attrs.namespace.as_deref(), Some("prod"));
        assert_eq!(attrs.name.as_deref(), Some("db"));
    }

    #[test]
    fn denial_names_user_verb_object_and_reason() {
        let access = Access {
            verb: "get".into(),
            group: String::new(),
            resource: "secrets".into(),
            namespace: Some("prod".into()),
            name: Some("db".into()),
        };
        assert_eq!(
            denial_message("alice", &access),
            "user \"alice\" may not get secrets \"db\" in namespace \"prod\"; a \
             ChangeTriggeredJob may only watch objects its author can read"
        );
    }
}
