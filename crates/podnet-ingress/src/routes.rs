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
        }
    }

    /// How specific: exact, then wildcard (longer suffixes first), then any.
    pub(crate) fn specificity(&self) -> (u8, usize) {
        match self {
            HostMatch::Any => (0, 0),
            HostMatch::Wildcard(s) => (1, s.len()),
            HostMatch::Exact(h) => (2, h.len()),
        }
    }
}

/// As a rule writes it: `*` for every host, `*.foo.com`, `foo.bar.com`.
impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Wildcard(suffix) => write!(f, "*{suffix}"),
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
    /// The rule's and the path's places in the object.
    pub rule: usize,
    pub path: usize,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: HostMatch,
    pub path: PathMatch,
    pub backend: Backend,
    pub source: Source,
}

/// What serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<'a> {
    Route(&'a Route),
    /// No route matched: the default backend.
    Default(&'a Backend, &'a Source),
}

/// Every route of a class, and its default backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// In precedence order: the first that matches serves.
    routes: Vec<Route>,
    default: Option<(Backend, Source)>,
}

impl RouteTable {
    /// The table of these routes (in any order) and default backends (the first by source
    /// wins).
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
            routes,
            default: defaults.into_iter().next(),
        }
    }

    /// What serves a request for `host` (its `Host` header, with or without a port) and
    /// `path` (without the query); None: 404.
    pub fn serve(&self, host: &str, path: &str) -> Option<Served<'_>> {
        let host = normalize_host(host);
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.routes
            .iter()
            .find(|r| r.host.matches(&host) && r.path.matches(path))
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
            .map(|r| &r.backend)
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
                    backend: b,
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
            backend: Backend {
                service: NsName::new("default", svc),
                port: BackendPort::Number(80),
            },
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
            Served::Route(r) => r.backend.service.name.clone(),
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
