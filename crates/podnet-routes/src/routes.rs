//! The route table: which backend serves a request's host and path. Pure.
//!
//! Ingress v1 semantics, as the API documents them (`networking.k8s.io/v1`, IngressRule and
//! HTTPIngressPath):
//! - a rule's `host` is exact (`foo.bar.com`: the request's host equals it) or a wildcard
//!   (`*.foo.com`: the request's host is one label, then `.foo.com`, so `bar.foo.com` matches
//!   and neither `baz.bar.foo.com` nor `foo.com` does); a rule without a host matches every host;
//! - `pathType: Exact` matches the path exactly, case-sensitively; `Prefix` matches element by
//!   element along `/` (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`), a
//!   trailing `/` in the rule or the request being ignored; `ImplementationSpecific` is
//!   `Prefix` here;
//! - among the routes of every Ingress of the class that match a request, the most specific
//!   host wins (exact, then wildcard, then none), then the longest path, then `Exact` before
//!   `Prefix` at equal length, then the oldest source (by namespace and name: the API's
//!   objects have no order of their own);
//! - nothing matches: the `defaultBackend` of the class's Ingresses (the first by namespace and
//!   name), else no backend (404).

use podnet_model::NsName;

/// A host a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostMatch {
    /// Every host (a rule without `host`).
    Any,
    /// `*.foo.com`: one label, then `.foo.com` (held without the `*`: `.foo.com`).
    Wildcard(String),
    /// The Gateway API's `*.foo.com`: one label or more, then `.foo.com` (held as `.foo.com`).
    Suffix(String),
    /// `foo.bar.com`.
    Exact(String),
}

impl HostMatch {
    /// From an Ingress rule's `host`.
    pub fn of(host: Option<&str>) -> HostMatch {
        match host.map(str::to_ascii_lowercase) {
            None => HostMatch::Any,
            Some(h) if h.is_empty() => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
                None => HostMatch::Exact(h),
            },
        }
    }

    /// Whether a request's host (already normalized: [`normalize_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            HostMatch::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.')),
        }
    }

    /// A Gateway API hostname (a listener's or an HTTPRoute's): `*.foo.com` is a suffix.
    pub fn gateway(host: Option<&str>) -> HostMatch {
        match HostMatch::of(host) {
            HostMatch::Wildcard(s) => HostMatch::Suffix(s),
            other => other,
        }
    }

    /// How specific: exact, then wildcard (longer suffixes first), then any.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            HostMatch::Any => (0, 0),
            HostMatch::Wildcard(s) | HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Exact(h) => (2, h.len()),
        }
    }
}

/// As a rule writes it: `*` for every host, `*.foo.com`, `foo.bar.com`.
impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Wildcard(suffix) | HostMatch::Suffix(suffix) => write!(f, "*{suffix}"),
            HostMatch::Exact(h) => f.write_str(h),
        }
    }
}

/// A request's `Host` as routes compare it: lower case, without a port or a final dot.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    // An IPv6 literal keeps its brackets' content whole.
    let h = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => h.rsplit_once(':').map_or(h, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                h
            }
        }),
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// How a route matches the request's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix; held without a trailing `/` (the root is the empty string).
    Prefix(String),
}

impl PathMatch {
    /// From an Ingress path's `path` and `pathType` (`ImplementationSpecific` is `Prefix`).
    pub fn of(path: Option<&str>, path_type: &str) -> PathMatch {
        let p = path.filter(|p| !p.is_empty()).unwrap_or("/");
        if path_type == "Exact" {
            PathMatch::Exact(p.to_string())
        } else {
            PathMatch::Prefix(p.trim_end_matches('/').to_string())
        }
    }

    /// Whether a request's path (without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                let path = path.trim_end_matches('/');
                match path.strip_prefix(p.as_str()) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }

    /// Longer paths first, then `Exact` before `Prefix`.
    fn specificity(&self) -> (usize, u8) {
        match self {
            PathMatch::Exact(p) => (p.trim_end_matches('/').len(), 1),
            PathMatch::Prefix(p) => (p.len(), 0),
        }
    }
}

/// A Service port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendPort {
    Number(i32),
    Name(String),
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    pub service: NsName,
    pub port: BackendPort,
}

/// Where a route came from, for status, logs and `podnet check`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub kind: &'static str,
    pub object: NsName,
    /// The rule's and the path's (an HTTPRoute's: the match's) places in the object.
    pub rule: usize,
    pub path: usize,
}

