//! Which kinds the cluster serves, from API discovery, cached per group-version.
//!
//! Both the admission webhook (is this kind real? namespaced?) and the reconcile loop (which
//! URL serves this object?) ask. Answers are cached; a miss refreshes that group-version (at
//! most once per `min_refresh`), so a CRD installed after start-up is found without a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};

/// What we need to know about a served kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
    /// Verbs the kind supports (get, list, watch, ...).
    pub verbs: Vec<String>,
}

/// Why a kind could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The apiVersion is not of the form `version` or `group/version`.
    #[error(
        "apiVersion {0:?} is malformed; use \"v1\" for core kinds or \"group/version\" such as \"apps/v1\""
    )]
    MalformedApiVersion(String),
    /// The cluster does not serve this group-version.
    #[error("{}", gv_not_served_message(.api_version, .served))]
    GroupVersionNotServed {
        /// The apiVersion as written.
        api_version: String,
        /// apiVersions the cluster serves for the same group.
        served: Vec<String>,
    },
    /// The group-version is served but has no such kind.
    #[error("{}", kind_not_served_message(.api_version, .kind, .suggestion))]
    KindNotServed {
        /// The apiVersion as written.
        api_version: String,
        /// The kind as written.
        kind: String,
        /// The kind the user probably meant.
        suggestion: Option<String>,
    },
    /// Discovery itself failed (API unreachable, RBAC); retry later.
    #[error("API discovery for {api_version} failed: {source}")]
    Api {
        /// The apiVersion being resolved.
        api_version: String,
        /// The client error.
        source: kube::Error,
    },
}

impl LookupError {
    /// Whether the answer is definitive (the kind does not exist) rather than a failure to ask.
    pub fn is_not_found(&self) -> bool {
        !matches!(self, LookupError::Api { .. })
    }
}

fn gv_not_served_message(api_version: &str, served: &[String]) -> String {
    if served.is_empty() {
        format!("apiVersion {api_version:?} is not served by this cluster")
    } else {
        format!(
            "apiVersion {api_version:?} is not served by this cluster; it serves {}",
            served.join(", ")
        )
    }
}

fn kind_not_served_message(api_version: &str, kind: &str, suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("kind {kind:?} is not served by {api_version}; did you mean {s:?}?"),
        None => format!("kind {kind:?} is not served by {api_version}"),
    }
}

/// Splits an apiVersion into (group, version). `v1` has the empty (core) group.
pub fn split_api_version(api_version: &str) -> Result<(String, String), LookupError> {
    let malformed = || LookupError::MalformedApiVersion(api_version.to_string());
    let (group, version) = match api_version.split_once('/') {
        None => ("", api_version),
        Some((g, v)) => (g, v),
    };
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns_label(version) {
        return Err(malformed());
    }
    if api_version.contains('/')
        && (group.is_empty() || group.len() > 253 || !group.split('.').all(dns_label))
    {
        return Err(malformed());
    }
    Ok((group.to_string(), version.to_string()))
}

/// The kind the user most likely meant: same letters in another case, or the plural, singular
/// or a short name of a served kind (`configmaps`, `cm` → `ConfigMap`).
pub fn suggest_kind(wanted: &str, served: &[APIResource]) -> Option<String> {
    let lower = wanted.to_ascii_lowercase();
    served
        .iter()
        .filter(|r| !r.name.contains('/'))
        .find(|r| {
            r.kind.to_ascii_lowercase() == lower
                || r.name == lower
                || r.singular_name == lower
                || r.short_names.iter().flatten().any(|s| *s == lower)
        })
        .map(|r| r.kind.clone())
}

struct Entry {
    resources: Option<Vec<APIResource>>,
    fetched: Instant,
}

/// Cached API discovery.
pub struct DiscoveryCache {
    client: Client,
    min_refresh: Duration,
    max_age: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per group-version, held while it is fetched, so that many lookups missing the
    /// cache at once (a burst of reconciles after start-up) share one discovery request.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DiscoveryCache {
    /// A cache that refreshes a group-version at most every `min_refresh` on a miss, and
    /// re-reads any entry older than `max_age`.
    pub fn new(client: Client, min_refresh: Duration, max_age: Duration) -> Self {
        DiscoveryCache {
            client,
            min_refresh,
            max_age,
            entries: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `apiVersion` + `kind` to the resource serving it.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<KindInfo, LookupError> {
        let (group, version) = split_api_version(api_version)?;
        let gv = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };

        let cached = self.cached(&gv);
        if let Some((Some(resources), true)) = &cached
            && let Some(info) = find_kind(&group, &version, kind, resources)
        {
            return Ok(info);
        }
        let may_refresh = match &cached {
            None => true,
            Some(_) => self.refresh_allowed(&gv),
        };
        let resources = if may_refresh {
            self.fetch(&gv, &group, &version, api_version).await?
        } else {
            cached.and_then(|(r, _)| r)
        };
        let Some(resources) = resources else {
            return Err(LookupError::GroupVersionNotServed {
                api_version: api_version.to_string(),
                served: self.served_versions(&group).await,
            });
        };
        find_kind(&group, &version, kind, &resources).ok_or_else(|| LookupError::KindNotServed {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            suggestion: suggest_kind(kind, &resources),
        })
    }

    /// Cached resources of a group-version and whether they are younger than `max_age`.
    fn cached(&self, gv: &str) -> Option<(Option<Vec<APIResource>>, bool)> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(gv)
            .map(|e| (e.resources.clone(), e.fetched.elapsed() < self.max_age))
    }

