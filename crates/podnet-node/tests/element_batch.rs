//! The proxy's element-only transactions go to the kernel as one netlink batch: for real, in
//! namespaces of the test's own (root only; a skip says why, and is a failure under
//! `CI=true`). The batch must leave the tables exactly as nft's text of the same transaction
//! does, be all or nothing, and name what failed.

mod common;
use common::scratch;

use std::net::IpAddr;
use std::process::Command;

use podnet_model::{IpFamily, NsName, Protocol};
use podnet_node::effects::Linux;
use podnet_node::sys::Scratch;
use podnet_node::Effects;
use podnet_proxy::nft::{Elements, Transaction};
use podnet_proxy::plan::{Dispatch, Frontend, Owner, ProxyPlan};
use proptest::prelude::*;

/// A plan of both families: Services (some with session affinity, some without endpoints, some
/// dropping), node ports of each family; `seed` varies the endpoints and which is which, the
/// endpoint counts stay within 1..=3 so that two plans share their chains.
fn plan(services: u32, seed: &[u8]) -> ProxyPlan {
    let mut p = ProxyPlan {
        node: "node-0".into(),
        ..Default::default()
    };
    let at = |i: u32| u32::from(seed[i as usize % seed.len()]);
    for i in 0..services {
        let owner = Owner {
            service: NsName::new("ns", &format!("s{i}")),
            port: "80".into(),
        };
        if i % 4 == 1 {
            p.affinity.insert(owner.service.clone(), 30);
        }
        for family in IpFamily::ALL {
            let ep = |k: u32| -> IpAddr {
                match family {
                    IpFamily::Ipv4 => format!("10.244.{}.{}", i % 200, k % 250 + 2),
                    IpFamily::Ipv6 => format!("fd00:10:244:{i:x}::{:x}", k + 2),
                }
                .parse()
                .unwrap()
            };
            let vip: IpAddr = match family {
                IpFamily::Ipv4 => format!("10.96.{}.{}", i / 250, i % 250 + 1),
                IpFamily::Ipv6 => format!("fd00:10:96::{:x}", i + 1),
            }
            .parse()
            .unwrap();
            let n = at(i) % 3 + 1;
            let dispatch = match at(i + 7) % 8 {
                0 => Dispatch::Reject,
                1 => Dispatch::Drop,
                m => Dispatch::Endpoints {
                    endpoints: (0..n).map(|k| (ep(at(i + k) + k * 40), 8080)).collect(),
                    masquerade: m == 2,
                },
            };
            let proto = if i % 5 == 3 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            p.frontends.insert(
                Frontend {
                    ip: vip,
                    proto,
                    port: 80,
                },
                (owner.clone(), dispatch.clone()),
            );
            if i % 3 == 0 {
                p.node_ports
                    .insert((family, proto, 30000 + i as u16), (owner.clone(), dispatch));
            }
        }
    }
    catalogue(&mut p);
    p
}

/// A Service of every chain's shape, with a node port each (family, protocol, affinity or
/// not, 1 to 3 endpoints), so that any two plans share their chains: a change between them is
/// elements alone.
fn catalogue(p: &mut ProxyPlan) {
    let mut j = 0u16;
    for family in IpFamily::ALL {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            for affinity in [false, true] {
                for n in 1..=3u16 {
                    j += 1;
                    let owner = Owner {
                        service: NsName::new("catalogue", &format!("c{j}")),
                        port: "80".into(),
                    };
                    if affinity {
                        p.affinity.insert(owner.service.clone(), 30);
                    }
                    let ip = |k: u16| -> IpAddr {
                        match family {
                            IpFamily::Ipv4 => format!("10.97.{j}.{k}"),
                            IpFamily::Ipv6 => format!("fd00:10:97::{j:x}:{k:x}"),
                        }
                        .parse()
                        .unwrap()
                    };
                    let dispatch = Dispatch::Endpoints {
                        endpoints: (1..=n).map(|k| (ip(k), 8080)).collect(),
                        masquerade: false,
                    };
                    let vip = Frontend {
                        ip: ip(200),
                        proto,
                        port: 80,
                    };
                    p.frontends.insert(vip, (owner.clone(), dispatch.clone()));
                    p.node_ports
                        .insert((family, proto, 32000 + j), (owner, dispatch));
                }
            }
        }
    }
}

