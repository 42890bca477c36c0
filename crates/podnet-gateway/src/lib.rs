//! Gateway API on podnet's edge proxy. Pure: from the cluster model to what each Gateway
//! serves (an [`EdgeConfig`] of the same route table as Ingress) and to the status the spec
//! asks of a controller, on GatewayClasses, Gateways and HTTPRoutes.
//!
//! The semantics, as `gateway.networking.k8s.io/v1` documents them (standard channel):
//! - a GatewayClass is podnet's when its `controllerName` is `podnet.dev/gateway`; it is
//!   Accepted unless it names `parametersRef` (podnet takes no parameters: InvalidParameters);
//! - a Gateway of such a class gets an address (its own LoadBalancer Service: see
//!   [`podnet_model::gateway`]); each listener is HTTP or HTTPS (anything else:
//!   UnsupportedProtocol), listeners on one port share its protocol (else ProtocolConflict)
//!   and differ in hostname (else HostnameConflict); an HTTPS listener terminates TLS with the
//!   `kubernetes.io/tls` Secrets of `certificateRefs`, a Secret of another namespace only
//!   when a ReferenceGrant there allows it (else RefNotPermitted);
//! - an HTTPRoute attaches to a Gateway's listeners through `parentRefs` (`sectionName` a
//!   listener's name, `port` its port), to those whose `allowedRoutes` admit the route's
//!   namespace (Same, All, Selector, None) and kind, and whose hostname intersects the
//!   route's (the listener's `*.foo.com` takes any host ending in `.foo.com`); otherwise it
//!   is not Accepted, with the spec's reason (NoMatchingParent, NotAllowedByListeners,
//!   NoMatchingListenerHostname);
//! - a route's `backendRefs` are Services (another kind: InvalidKind), in the route's
//!   namespace or one whose ReferenceGrant allows it (RefNotPermitted), that exist
//!   (BackendNotFound); a request whose share falls on a reference that cannot be used, or a
//!   rule without backends, is answered 500;
//! - within a listener, rules take precedence as [`RouteTable::gateway`] says.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use podnet_ingress::edge::{EdgeConfig, HostCert, ListenerRoutes, PortConfig};
use podnet_ingress::routes::{
    Action, Backend, BackendPort, Conditions, HeaderEdits, HostMatch, PathMatch, PathModifier,
    Redirect, Rewrite, Route, RouteTable, Source, WeightedBackend,
};
use podnet_model::gateway_api::{
    Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, GatewayStatusAddress, HTTPBackendRef,
    HTTPHeaderFilter, HTTPPathModifier, HTTPRoute, HTTPRouteFilter, Listener, ListenerStatus,
    ParentReference, RouteGroupKind, RouteParentStatus, RouteStatus, GROUP,
};
use podnet_model::{Cluster, NsName};

pub use podnet_model::gateway::{GATEWAY_CLASS, GATEWAY_CONTROLLER as CONTROLLER};

/// What the Gateway API objects of a cluster come to.
#[derive(Debug, Clone, Default)]
pub struct Computed {
    /// Every GatewayClass, podnet's with their status.
    pub classes: Vec<GatewayClass>,
    /// Every Gateway, podnet's with their status.
    pub gateways: Vec<Gateway>,
    /// Every HTTPRoute, with a status entry for each parent that is one of podnet's Gateways.
    pub routes: Vec<HTTPRoute>,
    /// What each of podnet's Gateways serves ([`compute_one`]: the one asked for alone).
    pub configs: BTreeMap<NsName, EdgeConfig>,
}

/// A listener, as this controller judged it.
#[derive(Debug, Clone)]
struct ListenerState {
    port: u16,
    tls: bool,
    host: HostMatch,
    /// Serves (Accepted, not Conflicted, refs resolved).
    valid: bool,
    /// Routes may attach (Accepted and not Conflicted).
    attachable: bool,
    kinds: Vec<RouteGroupKind>,
    conditions: Vec<Condition>,
    certs: Vec<HostCert>,
    attached: i32,
    routes: Vec<Route>,
}

fn generation(m: &ObjectMeta) -> Option<i64> {
    Some(m.generation.unwrap_or(1))
}

