//! The kinds the fake serves: `ResourceType`, the built-in set registered by default, and the
//! registry that resolves URL segments to a type.

/// Verbs of an ordinary resource, as discovery lists them.
const STANDARD_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource at one version, e.g. `batch/v1 jobs`.
///
/// Build it with [`ResourceType::namespaced`] / [`ResourceType::cluster`] and the `with_*`
/// methods, or as a struct literal with `..Default::default()`. Empty `singular` means the
/// lowercase kind; empty `verbs` means the eight standard verbs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Subresources such as `"status"`. Only `status` has behaviour; others are listed in
    /// discovery but answer 404.
    pub subresources: Vec<String>,
    pub short_names: Vec<String>,
    pub singular: String,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
}

impl ResourceType {
    /// A namespaced resource with the standard verbs and no subresources.
    pub fn namespaced(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced: true,
            ..Default::default()
        }
    }

    /// A cluster-scoped resource with the standard verbs and no subresources.
    pub fn cluster(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        ResourceType {
            namespaced: false,
            ..ResourceType::namespaced(group, version, kind, plural)
        }
    }

    /// Adds the `status` subresource: main-resource writes then ignore `.status`, and
    /// `/status` writes change nothing but `.status`.
    #[must_use]
    pub fn with_status(mut self) -> Self {
        if !self.has_status() {
            self.subresources.push("status".into());
        }
        self
    }

    #[must_use]
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    #[must_use]
    pub fn with_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|s| s.to_string()).collect();
        self
    }

    #[must_use]
    pub fn with_categories(mut self, categories: &[&str]) -> Self {
        self.categories = categories.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `v1`, `batch/v1`, ...
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    pub(crate) fn singular_name(&self) -> String {
        if self.singular.is_empty() {
            self.kind.to_lowercase()
        } else {
            self.singular.clone()
        }
    }

    pub(crate) fn effective_verbs(&self) -> Vec<String> {
        if self.verbs.is_empty() {
            STANDARD_VERBS.iter().map(|s| s.to_string()).collect()
        } else {
            self.verbs.clone()
        }
    }

    pub(crate) fn supports(&self, verb: &str) -> bool {
        self.effective_verbs().iter().any(|v| v == verb)
    }

    /// `configmaps`, `jobs.batch`: how the API server names the resource in messages.
    pub(crate) fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `ConfigMap`, `Job.batch`: how the API server names the kind in Invalid messages.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub(crate) fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }
}

/// Everything a fresh `FakeApi` serves.
pub(crate) fn builtin_types() -> Vec<ResourceType> {
    let ns = ResourceType::namespaced;
    let cluster = ResourceType::cluster;
    let create_only = ["create"];
    vec![
        ns("", "v1", "ConfigMap", "configmaps").with_short_names(&["cm"]),
        ns("", "v1", "Secret", "secrets"),
        cluster("", "v1", "Namespace", "namespaces")
            .with_status()
            .with_short_names(&["ns"]),
        cluster("", "v1", "Node", "nodes")
            .with_status()
            .with_short_names(&["no"]),
        ns("", "v1", "Pod", "pods")
            .with_status()
            .with_short_names(&["po"])
            .with_categories(&["all"]),
        ns("", "v1", "Service", "services")
            .with_status()
            .with_short_names(&["svc"])
            .with_categories(&["all"]),
        ns("", "v1", "ServiceAccount", "serviceaccounts").with_short_names(&["sa"]),
        ns("", "v1", "Event", "events").with_short_names(&["ev"]),
        ns("apps", "v1", "Deployment", "deployments")
            .with_status()
            .with_short_names(&["deploy"])
            .with_categories(&["all"]),
        ns("apps", "v1", "StatefulSet", "statefulsets")
            .with_status()
            .with_short_names(&["sts"])
            .with_categories(&["all"]),
        ns("batch", "v1", "Job", "jobs")
            .with_status()
            .with_categories(&["all"]),
        ns("batch", "v1", "CronJob", "cronjobs")
            .with_status()
            .with_short_names(&["cj"])
            .with_categories(&["all"]),
        ns("coordination.k8s.io", "v1", "Lease", "leases"),
        ns("events.k8s.io", "v1", "Event", "events").with_short_names(&["ev"]),
        cluster(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        cluster(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        cluster(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        cluster(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
        ns("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        ns(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        cluster(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        )
        .with_status()
        .with_short_names(&["crd", "crds"]),
        cluster(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
        )
        .with_verbs(&create_only),
        cluster("authentication.k8s.io", "v1", "TokenReview", "tokenreviews")
            .with_verbs(&create_only),
        ns(
            "triggers.changejob.dev",
            "v1alpha",
            "ChangeTriggeredJob",
            "changetriggeredjobs",
        )
        .with_status()
        .with_short_names(&["ctj", "ctjs"]),
    ]
}

/// The served types, in registration order (discovery lists groups in that order).
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        Registry {
            types: builtin_types(),
        }
    }

    /// Adds a type, replacing one with the same group, version and plural.
    pub fn register(&mut self, rt: ResourceType) {
        match self
            .types
            .iter_mut()
            .find(|t| same_slot(t, &rt.group, &rt.version, &rt.plural))
        {
            Some(existing) => *existing = rt,
            None => self.types.push(rt),
        }
    }

    pub fn unregister(&mut self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        let index = self
            .types
            .iter()
            .position(|t| same_slot(t, group, version, plural))?;
        Some(self.types.remove(index))
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| same_slot(t, group, version, plural))
    }

    /// Resolves `apiVersion` + `kind`, as written in an object.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// Resolves `apiVersion` + plural, as test helpers name a collection.
    pub fn find_plural(&self, api_version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.plural == plural)
    }

    /// Is this group/plural still served at some version (storage outlives one version)?
    pub fn serves(&self, group: &str, plural: &str) -> bool {
        self.types.iter().any(|t| t.is(group, plural))
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.group == group && t.version == version)
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect()
    }

    /// Non-core groups in registration order, each with its versions, preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) if !versions.contains(&t.version) => {
                    versions.push(t.version.clone())
                }
                Some(_) => {}
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }
}

fn same_slot(t: &ResourceType, group: &str, version: &str, plural: &str) -> bool {
    t.group == group && t.version == version && t.plural == plural
}

/// Kubernetes version ordering: GA before beta before alpha, higher numbers first
/// (`v2 > v1 > v1beta2 > v1beta1 > v1alpha1`); anything else sorts last.
pub(crate) fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let (stability, minor_text) = if tail.is_empty() {
        (3, "")
    } else if let Some(t) = tail.strip_prefix("beta") {
        (2, t)
    } else if let Some(t) = tail.strip_prefix("alpha") {
        (1, t)
    } else {
        return (0, 0, 0);
    };
    let minor = minor_text.parse::<u32>().unwrap_or(0);
    (stability, major, minor)
}
