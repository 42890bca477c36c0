//! The compiled tables judge exactly as the model: for every probe step of every upstream case,
//! every pair of the 9 pods, the nodes' maps and sets (evaluated as the kernel evaluates them)
//! give the model's verdict, and so upstream's. Then the rendered tables load into nftables.

use std::collections::BTreeMap;
use std::net::IpAddr;

use podnet_model::netpol::{End, Policies};
use podnet_policy::{passes, protocol_number, PolicyPlan, Transaction};

use podnet_testkit::netpol_cases;

fn v4(ip: &IpAddr) -> IpAddr {
    assert!(ip.is_ipv4(), "the cases' cluster is IPv4");
    *ip
}

#[test]
fn the_tables_judge_every_cell_as_the_model() {
    let mut checked = 0;
    let mut tables = Vec::new();
    let ran = netpol_cases::run_cases(|p| {
        let c = &p.cluster;
        let plans: BTreeMap<String, PolicyPlan> = c
            .nodes
            .iter()
            .map(|n| (n.name.clone(), PolicyPlan::for_node(c, &n.name)))
            .collect();
        let policies = Policies::of(c);
        let pods: Vec<_> = c
            .pods
            .iter()
            .filter(|p| netpol_cases::NAMESPACES.contains(&p.namespace.as_str()))
            .collect();
        for a in &pods {
            for b in &pods {
                if a.key() == b.key() {
                    continue;
                }
                let model = policies
                    .judge(End::Pod(a), End::Pod(b), p.port, p.protocol)
                    .allowed;
                let kernel = passes(
                    &plans,
                    v4(&a.ips[0]),
                    v4(&b.ips[0]),
                    protocol_number(p.protocol),
                    p.port,
                );
                assert_eq!(
                    kernel,
                    model,
                    "{} {}/{}: {} -> {}",
                    p.case,
                    p.protocol,
                    p.port,
                    a.key(),
                    b.key()
                );
                checked += 1;
            }
        }
        tables.extend(
            plans
                .into_values()
                .map(|plan| Transaction::create(&plan).render()),
        );
    });
    let Some((probes, listed)) = ran else { return };
    assert_eq!(probes, listed);
    assert!(checked >= 72 * probes);
    load_into_nft(&tables);
}

/// Loads each rendered table into a scratch namespace (root only; said when skipped).
fn load_into_nft(tables: &[String]) {
    let dir = std::env::temp_dir().join(format!("podnet-policy-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A sample: every tenth table, and the last.
    let picked: Vec<&String> = tables.iter().step_by(10).chain(tables.last()).collect();
    for (i, t) in picked.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.nft")), t).unwrap();
    }
    let script = (0..picked.len())
        .map(|i| format!("nft -f {}/{i}.nft", dir.display()))
        .collect::<Vec<_>>()
        .join(" && ");
    let out = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let Ok(out) = out else { return };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "skipped under CI=true: needs root"
        );
        eprintln!("SKIP: loading nftables needs root");
        return;
    }
    assert!(out.status.success(), "{err}");
}

/// On a dual-stack cluster each node's tables of both families load, and an update that
/// moves a pod between groups applies on top.
#[test]
fn dual_stack_tables_load_into_nft() {
    use podnet_model::{parse_documents, ConfigOverrides};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seeds/network-policy.yaml"
    ))
    .ok();
    let extra = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: my-app}}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {role: frontend}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6-block}
spec:
  podSelector: {matchLabels: {app: my-app}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{ipBlock: {cidr: "fd00:10:244::/56", except: ["fd00:10:244:1::/64"]}}, {podSelector: {matchLabels: {role: frontend}}}]}]
  egress: [{to: [{ipBlock: {cidr: "::/0"}}], ports: [{port: 443}]}]
"#;
    let all = match text {
        Some(t) => format!("{t}\n---\n{extra}"),
        None => extra.to_string(),
    };
    let docs = parse_documents("dual.yaml", &all).unwrap();
    let o = ConfigOverrides {
        ip_family: Some(podnet_model::config::ClusterFamily::Dual),
        ..Default::default()
    };
    let c = podnet_emulator::build(&docs, &o).unwrap();
    let tables: Vec<String> = c
        .nodes
        .iter()
        .map(|n| {
            let plan = PolicyPlan::for_node(&c, &n.name);
            assert!(plan.ipv6);
            Transaction::create(&plan).render()
        })
        .collect();
    for t in &tables {
        assert!(t.contains("add table ip6 podnet-policy"), "{t}");
    }
    let groups = tables.iter().find(|t| t.contains("_pts")).expect("a group");
    assert!(
        groups.contains("add set ip6 podnet-policy ing_")
            || groups.contains("add set ip6 podnet-policy egr_"),
        "the groups in the ip6 table: {groups}"
    );
    assert!(
        groups.contains("fd00:10:244::/56") || groups.contains("fd00:10:244::-"),
        "{groups}"
    );
    load_into_nft(&tables);
}