fn condition(m: &ObjectMeta, type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation(m),
        // Deterministic: the object's creation (what a lab computes and what a controller
        // serves must be equal).
        last_transition_time: m
            .creation_timestamp
            .clone()
            .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
    }
}

fn ns_of(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("default")
}

fn key_of(m: &ObjectMeta) -> NsName {
    NsName::new(ns_of(m), m.name.as_deref().unwrap_or_default())
}

/// Whether a ReferenceGrant in `to_ns` lets a `from_kind` of `from_ns` refer to the object
/// `to_group`/`to_kind` named `to_name`.
pub fn granted(
    c: &Cluster,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    c.reference_grants
        .iter()
        .filter(|g| ns_of(&g.obj.metadata) == to_ns)
        .any(|g| {
            g.obj
                .spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.obj.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

/// Computes everything: statuses and each Gateway's configuration.
pub fn compute(c: &Cluster) -> Computed {
    compute_for(c, None)
}

/// Every status, and the configuration of `gateway` alone (what its proxy needs).
pub fn compute_one(c: &Cluster, gateway: &NsName) -> Computed {
    compute_for(c, Some(gateway))
}

fn compute_for(c: &Cluster, only: Option<&NsName>) -> Computed {
    let mut out = Computed::default();
    // The classes.
    let mut ours: Vec<String> = Vec::new();
    for gc in &c.gateway_classes {
        let mut obj = gc.obj.clone();
        if obj.spec.controller_name == CONTROLLER {
            let m = &obj.metadata;
            let cond = if obj.spec.parameters_ref.is_some() {
                condition(
                    m,
                    "Accepted",
                    false,
                    "InvalidParameters",
                    "podnet's GatewayClass takes no parameters",
                )
            } else {
                ours.push(m.name.clone().unwrap_or_default());
                condition(m, "Accepted", true, "Accepted", "podnet serves this class")
            };
            obj.status = Some(GatewayClassStatus {
                conditions: vec![cond],
                supported_features: None,
            });
        }
        out.classes.push(obj);
    }
    // The Gateways and their listeners.
    let mut listeners: BTreeMap<NsName, Vec<ListenerState>> = BTreeMap::new();
    for g in &c.gateways {
        if !ours.contains(&g.obj.spec.gateway_class_name) {
            continue;
        }
        let key = key_of(&g.obj.metadata);
        listeners.insert(key, listener_states(c, &g.obj));
    }
    // The routes: each attaches to listeners, and says so per parent.
    let mut routes: Vec<&podnet_model::objects::Sourced<HTTPRoute>> =
        c.http_routes.iter().collect();
    routes.sort_by_key(|a| key_of(&a.obj.metadata));
    for r in routes {
        let mut obj = r.obj.clone();
        let parents = attach(c, &obj, &mut listeners);
        if !parents.is_empty() {
            obj.status = Some(RouteStatus { parents });
        }
        out.routes.push(obj);
    }
    // The Gateways' status and configuration.
    for g in &c.gateways {
        let mut obj = g.obj.clone();
        let key = key_of(&obj.metadata);
        if let Some(ls) = listeners.remove(&key) {
            let addresses = podnet_model::gateway::addresses(c, &key);
            obj.status = Some(gateway_status(&obj, &ls, &addresses));
            if only.is_none_or(|o| *o == key) {
                let config = if invalid_parameters(&obj) {
                    EdgeConfig::default()
                } else {
                    edge_config(c, &obj, ls)
                };
                out.configs.insert(key, config);
            }
        }
        out.gateways.push(obj);
    }
    out
}

/// What one Gateway serves (None: not one of podnet's).
pub fn config(c: &Cluster, gateway: &NsName) -> Option<EdgeConfig> {
    compute_one(c, gateway).configs.remove(gateway)
}

fn http_route_kind() -> RouteGroupKind {
    RouteGroupKind {
        group: Some(GROUP.into()),
        kind: "HTTPRoute".into(),
    }
}

fn listener_states(c: &Cluster, g: &Gateway) -> Vec<ListenerState> {
    let m = &g.metadata;
    let gw_ns = ns_of(m);
    let ls = &g.spec.listeners;
    ls.iter()
        .map(|l| {
            let mut conds = Vec::new();
            let supported = matches!(l.protocol.as_str(), "HTTP" | "HTTPS");
            let tls = l.protocol == "HTTPS";
            // Kinds.
            let (kinds, bad_kinds) = match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref())
            {
                Some(k) if !k.is_empty() => {
                    let good: Vec<RouteGroupKind> = k
                        .iter()
                        .filter(|k| {
                            k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GROUP) == GROUP
                        })
                        .map(|_| http_route_kind())
                        .collect();
                    let bad = good.len() < k.len();
                    (good, bad)
                }
                _ if supported => (vec![http_route_kind()], false),
                _ => (Vec::new(), false),
            };
            // Conflicts with the other listeners of the port.
            let same_port: Vec<&Listener> = ls
                .iter()
                .filter(|o| o.port == l.port && o.name != l.name)
                .collect();
            let protocol_conflict = same_port.iter().any(|o| o.protocol != l.protocol);
            let hostname_conflict = same_port
                .iter()
                .any(|o| o.protocol == l.protocol && o.hostname == l.hostname);
            // Certificates.
            let mut certs = Vec::new();
            let mut ref_problem: Option<(&str, String)> = None;
            let host = HostMatch::gateway(l.hostname.as_deref());
            if tls {
                for cr in l.tls.iter().flat_map(|t| &t.certificate_refs) {
                    let ns = cr.namespace.as_deref().unwrap_or(gw_ns);
                    let group = cr.group.as_deref().unwrap_or("");
                    let kind = cr.kind.as_deref().unwrap_or("Secret");
                    if !group.is_empty() || kind != "Secret" {
                        ref_problem.get_or_insert((
                            "InvalidCertificateRef",
                            format!(
                                "{group}/{kind} {ns}/{}: only Secrets are certificates",
                                cr.name
                            ),
                        ));
                        continue;
                    }
                    if ns != gw_ns && !granted(c, "Gateway", gw_ns, "", "Secret", ns, &cr.name) {
                        ref_problem.get_or_insert((
                            "RefNotPermitted",
                            format!(
                                "Secret {ns}/{}: no ReferenceGrant in {ns} allows it",
                                cr.name
                            ),
                        ));
                        continue;
                    }
                    match podnet_ingress::edge::certified_key(c, &NsName::new(ns, &cr.name)) {
                        Ok(key) => certs.push(HostCert {
                            host: host.clone(),
                            secret: NsName::new(ns, &cr.name),
                            key,
                        }),
                        Err(why) => {
                            ref_problem.get_or_insert((
                                "InvalidCertificateRef",
                                format!("Secret {ns}/{}: {why}", cr.name),
                            ));
                        }
                    }
                }
                if l.tls
                    .as_ref()
                    .and_then(|t| t.mode.as_deref())
                    .is_some_and(|m| m != "Terminate")
                {
                    ref_problem.get_or_insert((
                        "UnsupportedValue",
                        "only TLS mode Terminate is served".into(),
                    ));
                }
            }
            if bad_kinds && ref_problem.is_none() {
                ref_problem = Some(("InvalidRouteKinds", "only HTTPRoute is supported".into()));
            }
            let accepted = supported;
            conds.push(if accepted {
                condition(m, "Accepted", true, "Accepted", "")
            } else {
                condition(
                    m,
                    "Accepted",
                    false,
                    "UnsupportedProtocol",
                    &format!("protocol {} is not served; HTTP and HTTPS are", l.protocol),
                )
            });
            let conflicted = protocol_conflict || hostname_conflict;
            conds.push(if protocol_conflict {
                condition(
                    m,
                    "Conflicted",
                    true,
                    "ProtocolConflict",
                    "another listener of the port has another protocol",
                )
            } else if hostname_conflict {
                condition(
                    m,
                    "Conflicted",
                    true,
                    "HostnameConflict",
                    "another listener of the port has the same hostname",
                )
            } else {
                condition(m, "Conflicted", false, "NoConflicts", "")
            });
            conds.push(match &ref_problem {
                Some((reason, msg)) => condition(m, "ResolvedRefs", false, reason, msg),
                None => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
            });
            let valid =
                accepted && !conflicted && ref_problem.is_none() && (!tls || !certs.is_empty());
            conds.push(if valid {
                condition(m, "Programmed", true, "Programmed", "")
            } else {
                condition(
                    m,
                    "Programmed",
                    false,
                    "Invalid",
                    "the listener is not served",
                )
            });
            ListenerState {
                port: u16::try_from(l.port).unwrap_or(0),
                tls,
                host,
                valid,
                attachable: accepted && !conflicted,
                kinds,
                conditions: conds,
                certs,
                attached: 0,
                routes: Vec::new(),
            }
        })
        .collect()
}

fn gateway_status(
    g: &Gateway,
    ls: &[ListenerState],
    addresses: &[std::net::IpAddr],
) -> GatewayStatus {
    let m = &g.metadata;
    let any_valid = ls.iter().any(|l| l.valid);
    let any_accepted = ls.iter().any(|l| l.attachable);
    let all_accepted = ls.iter().all(|l| l.attachable);
    let mut conditions = vec![if invalid_parameters(g) {
        condition(
            m,
            "Accepted",
            false,
            "InvalidParameters",
            "podnet's Gateways take no parameters (spec.infrastructure.parametersRef)",
        )
    } else if all_accepted {
        condition(m, "Accepted", true, "Accepted", "")
    } else if any_accepted {
        // Accepted, and it says some listeners are not (the spec's reason for it).
        condition(
            m,
            "Accepted",
            true,
            "ListenersNotValid",
            "some listeners cannot be served",
        )
    } else {
        condition(
            m,
            "Accepted",
            false,
            "ListenersNotValid",
            "no listener can be served",
        )
    }];
    conditions.push(if invalid_parameters(g) {
        condition(
            m,
            "Programmed",
            false,
            "Invalid",
            "the Gateway is not accepted",
        )
    } else if addresses.is_empty() {
        condition(
            m,
            "Programmed",
            false,
            "AddressNotAssigned",
            "no address yet: the load-balancer pool gave none",
        )
    } else if !any_valid && !ls.is_empty() {
        condition(m, "Programmed", false, "Invalid", "no listener is served")
    } else {
        condition(m, "Programmed", true, "Programmed", "")
    });
    GatewayStatus {
        addresses: addresses
            .iter()
            .map(|ip| GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: ip.to_string(),
            })
            .collect(),
        conditions,
        listeners: g
            .spec
            .listeners
            .iter()
            .zip(ls)
            .map(|(l, s)| ListenerStatus {
                name: l.name.clone(),
                supported_kinds: s.kinds.clone(),
                attached_routes: s.attached,
                conditions: s.conditions.clone(),
            })
            .collect(),
    }
}

