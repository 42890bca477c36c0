//! kube-rs, the client podnet's agent uses, against the lab's API: the objects decode as the
//! API's own types, selectors select, and a watcher sees `lab apply`'s changes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api as KubeApi, ListParams, PostParams};
use kube::runtime::watcher;
use podnet_api::server::Api;
use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]
"#;

fn objects(text: &str) -> Vec<serde_json::Value> {
    let docs = parse_documents("m.yaml", text).unwrap();
    let c = build(&docs, &ConfigOverrides::default()).unwrap();
    podnet_api::project::project(&c)
}

async fn serve(api: Arc<Api>) -> kube::Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.serve(listener));
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_rs_lists_gets_and_watches() {
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    let client = serve(api.clone()).await;

    let pods: KubeApi<Pod> = KubeApi::default_namespaced(client.clone());
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    for p in &all.items {
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.pod_ip.is_some() && p.spec.as_ref().unwrap().node_name.is_some());
        assert!(p.metadata.uid.is_some() && p.metadata.resource_version.is_some());
    }
    let first = all.items[0].metadata.name.clone().unwrap();
    let got = pods.get(&first).await.unwrap();
    assert_eq!(got.metadata.uid, all.items[0].metadata.uid);
    let err = pods.get("nope").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );

    // Selectors, as the API server applies them.
    let node = got.spec.unwrap().node_name.unwrap();
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .unwrap();
    assert!(on_node
        .items
        .iter()
        .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(&node)));
    assert!(pods
        .list(&ListParams::default().labels("app=other"))
        .await
        .unwrap()
        .items
        .is_empty());

    let svc: KubeApi<Service> = KubeApi::default_namespaced(client.clone());
    let web = svc.get("web").await.unwrap();
    let spec = web.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    assert!(spec.ports.unwrap()[0].node_port.is_some());
    let slices: KubeApi<EndpointSlice> = KubeApi::default_namespaced(client.clone());
    let web_slices = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    let endpoints: usize = web_slices
        .items
        .iter()
        .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(endpoints, 3);
    let nodes: KubeApi<Node> = KubeApi::all(client.clone());
    let nodes = nodes.list(&ListParams::default()).await.unwrap();
    assert!(!nodes.items.is_empty());
    assert!(nodes
        .items
        .iter()
        .all(|n| n.spec.as_ref().unwrap().pod_cidrs.is_some()));
    let np: KubeApi<NetworkPolicy> = KubeApi::all(client.clone());
    assert_eq!(
        np.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    // Writes are refused with the API's own error.
    let err = np
        .create(&PostParams::default(), &NetworkPolicy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 405 && s.reason == "MethodNotAllowed"),
        "{err}"
    );

    // A watcher sees the changes of the next apply: one replica fewer.
    let mut events = watcher(pods.clone(), watcher::Config::default().labels("app=web")).boxed();
    let mut seen = 0;
    while seen < 3 {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitApply(_)))) => seen += 1,
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    api.replace(objects(&MANIFESTS.replace("replicas: 3", "replicas: 2")));
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::Delete(p)))) => {
                assert!(p.metadata.name.unwrap().starts_with("web-"));
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_watch_from_a_version_gets_every_change_after_it_and_bookmarks() {
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    let client = serve(api.clone()).await;
    let pods: KubeApi<Pod> = KubeApi::default_namespaced(client);
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.replace(objects(&MANIFESTS.replace("replicas: 3", "replicas: 4")));
    let params = kube::api::WatchParams::default().timeout(8);
    let mut stream = pods.watch(&params, &rv).await.unwrap().boxed();
    let mut added = 0;
    let mut bookmarks = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(7), stream.next()).await {
        match ev.unwrap() {
            kube::api::WatchEvent::Added(_) => added += 1,
            kube::api::WatchEvent::Bookmark(_) => {
                bookmarks += 1;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((added, bookmarks), (1, 1));
}

/// A client that opens a connection and never finishes its request's headers (slowloris) is
/// cut off after the header read timeout, and meanwhile the API serves everyone else.
#[tokio::test]
async fn a_client_that_never_sends_its_headers_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.serve(listener));
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    let start = std::time::Instant::now();
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let pods: kube::Api<Pod> = kube::Api::all(client);
    assert!(!pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    for mut c in slow {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(
            podnet_api::server::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(3),
            c.read(&mut buf),
        )
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
        // Closed, or told so (408) and closed.
        assert!(
            n == 0 || buf.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            &buf[..n]
        );
    }
    assert!(
        start.elapsed()
            >= podnet_api::server::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1)
    );
}

/// Issue 21, item 10: a list with a resource version that is not one answered 200 (a watch
/// answered 400, as the API server answers both).
#[tokio::test]
async fn a_list_with_a_resource_version_that_is_not_one_is_a_bad_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.serve(listener));
    for (path, want) in [
        ("/api/v1/pods?resourceVersion=garbage", "HTTP/1.1 400"),
        (
            "/api/v1/pods?resourceVersion=garbage&watch=true",
            "HTTP/1.1 400",
        ),
        ("/api/v1/pods?resourceVersion=0", "HTTP/1.1 200"),
        ("/api/v1/pods", "HTTP/1.1 200"),
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(want), "{path}: {text}");
        if want.ends_with("400") {
            assert!(text.contains("invalid resource version"), "{path}: {text}");
        }
    }
}

