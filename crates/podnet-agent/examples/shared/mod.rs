//! What `agent_bench` and `agent_heap` both start from: a cluster of `services` pods, each
//! behind its own Service, and `policies` NetworkPolicies, as the API serves it; with the
//! environment's `CLUSTER_POLICIES`, that many ClusterNetworkPolicies too (half Admin, half
//! Baseline, each selecting two tiers' pods, with a Deny and a Pass or Accept of other tiers').

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
    let cluster: usize = std::env::var("CLUSTER_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for c in 0..cluster {
        let (tier, last) = if c % 2 == 0 {
            ("Admin", "Pass")
        } else {
            ("Baseline", "Accept")
        };
        let _ = write!(
            s,
            "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: cnp{c}}}\nspec:\n  tier: {tier}\n  priority: {}\n  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [t{}, t{}]}}]}}}}}}\n  ingress:\n  - {{name: deny, action: Deny, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{tier: t{}}}}}}}}}], protocols: [{{tcp: {{destinationPort: {{number: {}}}}}}}]}}\n  - {{name: last, action: {last}, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{tier: t{}}}}}}}}}]}}\n",
            c / 2,
            c % 100,
            (c + 50) % 100,
            (c + 7) % 100,
            9000 + c,
            (c + 13) % 100
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
