//! Writing status on a cluster: the Gateway's, its class's, and each HTTPRoute's entries for
//! this Gateway (other controllers' and other Gateways' entries are kept).

use podnet_model::gateway_api::{Gateway, GatewayClass, HTTPRoute, GROUP};
use podnet_model::{Cluster, NsName};

fn api(
    client: &kube::Client,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> kube::Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk(GROUP, "v1", kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    }
}

async fn patch(
    api: kube::Api<kube::api::DynamicObject>,
    name: &str,
    status: serde_json::Value,
    what: &str,
) {
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
    }
}

pub async fn write(
    client: &kube::Client,
    c: &Cluster,
    computed: &podnet_gateway::Computed,
    gateway: &NsName,
) {
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
        return;
    };
    let before: Option<&Gateway> = c
        .gateways
        .iter()
        .map(|x| &x.obj)
        .find(|x| held(&x.metadata) == *gateway);
    if before.map(|b| &b.status) != Some(&g.status) {
        if let Some(st) = &g.status {
            patch(
                api(client, "Gateway", "gateways", Some(&gateway.namespace)),
                &gateway.name,
                serde_json::to_value(st).unwrap_or_default(),
                &format!("Gateway {gateway}"),
            )
            .await;
        }
    }
    let class = &g.spec.gateway_class_name;
    let gc: Option<&GatewayClass> = computed
        .classes
        .iter()
        .find(|x| x.metadata.name.as_ref() == Some(class));
    let gc_before = c
        .gateway_classes
        .iter()
        .map(|x| &x.obj)
        .find(|x| x.metadata.name.as_ref() == Some(class));
    if let (Some(gc), Some(b)) = (gc, gc_before) {
        if gc.status.is_some() && gc.status != b.status {
            patch(
                api(client, "GatewayClass", "gatewayclasses", None),
                class,
                serde_json::to_value(&gc.status).unwrap_or_default(),
                &format!("GatewayClass {class}"),
            )
            .await;
        }
    }
    for r in &computed.routes {
        let key = held(&r.metadata);
        let mine = |p: &podnet_model::gateway_api::RouteParentStatus| {
            p.controller_name == podnet_gateway::CONTROLLER
                && NsName::new(
                    p.parent_ref.namespace.as_deref().unwrap_or(&key.namespace),
                    &p.parent_ref.name,
                ) == *gateway
        };
        let want: Vec<_> = r
            .status
            .iter()
            .flat_map(|s| &s.parents)
            .filter(|p| mine(p))
            .cloned()
            .collect();
        let before: Option<&HTTPRoute> = c
            .http_routes
            .iter()
            .map(|x| &x.obj)
            .find(|x| held(&x.metadata) == key);
        let Some(before) = before else { continue };
        let have: Vec<_> = before
            .status
            .iter()
            .flat_map(|s| &s.parents)
            .filter(|p| mine(p))
            .cloned()
            .collect();
        if have == want {
            continue;
        }
        let mut parents: Vec<_> = before
            .status
            .iter()
            .flat_map(|s| &s.parents)
            .filter(|p| !mine(p))
            .cloned()
            .collect();
        parents.extend(want);
        patch(
            api(client, "HTTPRoute", "httproutes", Some(&key.namespace)),
            &key.name,
            serde_json::json!({ "parents": parents }),
            &format!("HTTPRoute {key}"),
        )
        .await;
    }
}
