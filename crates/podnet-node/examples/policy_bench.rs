//! The NetworkPolicy table of a large node, for `bench/netpol.sh`: 10,000 pods (100
//! Deployments of 100) on one node, 1,000 policies (each isolating one app, allowing another
//! app and an ipBlock with an exception on one port). Times compiling and rendering it, then,
//! as root, in a namespace of its own, loading it and changing one pod's labels (back and forth)
//! the way a node's applier does ([`podnet_node::effects::Linux`]); and writes `full.nft` and
//! `label.nft` to DIR, for comparison with `nft -f`.
//! With CLUSTER_POLICIES, that many ClusterNetworkPolicies on top (half Admin, half Baseline).
//!   cargo run --release -p podnet-node --example policy_bench -- DIR [PODS_PER_APP] [POLICIES] [CLUSTER_POLICIES]

use std::fmt::Write;
use std::time::Instant;

use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};
use podnet_node::effects::Linux;
use podnet_node::Effects;
use podnet_policy::{PolicyPlan, Transaction};

/// `n` ClusterNetworkPolicies, half Admin and half Baseline, each selecting two apps' pods, with
/// rules of every action towards other apps' pods, networks and ports: the tiers' runs of rules
/// alternate in action, so none merge.
fn cluster_policies(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let (tier, a, b, c) = (
            if i % 2 == 0 { "Admin" } else { "Baseline" },
            i % 100,
            (i + 7) % 100,
            (i + 13) % 100,
        );
        let _ = write!(
            s,
            "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: c{i}}}\nspec:\n  tier: {tier}\n  priority: {}\n  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchExpressions: [{{key: app, operator: In, values: [a{a}, a{b}]}}]}}}}}}\n  ingress:\n  - {{name: deny-{c}, action: Deny, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: a{c}}}}}}}}}], protocols: [{{tcp: {{destinationPort: {{number: {}}}}}}}]}}\n  - {{name: pass-{c}, action: Pass, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: a{c}}}}}}}}}]}}\n  egress:\n  - {{name: deny-net, action: Deny, to: [{{networks: [192.168.{}.0/24]}}]}}\n  - {{name: accept-{b}, action: Accept, to: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: a{b}}}}}}}}}], protocols: [{{destinationNamedPort: web}}]}}\n",
            i / 2,
            9000 + i,
            i % 256
        );
    }
    s
}

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
    let cluster: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
    let o = ConfigOverrides {
        nodes: Some(1),
        node_cidr_mask_size: Some(16),
        ..Default::default()
    };
    let model = |relabel| {
        build(
            &parse_documents(
                "bench.yaml",
                &(manifests(per_app, policies, relabel) + &cluster_policies(cluster)),
            )
            .unwrap(),
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
    let rects: usize = plan.groups.values().map(|g| g.len()).sum::<usize>()
        + plan.tiers.values().map(|m| m.len()).sum::<usize>();
    eprintln!(
        "pods {} policies {policies} cluster policies {cluster} groups {} (with tiers {}, tiers {}) set elements {rects}; compile {:.1} ms, render {:.1} ms; the label change: {} ops",
        before.pods.len(),
        plan.groups.len(),
        plan.layouts.len(),
        plan.tiers.len(),
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
    // For comparison (not podnet's cold load, which is one nft transaction): the skeleton by
    // nft, then every element and map entry over netlink, in batches of at most 96 KB (their acks must fit the socket's buffer).
    {
        let ns = podnet_node::sys::Scratch::new().unwrap();
        let mut fx = Linux::at(ns.path.clone());
        let skeleton = PolicyPlan {
            local: plan.local.clone(),
            groups: plan
                .groups
                .keys()
                .map(|g| (*g, Default::default()))
                .collect(),
            layouts: plan.layouts.clone(),
            tiers: plan
                .tiers
                .keys()
                .map(|g| (*g, Default::default()))
                .collect(),
            ipv6: plan.ipv6,
            ..Default::default()
        };
        let t = Instant::now();
        fx.nft_policy(&Transaction::create(&skeleton)).unwrap();
        let skel = t.elapsed();
        let ops = Transaction::update(&skeleton, &plan)
            .element_ops()
            .expect("elements alone");
        let socket = podnet_node::nlnft::socket(&ns.path).unwrap();
        let t = Instant::now();
        let (mut seq, mut batches, mut from) = (1u32, 0, 0);
        while from < ops.len() {
            // As many operations as fit one batch.
            let mut to = ops.len();
            let batch = loop {
                let b = podnet_node::nlnft::encode(&ops[from..to], seq);
                if b.bytes.len() <= 96 << 10 || to - from == 1 {
                    break b;
                }
                to = from + (to - from) / 2;
            };
            seq = batch.end.wrapping_add(1);
            podnet_node::nlnft::apply(&socket, &batch).unwrap();
            batches += 1;
            from = to;
        }
        eprintln!(
            "for comparison, the skeleton by nft ({:.1} ms), then the elements over netlink in {batches} batches ({:.1} ms)",
            skel.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
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
