//! An attached route as the proxy's route table holds it: backends resolved (kind,
//! namespace, grants, existence), filters as edits, one table per listener.

use super::*;

/// A rule's references resolved (None: cannot be used): its backendRefs, and its mirrors'
/// (in filter order).
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    pub backends: Vec<Option<Backend>>,
    pub mirrors: Vec<Option<Backend>>,
}

/// Every rule's references resolved; and the first problem, as ResolvedRefs says it.
pub(super) fn resolve_backends(
    c: &Cluster,
    r: &HTTPRoute,
    kind: &str,
) -> (Vec<Resolved>, Option<(&'static str, String)>) {
    let route_ns = ns_of(&r.metadata);
    let mut problem: Option<(&'static str, String)> = None;
    let mut one = |b: &HTTPBackendRef| match resolve(c, kind, route_ns, b) {
        Ok(b) => Some(b),
        Err(p) => {
            problem.get_or_insert(p);
            None
        }
    };
    let resolved = r
        .spec
        .rules
        .iter()
        .flatten()
        .map(|rule| Resolved {
            backends: rule.backend_refs.iter().flatten().map(&mut one).collect(),
            mirrors: rule
                .filters
                .iter()
                .filter_map(|f| f.request_mirror.as_ref())
                .map(|m| {
                    let b = &m.backend_ref;
                    one(&HTTPBackendRef {
                        group: b.group.clone(),
                        kind: b.kind.clone(),
                        name: b.name.clone(),
                        namespace: b.namespace.clone(),
                        port: b.port,
                        weight: None,
                        filters: Vec::new(),
                    })
                })
                .collect(),
        })
        .collect();
    (resolved, problem)
}

pub(super) fn resolve(
    c: &Cluster,
    kind: &str,
    route_ns: &str,
    b: &HTTPBackendRef,
) -> Result<Backend, (&'static str, String)> {
    let to = BackendTo {
        group: b.group.as_deref(),
        kind: b.kind.as_deref(),
        namespace: b.namespace.as_deref(),
        name: &b.name,
        port: b.port,
    };
    resolve_to(c, kind, route_ns, &to)
}

/// A route's backend reference, whatever the route's kind.
pub(super) struct BackendTo<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub port: Option<i32>,
}

/// A backend reference of a `from_kind` route of `route_ns`, resolved: a Service of the
/// route's namespace, or of another whose ReferenceGrant lets the route's kind in, that
/// exists; with the port the reference names.
pub(super) fn resolve_to(
    c: &Cluster,
    from_kind: &str,
    route_ns: &str,
    b: &BackendTo<'_>,
) -> Result<Backend, (&'static str, String)> {
    let group = b.group.unwrap_or("");
    let kind = b.kind.unwrap_or("Service");
    let ns = b.namespace.unwrap_or(route_ns);
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("{group}/{kind} {ns}/{}: only Services are backends", b.name),
        ));
    }
    if ns != route_ns && !granted(c, from_kind, route_ns, "", "Service", ns, b.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Service {ns}/{}: no ReferenceGrant in {ns} allows it",
                b.name
            ),
        ));
    }
    if c.service(ns, b.name).is_none() {
        return Err((
            "BackendNotFound",
            format!("Service {ns}/{} not found", b.name),
        ));
    }
    let Some(port) = b.port else {
        return Err((
            "UnsupportedValue",
            format!("Service {ns}/{}: no port", b.name),
        ));
    };
    Ok(Backend {
        service: NsName::new(ns, b.name),
        port: BackendPort::Number(port),
    })
}

pub(super) fn edits(f: &HTTPHeaderFilter) -> HeaderEdits {
    HeaderEdits {
        set: f
            .set
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
            .collect(),
        add: f
            .add
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
            .collect(),
        remove: f.remove.iter().map(|h| h.to_ascii_lowercase()).collect(),
    }
}

pub(super) fn modifier(p: &HTTPPathModifier) -> Option<PathModifier> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Some(PathModifier::Full(
            p.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        "ReplacePrefixMatch" => Some(PathModifier::Prefix(
            p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        )),
        _ => None,
    }
}

pub(super) fn merged(
    filters: &[HTTPRouteFilter],
    pick: impl Fn(&HTTPRouteFilter) -> Option<&HTTPHeaderFilter>,
) -> HeaderEdits {
    let mut out = HeaderEdits::default();
    for f in filters.iter().filter_map(pick) {
        let e = edits(f);
        out.set.extend(e.set);
        out.add.extend(e.add);
        out.remove.extend(e.remove);
    }
    out
}

