//! Every ClusterNetworkPolicy conformance case ([`podnet_testkit::cnp_cases`]): each probe
//! judged by the model (what `check --reach` and `explain` answer with) and by the compiled
//! tables of every node (their maps, chains and sets evaluated as the kernel evaluates them),
//! both equal to upstream's expectation. Then each node's tables load into nftables, state
//! after state: the first whole, each next one as the transaction from the one before (groups
//! and their tiers made and deleted, elements moved), as a node's applier would.

use std::collections::BTreeMap;

use podnet_model::netpol::{End, Policies};
use podnet_policy::{passes, protocol_number, PolicyPlan, Transaction};
use podnet_testkit::cnp_cases;

#[test]
fn every_case_statically_and_compiled_as_upstream_expects() {
    let mut wrong = Vec::new();
    // Each node's plans, state after state.
    let mut history: BTreeMap<String, Vec<PolicyPlan>> = BTreeMap::new();
    let mut last_state = String::new();
    let mut plans: BTreeMap<String, PolicyPlan> = BTreeMap::new();
    let ran = cnp_cases::run_cases(|p| {
        let c = &p.cluster;
        if p.manifests != last_state {
            plans = c
                .nodes
                .iter()
                .map(|n| (n.name.clone(), PolicyPlan::for_node(c, &n.name)))
                .collect();
            for (node, plan) in &plans {
                history.entry(node.clone()).or_default().push(plan.clone());
            }
            last_state = p.manifests.clone();
        }
        let pod = |k: &str| {
            let (ns, name) = k.split_once('/').unwrap();
            c.pod(ns, name).unwrap_or_else(|| panic!("no pod {k}"))
        };
        let (from, to) = (pod(&p.from), pod(&p.to));
        let verdict = Policies::of(c).judge(End::Pod(from), End::Pod(to), p.port, p.protocol);
        let compiled = passes(
            &plans,
            from.ips[0],
            to.ips[0],
            protocol_number(p.protocol),
            p.port,
        );
        let what = format!(
            "{} step {}: {} -> {} {}/{}",
            p.case, p.step, p.from, p.to, p.protocol, p.port
        );
        if verdict.allowed != p.allowed {
            wrong.push(format!(
                "{what}: the model says {} ({verdict:?}), upstream {} ({})",
                verdict.allowed, p.allowed, p.decided_by
            ));
        }
        if compiled != p.allowed {
            wrong.push(format!(
                "{what}: the compiled tables say {compiled}, upstream {} ({})",
                p.allowed, p.decided_by
            ));
        }
    });
    let Some((cases, probes)) = ran else { return };
    // All of upstream's: 24 tests, 301 probes.
    assert!(
        cases == 24 && probes == 301,
        "{cases} cases, {probes} probes"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    for plans in history.values() {
        let mut scripts = vec![Transaction::create(&plans[0]).render()];
        for w in plans.windows(2) {
            // The kernel's side of the plan, step by step, must be the plan.
            let tx = Transaction::update(&w[0], &w[1]);
            let mut applied = w[0].clone();
            applied.apply(&tx).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(applied, w[1]);
            scripts.push(tx.render());
        }
        load_into_nft(&scripts);
    }
}

/// Loads the scripts one after another into one scratch namespace (root only; said when
/// skipped): each must be accepted on top of the ones before.
fn load_into_nft(tables: &[String]) {
    let dir = std::env::temp_dir().join(format!("podnet-cnp-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let picked: Vec<&String> = tables.iter().filter(|t| !t.is_empty()).collect();
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