/// What else a request must have for a route to match (Gateway API HTTPRoute matches;
/// Ingress routes have none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The method, upper case.
    pub method: Option<String>,
    /// Header names (lower case) and the exact value of their first occurrence.
    pub headers: Vec<(String, String)>,
    /// Query parameters and the exact value of their first occurrence.
    pub query: Vec<(String, String)>,
}

impl Conditions {
    fn matches(&self, method: &str, headers: &http::HeaderMap, query: Option<&str>) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let header_ok = self.headers.iter().all(|(name, value)| {
            headers
                .get(name.as_str())
                .is_some_and(|v| v.as_bytes() == value.as_bytes())
        });
        header_ok
            && self.query.iter().all(|(name, value)| {
                query_param(query.unwrap_or(""), name).as_deref() == Some(value.as_str())
            })
    }

    fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }
}

/// The first value of query parameter `name` (percent-decoding `%XX` and `+`).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("x");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Header changes (Gateway API RequestHeaderModifier and ResponseHeaderModifier).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Replaces every value of the header.
    pub set: Vec<(String, String)>,
    /// Appends a value.
    pub add: Vec<(String, String)>,
    /// Removes the header.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the changes: set, then add, then remove (as the filter's fields are listed).
    pub fn apply(&self, h: &mut http::HeaderMap) {
        use http::header::{HeaderName, HeaderValue};
        for (n, v) in &self.set {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(n.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                h.insert(n, v);
            }
        }
        for (n, v) in &self.add {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(n.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                h.append(n, v);
            }
        }
        for n in &self.remove {
            if let Ok(n) = HeaderName::try_from(n.as_str()) {
                h.remove(n);
            }
        }
    }
}

/// How a redirect or a rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`: the part the route's `PathPrefix` matched is replaced.
    Prefix(String),
}

impl PathModifier {
    /// The new path of a request whose path was `path`, matched by `matched`.
    pub fn apply(&self, matched: &PathMatch, path: &str) -> String {
        match self {
            PathModifier::Full(p) => p.clone(),
            PathModifier::Prefix(new) => {
                let prefix = match matched {
                    PathMatch::Prefix(p) | PathMatch::Exact(p) => p.trim_end_matches('/'),
                };
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let new = new.trim_end_matches('/');
                match (new.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => rest.to_string(),
                    (false, true) => new.to_string(),
                    (false, false) => format!("{new}{rest}"),
                }
            }
        }
    }
}

/// A redirect (Gateway API RequestRedirect): what is left unset is the request's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u16>,
    pub status: u16,
}

/// A rewrite before forwarding (Gateway API URLRewrite).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// One backend of a route, with its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// None: a reference that cannot be used (its share of requests is answered 500).
    pub backend: Option<Backend>,
    pub weight: u32,
    /// The backendRef's own request header changes.
    pub request_headers: HeaderEdits,
    /// The backendRef's own RequestRedirect: a request that falls to it is redirected.
    pub redirect: Option<Redirect>,
    /// The backendRef's own URLRewrite (over the rule's).
    pub rewrite: Option<Rewrite>,
}

/// A route's timeouts (Gateway API `timeouts`), each answered 504 when it passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival to its answer's head, every attempt included (None: no
    /// bound of the route's; `0s` is None).
    pub request: Option<std::time::Duration>,
    /// Each attempt to a backend, until its answer's head. None: the proxy's own read
    /// timeout, unless `request` was given (then that bounds it); `0s`: no bound at all.
    pub backend_request: Option<std::time::Duration>,
}

/// A route's retries (Gateway API `retry`): a request with no body to send (none, or
/// nothing left of it) is sent again, to the next endpoint, when the backend answers one of
/// `codes` or the attempt fails to connect or to get an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retry {
    pub codes: Vec<u16>,
    /// How many times at most after the first try.
    pub attempts: u32,
    /// The wait before each retry.
    pub backoff: std::time::Duration,
}

/// A route's CORS policy (Gateway API `CORS` filter): the gateway answers a preflight
/// request itself, and adds the CORS headers to the backend's answer to a request from an
/// allowed origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Origins as written (`https://www.foo.com`, `https://*.bar.com`), or `*`.
    pub allow_origins: Vec<String>,
    pub allow_credentials: bool,
    /// Methods, or `*`.
    pub allow_methods: Vec<String>,
    /// Header names, or `*`.
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: u32,
}

