//! Writing status through the API, as on a cluster: a Gateway's proxy writes its Gateway's,
//! its ListenerSets', and each route's (HTTPRoute's, GRPCRoute's, TLSRoute's) and
//! BackendTLSPolicy's entry for this Gateway or its ListenerSets (other controllers' and
//! other Gateways' entries are kept) ([`write`]); the class controller writes the GatewayClasses'
//! ([`classes`]).

use podnet_model::gateway_api::{Gateway, GatewayClass};
use podnet_model::{Cluster, Kind, NsName};

fn api(client: &kube::Client, kind: Kind, ns: Option<&str>) -> kube::Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk(kind.group(), kind.version(), kind.as_str());
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, kind.plural());
    match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    }
}

/// Writes `status` by a merge patch; false (said on stderr) when the API refused it.
async fn patch(
    api: kube::Api<kube::api::DynamicObject>,
    name: &str,
    status: serde_json::Value,
    what: &str,
) -> bool {
    let body = serde_json::json!({ "status": status });
    if let Err(e) = api
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&body),
        )
        .await
    {
        eprintln!("{what}: writing its status: {e}");
        return false;
    }
    true
}

/// Writes the status of `gateway` and its routes' entries for it, where the API's say
/// otherwise; false when a write failed (to be tried again).
pub async fn write(
    client: &kube::Client,
    c: &Cluster,
    computed: &podnet_gateway::Computed,
    gateway: &NsName,
) -> bool {
    let held = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        NsName::new(
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or_default(),
        )
    };
    let Some(g) = computed
        .gateways
        .iter()
        .find(|g| held(&g.metadata) == *gateway)
    else {
        return true;
    };
    let mut written = true;
    let before: Option<&Gateway> = c
        .gateways
        .iter()
        .map(|x| &x.obj)
        .find(|x| held(&x.metadata) == *gateway);
    if before.map(|b| &b.status) != Some(&g.status) {
        if let Some(st) = &g.status {
            written &= patch(
                api(client, Kind::Gateway, Some(&gateway.namespace)),
                &gateway.name,
                serde_json::to_value(st).unwrap_or_default(),
                &format!("Gateway {gateway}"),
            )
            .await;
        }
    }
    let kinds: [(Kind, &str, &str, Vec<_>, Vec<_>); 4] = [
        (
            Kind::GRPCRoute,
            "parents",
            "parentRef",
            computed
                .grpc_routes
                .iter()
                .map(|r| (held(&r.metadata), json(&r.status)))
                .collect(),
            c.grpc_routes
                .iter()
                .map(|r| (held(&r.obj.metadata), json(&r.obj.status)))
                .collect(),
        ),
        (
            Kind::HTTPRoute,
            "parents",
            "parentRef",
            computed
                .routes
                .iter()
                .map(|r| (held(&r.metadata), json(&r.status)))
                .collect(),
            c.http_routes
                .iter()
                .map(|r| (held(&r.obj.metadata), json(&r.obj.status)))
                .collect(),
        ),
        (
            Kind::TLSRoute,
            "parents",
            "parentRef",
            computed
                .tls_routes
                .iter()
                .map(|r| (held(&r.metadata), json(&r.status)))
                .collect(),
            c.tls_routes
                .iter()
                .map(|r| (held(&r.obj.metadata), json(&r.obj.status)))
                .collect(),
        ),
        (
            Kind::BackendTLSPolicy,
            "ancestors",
            "ancestorRef",
            computed
                .backend_tls_policies
                .iter()
                .map(|r| (held(&r.metadata), json(&r.status)))
                .collect(),
            c.backend_tls_policies
                .iter()
                .map(|r| (held(&r.obj.metadata), json(&r.obj.status)))
                .collect(),
        ),
    ];
    for (kind, list, at, now, before) in kinds {
        written &= entries_for(client, c, kind, (list, at), gateway, &now, &before).await;
    }
    // The ListenerSets that name this Gateway: their whole status is its proxy's.
    for s in &computed.listener_sets {
        let key = held(&s.metadata);
        let Some(st) = &s.status else { continue };
        if podnet_gateway::gateway_of_parent(c, Some("ListenerSet"), &key.namespace, &key.name)
            .as_ref()
            != Some(gateway)
        {
            continue;
        }
        let before = c
            .listener_sets
            .iter()
            .find(|x| held(&x.obj.metadata) == key)
            .and_then(|x| x.obj.status.as_ref());
        if before != Some(st) {
            written &= patch(
                api(client, Kind::ListenerSet, Some(&key.namespace)),
                &key.name,
                serde_json::to_value(st).unwrap_or_default(),
                &format!("ListenerSet {key}"),
            )
            .await;
        }
    }
    written
}

fn json<T: serde::Serialize>(s: &Option<T>) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// Writes each object's entry for `gateway` (of `now`: routes' `parents`, policies'
/// `ancestors`, each naming its Gateway in `parentRef` or `ancestorRef`) where the API's
/// (`before`) says otherwise, keeping the other Gateways' and controllers' entries; false
/// when a write failed.
async fn entries_for(
    client: &kube::Client,
    c: &Cluster,
    kind: Kind,
    (list, at): (&str, &str),
    gateway: &NsName,
    now: &[(NsName, serde_json::Value)],
    before: &[(NsName, serde_json::Value)],
) -> bool {
    let mut written = true;
    for (key, status) in now {
        // This Gateway's entries: for it, or for a ListenerSet of its.
        let mine = |p: &serde_json::Value| {
            p["controllerName"] == podnet_gateway::CONTROLLER
                && podnet_gateway::gateway_of_parent(
                    c,
                    p[at]["kind"].as_str(),
                    p[at]["namespace"].as_str().unwrap_or(&key.namespace),
                    p[at]["name"].as_str().unwrap_or_default(),
                )
                .as_ref()
                    == Some(gateway)
        };
        // An object's entries, this Gateway's (`ours`) or the others'.
        let entries = |status: &serde_json::Value, ours: bool| -> Vec<serde_json::Value> {
            status[list]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| mine(p) == ours)
                .cloned()
                .collect()
        };
        let want = entries(status, true);
        let Some((_, before)) = before.iter().find(|(k, _)| k == key) else {
            continue;
        };
        if entries(before, true) == want {
            continue;
        }
        let mut all = entries(before, false);
        all.extend(want);
        written &= patch(
            api(client, kind, Some(&key.namespace)),
            &key.name,
            serde_json::Value::Object(
                [(list.to_string(), serde_json::Value::from(all))]
                    .into_iter()
                    .collect(),
            ),
            &format!("{} {key}", kind.as_str()),
        )
        .await;
    }
    written
}

/// Writes the status of each GatewayClass of podnet's controller whose status in the API
/// says otherwise; false when a write failed (to be tried again).
pub async fn classes(
    client: &kube::Client,
    c: &Cluster,
    computed: &podnet_gateway::Computed,
) -> bool {
    let mut written = true;
    for gc in &computed.classes {
        let Some(name) = gc.metadata.name.as_deref() else {
            continue;
        };
        let before: Option<&GatewayClass> = c
            .gateway_classes
            .iter()
            .map(|x| &x.obj)
            .find(|x| x.metadata.name.as_deref() == Some(name));
        let Some(before) = before else { continue };
        if gc.status.is_none() || gc.status == before.status {
            continue;
        }
        written &= patch(
            api(client, Kind::GatewayClass, None),
            name,
            serde_json::to_value(&gc.status).unwrap_or_default(),
            &format!("GatewayClass {name}"),
        )
        .await;
    }
    written
}