    fn refresh_allowed(&self, gv: &str) -> bool {
        self.entries
            .lock()
            .ok()
            .and_then(|e| e.get(gv).map(|e| e.fetched.elapsed() >= self.min_refresh))
            .unwrap_or(true)
    }

    /// Fetches a group-version, unless a lookup that was already fetching it when we asked has
    /// finished meanwhile, in which case its answer is used.
    async fn fetch(
        &self,
        gv: &str,
        group: &str,
        version: &str,
        api_version: &str,
    ) -> Result<Option<Vec<APIResource>>, LookupError> {
        let asked = Instant::now();
        let lock = match self.in_flight.lock() {
            Ok(mut locks) => locks.entry(gv.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let _turn = lock.lock().await;
        let fresh = self.entries.lock().ok().and_then(|entries| {
            entries
                .get(gv)
                .filter(|e| e.fetched >= asked)
                .map(|e| e.resources.clone())
        });
        if let Some(resources) = fresh {
            return Ok(resources);
        }
        let answer = if group.is_empty() {
            self.client.list_core_api_resources(version).await
        } else {
            self.client.list_api_group_resources(gv).await
        };
        let resources = match answer {
            Ok(list) => Some(list.resources),
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(source) => {
                return Err(LookupError::Api {
                    api_version: api_version.to_string(),
                    source,
                });
            }
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                gv.to_string(),
                Entry {
                    resources: resources.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        Ok(resources)
    }

    /// apiVersions served for a group, for the "not served" message (best effort).
    async fn served_versions(&self, group: &str) -> Vec<String> {
        if group.is_empty() {
            return match self.client.list_core_api_versions().await {
                Ok(v) => v.versions,
                Err(_) => Vec::new(),
            };
        }
        match self.client.list_api_groups().await {
            Ok(list) => list
                .groups
                .into_iter()
                .filter(|g| g.name == group)
                .flat_map(|g| g.versions.into_iter().map(|v| v.group_version))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn find_kind(
    group: &str,
    version: &str,
    kind: &str,
    resources: &[APIResource],
) -> Option<KindInfo> {
    resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .find(|r| r.kind == kind)
        .map(|r| {
            let gvk = GroupVersionKind::gvk(group, version, kind);
            KindInfo {
                resource: ApiResource::from_gvk_with_plural(&gvk, &r.name),
                namespaced: r.namespaced,
                verbs: r.verbs.clone(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(kind: &str, name: &str, short: &[&str]) -> APIResource {
        APIResource {
            kind: kind.into(),
            name: name.into(),
            singular_name: kind.to_ascii_lowercase(),
            short_names: Some(short.iter().map(|s| s.to_string()).collect()),
            namespaced: true,
            verbs: vec!["get".into()],
            ..APIResource::default()
        }
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(
            split_api_version("v1").ok(),
            Some((String::new(), "v1".into()))
        );
        assert_eq!(
            split_api_version("apps/v1").ok(),
            Some(("apps".into(), "v1".into()))
        );
        assert_eq!(
            split_api_version("example.com/v1beta1").ok(),
            Some(("example.com".into(), "v1beta1".into()))
        );
    }

    #[test]
    fn malformed_api_versions_are_rejected() {
        for bad in [
            "",
            "/v1",
            "apps/",
            "a/b/c",
            "Apps/v1",
            "apps/V1",
            "apps/v1 ",
            "-x/v1",
            "ex..com/v1",
        ] {
            assert!(
                matches!(
                    split_api_version(bad),
                    Err(LookupError::MalformedApiVersion(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wrong_case_kind_gets_a_suggestion() {
        let served = [
            resource("ConfigMap", "configmaps", &["cm"]),
            resource("Secret", "secrets", &[]),
        ];
        assert_eq!(
            suggest_kind("configmap", &served).as_deref(),
            Some("ConfigMap")
        );
        assert_eq!(
            suggest_kind("configmaps", &served).as_deref(),
            Some("ConfigMap")
        );
        assert_eq!(suggest_kind("cm", &served).as_deref(), Some("ConfigMap"));
        assert_eq!(suggest_kind("SECRET", &served).as_deref(), Some("Secret"));
        assert_eq!(suggest_kind("Widget", &served), None);
    }

    #[test]
    fn subresources_are_not_kinds() {
        let served = [
            resource("Job", "jobs/status", &[]),
            resource("Job", "jobs", &[]),
        ];
        let info = find_kind("batch", "v1", "Job", &served);
        assert_eq!(info.map(|i| i.resource.plural), Some("jobs".to_string()));
    }

    #[test]
    fn messages_name_the_fix() {
        let e = LookupError::KindNotServed {
            api_version: "v1".into(),
            kind: "configmap".into(),
            suggestion: Some("ConfigMap".into()),
        };
        assert_eq!(
            e.to_string(),
            "kind \"configmap\" is not served by v1; did you mean \"ConfigMap\"?"
        );
        let e = LookupError::GroupVersionNotServed {
            api_version: "apps/v1beta1".into(),
            served: vec!["apps/v1".into()],
        };
        assert_eq!(
            e.to_string(),
            "apiVersion \"apps/v1beta1\" is not served by this cluster; it serves apps/v1"
        );
    }
}