/// Whether the Gateway names parameters (podnet takes none).
fn invalid_parameters(g: &Gateway) -> bool {
    g.spec
        .infrastructure
        .as_ref()
        .is_some_and(|i| i.get("parametersRef").is_some_and(|p| !p.is_null()))
}

/// The hostnames a route serves through a listener: the intersection of the route's and the
/// listener's (None: no intersection).
fn intersect(route: &[String], listener: &HostMatch) -> Option<Vec<HostMatch>> {
    if route.is_empty() {
        return Some(vec![listener.clone()]);
    }
    let mut out = Vec::new();
    for h in route {
        let h = HostMatch::gateway(Some(h));
        let both = match (&h, listener) {
            (_, HostMatch::Any) => Some(h.clone()),
            (HostMatch::Exact(a), HostMatch::Exact(b)) => (a == b).then(|| h.clone()),
            (HostMatch::Exact(a), l) => l.matches(a).then(|| h.clone()),
            (HostMatch::Suffix(_), HostMatch::Exact(b)) => h.matches(b).then(|| listener.clone()),
            (HostMatch::Suffix(a), HostMatch::Suffix(b)) => {
                if a.ends_with(b.as_str()) {
                    Some(h.clone())
                } else if b.ends_with(a.as_str()) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(b) = both {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a listener admits routes of `route_ns`.
fn admits(c: &Cluster, g: &Gateway, l: &Listener, route_ns: &str) -> bool {
    let from = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route_ns == ns_of(&g.metadata),
        "Selector" => {
            let Some(sel) = from.and_then(|f| f.selector.as_ref()) else {
                return false;
            };
            let labels = c
                .namespaces
                .get(route_ns)
                .map(|n| n.labels.clone())
                .unwrap_or_default();
            podnet_model::selector::matches(sel, &labels)
        }
        _ => false,
    }
}

/// Attaches a route to its parents' listeners; returns its status per parent of podnet's.
fn attach(
    c: &Cluster,
    r: &HTTPRoute,
    listeners: &mut BTreeMap<NsName, Vec<ListenerState>>,
) -> Vec<RouteParentStatus> {
    let m = &r.metadata;
    let route_ns = ns_of(m);
    let route_key = key_of(m);
    let mut out = Vec::new();
    // Backends, resolved once for every parent.
    let (resolved, backend_problem) = resolve_backends(c, r);
    let unsupported = unsupported(r);
    let mut seen: Vec<&ParentReference> = Vec::new();
    for p in &r.spec.parent_refs {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        if p.group.as_deref().unwrap_or(GROUP) != GROUP
            || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let gw_key = NsName::new(p.namespace.as_deref().unwrap_or(route_ns), &p.name);
        let Some(g) = c
            .gateways
            .iter()
            .find(|g| key_of(&g.obj.metadata) == gw_key)
        else {
            continue;
        };
        let Some(states) = listeners.get_mut(&gw_key) else {
            continue; // not one of podnet's
        };
        let g = &g.obj;
        let mut candidates: Vec<usize> = g
            .spec
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| p.section_name.as_ref().is_none_or(|s| *s == l.name))
            .filter(|(_, l)| p.port.is_none_or(|port| port == l.port))
            .map(|(i, _)| i)
            .collect();
        let accepted: Result<(), (&str, String)> = if candidates.is_empty() {
            Err((
                "NoMatchingParent",
                "no listener of the Gateway matches sectionName and port".into(),
            ))
        } else {
            candidates.retain(|i| {
                let l = &g.spec.listeners[*i];
                states[*i].attachable
                    && states[*i].kinds.iter().any(|k| k.kind == "HTTPRoute")
                    && admits(c, g, l, route_ns)
            });
            if candidates.is_empty() {
                Err((
                    "NotAllowedByListeners",
                    "no listener of the Gateway admits this route".into(),
                ))
            } else {
                candidates.retain(|i| intersect(&r.spec.hostnames, &states[*i].host).is_some());
                if candidates.is_empty() {
                    Err((
                        "NoMatchingListenerHostname",
                        "no listener's hostname intersects the route's hostnames".into(),
                    ))
                } else if let Some(why) = &unsupported {
                    Err(("UnsupportedValue", why.clone()))
                } else {
                    Ok(())
                }
            }
        };
        let mut conditions = vec![match &accepted {
            Ok(()) => condition(m, "Accepted", true, "Accepted", ""),
            Err((reason, msg)) => condition(m, "Accepted", false, reason, msg),
        }];
        conditions.push(match &backend_problem {
            Some((reason, msg)) => condition(m, "ResolvedRefs", false, reason, msg),
            None => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
        });
        if accepted.is_ok() {
            for i in candidates {
                let st = &mut states[i];
                st.attached += 1;
                let hosts = intersect(&r.spec.hostnames, &st.host).unwrap_or_default();
                st.routes
                    .extend(routes_of(r, &route_key, &hosts, &resolved));
            }
        }
        out.push(RouteParentStatus {
            parent_ref: p.clone(),
            controller_name: CONTROLLER.into(),
            conditions,
        });
    }
    out
}

/// Why a route cannot be served as written (a feature podnet does not serve), if it cannot.
fn unsupported(r: &HTTPRoute) -> Option<String> {
    for rule in r.spec.rules.iter().flatten() {
        for m in rule.matches.iter().flatten() {
            if m.path.as_ref().and_then(|p| p.type_.as_deref()) == Some("RegularExpression")
                || m.headers
                    .iter()
                    .chain(&m.query_params)
                    .any(|h| h.type_.as_deref() == Some("RegularExpression"))
            {
                return Some("RegularExpression matches are not served".into());
            }
        }
        let filters = rule
            .filters
            .iter()
            .chain(rule.backend_refs.iter().flatten().flat_map(|b| &b.filters));
        for f in filters {
            if !matches!(
                f.type_.as_str(),
                "RequestHeaderModifier"
                    | "ResponseHeaderModifier"
                    | "RequestRedirect"
                    | "URLRewrite"
            ) {
                return Some(format!("filter {} is not served", f.type_));
            }
        }
    }
    None
}

/// Every backendRef resolved (None: cannot be used), by rule and place; and the first
/// problem, as ResolvedRefs says it.
#[allow(clippy::type_complexity)]
fn resolve_backends(
    c: &Cluster,
    r: &HTTPRoute,
) -> (Vec<Vec<Option<Backend>>>, Option<(&'static str, String)>) {
    let route_ns = ns_of(&r.metadata);
    let mut problem: Option<(&'static str, String)> = None;
    let resolved = r
        .spec
        .rules
        .iter()
        .flatten()
        .map(|rule| {
            rule.backend_refs
                .iter()
                .flatten()
                .map(|b| match resolve(c, route_ns, b) {
                    Ok(b) => Some(b),
                    Err(p) => {
                        problem.get_or_insert(p);
                        None
                    }
                })
                .collect()
        })
        .collect();
    (resolved, problem)
}

fn resolve(
    c: &Cluster,
    route_ns: &str,
    b: &HTTPBackendRef,
) -> Result<Backend, (&'static str, String)> {
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("{group}/{kind} {ns}/{}: only Services are backends", b.name),
        ));
    }
    if ns != route_ns && !granted(c, "HTTPRoute", route_ns, "", "Service", ns, &b.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Service {ns}/{}: no ReferenceGrant in {ns} allows it",
                b.name
            ),
        ));
    }
    if c.service(ns, &b.name).is_none() {
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
        service: NsName::new(ns, &b.name),
        port: BackendPort::Number(port),
    })
}