impl Cors {
    /// Whether `origin` (`scheme://host[:port]`) is allowed: `*`, the same origin (scheme
    /// and host case-insensitive), or a pattern whose `*` stands for one label or more.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allow_origins.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            if p == "*" || p == origin {
                return true;
            }
            match p.split_once('*') {
                Some((before, after)) => {
                    origin.len() > before.len() + after.len()
                        && origin.starts_with(before)
                        && origin.ends_with(after)
                        // What `*` stands for is labels of the host: no scheme, port or path.
                        && !origin[before.len()..origin.len() - after.len()]
                            .contains([':', '/'])
                }
                None => false,
            }
        })
    }

    /// The headers of the gateway's answer to a preflight request from `origin` asking for
    /// `method` and `headers` (as `Access-Control-Request-Headers` lists them): none for an
    /// origin not allowed.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        headers: &str,
    ) -> Option<Vec<(&'static str, String)>> {
        if !self.allows(origin) {
            return None;
        }
        let mut out = self.origin_headers(origin);
        // A `*` without credentials is `*`; with them browsers read it as a literal name: the
        // one asked is answered instead.
        let allowed = |list: &[String], asked: &str| {
            if !list.iter().any(|x| x == "*") {
                list.join(", ")
            } else if self.allow_credentials {
                asked.to_string()
            } else {
                "*".to_string()
            }
        };
        let methods = allowed(&self.allow_methods, method);
        if !methods.is_empty() {
            out.push(("access-control-allow-methods", methods));
        }
        let allowed_headers = allowed(&self.allow_headers, headers);
        if !allowed_headers.is_empty() {
            out.push(("access-control-allow-headers", allowed_headers));
        }
        out.push(("access-control-max-age", self.max_age.to_string()));
        Some(out)
    }

    /// The headers added to the backend's answer to a request from `origin` (none for an
    /// origin not allowed).
    pub fn simple(&self, origin: &str) -> Vec<(&'static str, String)> {
        if !self.allows(origin) {
            return Vec::new();
        }
        self.origin_headers(origin)
    }

    /// The origin echoed (so that credentials can be allowed, and caches vary by it), the
    /// credentials, the exposed headers.
    fn origin_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "Origin".to_string()),
        ];
        if self.allow_credentials {
            out.push(("access-control-allow-credentials", "true".to_string()));
        }
        if !self.expose_headers.is_empty() {
            out.push((
                "access-control-expose-headers",
                self.expose_headers.join(", "),
            ));
        }
        out
    }
}

/// A copy of the request for another backend (Gateway API RequestMirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// None: a reference that cannot be used (nothing is sent).
    pub backend: Option<Backend>,
    /// The share of requests copied, per million.
    pub per_million: u32,
}

/// What a matching route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sent to one of the backends, by weight; none (or only weight 0): 500.
    Forward {
        backends: Vec<WeightedBackend>,
        request_headers: HeaderEdits,
        response_headers: HeaderEdits,
        rewrite: Option<Rewrite>,
        timeouts: Timeouts,
        retry: Option<Retry>,
        cors: Option<Box<Cors>>,
        /// Where copies of the request go (RequestMirror).
        mirrors: Vec<Mirror>,
    },
    Redirect {
        redirect: Redirect,
        response_headers: HeaderEdits,
    },
}

impl Action {
    /// To one backend, unchanged (an Ingress path).
    pub fn to(backend: Backend) -> Action {
        Action::Forward {
            backends: vec![WeightedBackend {
                backend: Some(backend),
                weight: 1,
                request_headers: HeaderEdits::default(),
                redirect: None,
                rewrite: None,
            }],
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            rewrite: None,
            timeouts: Timeouts::default(),
            retry: None,
            cors: None,
            mirrors: Vec::new(),
        }
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: HostMatch,
    pub path: PathMatch,
    pub when: Conditions,
    pub action: Action,
    pub source: Source,
    /// The source's creation time (RFC 3339, so that strings order as times), when it has one:
    /// the Gateway API gives ties to the oldest route.
    pub created: Option<String>,
}

impl Route {
    /// The backends a request may go to (and those its copies go to).
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        let (list, mirrors): (&[WeightedBackend], &[Mirror]) = match &self.action {
            Action::Forward {
                backends, mirrors, ..
            } => (backends, mirrors),
            Action::Redirect { .. } => (&[], &[]),
        };
        list.iter()
            .filter_map(|b| b.backend.as_ref())
            .chain(mirrors.iter().filter_map(|m| m.backend.as_ref()))
    }
}

