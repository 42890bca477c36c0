//! The proxy for the benchmarks (bench/ingress.sh, bench/gateway.sh): podnet's edge proxy
//! serving one route, every host and path, to one backend on loopback, computed from
//! manifests by the same functions `podnet ingress watch` (an Ingress) or `podnet gateway
//! watch` (a Gateway and an HTTPRoute) use; only the endpoints (loopback, which no API has)
//! and the listeners' ports are put in afterwards. No access log, as nginx and HAProxy are
//! run without one.
//!
//! edge_bench ingress|gateway|gateway-mirror|gateway-grpc|gateway-tls HTTP_ADDR HTTPS_ADDR
//! BACKEND_ADDR THREADS CERT_PEM KEY_PEM [MIRROR_ADDR]
//! edge_bench grpc-backend ADDR
//!
//! `gateway-mirror`: the Gateway's rule also has a RequestMirror filter (every request) to
//! the Service `mirror`, whose endpoint is MIRROR_ADDR. `gateway-grpc`: a GRPCRoute (the
//! service `bench.Echo`) on the HTTP listener, its backend spoken to in HTTP/2. `gateway-tls`:
//! the HTTPS address is a TLS Passthrough listener whose TLSRoute (`bench.example.com`) sends
//! connections to the backend as they come. `grpc-backend`: a gRPC server over cleartext
//! HTTP/2 answering every call with one small message and `grpc-status: 0` (the backend of
//! the gRPC benchmark, direct or through the proxy).

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
    let routes = if mode == "gateway-grpc" {
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: bench, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{method: {service: bench.Echo}}]
    backendRefs: [{name: backend, port: 80}]
"#
        .to_string()
    } else if mode == "gateway-tls" {
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: tls
    port: 443
    protocol: TLS
    hostname: bench.example.com
    tls: {mode: Passthrough}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: bench, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  hostnames: [bench.example.com]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
"#
        .to_string()
    } else if mode.starts_with("gateway") {
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

/// A gRPC server over cleartext HTTP/2 on `addr`: every call answered with one small message
/// and `grpc-status: 0` in the trailers.
fn grpc_backend(addr: &str) {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::{Bytes, Frame};
    let addr: SocketAddr = addr.parse().expect("ADDR");
    let rt = podnet_ingress::server::runtime(1).expect("a runtime");
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind(addr).await.expect("ADDR");
        println!("ready");
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut trailers = hyper::HeaderMap::new();
                        trailers
                            .insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
                        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                            Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let mut r = hyper::Response::new(StreamBody::new(
                            futures_util::stream::iter(frames),
                        ));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
            });
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [m, addr] = &args[..] {
        if m == "grpc-backend" {
            return grpc_backend(addr);
        }
    }
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
        "gateway" | "gateway-mirror" | "gateway-grpc" | "gateway-tls" => {
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
        if mode == "gateway-tls" {
            tokio::spawn(edge.clone().serve_tls(ls, https.port()));
        } else {
            tokio::spawn(edge.clone().serve_https(ls));
        }
        println!("ready");
        std::future::pending::<()>().await;
    });
}
