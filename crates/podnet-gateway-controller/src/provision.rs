//! `podnet gateway provision`: each Gateway of podnet's class gets its proxy's Deployment and
//! LoadBalancer Service in podnet-system (the same objects the lab gives it:
//! [`podnet_model::gateway::infra_manifests`]), server-side applied; those no Gateway wants any
//! more are deleted.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use podnet_model::gateway::{infra_manifests, GATEWAY_CONTROLLER, GATEWAY_NAMESPACE};
use podnet_model::{ConfigOverrides, Kind};
use podnet_watch::ProcessError;
use serde_json::Value;

use crate::ControllerError;

const MANAGER: &str = "podnet-gateway";
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "podnet-gateway");

/// The objects every Gateway of podnet's class needs, with the proxies' image.
pub fn wanted(c: &podnet_model::Cluster, image: &str) -> Vec<Value> {
    let ours: Vec<&str> = c
        .gateway_classes
        .iter()
        .filter(|g| g.obj.spec.controller_name == GATEWAY_CONTROLLER)
        .filter_map(|g| g.obj.metadata.name.as_deref())
        .collect();
    let mut out = Vec::new();
    for g in &c.gateways {
        if !ours.contains(&g.obj.spec.gateway_class_name.as_str())
            || podnet_model::gateway::listener_ports(&g.obj).is_empty()
        {
            continue;
        }
        let Ok(docs) =
            podnet_model::parse_documents("<a Gateway's proxy>", &infra_manifests(&g.obj))
        else {
            continue;
        };
        for d in docs {
            let mut v = d.value;
            v["metadata"]["labels"][MANAGED.0] = Value::from(MANAGED.1);
            if v["kind"] == "Deployment" {
                v["spec"]["template"]["spec"]["containers"][0]["image"] = Value::from(image);
            }
            out.push(v);
        }
    }
    out
}

/// Applies the objects of `want` of one kind server-side, and deletes podnet's others of that
/// kind (their Gateway went); false when a request failed (to be tried again).
async fn reconcile_kind<K>(api: kube::Api<K>, kind: Kind, want: &[&Value]) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::apply(MANAGER).force();
    let mut done = true;
    let mut names: BTreeSet<String> = BTreeSet::new();
    for v in want {
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Err(e) = api.patch(&name, &pp, &Patch::Apply(v)).await {
            eprintln!("{kind} {GATEWAY_NAMESPACE}/{name}: {e}");
            done = false;
        }
        names.insert(name);
    }
    let managed = ListParams::default().labels(&format!("{}={}", MANAGED.0, MANAGED.1));
    let list = match api.list(&managed).await {
        Ok(list) => list,
        Err(e) => {
            eprintln!("listing podnet's {kind}s in {GATEWAY_NAMESPACE}: {e}");
            return false;
        }
    };
    for o in list.items {
        let name = o.meta().name.clone().unwrap_or_default();
        if !names.contains(&name) {
            eprintln!("deleting {kind} {GATEWAY_NAMESPACE}/{name}: its Gateway went");
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                eprintln!("deleting {kind} {GATEWAY_NAMESPACE}/{name}: {e}");
                done = false;
            }
        }
    }
    done
}

async fn reconcile(client: &kube::Client, want: &[Value]) -> bool {
    let of = |k: Kind| -> Vec<&Value> {
        want.iter()
            .filter(|v| v["kind"].as_str().and_then(Kind::parse) == Some(k))
            .collect()
    };
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
    let services_done = reconcile_kind(services, Kind::Service, &of(Kind::Service)).await;
    let deployments: kube::Api<Deployment> =
        kube::Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
    let deployments_done =
        reconcile_kind(deployments, Kind::Deployment, &of(Kind::Deployment)).await;
    services_done && deployments_done
}

/// Runs the class controller with the provisioner until SIGTERM or Ctrl-C.
pub fn run(
    kubeconfig: Option<&Path>,
    settings: &ConfigOverrides,
    image: &str,
) -> Result<(), ControllerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProcessError::Runtime)?;
    rt.block_on(async move {
        eprintln!("listing and watching the Kubernetes API for Gateways");
        let client = podnet_watch::client(kubeconfig).await?;
        tokio::select! {
            r = follow(client, settings, Some(image)) => r,
            r = podnet_watch::terminated() => Ok(r?),
        }
    })
}