/// What serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<'a> {
    Route(&'a Route),
    /// No route matched: the default backend.
    Default(&'a Backend, &'a Source),
}

/// Every route of a class (or of a Gateway's listener), and its default backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// In precedence order: the first that matches serves.
    routes: Vec<Route>,
    default: Option<(Backend, Source)>,
    /// Whether any route has conditions beyond host and path.
    conditions: bool,
}

impl RouteTable {
    /// The table of these Ingress routes (in any order) and default backends (the first by
    /// source wins).
    pub fn new(mut routes: Vec<Route>, mut defaults: Vec<(Backend, Source)>) -> RouteTable {
        routes.sort_by(|a, b| {
            b.host
                .specificity()
                .cmp(&a.host.specificity())
                .then(b.path.specificity().cmp(&a.path.specificity()))
                .then(a.source.cmp(&b.source))
        });
        defaults.sort_by(|a, b| a.1.cmp(&b.1));
        RouteTable {
            conditions: routes.iter().any(|r| !r.when.is_empty()),
            routes,
            default: defaults.into_iter().next(),
        }
    }

    /// The table of a Gateway listener's HTTPRoute rules, in the Gateway API's precedence
    /// (HTTPRouteRule's documentation): the longest matching non-wildcard hostname, then the
    /// longest hostname; an `Exact` path before any `PathPrefix`, then the longest path; a
    /// method match; the most header matches; the most query parameter matches; then the
    /// oldest route, then the first by namespace and name, then rule and match order.
    pub fn gateway(mut routes: Vec<Route>) -> RouteTable {
        let path_rank = |p: &PathMatch| match p {
            PathMatch::Exact(p) => (1, p.len()),
            PathMatch::Prefix(p) => (0, p.len()),
        };
        routes.sort_by(|a, b| {
            b.host
                .specificity()
                .cmp(&a.host.specificity())
                .then(path_rank(&b.path).cmp(&path_rank(&a.path)))
                .then(b.when.method.is_some().cmp(&a.when.method.is_some()))
                .then(b.when.headers.len().cmp(&a.when.headers.len()))
                .then(b.when.query.len().cmp(&a.when.query.len()))
                .then(match (&a.created, &b.created) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                })
                .then(a.source.cmp(&b.source))
        });
        RouteTable {
            conditions: routes.iter().any(|r| !r.when.is_empty()),
            routes,
            default: None,
        }
    }

    /// What serves a request for `host` (its `Host` header, with or without a port) and
    /// `path` (without the query); None: 404. For tables without conditions beyond host and
    /// path (Ingress).
    pub fn serve(&self, host: &str, path: &str) -> Option<Served<'_>> {
        self.serve_request(host, path, "GET", &http::HeaderMap::new())
    }

    /// What serves a request: its host, path with the query, method and headers.
    pub fn serve_request(
        &self,
        host: &str,
        path_and_query: &str,
        method: &str,
        headers: &http::HeaderMap,
    ) -> Option<Served<'_>> {
        self.serve_normalized(&normalize_host(host), path_and_query, method, headers)
    }

    /// [`RouteTable::serve_request`] for a host already normalized ([`normalize_host`]).
    pub fn serve_normalized(
        &self,
        host: &str,
        path_and_query: &str,
        method: &str,
        headers: &http::HeaderMap,
    ) -> Option<Served<'_>> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.split('#').next().unwrap_or(q))),
            None => (
                path_and_query.split('#').next().unwrap_or(path_and_query),
                None,
            ),
        };
        let conditions = self.conditions;
        self.routes
            .iter()
            .find(|r| {
                r.host.matches(host)
                    && r.path.matches(path)
                    && (!conditions || r.when.matches(method, headers, query))
            })
            .map(Served::Route)
            .or_else(|| self.default.as_ref().map(|(b, s)| Served::Default(b, s)))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The default backend, when an Ingress has one.
    pub fn default_backend(&self) -> Option<&Backend> {
        self.default.as_ref().map(|(b, _)| b)
    }

    /// Every backend a request may go to (routes' and the default), with repeats.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.routes
            .iter()
            .flat_map(|r| r.backends())
            .chain(self.default.as_ref().map(|(b, _)| b))
    }
}

