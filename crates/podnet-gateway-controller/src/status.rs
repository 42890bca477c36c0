//! Writing status through the API, as on a cluster: a Gateway's proxy writes its Gateway's
//! and each route's (HTTPRoute's, TLSRoute's) entry for this Gateway (other controllers' and other Gateways'
//! entries are kept) ([`write`]); the class controller writes the GatewayClasses'
//! ([`classes`]).

use podnet_model::gateway_api::{Gateway, GatewayClass, RouteParentStatus, RouteStatus};
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
    let http_now: Vec<_> = computed
        .routes
        .iter()
        .map(|r| (held(&r.metadata), r.status.as_ref()))
        .collect();
    let http_before: Vec<_> = c
        .http_routes
        .iter()
        .map(|r| (held(&r.obj.metadata), r.obj.status.as_ref()))
        .collect();
    let tls_now: Vec<_> = computed
        .tls_routes
        .iter()
        .map(|r| (held(&r.metadata), r.status.as_ref()))
        .collect();
    let tls_before: Vec<_> = c
        .tls_routes
        .iter()
        .map(|r| (held(&r.obj.metadata), r.obj.status.as_ref()))
        .collect();
    for (kind, now, before) in [
        (Kind::HTTPRoute, http_now, http_before),
        (Kind::TLSRoute, tls_now, tls_before),
    ] {
        written &= routes(client, kind, gateway, &now, &before).await;
    }
    written
}

/// Writes each route's entry for `gateway` (of `now`, routes of `kind`) where the API's
/// (`before`) says otherwise, keeping the other parents' entries; false when a write failed.
async fn routes(
    client: &kube::Client,
    kind: Kind,
    gateway: &NsName,
    now: &[(NsName, Option<&RouteStatus>)],
    before: &[(NsName, Option<&RouteStatus>)],
) -> bool {
    let mut written = true;
    for (key, status) in now {
        let mine = |p: &RouteParentStatus| {
            p.controller_name == podnet_gateway::CONTROLLER
                && NsName::new(
                    p.parent_ref.namespace.as_deref().unwrap_or(&key.namespace),
                    &p.parent_ref.name,
                ) == *gateway
        };
        // A route's parents' entries, this Gateway's (`ours`) or the others'.
        let entries = |status: Option<&RouteStatus>, ours: bool| -> Vec<RouteParentStatus> {
            status
                .iter()
                .flat_map(|s| &s.parents)
                .filter(|p| mine(p) == ours)
                .cloned()
                .collect()
        };
        let want = entries(*status, true);
        let Some((_, before)) = before.iter().find(|(k, _)| k == key) else {
            continue;
        };
        if entries(*before, true) == want {
            continue;
        }
        let mut parents = entries(*before, false);
        parents.extend(want);
        written &= patch(
            api(client, kind, Some(&key.namespace)),
            &key.name,
            serde_json::json!({ "parents": parents }),
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