/// Issue 21, item 4: 600 watches from one client took every connection of the lab's API:
/// kubectl waited 17 s, an agent could not relist for 45 s. Now a client (a flow) holds at
/// most 32 watches and is answered 429 past them; the system level (the agents' and
/// controllers' token, kube-rs presenting it over plain HTTP) always gets in.
#[tokio::test]
async fn a_watch_flood_is_refused_past_its_share_and_the_system_level_is_served() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    api.fairness.set_system_token(Some("s3cret".into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    let mut held = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..100 {
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = tokio::io::BufReader::new(c);
        c.get_mut()
            .write_all(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut line = String::new();
        c.read_line(&mut line).await.unwrap();
        match line.split_whitespace().nth(1) {
            Some("200") => ok += 1,
            Some("429") => refused += 1,
            other => panic!("{other:?}: {line}"),
        }
        held.push(c);
    }
    assert_eq!(
        (ok, refused),
        (
            podnet_api::fairness::FLOW_WATCHES,
            100 - podnet_api::fairness::FLOW_WATCHES
        )
    );
    // The same client's short requests still get in; so does the system level, for watches.
    let anyone = {
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    };
    let pods: KubeApi<Pod> = KubeApi::all(anyone);
    assert!(!pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let system = {
        let kc = kube::config::Kubeconfig::from_yaml(&podnet_api::kubeconfig_with_token(
            "t",
            &addr.to_string(),
            Some("s3cret"),
        ))
        .unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    };
    let pods: KubeApi<Pod> = KubeApi::all(system);
    let stream = watcher(pods, watcher::Config::default());
    futures_util::pin_mut!(stream);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the system level's watch starts at once")
        .unwrap();
    assert!(first.is_ok(), "{first:?}");
    drop(held);
}

/// Issue 21, item 4, the other half: connections that never send a request filled every slot
/// until their header timeout (10 s), and a client's request waited behind them. Now past the
/// slots the longest-silent connection goes for the new one.
#[tokio::test]
async fn silent_connections_cannot_shut_out_a_client() {
    let api = Api::new();
    api.replace(objects(MANIFESTS));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.serve(listener));
    let mut silent = Vec::new();
    for _ in 0..podnet_api::server::MAX_CONNECTIONS + 20 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let pods: KubeApi<Pod> = KubeApi::all(kube::Client::try_from(config).unwrap());
    let started = std::time::Instant::now();
    let listed = tokio::time::timeout(Duration::from_secs(3), pods.list(&ListParams::default()))
        .await
        .expect("served at once, not after the silent ones' timeout")
        .unwrap();
    assert!(!listed.items.is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(silent);
}

/// Controllers write status as on a cluster: a merge patch or a PUT of `.../status` of an
/// Ingress or a Gateway API object, seen by watchers, kept while the lab changes, and nothing
/// else written; every other write is refused.
#[tokio::test]
async fn controllers_write_status_and_only_status() {
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
    const EDGE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: podnet
  rules: [{host: a.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.9}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
    let manifests = format!("{MANIFESTS}---{EDGE}");
    let api = Api::new();
    api.replace(objects(&manifests));
    let client = serve(api.clone()).await;
    let ingresses: KubeApi<Ingress> = KubeApi::default_namespaced(client.clone());
    // The status a manifest carries is not the API's: the controller's is.
    let before = ingresses.get("web").await.unwrap();
    assert!(before.status.is_none(), "{:?}", before.status);
    let mut events = watcher(ingresses.clone(), watcher::Config::default()).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    let patch = serde_json::json!({
        "spec": {"ingressClassName": "other"},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.240"}]}}
    });
    let got = ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let ip = |i: &Ingress| {
        i.status
            .as_ref()
            .unwrap()
            .load_balancer
            .as_ref()
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()[0]
            .ip
            .clone()
    };
    assert_eq!(ip(&got).as_deref(), Some("10.0.0.240"));
    // Only the status changed, with a new version.
    assert_eq!(
        got.spec.as_ref().unwrap().ingress_class_name.as_deref(),
        Some("podnet")
    );
    assert_ne!(
        got.metadata.resource_version,
        before.metadata.resource_version
    );
    let mut saw = false;
    while !saw {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::Apply(i)))) => {
                saw = ip(&i).as_deref() == Some("10.0.0.240");
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    // A PUT from an old version is a conflict; from the current one, it is taken.
    let mut stale = before.clone();
    stale.status = None;
    let err = ingresses
        .replace_status("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );
    let mut current = got.clone();
    current.status.as_mut().unwrap().load_balancer = None;
    let put = ingresses
        .replace_status("web", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(put.status.unwrap().load_balancer.is_none());
    // The lab changes (one replica fewer): the written status stays.
    let patch =
        serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.241"}]}}});
    ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    api.replace(objects(&manifests.replace("replicas: 3", "replicas: 2")));
    assert_eq!(
        ip(&ingresses.get("web").await.unwrap()).as_deref(),
        Some("10.0.0.241")
    );
    // A Gateway's, as its proxy writes it.
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "gateways");
    let gateways: KubeApi<DynamicObject> = KubeApi::namespaced_with(client.clone(), "default", &ar);
    assert!(gateways.get("gw").await.unwrap().data["status"].is_null());
    let st =
        serde_json::json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}]}});
    let gw = gateways
        .patch_status("gw", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    assert_eq!(gw.data["status"]["conditions"][0]["type"], "Accepted");
    // Strategic merge is not for custom resources; a Pod's status is not a controller's
    // here; nor is any other write taken.
    let err = gateways
        .patch_status("gw", &PatchParams::default(), &Patch::Strategic(&st))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 415),
        "{err}"
    );
    let pods: KubeApi<Pod> = KubeApi::default_namespaced(client.clone());
    let name = pods.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let err = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 405),
        "{err}"
    );
    let err = ingresses
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 405),
        "{err}"
    );
    let err = gateways
        .patch_status("nope", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );
}
