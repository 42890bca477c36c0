//! The proxy for the benchmark (bench/ingress.sh): one route, every host and path, to one
//! backend on loopback, as `podnet ingress watch` serves it (the same `Edge`, its configuration
//! given here instead of computed from an API, which has no loopback endpoints). No access log,
//! as nginx and HAProxy are run without one.
//!
//! ingress_bench HTTP_ADDR HTTPS_ADDR BACKEND_ADDR THREADS CERT_PEM KEY_PEM

use std::collections::HashMap;

use podnet_ingress::edge::{certified_key_pem, EdgeConfig, Upstream};
use podnet_ingress::routes::{
    Backend, BackendPort, HostMatch, PathMatch, Route, RouteTable, Source,
};
use podnet_ingress::server::{Edge, Settings};
use podnet_model::NsName;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [http, https, backend, threads, cert, key] = &args[..] else {
        eprintln!(
            "usage: ingress_bench HTTP_ADDR HTTPS_ADDR BACKEND_ADDR THREADS CERT_PEM KEY_PEM"
        );
        std::process::exit(2);
    };
    let crt = std::fs::read(cert).expect("the certificate");
    let key = std::fs::read(key).expect("the key");
    let default = certified_key_pem(&crt, &key).expect("a certificate and its key");
    let rt = podnet_ingress::server::runtime(threads.parse().expect("THREADS")).expect("a runtime");
    rt.block_on(async {
        let edge = Edge::new(Settings {
            access_log: false,
            default_certificate: Some(default),
            ..Settings::default()
        })
        .expect("the proxy");
        let b = Backend {
            service: NsName::new("bench", "backend"),
            port: BackendPort::Number(80),
        };
        let mut upstreams = HashMap::new();
        upstreams.insert(
            b.clone(),
            Upstream::Ready(vec![backend.parse().expect("BACKEND_ADDR")]),
        );
        edge.set(EdgeConfig {
            table: RouteTable::new(
                vec![Route {
                    host: HostMatch::Any,
                    path: PathMatch::of(None, "Prefix"),
                    backend: b,
                    source: Source {
                        kind: "Ingress",
                        object: NsName::new("bench", "bench"),
                        rule: 0,
                        path: 0,
                    },
                }],
                vec![],
            ),
            upstreams,
            ..EdgeConfig::default()
        });
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
