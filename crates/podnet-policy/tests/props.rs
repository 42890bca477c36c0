//! Random policies and labels over a small cluster: the compiled tables, evaluated as the
//! kernel evaluates maps and sets, give the model's verdict on every cell.

use std::collections::BTreeMap;

use podnet_emulator::build;
use podnet_model::netpol::{End, Policies};
use podnet_model::{parse_documents, ConfigOverrides, Protocol};
use podnet_policy::{passes, protocol_number, PolicyPlan};
use proptest::prelude::*;

use podnet_testkit::policy_gen::{cluster_manifests, cluster_policy, manifests, policy};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn compiled_tables_judge_as_the_model(
        labels in proptest::collection::vec(0usize..3, 6),
        policies in proptest::collection::vec(policy(), 0..4),
    ) {
        let text = manifests(&labels, &policies);
        let docs = parse_documents("p.yaml", &text).unwrap();
        let c = build(&docs, &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plans: BTreeMap<String, PolicyPlan> =
            c.nodes.iter().map(|n| (n.name.clone(), PolicyPlan::for_node(&c, &n.name))).collect();
        let model = Policies::of(&c);
        let pods: Vec<_> = c.pods.iter().filter(|p| p.name.starts_with("pod")).collect();
        for a in &pods {
            for b in &pods {
                if a.key() == b.key() { continue; }
                for (port, proto) in [(80, Protocol::Tcp), (81, Protocol::Tcp), (80, Protocol::Udp)] {
                    let want = model.judge(End::Pod(a), End::Pod(b), port, proto).allowed;
                    let got = passes(&plans, a.ips[0], b.ips[0], protocol_number(proto), port);
                    prop_assert_eq!(got, want, "{} -> {} {}/{}\n{}", a.key(), b.key(), proto, port, text);
                }
            }
        }
    }

    /// The same on a dual-stack cluster, for both families: each pair judged over IPv4
    /// and over IPv6 (the pods reached at their address of that family, so that an IPv4
    /// ipBlock takes in no IPv6 connection), the tables of each family alike.
    #[test]
    fn dual_stack_tables_judge_each_family_as_the_model(
        labels in proptest::collection::vec(0usize..3, 6),
        policies in proptest::collection::vec(policy(), 0..4),
    ) {
        let text = manifests(&labels, &policies);
        let docs = parse_documents("p.yaml", &text).unwrap();
        let dual = ConfigOverrides {
            ip_family: Some(podnet_model::config::ClusterFamily::Dual),
            ..Default::default()
        };
        let c = build(&docs, &dual).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plans: BTreeMap<String, PolicyPlan> =
            c.nodes.iter().map(|n| (n.name.clone(), PolicyPlan::for_node(&c, &n.name))).collect();
        let model = Policies::of(&c);
        let pods: Vec<_> = c.pods.iter().filter(|p| p.name.starts_with("pod")).collect();
        for family in podnet_model::IpFamily::ALL {
            for a in &pods {
                for b in &pods {
                    if a.key() == b.key() { continue; }
                    let (a, b) = (a.at(family).unwrap(), b.at(family).unwrap());
                    for (port, proto) in [(80, Protocol::Tcp), (81, Protocol::Tcp), (80, Protocol::Udp)] {
                        let want = model.judge(End::Pod(&a), End::Pod(&b), port, proto).allowed;
                        let got = passes(&plans, a.ips[0], b.ips[0], protocol_number(proto), port);
                        prop_assert_eq!(got, want, "{:?}: {} -> {} {}/{}\n{}", family, a.key(), b.key(), proto, port, text);
                    }
                }
            }
        }
    }
}

/// With ClusterNetworkPolicies of both tiers over the NetworkPolicies: the tables' chains of
/// tier sets judge every cell as the model's tiers. The run must have met every kind of
/// decision (each tier's Accept and Deny, an Admin Pass), or it would prove little.
#[test]
fn with_cluster_policies_compiled_tables_judge_as_the_model() {
    use podnet_model::netpol::Side;
    use podnet_model::policy_api::{Action, Tier};
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(0usize..3, 6),
        proptest::collection::vec(policy(), 0..3),
        proptest::collection::vec(cluster_policy(), 0..4),
    );
    let seen: std::cell::RefCell<std::collections::BTreeSet<String>> = Default::default();
    runner
        .run(&strategy, |(labels, policies, cluster)| {
            let text = manifests(&labels, &policies) + &cluster_manifests(&cluster);
            let docs = parse_documents("p.yaml", &text).unwrap();
            let c =
                build(&docs, &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let plans: BTreeMap<String, PolicyPlan> = c
                .nodes
                .iter()
                .map(|n| (n.name.clone(), PolicyPlan::for_node(&c, &n.name)))
                .collect();
            let model = Policies::of(&c);
            let pods: Vec<_> = c
                .pods
                .iter()
                .filter(|p| p.name.starts_with("pod"))
                .collect();
            for a in &pods {
                for b in &pods {
                    if a.key() == b.key() {
                        continue;
                    }
                    for (port, proto) in [
                        (80, Protocol::Tcp),
                        (81, Protocol::Tcp),
                        (80, Protocol::Udp),
                    ] {
                        let v = model.judge(End::Pod(a), End::Pod(b), port, proto);
                        let got = passes(&plans, a.ips[0], b.ips[0], protocol_number(proto), port);
                        let mut seen = seen.borrow_mut();
                        for side in [&v.egress, &v.ingress] {
                            if let Side::Cluster { rule, .. } = side {
                                seen.insert(format!("{:?} {:?}", rule.tier, rule.action));
                            }
                        }
                        if !v.passed.is_empty() {
                            seen.insert(format!("{:?} {:?}", Tier::Admin, Action::Pass));
                        }
                        proptest::prop_assert_eq!(
                            got,
                            v.allowed,
                            "{} -> {} {}/{}\n{}",
                            a.key(),
                            b.key(),
                            proto,
                            port,
                            text
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    for want in [
        "Admin Accept",
        "Admin Deny",
        "Admin Pass",
        "Baseline Accept",
        "Baseline Deny",
        "Baseline Pass",
    ] {
        assert!(seen.contains(want), "no {want} decided anything: {seen:?}");
    }
}
