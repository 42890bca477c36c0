//! The proxy for the benchmarks (bench/ingress.sh, bench/gateway.sh): podnet's edge proxy
//! serving one route, every host and path, to one backend on loopback, computed from
//! manifests by the same functions `podnet ingress watch` (an Ingress) or `podnet gateway
//! watch` (a Gateway and an HTTPRoute) use; only the endpoints (loopback, which no API has)
//! and the listeners' ports are put in afterwards. No access log, as nginx and HAProxy are
//! run without one.
//!
//! edge_bench ingress|gateway|gateway-mirror HTTP_ADDR HTTPS_ADDR BACKEND_ADDR THREADS CERT_PEM
//! KEY_PEM [MIRROR_ADDR]
//!
//! `gateway-mirror`: the Gateway's rule also has a RequestMirror filter (every request) to
//! the Service `mirror`, whose endpoint is MIRROR_ADDR.

use std::net::SocketAddr;

use podnet_ingress::server::{Edge, Settings};
use podnet_routes::edge::{certified_key_pem, Upstream};

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

fn manifests(mode: &str, crt: &str, key: &str) -> String {
    let common = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: bench-tls, namespace: bench}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: bench}}
spec:
  selector: {{app: backend}}
  ports: [{{port: 80}}]
---
"#,
        indent(crt),
        indent(key)
    );
    let mirror = if mode == "gateway-mirror" {
        r#"    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror, port: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: mirror, namespace: bench}
spec:
  selector: {app: mirror}
  ports: [{port: 80}]
"#
    } else {
        ""
    };
    let routes = if mode.starts_with("gateway") {
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: bench-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: backend, port: 80}]
"#
        .to_string()
            + mirror
    } else {
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: bench
  annotations: {podnet.dev/ssl-redirect: "false"}
spec:
  tls: [{secretName: bench-tls}]
  rules:
  - http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]
"#
        .to_string()
    };
    common + &routes
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, http, https, backend, threads, cert, key, mirror_at) = match &args[..] {
        [m, h, s, b, t, c, k] => (m, h, s, b, t, c, k, None),
        [m, h, s, b, t, c, k, mi] => (m, h, s, b, t, c, k, Some(mi)),
        _ => {
            eprintln!(
                "usage: edge_bench ingress|gateway|gateway-mirror HTTP_ADDR HTTPS_ADDR BACKEND_ADDR THREADS CERT_PEM KEY_PEM [MIRROR_ADDR]"
            );
            std::process::exit(2);
        }
    };
    let http: SocketAddr = http.parse().expect("HTTP_ADDR");
    let https: SocketAddr = https.parse().expect("HTTPS_ADDR");
    let backend: SocketAddr = backend.parse().expect("BACKEND_ADDR");
    let crt = std::fs::read_to_string(cert).expect("the certificate");
    let key = std::fs::read_to_string(key).expect("the key");
    let default =
        certified_key_pem(crt.as_bytes(), key.as_bytes()).expect("a certificate and its key");
    let docs = podnet_model::parse_documents("bench.yaml", &manifests(mode, &crt, &key))
        .expect("the bench's manifests parse");
    let cluster = podnet_emulator::build(&docs, &Default::default()).expect("the bench's cluster");
    let mut config = match mode.as_str() {
        "gateway" | "gateway-mirror" => {
            podnet_gateway::config(&cluster, &podnet_model::NsName::new("bench", "bench"))
                .expect("the bench's Gateway is podnet's")
        }
        "ingress" => podnet_routes::edge::config(&cluster),
        other => panic!("mode {other:?}: ingress or gateway"),
    };
    let mirror_at: Option<SocketAddr> = mirror_at.map(|m| m.parse().expect("MIRROR_ADDR"));
    for (b, u) in config.upstreams.iter_mut() {
        *u = match (b.service.name.as_str(), mirror_at) {
            ("mirror", Some(m)) => Upstream::Ready(vec![m]),
            _ => Upstream::Ready(vec![backend]),
        };
    }
    // The Gateway's listeners' ports, where the benchmark listens.
    config.ports = std::mem::take(&mut config.ports)
        .into_iter()
        .map(|(p, c)| (if p == 443 { https.port() } else { http.port() }, c))
        .collect();
    let rt = podnet_ingress::server::runtime(threads.parse().expect("THREADS")).expect("a runtime");
    rt.block_on(async {
        let edge = Edge::new(Settings {
            access_log: false,
            default_certificate: Some(default),
            ..Settings::default()
        })
        .expect("the proxy");
        edge.set(config);
        let lh = tokio::net::TcpListener::bind(http)
            .await
            .expect("HTTP_ADDR");
        let ls = tokio::net::TcpListener::bind(https)
            .await
            .expect("HTTPS_ADDR");
        tokio::spawn(edge.clone().serve_http(lh));
        tokio::spawn(edge.clone().serve_https(ls));
        println!("ready");
        std::future::pending::<()>().await;
    });
}