/// The share of requests a mirror copies, per million: `percent`, else the fraction, else
/// all.
fn mirror_share(m: &podnet_model::gateway_api::HTTPRequestMirrorFilter) -> u32 {
    let clamp = |x: i64| u32::try_from(x.clamp(0, 1_000_000)).unwrap_or(0);
    match (&m.percent, &m.fraction) {
        (Some(p), _) => clamp(i64::from(*p) * 10_000),
        (None, Some(f)) => {
            let d = i64::from(f.denominator.unwrap_or(100)).max(1);
            clamp(i64::from(f.numerator) * 1_000_000 / d)
        }
        (None, None) => 1_000_000,
    }
}

fn cors(c: &podnet_model::gateway_api::HTTPCORSFilter) -> Cors {
    Cors {
        allow_origins: c.allow_origins.clone(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.and_then(|a| u32::try_from(a).ok()).unwrap_or(5),
    }
}

fn redirect_of(rd: &podnet_model::gateway_api::HTTPRequestRedirectFilter) -> Redirect {
    Redirect {
        scheme: rd.scheme.clone(),
        hostname: rd.hostname.clone(),
        path: rd.path.as_ref().and_then(modifier),
        port: rd.port.and_then(|p| u16::try_from(p).ok()),
        status: rd
            .status_code
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(302),
    }
}

fn rewrite_of(rw: &podnet_model::gateway_api::HTTPURLRewriteFilter) -> Rewrite {
    Rewrite {
        hostname: rw.hostname.clone(),
        path: rw.path.as_ref().and_then(modifier),
    }
}

/// A rule's timeouts as the proxy applies them (validated durations; `0s` of the request's
/// is no bound).
fn timeouts(t: Option<&podnet_model::gateway_api::HTTPRouteTimeouts>) -> Timeouts {
    let d = |s: &Option<String>| {
        s.as_deref()
            .and_then(podnet_model::gateway_api::gateway_duration)
    };
    match t {
        None => Timeouts::default(),
        Some(t) => Timeouts {
            request: d(&t.request).filter(|d| !d.is_zero()),
            backend_request: d(&t.backend_request),
        },
    }
}

/// The default wait between retries when the rule gives none (Envoy's base interval).
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(25);

/// A rule's retries (attempts unset: once more).
fn retry(r: &podnet_model::gateway_api::HTTPRouteRetry) -> Retry {
    Retry {
        codes: r
            .codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
        attempts: r
            .attempts
            .map_or(1, |a| u32::try_from(a).unwrap_or(0).min(MAX_RETRIES)),
        backoff: r
            .backoff
            .as_deref()
            .and_then(podnet_model::gateway_api::gateway_duration)
            .unwrap_or(RETRY_BACKOFF),
    }
}

/// The most retries a rule may ask for.
pub const MAX_RETRIES: u32 = 10;

/// A route's rules, one route table entry per match and host.
pub(super) fn routes_of(
    r: &HTTPRoute,
    kind: &'static str,
    key: &NsName,
    hosts: &[HostMatch],
    resolved: &[Resolved],
) -> Vec<Route> {
    let created = r
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let default_rules = [podnet_model::gateway_api::HTTPRouteRule::default()];
    let rules: &[podnet_model::gateway_api::HTTPRouteRule] = match &r.spec.rules {
        Some(rules) => rules,
        None => &default_rules,
    };
    let mut out = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let request_headers = merged(&rule.filters, |f| f.request_header_modifier.as_ref());
        let response_headers = merged(&rule.filters, |f| f.response_header_modifier.as_ref());
        let redirect = rule
            .filters
            .iter()
            .find_map(|f| f.request_redirect.as_ref());
        let rewrite = rule.filters.iter().find_map(|f| f.url_rewrite.as_ref());
        let action = match redirect {
            Some(rd) => Action::Redirect {
                redirect: redirect_of(rd),
                response_headers: response_headers.clone(),
            },
            None => Action::Forward {
                backends: rule
                    .backend_refs
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(bi, b)| WeightedBackend {
                        backend: resolved
                            .get(ri)
                            .and_then(|r| r.backends.get(bi))
                            .cloned()
                            .flatten(),
                        weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
                        request_headers: merged(&b.filters, |f| f.request_header_modifier.as_ref()),
                        redirect: b
                            .filters
                            .iter()
                            .find_map(|f| f.request_redirect.as_ref())
                            .map(redirect_of),
                        rewrite: b
                            .filters
                            .iter()
                            .find_map(|f| f.url_rewrite.as_ref())
                            .map(rewrite_of),
                    })
                    .collect(),
                request_headers,
                response_headers,
                rewrite: rewrite.map(rewrite_of),
                timeouts: timeouts(rule.timeouts.as_ref()),
                retry: rule.retry.as_ref().map(retry),
                mirrors: rule
                    .filters
                    .iter()
                    .filter_map(|f| f.request_mirror.as_ref())
                    .enumerate()
                    .map(|(k, m)| Mirror {
                        backend: resolved
                            .get(ri)
                            .and_then(|r| r.mirrors.get(k))
                            .cloned()
                            .flatten(),
                        per_million: mirror_share(m),
                    })
                    .collect(),
                cors: rule
                    .filters
                    .iter()
                    .find_map(|f| f.cors.as_ref())
                    .map(|c| Box::new(cors(c))),
            },
        };
        let default_match = [podnet_model::gateway_api::HTTPRouteMatch::default()];
        let matches: &[podnet_model::gateway_api::HTTPRouteMatch] = match &rule.matches {
            Some(m) if !m.is_empty() => m,
            _ => &default_match,
        };
        for (mi, m) in matches.iter().enumerate() {
            let value = m
                .path
                .as_ref()
                .and_then(|p| p.value.as_deref())
                .unwrap_or("/");
            let path = match m.path.as_ref().and_then(|p| p.type_.as_deref()) {
                Some("Exact") => PathMatch::Exact(value.to_string()),
                _ => PathMatch::Prefix(value.trim_end_matches('/').to_string()),
            };
            // Only the first entry of an equivalent name counts.
            let mut headers: Vec<(String, String)> = Vec::new();
            for h in &m.headers {
                let n = h.name.to_ascii_lowercase();
                if !headers.iter().any(|(k, _)| *k == n) {
                    headers.push((n, h.value.clone()));
                }
            }
            let mut query: Vec<(String, String)> = Vec::new();
            for q in &m.query_params {
                if !query.iter().any(|(k, _)| *k == q.name) {
                    query.push((q.name.clone(), q.value.clone()));
                }
            }
            let when = Conditions {
                method: m.method.clone(),
                headers,
                query,
            };
            for h in hosts {
                out.push(Route {
                    host: h.clone(),
                    path: path.clone(),
                    when: when.clone(),
                    action: action.clone(),
                    source: Source {
                        kind,
                        object: key.clone(),
                        rule: ri,
                        path: mi,
                    },
                    created: created.clone(),
                });
            }
        }
    }
    out
}

