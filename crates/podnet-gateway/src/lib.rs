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
use podnet_model::gateway_api::{
    Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, GatewayStatusAddress, HTTPBackendRef,
    HTTPHeaderFilter, HTTPPathModifier, HTTPRoute, HTTPRouteFilter, Listener, ListenerStatus,
    ParentReference, RouteGroupKind, RouteParentStatus, RouteStatus, TLSRoute, GROUP,
};
use podnet_model::{Cluster, NsName};
use podnet_routes::edge::{
    EdgeConfig, HostCert, ListenerRoutes, PortConfig, StreamListener, StreamRoute,
};
use podnet_routes::routes::{
    Action, Backend, BackendPort, Conditions, Cors, HeaderEdits, HostMatch, Mirror, PathMatch,
    PathModifier, Redirect, Retry, Rewrite, Route, RouteTable, Source, Timeouts, WeightedBackend,
};

mod attach;
mod frontend;
mod grpc;
mod listener_sets;
mod listeners;
mod policy;
mod routes;

use attach::*;
pub use listeners::granted;
use listeners::*;
use routes::*;

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
    /// Every GRPCRoute, likewise.
    pub grpc_routes: Vec<podnet_model::gateway_api::GRPCRoute>,
    /// Every TLSRoute, likewise.
    pub tls_routes: Vec<TLSRoute>,
    /// Every ListenerSet, those that name one of podnet's Gateways with their status.
    pub listener_sets: Vec<podnet_model::gateway_api::ListenerSet>,
    /// Every BackendTLSPolicy, with an ancestor entry for each of podnet's Gateways that
    /// sends to a Service port it targets.
    pub backend_tls_policies: Vec<podnet_model::gateway_api::BackendTLSPolicy>,
    /// What each of podnet's Gateways serves ([`compute_one`]: the one asked for alone).
    pub configs: BTreeMap<NsName, EdgeConfig>,
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

/// Computes everything: statuses and each Gateway's configuration.
pub fn compute(c: &Cluster) -> Computed {
    compute_for(c, None)
}

/// Every status, and the configuration of `gateway` alone (what its proxy needs).
pub fn compute_one(c: &Cluster, gateway: &NsName) -> Computed {
    compute_for(c, Some(gateway))
}

