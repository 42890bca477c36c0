//! The long-lived `nft` session, for real, in a namespace of its own (root only; a skip says
//! why, and is a failure under `CI=true`).

mod common;
use common::scratch;

use std::process::Command;

use podnet_node::effects::Linux;
use podnet_node::sys::Scratch;
use podnet_node::Effects;
use podnet_proxy::nft::{Op, Transaction};

fn policy_table(ns: &Scratch) -> String {
    ns.run(
        Command::new("nft").args(["list", "set", "ip", "podnet-policy", "local"]),
        None,
    )
    .unwrap()
}

#[test]
fn transactions_apply_whole_or_not_at_all_and_the_session_goes_on() {
    let Some(ns) = scratch() else { return };
    let mut fx = Linux::at(ns.path.clone());
    let empty = podnet_policy::PolicyPlan::default();
    let mut plan = empty.clone();
    plan.local.insert("10.244.1.0/24".parse().unwrap());
    fx.nft_policy(&podnet_policy::Transaction::create(&plan))
        .unwrap();
    assert!(policy_table(&ns).contains("10.244.1.0/24"));

    // A transaction that fails half-way changes nothing, says why, and the next one works.
    let mut bad = podnet_policy::Transaction::update(&plan, &empty);
    bad.ops
        .push(podnet_policy::Op::DeleteLocal(vec!["10.99.0.0/24"
            .parse()
            .unwrap()]));
    let err = fx.nft_policy(&bad).unwrap_err();
    let msg = podnet_node::chain(&err);
    assert!(
        msg.contains("Error:") && msg.contains("10.99.0.0/24"),
        "{msg}"
    );
    assert!(policy_table(&ns).contains("10.244.1.0/24"));

    let mut more = plan.clone();
    more.local.insert("10.244.2.0/24".parse().unwrap());
    fx.nft_policy(&podnet_policy::Transaction::update(&plan, &more))
        .unwrap();
    let listed = policy_table(&ns);
    assert!(
        listed.contains("10.244.1.0/24") && listed.contains("10.244.2.0/24"),
        "{listed}"
    );

    // The proxy's transactions take the same way; a failure is not mistaken for success.
    let err = fx
        .nft(&Transaction {
            // The proxy's table does not exist yet.
            ops: vec![Op::AddAffinityMaps(podnet_model::IpFamily::Ipv4, 30)],
        })
        .unwrap_err();
    assert!(podnet_node::chain(&err).contains("Error:"));
    fx.nft(&Transaction::create(&Default::default())).unwrap();
    let tables = ns
        .run(Command::new("nft").args(["list", "tables"]), None)
        .unwrap();
    assert!(tables.contains("podnet-proxy") && tables.contains("podnet-policy"));
}

#[test]
fn many_transactions_on_one_session() {
    let Some(ns) = scratch() else { return };
    let mut fx = Linux::at(ns.path.clone());
    let mut plan = podnet_policy::PolicyPlan::default();
    fx.nft_policy(&podnet_policy::Transaction::create(&plan))
        .unwrap();
    for i in 0..200u32 {
        let mut next = plan.clone();
        next.local = [format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()].into();
        fx.nft_policy(&podnet_policy::Transaction::update(&plan, &next))
            .unwrap();
        plan = next;
    }
    let listed = policy_table(&ns);
    assert!(listed.contains("10.0.199.0/24"), "{listed}");
    assert!(!listed.contains("10.0.198.0/24"), "{listed}");
}