/// The class controller, following the API until its watches end: the status of podnet's
/// GatewayClasses and, given the proxies' image, each Gateway's proxy (without it, someone
/// else makes them: the lab does, as its emulated control plane's part).
pub async fn follow(
    client: kube::Client,
    settings: &ConfigOverrides,
    image: Option<&str>,
) -> Result<(), ControllerError> {
    let kinds = [Kind::GatewayClass, Kind::Gateway];
    let (mut model, mut watch) = podnet_watch::follow(&client, settings, &kinds).await?;
    let mut last: Option<Vec<Value>> = None;
    let mut retry = podnet_watch::Retry::new("writes");
    loop {
        let computed = podnet_gateway::compute(model.cluster());
        let mut done = crate::status::classes(&client, model.cluster(), &computed).await;
        if let Some(image) = image {
            let want = wanted(model.cluster(), image);
            if last.as_ref() != Some(&want) {
                eprintln!("{} Gateway proxies' objects", want.len());
                if reconcile(&client, &want).await {
                    last = Some(want);
                } else {
                    done = false;
                }
            }
        }
        // A status lost (an API restored without it) is a change too: it comes back. A
        // failed write is tried again after a backoff, change or not.
        retry.next_change(&mut watch, &mut model, done).await?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_gateway_of_the_class_gets_its_proxy_with_the_image() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: podnet}\nspec: {controllerName: podnet.dev/gateway}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: theirs}\nspec: {controllerName: example.com/x}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a, namespace: default}\nspec: {gatewayClassName: podnet, listeners: [{name: h, port: 80, protocol: HTTP}, {name: s, port: 8443, protocol: HTTP}]}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: b, namespace: default}\nspec: {gatewayClassName: theirs, listeners: [{name: h, port: 80, protocol: HTTP}]}\n";
        let c = cluster(yaml);
        let want = super::wanted(&c, "registry.example/podnet:1");
        let kinds: Vec<&str> = want.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Service", "Deployment"]);
        assert_eq!(want[0]["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(want[0]["spec"]["type"], "LoadBalancer");
        let container = &want[1]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/podnet:1");
        assert_eq!(container["args"][3], "default/a");
        // What the lab runs is what a cluster gets: the same objects in the model.
        let svc = c.service(
            "podnet-system",
            want[0]["metadata"]["name"].as_str().unwrap(),
        );
        assert!(svc.is_some_and(|s| s.builtin));
    }
    /// An API server that records every request and answers what kube-rs expects: the
    /// applied object back, a list holding one object of a Gateway that went, a Status for
    /// a delete.
    async fn recording_api(seen: Seen) -> std::net::SocketAddr {
        use http_body_util::BodyExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let method = req.method().to_string();
                                let uri = req.uri().to_string();
                                let ct = req
                                    .headers()
                                    .get("content-type")
                                    .map(|v| v.to_str().unwrap().to_string())
                                    .unwrap_or_default();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let body = String::from_utf8_lossy(&body).to_string();
                                seen.lock().unwrap().push(Request {
                                    method: method.clone(),
                                    uri: uri.clone(),
                                    content_type: ct,
                                    body: body.clone(),
                                });
                                let answer = match method.as_str() {
                                    "PATCH" => body,
                                    "GET" => {
                                        let (api, kind) = if uri.contains("/deployments") {
                                            ("apps/v1", "DeploymentList")
                                        } else {
                                            ("v1", "ServiceList")
                                        };
                                        serde_json::json!({"apiVersion": api, "kind": kind,
                                            "metadata": {"resourceVersion": "1"},
                                            "items": [{"metadata": {"name": "gw-default-gone-00000000",
                                                "namespace": "podnet-system"}}]})
                                        .to_string()
                                    }
                                    _ => serde_json::json!({"apiVersion": "v1", "kind": "Status",
                                        "status": "Success", "metadata": {}})
                                    .to_string(),
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(http_body_util::Full::new(hyper::body::Bytes::from(
                                            answer,
                                        )))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[test]
    fn a_proxy_writes_its_gateways_status_and_its_own_entries_of_routes() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a, namespace: default}\nspec: {gatewayClassName: podnet, listeners: [{name: h, port: 80, protocol: HTTP}]}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec: {parentRefs: [{name: a}, {name: elsewhere}]}\n";
        let mut c = cluster(yaml);
        // The route already has another controller's entry, which must stay.
        let other = serde_json::json!({"parents": [{"parentRef": {"name": "elsewhere"},
            "controllerName": "example.com/other", "conditions": []}]});
        c.http_routes[0].obj.status = Some(serde_json::from_value(other).unwrap());
        let a = podnet_model::NsName::new("default", "a");
        let computed = podnet_gateway::compute_one(&c, &a);
        let seen = recorded(|client| async move {
            crate::status::write(&client, &c, &computed, &a).await;
        });
        let patch = |path: &str| -> serde_json::Value {
            let r = seen
                .iter()
                .find(|r| r.method == "PATCH" && r.uri.starts_with(path))
                .unwrap_or_else(|| panic!("no PATCH of {path}: {seen:?}"));
            assert_eq!(r.content_type, "application/merge-patch+json");
            serde_json::from_str(&r.body).unwrap()
        };
        let gw = patch("/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/a/status");
        assert!(!gw["status"]["addresses"][0]["value"].is_null(), "{gw}");
        assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1);
        // The class is the class controller's.
        assert!(
            !seen.iter().any(|r| r.uri.contains("/gatewayclasses/")),
            "{seen:?}"
        );
        let route =
            patch("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r/status");
        let parents = route["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2, "{route}");
        assert_eq!(parents[0]["controllerName"], "example.com/other");
        assert_eq!(parents[1]["controllerName"], "podnet.dev/gateway");
        assert_eq!(parents[1]["parentRef"]["name"], "a");
    }

    #[test]
    fn the_class_controller_writes_the_status_of_podnets_classes_only_where_it_differs() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: podnet}\nspec: {controllerName: podnet.dev/gateway}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: theirs}\nspec: {controllerName: example.com/x}\n";
        let c = cluster(yaml);
        let computed = podnet_gateway::compute(&c);
        let seen = recorded(|client| async move {
            crate::status::classes(&client, &c, &computed).await;
        });
        let patches: Vec<&Request> = seen.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(patches.len(), 1, "{seen:?}");
        assert_eq!(
            patches[0].uri.split('?').next().unwrap(),
            "/apis/gateway.networking.k8s.io/v1/gatewayclasses/podnet/status"
        );
        let body: serde_json::Value = serde_json::from_str(&patches[0].body).unwrap();
        assert_eq!(body["status"]["conditions"][0]["reason"], "Accepted");
        // Once the API holds it, nothing is written.
        let mut c = cluster(yaml);
        let computed = podnet_gateway::compute(&c);
        let podnet = c
            .gateway_classes
            .iter_mut()
            .find(|g| g.obj.metadata.name.as_deref() == Some("podnet"))
            .unwrap();
        podnet.obj.status = computed
            .classes
            .iter()
            .find(|g| g.metadata.name.as_deref() == Some("podnet"))
            .unwrap()
            .status
            .clone();
        let seen = recorded(|client| async move {
            crate::status::classes(&client, &c, &computed).await;
        });
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[derive(Debug)]
    struct Request {
        method: String,
        uri: String,
        content_type: String,
        body: String,
    }

    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Request>>>;

    /// Runs `f` with a client of a [`recording_api`]; returns the requests it received.
    fn recorded<F: std::future::Future<Output = ()>>(
        f: impl FnOnce(kube::Client) -> F,
    ) -> Vec<Request> {
        let seen: Seen = Default::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let addr = recording_api(seen.clone()).await;
            let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
            f(kube::Client::try_from(config).unwrap()).await;
        });
        let requests = std::mem::take(&mut *seen.lock().unwrap());
        requests
    }

    fn cluster(yaml: &str) -> podnet_model::Cluster {
        let docs = podnet_model::parse_documents("t.yaml", yaml).unwrap();
        podnet_emulator::build(&docs, &Default::default()).unwrap()
    }

    #[test]
    fn reconciling_applies_each_proxy_server_side_and_deletes_those_of_gateways_that_went() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a, namespace: default}\nspec: {gatewayClassName: podnet, listeners: [{name: h, port: 80, protocol: HTTP}]}\n";
        let c = cluster(yaml);
        let want = super::wanted(&c, "podnet:test");
        let name = want[0]["metadata"]["name"].as_str().unwrap().to_string();
        let seen = recorded(|client| async move {
            super::reconcile(&client, &want).await;
        });
        let applied: Vec<&Request> = seen.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(applied.len(), 2, "{seen:?}");
        for r in &applied {
            assert!(r.uri.contains("/namespaces/podnet-system/"), "{r:?}");
            assert!(r.uri.contains(&format!("/{name}?")), "{r:?}");
            assert!(r.uri.contains("fieldManager=podnet-gateway"), "{r:?}");
            assert!(r.uri.contains("force=true"), "{r:?}");
            assert_eq!(r.content_type, "application/apply-patch+yaml");
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(
                v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "podnet-gateway"
            );
        }
        assert!(applied.iter().any(|r| r
            .uri
            .starts_with("/apis/apps/v1/namespaces/podnet-system/deployments/")));
        assert!(applied.iter().any(|r| r
            .uri
            .starts_with("/api/v1/namespaces/podnet-system/services/")));
        // Only podnet's own objects are listed, and the one no Gateway wants is deleted.
        assert!(
            seen.iter().filter(|r| r.method == "GET").all(|r| r
                .uri
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dpodnet-gateway")),
            "{seen:?}"
        );
        let deleted: Vec<&Request> = seen.iter().filter(|r| r.method == "DELETE").collect();
        assert_eq!(deleted.len(), 2, "{seen:?}");
        assert!(
            deleted
                .iter()
                .all(|r| r.uri.contains("gw-default-gone-00000000")),
            "{deleted:?}"
        );
    }
}