/// The Gateway API features podnet serves, as `GatewayClass.status.supportedFeatures` lists
/// them (sorted): the core ones, and each extended one whose upstream conformance cases pass
/// in the lab (`tests/lab/gateway_extended.rs` runs every case whose features are all here,
/// and fails if one does not pass).
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "GRPCRouteRequestHeaderModifier",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendRequestRedirect",
    "HTTPRouteBackendTimeout",
    "HTTPRouteBackendURLRewrite",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
];

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
            let accepted = cond.status == "True";
            obj.status = Some(GatewayClassStatus {
                conditions: vec![cond],
                supported_features: accepted.then(|| {
                    SUPPORTED_FEATURES
                        .iter()
                        .map(|f| serde_json::json!({"name": f}))
                        .collect()
                }),
            });
        }
        out.classes.push(obj);
    }
    // The Gateways and their listeners.
    let mut listeners: BTreeMap<NsName, Vec<ListenerState>> = BTreeMap::new();
    let mut sets: BTreeMap<NsName, Vec<listener_sets::Judged<'_>>> = BTreeMap::new();
    for g in &c.gateways {
        if !ours.contains(&g.obj.spec.gateway_class_name) {
            continue;
        }
        let key = key_of(&g.obj.metadata);
        let judged = listener_sets::sets_of(c, &g.obj);
        listeners.insert(key.clone(), listener_states(c, &g.obj, &judged));
        sets.insert(key, judged);
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
    // GRPCRoutes, as the HTTPRoutes they come to, on the same listeners.
    let mut grpc_routes: Vec<
        &podnet_model::objects::Sourced<podnet_model::gateway_api::GRPCRoute>,
    > = c.grpc_routes.iter().collect();
    grpc_routes.sort_by_key(|a| key_of(&a.obj.metadata));
    for r in grpc_routes {
        let mut obj = r.obj.clone();
        let (http, unsupported) = grpc::as_http(&obj);
        let parents = attach_as(c, &http, "GRPCRoute", unsupported, &mut listeners);
        if !parents.is_empty() {
            obj.status = Some(RouteStatus { parents });
        }
        out.grpc_routes.push(obj);
    }
    // TLSRoutes, the oldest first: of two with one hostname, the older one is served.
    let mut tls_routes: Vec<&podnet_model::objects::Sourced<TLSRoute>> =
        c.tls_routes.iter().collect();
    tls_routes.sort_by_key(|a| {
        (
            a.obj.metadata.creation_timestamp.clone(),
            key_of(&a.obj.metadata),
        )
    });
    for r in tls_routes {
        let mut obj = r.obj.clone();
        let parents = attach_tls(c, &obj, &mut listeners);
        if !parents.is_empty() {
            obj.status = Some(RouteStatus { parents });
        }
        out.tls_routes.push(obj);
    }
    // The Gateways' status and configuration.
    let policies = policy::judge_all(c);
    let mut used: BTreeMap<NsName, Vec<Backend>> = BTreeMap::new();
    let mut set_status: BTreeMap<NsName, podnet_model::gateway_api::ListenerSetStatus> =
        BTreeMap::new();
    for g in &c.gateways {
        let mut obj = g.obj.clone();
        let key = key_of(&obj.metadata);
        if let Some(ls) = listeners.remove(&key) {
            // The backends its HTTP routes send to (BackendTLSPolicy's ancestors).
            // (And those of TLSRoutes the proxy ends TLS for; passed through, a connection's
            // TLS is the client's own.)
            let mut backends: Vec<Backend> = ls
                .iter()
                .filter(|l| l.valid)
                .flat_map(|l| l.routes.iter().flat_map(|r| r.backends()))
                .chain(
                    ls.iter()
                        .filter(|l| l.valid && l.stream == Some(true))
                        .flat_map(|l| &l.streams)
                        .flat_map(|r| &r.backends)
                        .filter_map(|(b, _)| b.as_ref()),
                )
                .cloned()
                .collect();
            backends.sort_by_key(podnet_routes::edge::describe);
            backends.dedup();
            let client = policy::client_certificate(c, &obj);
            let addresses = podnet_model::gateway::addresses(c, &key);
            let client_ref = client
                .as_ref()
                .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone));
            let status = gateway_status(&obj, &ls, &addresses, client_ref);
            let accepted = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "True");
            for j in sets.get(&key).into_iter().flatten() {
                set_status.insert(j.key.clone(), listener_sets::status(j, &ls, accepted));
            }
            obj.status = Some(status);
            if only.is_none_or(|o| *o == key) {
                let config = if !accepted {
                    EdgeConfig::default()
                } else {
                    let mut config = edge_config(c, &obj, ls);
                    let cert = client.as_ref().and_then(|r| r.as_ref().ok());
                    config.backend_tls = policy::backend_tls(c, &policies, &backends, cert);
                    config
                };
                out.configs.insert(key.clone(), config);
            }
            used.insert(key, backends);
        }
        out.gateways.push(obj);
    }
    out.backend_tls_policies = policy::statuses(c, &policies, &used);
    out.listener_sets = c
        .listener_sets
        .iter()
        .map(|s| {
            let mut obj = s.obj.clone();
            if let Some(st) = set_status.remove(&key_of(&obj.metadata)) {
                obj.status = Some(st);
            }
            obj
        })
        .collect();
    out
}

/// The Gateway a route's parentRef (or a status entry's) comes to: the Gateway it names, or
/// the one a ListenerSet it names belongs to (None: a ListenerSet that does not exist).
pub fn gateway_of_parent(
    c: &Cluster,
    kind: Option<&str>,
    namespace: &str,
    name: &str,
) -> Option<NsName> {
    let key = NsName::new(namespace, name);
    match kind.unwrap_or("Gateway") {
        "ListenerSet" => c
            .listener_sets
            .iter()
            .find(|s| key_of(&s.obj.metadata) == key)
            .map(|s| listener_sets::parent_of(&s.obj)),
        _ => Some(key),
    }
}

/// What one Gateway serves (None: not one of podnet's).
pub fn config(c: &Cluster, gateway: &NsName) -> Option<EdgeConfig> {
    compute_one(c, gateway).configs.remove(gateway)
}
