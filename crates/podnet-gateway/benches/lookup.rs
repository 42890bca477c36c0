//! The route lookup of one request, the Ingress path against the Gateway path: the same
//! 20 host and path rules written as Ingresses and as HTTPRoutes on one Gateway listener,
//! computed by the controllers' own functions; a request for the last rule's host and path.
//! The Gateway path does two lookups more (the listener port, then the listener by host).

use criterion::{criterion_group, criterion_main, Criterion};
use podnet_routes::routes::normalize_host;

fn manifests() -> (String, String) {
    let mut ing = String::new();
    let mut gw = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n",
    );
    for i in 0..20 {
        let svc = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{ports: [{{port: 80}}]}}\n---\n");
        ing += &svc;
        gw += &format!("---\n{svc}");
        ing += &format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i{i}}}\nspec:\n  rules: [{{host: h{i}.example.com, http: {{paths: [{{path: /api/v{i}, pathType: Prefix, backend: {{service: {{name: s{i}, port: {{number: 80}}}}}}}}]}}}}]\n---\n"
        );
        gw += &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [h{i}.example.com]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: /api/v{i}}}}}], backendRefs: [{{name: s{i}, port: 80}}]}}]\n"
        );
    }
    (ing, gw)
}

fn build(text: &str) -> podnet_model::Cluster {
    let docs = podnet_model::parse_documents("bench.yaml", text).unwrap();
    podnet_emulator::build(&docs, &Default::default()).unwrap()
}

fn lookup(c: &mut Criterion) {
    let (ing, gw) = manifests();
    let ingress = podnet_routes::edge::config(&build(&ing));
    let gateway =
        podnet_gateway::config(&build(&gw), &podnet_model::NsName::new("default", "gw")).unwrap();
    let headers = http::HeaderMap::new();
    let (host, path) = ("H19.example.com:80", "/api/v19/items?page=2");
    c.bench_function("route lookup: Ingress", |b| {
        b.iter(|| {
            let name = normalize_host(std::hint::black_box(host));
            let t = &ingress.table;
            assert!(t.serve_normalized(&name, path, "GET", &headers).is_some());
        })
    });
    c.bench_function("route lookup: Gateway", |b| {
        b.iter(|| {
            let name = normalize_host(std::hint::black_box(host));
            let t = gateway
                .ports
                .get(&80)
                .and_then(|p| p.listener_normalized(&name))
                .map(|l| &l.table)
                .unwrap();
            assert!(t.serve_normalized(&name, path, "GET", &headers).is_some());
        })
    });
}

criterion_group!(benches, lookup);
criterion_main!(benches);
