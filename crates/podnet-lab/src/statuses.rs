//! The status the lab's controllers are to write through its API, as on a cluster (the
//! Ingress controller an Ingress's, each Gateway's proxy its Gateway's and its routes'
//! entries, the class controller the GatewayClasses'), computed from the same objects by the
//! same functions; `lab up` and `lab apply` wait until the API serves it ([`pending`]).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podnet_model::{ApiKey, Cluster, Kind, NsName};
use serde_json::Value;

use crate::plan::PodPlan;
use crate::{LabError, LabState};

/// A status the lab waits to see, as [`comparable`] makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub key: ApiKey,
    pub status: Value,
}

/// What of a status the lab compares: all of it, but of a route only podnet's entries (other
/// controllers' are theirs), in an order that does not depend on which proxy wrote first.
pub fn comparable(kind: Kind, status: &Value) -> Value {
    let (list, at) = match kind {
        Kind::HTTPRoute | Kind::GRPCRoute | Kind::TLSRoute => ("parents", "parentRef"),
        Kind::BackendTLSPolicy => ("ancestors", "ancestorRef"),
        _ => return status.clone(),
    };
    let mut ours: Vec<Value> = status[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["controllerName"] == podnet_gateway::CONTROLLER)
        .cloned()
        .collect();
    ours.sort_by_key(|p| p[at].to_string());
    Value::from(ours)
}

fn value<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).expect("API objects serialize")
}

fn key_of(kind: Kind, m: &ObjectMeta) -> ApiKey {
    let ns = if kind.info().namespaced {
        m.namespace.as_deref().unwrap_or("default")
    } else {
        ""
    };
    ApiKey::new(kind, ns, m.name.as_deref().unwrap_or_default())
}

/// The statuses the lab's controllers are to write for `c`, given the pods that run them (those
/// running: a pod's processes start once it has its address).
pub fn expected(c: &Cluster, st: &LabState) -> Vec<Expected> {
    let mut out = Vec::new();
    // An object's status, when its controller runs (`writer`) and has one to write.
    let mut expect =
        |kind: Kind, meta: &ObjectMeta, writer: &dyn Fn(&NsName) -> bool, st: Option<Value>| {
            let key = key_of(kind, meta);
            if let (true, Some(st)) = (writer(&NsName::new(&key.namespace, &key.name)), st) {
                let status = comparable(kind, &st);
                out.push(Expected { key, status });
            }
        };
    let running: Vec<&PodPlan> = st
        .plan
        .pods
        .iter()
        .filter(|p| st.pod_ips.contains_key(&p.key()))
        .collect();
    // The Ingresses the Ingress controller serves, with its Service's addresses.
    if running.iter().any(|p| p.ingress_controller) {
        let served: BTreeSet<NsName> = podnet_routes::edge::config(c)
            .ingresses
            .into_iter()
            .collect();
        for i in podnet_routes::edge::with_status(c) {
            let st = i.status.as_ref().map(value);
            expect(Kind::Ingress, &i.metadata, &|k| served.contains(k), st);
        }
    }
    let g = podnet_gateway::compute(c);
    // The class controller runs beside the API: every class of podnet's.
    for gc in &g.classes {
        let st = gc.status.as_ref().map(value);
        expect(Kind::GatewayClass, &gc.metadata, &|_| true, st);
    }
    // The Gateways that have a proxy, and their entries in routes.
    let proxied: BTreeSet<NsName> = running.iter().filter_map(|p| p.gateway.clone()).collect();
    for gw in &g.gateways {
        let st = gw.status.as_ref().map(value);
        expect(Kind::Gateway, &gw.metadata, &|k| proxied.contains(k), st);
    }
    // ListenerSets: written by their Gateway's proxy.
    for s in &g.listener_sets {
        let st = s.status.as_ref().map(value);
        let by_proxy = |k: &NsName| {
            podnet_gateway::gateway_of_parent(c, Some("ListenerSet"), &k.namespace, &k.name)
                .is_some_and(|gw| proxied.contains(&gw))
        };
        expect(Kind::ListenerSet, &s.metadata, &by_proxy, st);
    }
    let entries = g
        .routes
        .iter()
        .map(|r| (Kind::HTTPRoute, &r.metadata, r.status.as_ref().map(value)))
        .chain(
            g.tls_routes
                .iter()
                .map(|r| (Kind::TLSRoute, &r.metadata, r.status.as_ref().map(value))),
        )
        .chain(
            g.grpc_routes
                .iter()
                .map(|r| (Kind::GRPCRoute, &r.metadata, r.status.as_ref().map(value))),
        )
        .chain(g.backend_tls_policies.iter().map(|p| {
            (
                Kind::BackendTLSPolicy,
                &p.metadata,
                p.status.as_ref().map(value),
            )
        }));
    for (kind, meta, st) in entries {
        let key = key_of(kind, meta);
        let Some(mut st) = st else { continue };
        let (list, at) = if kind == Kind::BackendTLSPolicy {
            ("ancestors", "ancestorRef")
        } else {
            ("parents", "parentRef")
        };
        if let Some(parents) = st[list].as_array_mut() {
            parents.retain(|p| {
                podnet_gateway::gateway_of_parent(
                    c,
                    p[at]["kind"].as_str(),
                    p[at]["namespace"].as_str().unwrap_or(&key.namespace),
                    p[at]["name"].as_str().unwrap_or_default(),
                )
                .is_some_and(|gw| proxied.contains(&gw))
            });
        }
        let status = comparable(kind, &st);
        if status.as_array().is_some_and(|a| !a.is_empty()) {
            out.push(Expected { key, status });
        }
    }
    out
}

/// A client of the lab's API on the host's loopback, as its system's controllers.
pub fn client(lab: &str) -> Result<kube::Client, LabError> {
    let file = crate::serve::api_addr_file(lab);
    let addr = std::fs::read_to_string(&file).map_err(|source| LabError::Io {
        what: format!("reading {}", file.display()),
        source,
    })?;
    let url = format!("http://{}", addr.trim());
    let mut config =
        kube::Config::new(url.parse().map_err(|_| {
            LabError::Servers(format!("{}: not an address: {addr:?}", file.display()))
        })?);
    config.auth_info.token = crate::agents::system_token(lab).map(Into::into);
    kube::Client::try_from(config)
        .map_err(|e| LabError::Servers(format!("a client of the lab's API: {e}")))
}

/// The statuses of `want` the API does not serve yet, each as `Kind ns/name`.
pub async fn pending(client: &kube::Client, want: &[Expected]) -> Result<Vec<String>, kube::Error> {
    let kinds: BTreeSet<Kind> = want.iter().map(|e| e.key.kind).collect();
    let mut have: std::collections::BTreeMap<ApiKey, Value> = Default::default();
    for kind in kinds {
        let gvk = kube::api::GroupVersionKind::gvk(kind.group(), kind.version(), kind.as_str());
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, kind.plural());
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client.clone(), &ar);
        for o in api.list(&Default::default()).await?.items {
            let key = key_of(kind, &o.metadata);
            let status = comparable(kind, &o.data["status"]);
            have.insert(key, status);
        }
    }
    // Each with what differs, for whoever reads why a lab did not come up.
    let short = |v: &Value| {
        let s = v.to_string();
        match s.char_indices().nth(400) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        }
    };
    Ok(want
        .iter()
        .filter(|e| have.get(&e.key) != Some(&e.status))
        .map(|e| {
            let got = have.get(&e.key).map_or("(no such object)".into(), short);
            format!("{}: want {} have {got}", e.key, short(&e.status))
        })
        .collect())
}
