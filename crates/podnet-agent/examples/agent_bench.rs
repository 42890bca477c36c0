//! What one watch event costs the agent today, at scale: 10,000 Services (each with one pod
//! behind it), 10,000 pods and 1,000 NetworkPolicies, as the API serves them. An event (one
//! Service added) is followed by what the agent does: translate every object into the model,
//! compute the node's dataplane, and diff it with the one before (the transaction the kernel
//! would get). The kernel's part is measured by `bench/netpol.sh` and the proxy benches.
//!   cargo run --release -p podnet-agent --example agent_bench -- [SERVICES] [POLICIES]

use std::fmt::Write;
use std::time::Instant;

use podnet_model::{build, parse_documents, ConfigOverrides};
use podnet_node::dataplane::NodeDataplane;

fn manifests(services: usize, policies: usize, extra: bool) -> String {
    let mut s = String::new();
    let n = services + usize::from(extra);
    for i in 0..n {
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

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let services: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let policies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let o = ConfigOverrides {
        nodes: Some(3),
        node_cidr_mask_size: Some(18),
        ..Default::default()
    };
    let objects = |extra| {
        let c = build(
            &parse_documents("bench.yaml", &manifests(services, policies, extra)).unwrap(),
            &o,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        podnet_api::project::project(&c)
    };
    let (before, after) = (objects(false), objects(true));
    eprintln!("{} objects served; RSS {:.0} MB", before.len(), rss_mb());
    let node = |objs: &[serde_json::Value]| {
        let c = podnet_agent::translate::model(objs, &o).unwrap();
        NodeDataplane::for_node(&c, "node-0", "eth0").unwrap()
    };
    let first = node(&before);
    // Where the time goes.
    let t = Instant::now();
    let c = podnet_agent::translate::model(&after, &o).unwrap();
    let model_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let dp = NodeDataplane::for_node(&c, "node-0", "eth0").unwrap();
    let dp_ms = t.elapsed().as_secs_f64() * 1e3;
    let t2 = Instant::now();
    let plan = podnet_policy::PolicyPlan::for_node(&c, "node-0");
    let policy_ms = t2.elapsed().as_secs_f64() * 1e3;
    assert_eq!(plan, dp.policy);
    let t = Instant::now();
    let _ = podnet_proxy::nft::Transaction::update(&first.proxy, &dp.proxy);
    eprintln!(
        "of which: translate + model {model_ms:.0} ms, the node's dataplane {dp_ms:.0} ms (its policy table {policy_ms:.0} ms), diff {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let next = node(&after);
        let tx = podnet_proxy::nft::Transaction::update(&first.proxy, &next.proxy);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!tx.is_empty());
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "one Service added at {services} Services, {services} pods, {policies} policies: model + dataplane + diff {:.0} ms (median of 5, min {:.0}, max {:.0}); RSS {:.0} MB",
        times[2],
        times[0],
        times[4],
        rss_mb()
    );
}
