//! What `agent_bench` and `agent_heap` both start from: a cluster of `services` pods, each
//! behind its own Service, and `policies` NetworkPolicies, as the API serves it.

use std::fmt::Write;

use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};
use serde_json::Value;

pub fn manifests(services: usize, policies: usize) -> String {
    let mut s = String::new();
    for i in 0..services {
        let _ = write!(
            s,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, labels: {{app: a{i}, tier: t{}}}}}\nspec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 8080, name: http}}]}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{selector: {{app: a{i}}}, ports: [{{port: 80, targetPort: http}}]}}\n",
            i % 100
        );
    }
    for p in 0..policies {
        let _ = write!(
            s,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{p}}}\nspec:\n  podSelector: {{matchLabels: {{tier: t{}}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{tier: t{}}}}}}}], ports: [{{port: {}}}]}}]\n",
            p % 100,
            (p + 1) % 100,
            8000 + p
        );
    }
    s
}

/// The cluster's objects as the API serves them (JSON), of the kinds the agent watches.
pub fn objects(services: usize, policies: usize, o: &ConfigOverrides) -> Vec<Value> {
    let c = build(
        &parse_documents("bench.yaml", &manifests(services, policies)).unwrap(),
        o,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    podnet_api::project::project(&c)
        .into_iter()
        .filter(|v| {
            v["kind"]
                .as_str()
                .and_then(podnet_model::Kind::parse)
                .is_some_and(|k| podnet_model::api::KINDS.contains(&k))
        })
        .collect()
}

/// A process's resident memory, in MB (`self` or a pid).
pub fn rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