/// podnet's controller name, in IngressClass `spec.controller`.
pub const CONTROLLER: &str = "podnet.dev/ingress";
/// The annotation that makes an IngressClass the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The Ingresses podnet serves: those whose class is one of podnet's (`spec.ingressClassName`
/// naming an IngressClass whose controller is [`CONTROLLER`]), and those without a class when
/// one of podnet's classes is the default. Others are left alone.
pub fn ours<'a>(
    ingresses: &'a [k8s_openapi::api::networking::v1::Ingress],
    classes: &[k8s_openapi::api::networking::v1::IngressClass],
) -> Vec<&'a k8s_openapi::api::networking::v1::Ingress> {
    let mine: Vec<&str> = classes
        .iter()
        .filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER))
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let default_is_mine = classes.iter().any(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .is_some_and(|v| v == "true")
            && c.metadata
                .name
                .as_deref()
                .is_some_and(|n| mine.contains(&n))
    });
    ingresses
        .iter()
        .filter(|i| {
            match i
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref())
            {
                Some(c) => mine.contains(&c),
                None => default_is_mine,
            }
        })
        .collect()
}

/// The route table of these Ingresses (all of one controller: [`ours`]).
pub fn table(ingresses: &[&k8s_openapi::api::networking::v1::Ingress]) -> RouteTable {
    use k8s_openapi::api::networking::v1::IngressBackend;
    let backend = |ns: &str, b: &IngressBackend| -> Option<Backend> {
        let svc = b.service.as_ref()?;
        let port = svc.port.as_ref()?;
        let port = match (&port.name, port.number) {
            (Some(n), _) if !n.is_empty() => BackendPort::Name(n.clone()),
            (_, Some(n)) => BackendPort::Number(n),
            _ => return None,
        };
        Some(Backend {
            service: NsName::new(ns, &svc.name),
            port,
        })
    };
    let mut routes = Vec::new();
    let mut defaults = Vec::new();
    for ing in ingresses {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let object = NsName::new(ns, ing.metadata.name.as_deref().unwrap_or_default());
        let Some(spec) = &ing.spec else { continue };
        if let Some(b) = spec.default_backend.as_ref().and_then(|b| backend(ns, b)) {
            defaults.push((
                b,
                Source {
                    kind: "Ingress",
                    object: object.clone(),
                    rule: usize::MAX,
                    path: usize::MAX,
                },
            ));
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host = HostMatch::of(rule.host.as_deref());
            for (pi, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
                let Some(b) = backend(ns, &p.backend) else {
                    continue;
                };
                routes.push(Route {
                    host: host.clone(),
                    path: PathMatch::of(p.path.as_deref(), &p.path_type),
                    when: Conditions::default(),
                    action: Action::to(b),
                    created: None,
                    source: Source {
                        kind: "Ingress",
                        object: object.clone(),
                        rule: ri,
                        path: pi,
                    },
                });
            }
        }
    }
    RouteTable::new(routes, defaults)
}

#[cfg(test)]
mod tests {

    #[test]
    fn cors_origins_preflights_and_answers() {
        let c = Cors {
            allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
            allow_credentials: true,
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["x-header-1".into()],
            expose_headers: vec!["x-header-3".into()],
            max_age: 3600,
        };
        assert!(c.allows("https://www.foo.com"));
        assert!(c.allows("HTTPS://WWW.FOO.COM"));
        assert!(c.allows("https://www.bar.com"));
        assert!(c.allows("https://xpto.www.bar.com"));
        assert!(!c.allows("https://bar.com"));
        assert!(!c.allows("https://foobar.com"));
        assert!(!c.allows("http://www.foo.com"));
        assert!(!c.allows("https://x.bar.com.evil.com"));
        assert!(!c.allows("https://evil.com/.bar.com"));
        let p = c
            .preflight("https://www.bar.com", "GET", "x-header-1")
            .unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("access-control-allow-origin"),
            Some("https://www.bar.com")
        );
        assert_eq!(get("access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(get("access-control-allow-credentials"), Some("true"));
        assert_eq!(get("access-control-max-age"), Some("3600"));
        assert_eq!(get("access-control-expose-headers"), Some("x-header-3"));
        assert_eq!(c.preflight("https://foobar.com", "GET", ""), None);
        assert!(c.simple("https://foobar.com").is_empty());
        // Wildcards: without credentials `*`; with them, what was asked.
        let w = Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            max_age: 5,
            ..Default::default()
        };
        let p = w.preflight("https://a.example", "PUT", "x-a, x-b").unwrap();
        assert!(p.contains(&("access-control-allow-methods", "*".into())));
        assert!(!p
            .iter()
            .any(|(n, _)| *n == "access-control-allow-credentials"));
        let wc = Cors {
            allow_credentials: true,
            ..w
        };
        let p = wc
            .preflight("https://a.example", "PUT", "x-a, x-b")
            .unwrap();
        assert!(p.contains(&("access-control-allow-methods", "PUT".into())));
        assert!(p.contains(&("access-control-allow-headers", "x-a, x-b".into())));
    }

