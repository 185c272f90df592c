//! Turns a request path and query string into what it addresses, following the API server's
//! URL layout (`/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`, `/apis/{group}/...`).

/// What a request path addresses.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/{version}` or `/apis/{group}/{version}`
    Resources { group: String, version: String },
    /// Anything below a group version.
    Resource(ResourcePath),
}

/// A path below `/api/v1` or `/apis/{group}/{version}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResourcePath {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a path; `None` for paths the API server does not serve.
pub(crate) fn parse(path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", group] => Some(Route::Group(group.to_string())),
        ["api", version] => Some(Route::Resources {
            group: String::new(),
            version: version.to_string(),
        }),
        ["apis", group, version] => Some(Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["api", version, rest @ ..] => resource(String::new(), version, rest),
        ["apis", group, version, rest @ ..] => resource(group.to_string(), version, rest),
        _ => None,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Option<Route> {
    let mut namespace = None;
    let mut rest = rest;
    // `namespaces/{ns}/{resource}/...` is a namespaced request, except the namespace's own
    // subresources (`namespaces/{ns}/status`, `namespaces/{ns}/finalize`).
    if rest.len() > 2 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize") {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    if rest.is_empty() || rest.len() > 3 {
        return None;
    }
    Some(Route::Resource(ResourcePath {
        group,
        version: version.to_string(),
        plural: rest[0].to_string(),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    }))
}

/// Decoded query parameters, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (
                    percent_decode(&k.replace('+', " ")),
                    percent_decode(&v.replace('+', " ")),
                )
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