fn elements(p: &ProxyPlan) -> Elements {
    let mut e = Elements::of(p);
    e.ipv6 = true;
    e
}

/// Both tables, as nft's JSON lists them (affinity maps are the kernel's own and empty here).
fn listed(ns: &Scratch) -> serde_json::Value {
    let out = ns
        .run(Command::new("nft").args(["-j", "list", "ruleset"]), None)
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Handles count the kernel's objects in their order of creation; the two ways create the
    // same objects in the same order, but drop them from the comparison all the same: what
    // matters is what the tables hold.
    // A set's elements list in the order the set keeps them (a range set: insertion order),
    // which differs between histories of the same contents: compared as sets.
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("handle");
                m.remove("metainfo");
                if let Some(serde_json::Value::Array(elems)) = m.get_mut("elem") {
                    elems.sort_by_key(|e| e.to_string());
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// `old` then `new` in two namespaces: through the node's effects (a netlink batch, for an
/// element-only change) and through `nft -f` of the same transaction's text. Both must hold the
/// same, and hold `new`.
fn same_both_ways(old: &ProxyPlan, new: &ProxyPlan) -> Result<(), TestCaseError> {
    let (Some(a), Some(b)) = (scratch(), scratch()) else {
        return Ok(());
    };
    let (o, n) = (elements(old), elements(new));
    let create = Transaction::create(&o);
    let update = Transaction::update(&o, &n);
    prop_assert!(
        update.element_ops().is_some(),
        "the plans share their chains: {:?}",
        update
            .ops
            .iter()
            .map(|op| format!("{op:?}").chars().take(60).collect::<String>())
            .collect::<Vec<_>>()
    );
    let mut fx = Linux::at(a.path.clone());
    fx.nft(&create).unwrap();
    fx.nft(&update)
        .map_err(|e| TestCaseError::fail(podnet_node::chain(&e)))?;
    for tx in [&create, &update] {
        b.run(
            Command::new("nft").args(["-f", "-"]),
            Some(tx.render().as_bytes()),
        )
        .unwrap();
    }
    let (la, lb) = (listed(&a), listed(&b));
    prop_assert!(
        la == lb,
        "the batch and nft's text differ:\n{la:#}\n---\n{lb:#}"
    );
    // And what they hold is `new`: a fresh load of it lists the same.
    let Some(c) = scratch() else { return Ok(()) };
    c.run(
        Command::new("nft").args(["-f", "-"]),
        Some(Transaction::create(&n).render().as_bytes()),
    )
    .unwrap();
    prop_assert!(listed(&c) == la, "the update does not hold the new plan");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn an_element_batch_holds_what_nft_text_holds(
        n in 1u32..40,
        a in proptest::collection::vec(any::<u8>(), 1..16),
        b in proptest::collection::vec(any::<u8>(), 1..16),
        grow in 0u32..3,
    ) {
        // Every chain the new plan needs exists in the old one (the catalogue).
        let old = plan(n, &a);
        let new = plan(n + grow, &b);
        same_both_ways(&old, &new)?;
    }
}

#[test]
fn a_failed_batch_applies_nothing_and_names_what_failed() {
    let Some(ns) = scratch() else { return };
    let old = plan(20, &[1, 2, 3]);
    let mut fx = Linux::at(ns.path.clone());
    let o = elements(&old);
    fx.nft(&Transaction::create(&o)).unwrap();
    let before = listed(&ns);

    // Many additions, then a delete of an element the kernel does not hold.
    let new = plan(30, &[1, 2, 3]);
    let mut tx = Transaction::update(&o, &elements(&new));
    let ghost: IpAddr = "10.96.200.200".parse().unwrap();
    let mut gone = Elements::default();
    gone.hairpin.insert(ghost);
    tx.ops
        .push(podnet_proxy::nft::Op::DeleteElements(gone.iter().collect()));
    assert!(tx.element_ops().is_some());
    let err = podnet_node::chain(&fx.nft(&tx).unwrap_err());
    assert!(
        err.contains("delete element ip podnet-proxy hairpin") && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(listed(&ns), before, "a failed batch changed the tables");

    // The next batch (on a fresh socket) works.
    fx.nft(&Transaction::update(&o, &elements(&new))).unwrap();
    let Some(c) = scratch() else { return };
    c.run(
        Command::new("nft").args(["-f", "-"]),
        Some(Transaction::create(&elements(&new)).render().as_bytes()),
    )
    .unwrap();
    assert_eq!(listed(&ns), listed(&c));
}

#[test]
fn a_large_change_is_split_into_messages_of_one_batch() {
    let Some(ns) = scratch() else { return };
    let old = plan(50, &[5]);
    let new = plan(1500, &[5]);
    let (o, n) = (elements(&old), elements(&new));
    let tx = Transaction::update(&o, &n);
    let ops = tx.element_ops().expect("element-only");
    let batch = podnet_node::nlnft::encode(&ops, 1);
    assert!(
        batch.bytes.len() <= podnet_node::nlnft::BATCH_LIMIT,
        "{} bytes",
        batch.bytes.len()
    );
    let mut fx = Linux::at(ns.path.clone());
    fx.nft(&Transaction::create(&o)).unwrap();
    fx.nft(&tx).unwrap();
    let Some(c) = scratch() else { return };
    c.run(
        Command::new("nft").args(["-f", "-"]),
        Some(Transaction::create(&n).render().as_bytes()),
    )
    .unwrap();
    assert_eq!(listed(&ns), listed(&c));
}

/// A node's policy plan for pods of `labels` under `policies`, on a dual-stack cluster.
fn policy_plan(
    labels: &[usize],
    policies: &[podnet_testkit::policy_gen::Policy],
) -> podnet_policy::PolicyPlan {
    let text = podnet_testkit::policy_gen::manifests(labels, policies);
    let docs = podnet_model::parse_documents("p.yaml", &text).unwrap();
    let dual = podnet_model::ConfigOverrides {
        ip_family: Some(podnet_model::config::ClusterFamily::Dual),
        ..Default::default()
    };
    let c = podnet_emulator::build(&docs, &dual).unwrap_or_else(|e| panic!("{e}\n{text}"));
    podnet_policy::PolicyPlan::for_node(&c, &c.nodes[0].name)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The policy table's element-only changes (pods' labels changing under the same policies:
    /// points, ranges of concatenated keys, the ingress and egress maps, in both families'
    /// tables) as one netlink batch leave the tables as nft's text of the same transaction.
    #[test]
    fn a_policy_element_batch_holds_what_nft_text_holds(
        before in proptest::collection::vec(0usize..3, 6),
        after in proptest::collection::vec(0usize..3, 6),
        policies in proptest::collection::vec(podnet_testkit::policy_gen::policy(), 1..4),
    ) {
        let (old, new) = (policy_plan(&before, &policies), policy_plan(&after, &policies));
        let update = podnet_policy::Transaction::update(&old, &new);
        prop_assume!(!update.is_empty() && update.element_ops().is_some());
        let (Some(a), Some(b), Some(c)) = (scratch(), scratch(), scratch()) else {
            return Ok(());
        };
        let create = podnet_policy::Transaction::create(&old);
        let mut fx = Linux::at(a.path.clone());
        fx.nft_policy(&create).unwrap();
        fx.nft_policy(&update).map_err(|e| TestCaseError::fail(podnet_node::chain(&e)))?;
        for tx in [&create, &update] {
            b.run(Command::new("nft").args(["-f", "-"]), Some(tx.render().as_bytes()))
                .unwrap();
        }
        c.run(
            Command::new("nft").args(["-f", "-"]),
            Some(podnet_policy::Transaction::create(&new).render().as_bytes()),
        )
        .unwrap();
        let (la, lb, lc) = (listed(&a), listed(&b), listed(&c));
        prop_assert!(la == lb, "the batch and nft's text differ:\n{la:#}\n---\n{lb:#}");
        let differ: Vec<String> = la["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .zip(lc["nftables"].as_array().unwrap())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("{x}\n  fresh: {y}"))
            .collect();
        prop_assert!(la == lc, "the update does not hold the new plan:\n{}", differ.join("\n"));
    }
}
