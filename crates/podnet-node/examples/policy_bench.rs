//! The NetworkPolicy table of a large node, for `bench/netpol.sh`: 10,000 pods (100
//! Deployments of 100) on one node, 1,000 policies (each isolating one app, allowing another
//! app and an ipBlock with an exception on one port). Times compiling and rendering it, then,
//! as root, in a namespace of its own, loading it and changing one pod's labels (back and forth)
//! the way a node's applier does ([`podnet_node::effects::Linux`]); and writes `full.nft` and
//! `label.nft` to DIR, for comparison with `nft -f`.
//!   cargo run --release -p podnet-node --example policy_bench -- DIR [PODS_PER_APP] [POLICIES]

use std::fmt::Write;
use std::time::Instant;

use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};
use podnet_node::effects::Linux;
use podnet_node::Effects;
use podnet_policy::{PolicyPlan, Transaction};

fn manifests(per_app: usize, policies: usize, relabel: bool) -> String {
    let mut s = String::new();
    for a in 0..100 {
        let _ = write!(
            s,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app{a}}}\nspec:\n  replicas: {per_app}\n  selector: {{matchLabels: {{app: a{a}}}}}\n  template:\n    metadata: {{labels: {{app: a{a}}}}}\n    spec: {{nodeName: node-0, containers: [{{name: c, image: x, ports: [{{name: web, containerPort: 80}}]}}]}}\n"
        );
    }
    if relabel {
        // One more pod whose labels make it another app's: a label change's worth of work.
        s.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: moved, labels: {app: a1}}\nspec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{name: web, containerPort: 80}]}]}\n");
    } else {
        s.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: moved, labels: {app: a0}}\nspec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{name: web, containerPort: 80}]}]}\n");
    }
    for p in 0..policies {
        let (a, b, port) = (p % 100, (p + 1) % 100, 8000 + p);
        let net = format!("172.{}.0.0/16", 16 + p % 16);
        let _ = write!(
            s,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{p}}}\nspec:\n  podSelector: {{matchLabels: {{app: a{a}}}}}\n  ingress:\n  - from:\n    - podSelector: {{matchLabels: {{app: a{b}}}}}\n    - ipBlock: {{cidr: {net}, except: [{}/24]}}\n    ports: [{{port: {port}}}, {{port: web}}]\n",
            net.replace(".0.0/16", ".1.0")
        );
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("DIR"));
    let per_app: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let policies: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let o = ConfigOverrides {
        nodes: Some(1),
        node_cidr_mask_size: Some(16),
        ..Default::default()
    };
    let model = |relabel| {
        build(
            &parse_documents("bench.yaml", &manifests(per_app, policies, relabel)).unwrap(),
            &o,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let (before, after) = (model(false), model(true));
    let t = Instant::now();
    let plan = PolicyPlan::for_node(&before, "node-0");
    let compile = t.elapsed();
    let t = Instant::now();
    let full = Transaction::create(&plan).render();
    let render = t.elapsed();
    let plan2 = PolicyPlan::for_node(&after, "node-0");
    let update = Transaction::update(&plan, &plan2);
    let rects: usize = plan.groups.values().map(|g| g.len()).sum();
    eprintln!(
        "pods {} policies {policies} groups {} set elements {rects}; compile {:.1} ms, render {:.1} ms; the label change: {} ops",
        before.pods.len(),
        plan.groups.len(),
        compile.as_secs_f64() * 1e3,
        render.as_secs_f64() * 1e3,
        update.ops.len()
    );
    std::fs::write(dir.join("full.nft"), &full).unwrap();
    std::fs::write(dir.join("label.nft"), update.render()).unwrap();

    let ns = match podnet_node::sys::Scratch::new() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("not timing the kernel's side: {}", podnet_node::chain(&e));
            return;
        }
    };
    let mut fx = Linux::at(ns.path.clone());
    let t = Instant::now();
    fx.nft_policy(&Transaction::create(&plan)).unwrap();
    eprintln!(
        "cold load ({} bytes, nft -f): {:.1} ms",
        full.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let back = Transaction::update(&plan2, &plan);
    let mut times = Vec::new();
    for _ in 0..20 {
        for tx in [&update, &back] {
            let t = Instant::now();
            fx.nft_policy(tx).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "one pod's labels change, one transaction through the node's nft session, 40 times (there and back): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        times[times.len() - 1]
    );
}