    use super::*;

    /// The examples table of the Ingress documentation ("Examples" under "Path types").
    #[test]
    fn path_types_as_the_documentation_tabulates_them() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("Prefix", "/", "/", true),
            ("Prefix", "/", "/aaa", true),
            ("Exact", "/foo", "/foo", true),
            ("Exact", "/foo", "/bar", false),
            ("Exact", "/foo", "/foo/", false),
            ("Exact", "/foo/", "/foo", false),
            ("Prefix", "/foo", "/foo", true),
            ("Prefix", "/foo", "/foo/", true),
            ("Prefix", "/foo/", "/foo", true),
            ("Prefix", "/foo/", "/foo/", true),
            ("Prefix", "/aaa/bb", "/aaa/bbb", false),
            ("Prefix", "/aaa/bbb", "/aaa/bbb", true),
            ("Prefix", "/aaa/bbb/", "/aaa/bbb", true),
            ("Prefix", "/aaa/bbb", "/aaa/bbb/", true),
            ("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", true),
            ("Prefix", "/aaa/bbb", "/aaa/bbbxyz", false),
        ];
        for (t, rule, req, want) in cases {
            assert_eq!(
                PathMatch::of(Some(rule), t).matches(req),
                *want,
                "{t} {rule} vs {req}"
            );
        }
    }

    #[test]
    fn a_wildcard_host_is_exactly_one_label() {
        let w = HostMatch::of(Some("*.foo.com"));
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(!w.matches(".foo.com"));
        assert_eq!(normalize_host("Bar.Foo.com:8080"), "bar.foo.com");
        assert_eq!(normalize_host("bar.foo.com."), "bar.foo.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
    }

    fn route(host: Option<&str>, path: &str, t: &str, svc: &str, i: usize) -> Route {
        Route {
            host: HostMatch::of(host),
            path: PathMatch::of(Some(path), t),
            when: Conditions::default(),
            action: Action::to(Backend {
                service: NsName::new("default", svc),
                port: BackendPort::Number(80),
            }),
            created: None,
            source: Source {
                kind: "Ingress",
                object: NsName::new("default", "i"),
                rule: 0,
                path: i,
            },
        }
    }

    fn served(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.serve(host, path).map(|s| match s {
            Served::Route(r) => r.backends().next().unwrap().service.name.clone(),
            Served::Default(b, _) => format!("default:{}", b.service.name),
        })
    }

    #[test]
    fn the_most_specific_host_then_the_longest_path_then_exact_wins() {
        let t = RouteTable::new(
            vec![
                route(None, "/", "Prefix", "any", 0),
                route(Some("*.foo.com"), "/", "Prefix", "wild", 1),
                route(Some("bar.foo.com"), "/api", "Prefix", "exact-api", 2),
                route(Some("bar.foo.com"), "/api/v2", "Prefix", "exact-api-v2", 3),
                route(
                    Some("bar.foo.com"),
                    "/api/v2",
                    "Exact",
                    "exact-api-v2-exact",
                    4,
                ),
            ],
            vec![],
        );
        assert_eq!(
            served(&t, "bar.foo.com", "/api/v2").unwrap(),
            "exact-api-v2-exact"
        );
        assert_eq!(
            served(&t, "bar.foo.com", "/api/v2/x").unwrap(),
            "exact-api-v2"
        );
        assert_eq!(served(&t, "bar.foo.com", "/api?x=1").unwrap(), "exact-api");
        // The exact host has no route for /web: the wildcard's does.
        assert_eq!(served(&t, "bar.foo.com", "/web").unwrap(), "wild");
        assert_eq!(served(&t, "baz.foo.com", "/api").unwrap(), "wild");
        assert_eq!(served(&t, "other.org", "/api").unwrap(), "any");
        let none = RouteTable::new(vec![route(Some("a.b"), "/x", "Exact", "x", 0)], vec![]);
        assert_eq!(served(&none, "a.b", "/y"), None, "404");
    }
}
