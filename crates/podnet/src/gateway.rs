//! `podnet gateway watch`: one Gateway's proxy (podnet's edge proxy) following the Kubernetes
//! API, as the lab's Gateway pods and a cluster's per-Gateway Deployments run it. It listens
//! on each port of the Gateway's listeners (opened and closed as the listeners change).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use podnet_ingress::edge::EdgeConfig;
use podnet_ingress::server::{Edge, Settings};
use podnet_model::NsName;

use crate::ingress::{record, warn_new};
use crate::{GatewayCommand, GatewayWatch};

/// The listening sockets: one task per port, HTTP or HTTPS.
#[derive(Default)]
struct Ports {
    open: BTreeMap<u16, (bool, tokio::task::JoinHandle<()>)>,
}

impl Ports {
    /// Opens the ports the configuration has and closes the others.
    async fn follow(&mut self, edge: &Arc<Edge>, config: &EdgeConfig, ip: std::net::IpAddr) {
        let stale: Vec<u16> = self
            .open
            .iter()
            .filter(|(p, (tls, _))| config.ports.get(p).is_none_or(|c| c.tls != *tls))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            if let Some((_, task)) = self.open.remove(&p) {
                task.abort();
                eprintln!("closed port {p}");
            }
        }
        for (port, c) in &config.ports {
            if self.open.contains_key(port) {
                continue;
            }
            let at = std::net::SocketAddr::new(ip, *port);
            match tokio::net::TcpListener::bind(at).await {
                Ok(l) => {
                    let task = if c.tls {
                        tokio::spawn(edge.clone().serve_https(l))
                    } else {
                        tokio::spawn(edge.clone().serve_http(l))
                    };
                    eprintln!(
                        "listening on {at} ({})",
                        if c.tls { "HTTPS" } else { "HTTP" }
                    );
                    self.open.insert(*port, (c.tls, task));
                }
                Err(e) => eprintln!("warning: binding {at}: {e}"),
            }
        }
    }
}

pub fn run(cmd: GatewayCommand) -> Result<ExitCode> {
    match cmd {
        GatewayCommand::Watch(w) => watch(w),
        GatewayCommand::Provision { api, image } => provision::run(api, image),
    }
}