/// A Gateway's edge configuration, from its listeners.
pub(super) fn edge_config(c: &Cluster, g: &Gateway, ls: Vec<ListenerState>) -> EdgeConfig {
    let key = key_of(&g.metadata);
    let mut ports: BTreeMap<u16, PortConfig> = BTreeMap::new();
    let mut certs: Vec<HostCert> = Vec::new();
    for st in ls {
        if !st.valid {
            continue;
        }
        // `ns/gateway/listener`, or `ns/gateway/ns/set/listener` for a ListenerSet's.
        let name = match &st.owner {
            None => format!("{key}/{}", st.listener.name),
            Some(set) => format!("{key}/{set}/{}", st.listener.name),
        };
        certs.extend(st.certs.iter().cloned());
        let port = ports.entry(st.port).or_insert_with(|| PortConfig {
            tls: st.tls,
            listeners: Vec::new(),
            streams: Vec::new(),
            client_validation: st.client_validation.clone(),
        });
        if let Some(terminate) = st.stream {
            let mut routes = st.streams;
            // The most specific hostname first; among equals, the route attached first.
            routes.sort_by_key(|r| std::cmp::Reverse(r.host.specificity()));
            port.streams.push(StreamListener {
                name,
                host: st.host.clone(),
                terminate,
                routes,
            });
            continue;
        }
        port.listeners.push(ListenerRoutes {
            name,
            host: st.host.clone(),
            table: RouteTable::gateway(st.routes),
        });
    }
    for p in ports.values_mut() {
        p.listeners
            .sort_by_key(|l| std::cmp::Reverse(l.host.specificity()));
        p.streams
            .sort_by_key(|l| std::cmp::Reverse(l.host.specificity()));
    }
    certs.sort_by_key(|c| std::cmp::Reverse(c.host.specificity()));
    let mut warnings = Vec::new();
    let backends: Vec<Backend> = ports
        .values()
        .flat_map(|p| &p.listeners)
        .flat_map(|l| l.table.backends())
        .chain(
            ports
                .values()
                .flat_map(|p| &p.streams)
                .flat_map(|l| &l.routes)
                .flat_map(|r| &r.backends)
                .filter_map(|(b, _)| b.as_ref()),
        )
        .cloned()
        .collect();
    let upstreams = podnet_routes::edge::upstreams(c, backends.iter(), &mut warnings);
    // HTTP/2 to the backends of GRPCRoutes, whatever their port's appProtocol.
    let mut h2c = podnet_routes::edge::h2c(c, upstreams.keys());
    h2c.extend(
        ports
            .values()
            .flat_map(|p| &p.listeners)
            .flat_map(|l| l.table.routes())
            .filter(|r| r.source.kind == "GRPCRoute")
            .flat_map(|r| r.backends())
            .cloned(),
    );
    EdgeConfig {
        ports,
        h2c,
        upstreams,
        certs,
        warnings,
        ..EdgeConfig::default()
    }
}