fn edits(f: &HTTPHeaderFilter) -> HeaderEdits {
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

fn modifier(p: &HTTPPathModifier) -> Option<PathModifier> {
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

fn merged(
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

/// A route's rules, one route table entry per match and host.
fn routes_of(
    r: &HTTPRoute,
    key: &NsName,
    hosts: &[HostMatch],
    resolved: &[Vec<Option<Backend>>],
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
                redirect: Redirect {
                    scheme: rd.scheme.clone(),
                    hostname: rd.hostname.clone(),
                    path: rd.path.as_ref().and_then(modifier),
                    port: rd.port.and_then(|p| u16::try_from(p).ok()),
                    status: rd
                        .status_code
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(302),
                },
                response_headers: response_headers.clone(),
            },
            None => Action::Forward {
                backends: rule
                    .backend_refs
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(bi, b)| WeightedBackend {
                        backend: resolved.get(ri).and_then(|r| r.get(bi)).cloned().flatten(),
                        weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0),
                        request_headers: merged(&b.filters, |f| f.request_header_modifier.as_ref()),
                    })
                    .collect(),
                request_headers,
                response_headers,
                rewrite: rewrite.map(|rw| Rewrite {
                    hostname: rw.hostname.clone(),
                    path: rw.path.as_ref().and_then(modifier),
                }),
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
                        kind: "HTTPRoute",
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
fn edge_config(c: &Cluster, g: &Gateway, ls: Vec<ListenerState>) -> EdgeConfig {
    let key = key_of(&g.metadata);
    let mut ports: BTreeMap<u16, PortConfig> = BTreeMap::new();
    let mut certs: Vec<HostCert> = Vec::new();
    for (l, st) in g.spec.listeners.iter().zip(ls) {
        if !st.valid {
            continue;
        }
        certs.extend(st.certs.iter().cloned());
        let port = ports.entry(st.port).or_insert_with(|| PortConfig {
            tls: st.tls,
            listeners: Vec::new(),
        });
        port.listeners.push(ListenerRoutes {
            name: format!("{key}/{}", l.name),
            host: st.host.clone(),
            table: RouteTable::gateway(st.routes),
        });
    }
    for p in ports.values_mut() {
        p.listeners
            .sort_by_key(|l| std::cmp::Reverse(l.host.specificity()));
    }
    certs.sort_by_key(|c| std::cmp::Reverse(c.host.specificity()));
    let mut warnings = Vec::new();
    let backends: Vec<Backend> = ports
        .values()
        .flat_map(|p| &p.listeners)
        .flat_map(|l| l.table.backends())
        .cloned()
        .collect();
    let upstreams = podnet_ingress::edge::upstreams(c, backends.iter(), &mut warnings);
    EdgeConfig {
        ports,
        upstreams,
        certs,
        warnings,
        ..EdgeConfig::default()
    }
}
