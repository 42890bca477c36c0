//! Building the model for a large cluster: 1k Deployments × 10 replicas = 10k pods on 50 nodes,
//! 2k Services and 50k endpoints. Goal (issue 2): under 200 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};

/// 1000 Deployments `d<i>` (labels app=d<i>, group=g<i/4>), 1000 Services selecting one
/// Deployment each (10 endpoints) and 1000 selecting a group of four (40 endpoints).
pub fn manifests() -> String {
    let mut s = String::with_capacity(4 << 20);
    for i in 0..1000 {
        s.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d{i}, namespace: ns{ns}}}\nspec:\n  replicas: 10\n  selector: {{matchLabels: {{app: d{i}}}}}\n  template:\n    metadata: {{labels: {{app: d{i}, group: g{g}}}}}\n    spec:\n      containers:\n      - name: c\n        image: x\n        ports: [{{name: http, containerPort: 8080}}, {{name: metrics, containerPort: 9090}}]\n",
            ns = i / 100,
            g = i / 4
        ));
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: ns{ns}}}\nspec:\n  selector: {{app: d{i}}}\n  ports: [{{name: http, port: 80, targetPort: http}}, {{name: metrics, port: 9090}}]\n",
            ns = i / 100
        ));
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: g{i}, namespace: ns{ns}}}\nspec:\n  type: NodePort\n  selector: {{group: g{g}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n",
            ns = i / 100,
            g = i / 4
        ));
    }
    s
}

fn overrides() -> ConfigOverrides {
    ConfigOverrides {
        nodes: Some(50),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let text = manifests();
    let docs = parse_documents("bench.yaml", &text).unwrap();
    let cluster = build(&docs, &overrides()).unwrap();
    let endpoints: usize = cluster.services.iter().map(|s| s.endpoints().count()).sum();
    assert_eq!(cluster.pods.len(), 10_000);
    assert_eq!(cluster.services.len(), 2001);
    assert_eq!(endpoints, 50_000);
    eprintln!(
        "model: {} pods, {} services, {endpoints} endpoints, {} documents",
        cluster.pods.len(),
        cluster.services.len(),
        docs.len()
    );

    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    g.bench_function("build_10k_pods_2k_services_50k_endpoints", |b| {
        b.iter(|| build(&docs, &overrides()).unwrap())
    });
    g.bench_function("parse_and_build_from_yaml", |b| {
        b.iter(|| build(&parse_documents("bench.yaml", &text).unwrap(), &overrides()).unwrap())
    });
    g.bench_function("recompute_endpoints", |b| {
        let mut c = cluster.clone();
        b.iter(|| podnet_model::endpoints::compute_all(&mut c))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