fn watch(w: GatewayWatch) -> Result<ExitCode> {
    let GatewayWatch {
        api,
        gateway,
        address,
        admin,
        served,
        write_status,
        no_access_log,
        threads,
    } = w;
    let gateway = match gateway.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => NsName::new(ns, name),
        _ => anyhow::bail!("--gateway {gateway:?}: NAMESPACE/NAME"),
    };
    let overrides = crate::agent::overrides(api.config.as_deref(), &api.cluster)?;
    let rt = podnet_ingress::server::runtime(threads)?;
    rt.block_on(async move {
        let edge = Edge::new(Settings {
            access_log: !no_access_log,
            ..Settings::default()
        })?;
        let la = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("binding {admin}"))?;
        tokio::spawn(edge.clone().serve_admin(la));
        eprintln!("listing and watching the Kubernetes API for Gateway {gateway}");
        let client = crate::agent::client(api.kubeconfig.as_deref()).await?;
        let metrics = Arc::new(podnet_agent::metrics::Metrics::default());
        let mut model = podnet_model::ApiModel::new(&overrides)?;
        let mut watch = podnet_agent::watch::ClusterWatch::start_kinds(
            &client,
            &podnet_model::api::GATEWAY_KINDS,
            metrics,
        );
        let first = watch
            .until_ready(&mut model)
            .await
            .context("the API's watches ended before their first list")?;
        for (key, why) in &first.refused {
            eprintln!("left out {key}: {why}");
        }
        let mut ports = Ports::default();
        let mut warnings: Vec<String> = Vec::new();
        let mut oldest = None;
        loop {
            let start = Instant::now();
            let computed = podnet_gateway::compute_one(model.cluster(), &gateway);
            let config = computed.configs.get(&gateway).cloned().unwrap_or_default();
            if !computed.configs.contains_key(&gateway) {
                eprintln!("Gateway {gateway} is not one of podnet's (yet): serving nothing");
            }
            warn_new(&warnings, &config);
            warnings = config.warnings.clone();
            edge.set(config.clone());
            ports.follow(&edge, &config, address).await;
            let routes: usize = config
                .ports
                .values()
                .flat_map(|p| &p.listeners)
                .map(|l| l.table.routes().len())
                .sum();
            eprintln!(
                "serving {routes} routes on {} ports, {:.1} ms after the event",
                config.ports.len(),
                oldest.unwrap_or(start).elapsed().as_secs_f64() * 1000.0
            );
            record(&served, &config)?;
            if write_status {
                status::write(&client, model.cluster(), &computed, &gateway).await;
            }
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                tokio::select! {
                    round = watch.next(&mut model) => {
                        let round = round.context("the API's watches ended")?;
                        for (key, why) in &round.refused {
                            eprintln!("left out {key}: {why}");
                        }
                        if round.changed.is_empty() {
                            continue;
                        }
                        oldest = round.oldest;
                        break;
                    }
                    _ = term.recv() => return anyhow::Ok(()),
                    _ = tokio::signal::ctrl_c() => return anyhow::Ok(()),
                }
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Writing status on a cluster: the Gateway's, its class's, and each HTTPRoute's entries for
/// this Gateway (other controllers' and other Gateways' entries are kept).
mod status {
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
}

/// `podnet gateway provision`: each Gateway of podnet's class gets its proxy's Deployment and
/// LoadBalancer Service in podnet-system (the same objects the lab gives it:
/// [`podnet_model::gateway::infra_manifests`]), server-side applied; those no Gateway wants any
/// more are deleted.
mod provision {
    use std::collections::BTreeSet;
    use std::process::ExitCode;
    use std::sync::Arc;

    use anyhow::{Context, Result};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
    use podnet_model::gateway::{infra_manifests, GATEWAY_CONTROLLER, GATEWAY_NAMESPACE};
    use serde_json::Value;

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

    async fn reconcile(client: &kube::Client, want: &[Value]) {
        let deployments: kube::Api<Deployment> =
            kube::Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
        let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), GATEWAY_NAMESPACE);
        let pp = PatchParams::apply(MANAGER).force();
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        for v in want {
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let applied = match kind.as_str() {
                "Deployment" => deployments
                    .patch(&name, &pp, &Patch::Apply(v))
                    .await
                    .map(drop),
                _ => services.patch(&name, &pp, &Patch::Apply(v)).await.map(drop),
            };
            if let Err(e) = applied {
                eprintln!("{kind} {GATEWAY_NAMESPACE}/{name}: {e}");
            }
            names.insert((kind, name));
        }
        let managed = ListParams::default().labels(&format!("{}={}", MANAGED.0, MANAGED.1));
        if let Ok(list) = deployments.list(&managed).await {
            for d in list.items {
                let name = d.metadata.name.unwrap_or_default();
                if !names.contains(&("Deployment".to_string(), name.clone())) {
                    eprintln!("deleting Deployment {GATEWAY_NAMESPACE}/{name}: its Gateway went");
                    let _ = deployments.delete(&name, &DeleteParams::default()).await;
                }
            }
        }
        if let Ok(list) = services.list(&managed).await {
            for s in list.items {
                let name = s.metadata.name.unwrap_or_default();
                if !names.contains(&("Service".to_string(), name.clone())) {
                    eprintln!("deleting Service {GATEWAY_NAMESPACE}/{name}: its Gateway went");
                    let _ = services.delete(&name, &DeleteParams::default()).await;
                }
            }
        }
    }

    pub fn run(api: crate::ApiArgs, image: String) -> Result<ExitCode> {
        let overrides = crate::agent::overrides(api.config.as_deref(), &api.cluster)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            eprintln!("listing and watching the Kubernetes API for Gateways");
            let client = crate::agent::client(api.kubeconfig.as_deref()).await?;
            let metrics = Arc::new(podnet_agent::metrics::Metrics::default());
            let mut model = podnet_model::ApiModel::new(&overrides)?;
            let mut watch = podnet_agent::watch::ClusterWatch::start_kinds(
                &client,
                &[
                    podnet_model::Kind::GatewayClass,
                    podnet_model::Kind::Gateway,
                ],
                metrics,
            );
            watch
                .until_ready(&mut model)
                .await
                .context("the API's watches ended before their first list")?;
            let mut last: Option<Vec<Value>> = None;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                let want = wanted(model.cluster(), &image);
                if last.as_ref() != Some(&want) {
                    eprintln!("{} Gateway proxies' objects", want.len());
                    reconcile(&client, &want).await;
                    last = Some(want);
                }
                tokio::select! {
                    round = watch.next(&mut model) => { round.context("the API's watches ended")?; }
                    _ = term.recv() => return anyhow::Ok(()),
                    _ = tokio::signal::ctrl_c() => return anyhow::Ok(()),
                }
            }
        })?;
        Ok(ExitCode::SUCCESS)
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
                                        _ => {
                                            serde_json::json!({"apiVersion": "v1", "kind": "Status",
                                            "status": "Success", "metadata": {}})
                                            .to_string()
                                        }
                                    };
                                    Ok::<_, std::convert::Infallible>(
                                        hyper::Response::builder()
                                            .header("content-type", "application/json")
                                            .body(http_body_util::Full::new(
                                                hyper::body::Bytes::from(answer),
                                            ))
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
        fn a_proxy_writes_its_gateways_status_its_class_and_its_own_entries_of_routes() {
            let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a, namespace: default}\nspec: {gatewayClassName: podnet, listeners: [{name: h, port: 80, protocol: HTTP}]}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec: {parentRefs: [{name: a}, {name: elsewhere}]}\n";
            let mut c = cluster(yaml);
            // The route already has another controller's entry, which must stay.
            let other = serde_json::json!({"parents": [{"parentRef": {"name": "elsewhere"},
                "controllerName": "example.com/other", "conditions": []}]});
            c.http_routes[0].obj.status = Some(serde_json::from_value(other).unwrap());
            let a = podnet_model::NsName::new("default", "a");
            let computed = podnet_gateway::compute_one(&c, &a);
            let seen = recorded(|client| async move {
                crate::gateway::status::write(&client, &c, &computed, &a).await;
            });
            let patch = |path: &str| -> serde_json::Value {
                let r = seen
                    .iter()
                    .find(|r| r.method == "PATCH" && r.uri.starts_with(path))
                    .unwrap_or_else(|| panic!("no PATCH of {path}: {seen:?}"));
                assert_eq!(r.content_type, "application/merge-patch+json");
                serde_json::from_str(&r.body).unwrap()
            };
            let gw =
                patch("/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/a/status");
            assert!(!gw["status"]["addresses"][0]["value"].is_null(), "{gw}");
            assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1);
            let class = patch("/apis/gateway.networking.k8s.io/v1/gatewayclasses/podnet/status");
            assert_eq!(class["status"]["conditions"][0]["reason"], "Accepted");
            let route =
                patch("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/r/status");
            let parents = route["status"]["parents"].as_array().unwrap();
            assert_eq!(parents.len(), 2, "{route}");
            assert_eq!(parents[0]["controllerName"], "example.com/other");
            assert_eq!(parents[1]["controllerName"], "podnet.dev/gateway");
            assert_eq!(parents[1]["parentRef"]["name"], "a");
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
}
