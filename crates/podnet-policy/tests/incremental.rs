//! The incremental path ([`podnet_policy::Compiler::pods_changed`]): pods relabelled, coming
//! and going, one step after another, give after every step the table computed from scratch,
//! and say whether it changed.

use podnet_emulator::build;
use podnet_model::{parse_documents, Cluster, ConfigOverrides, NsName};
use podnet_policy::{Compiler, PolicyPlan};
use proptest::prelude::*;

use podnet_testkit::policy_gen::{self as gen, manifests, policy};

fn cluster(labels: &[usize], policies: &[gen::Policy]) -> Cluster {
    cluster_with(labels, policies, &[])
}

fn cluster_with(
    labels: &[usize],
    policies: &[gen::Policy],
    cluster: &[gen::ClusterPolicy],
) -> Cluster {
    let text = manifests(labels, policies) + &gen::cluster_manifests(cluster);
    let docs = parse_documents("p.yaml", &text).unwrap();
    build(&docs, &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The pods that came, went, or changed what policies read.
fn changed(a: &Cluster, b: &Cluster) -> Vec<NsName> {
    let read = |c: &Cluster, k: &NsName| {
        c.pod(&k.namespace, &k.name).map(|p| {
            (
                p.labels.clone(),
                p.ips.clone(),
                p.node.clone(),
                p.ports.clone(),
            )
        })
    };
    let mut keys: Vec<NsName> = a.pods.iter().chain(&b.pods).map(|p| p.key()).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| read(a, k) != read(b, k));
    keys
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The same with ClusterNetworkPolicies of both tiers: a pod's labels changing edits its
    /// groups' tier sets as from scratch.
    #[test]
    fn with_cluster_policies_following_pods_gives_the_table_computed_from_scratch(
        steps in proptest::collection::vec(proptest::collection::vec(0usize..4, 6), 2..5),
        policies in proptest::collection::vec(policy(), 0..3),
        cnps in proptest::collection::vec(gen::cluster_policy(), 1..4),
    ) {
        let clusters: Vec<Cluster> = steps.iter().map(|l| cluster_with(l, &policies, &cnps)).collect();
        for node in ["node-0", "node-1", "node-2"] {
            let (mut compiler, mut plan) = Compiler::new(&clusters[0], node);
            prop_assert_eq!(&plan, &PolicyPlan::for_node(&clusters[0], node));
            for (i, w) in clusters.windows(2).enumerate() {
                let before = plan.clone();
                let said = compiler.pods_changed(&w[1], &changed(&w[0], &w[1]), &mut plan);
                let want = PolicyPlan::for_node(&w[1], node);
                prop_assert_eq!(&plan, &want, "{} after step {}: {:?}", node, i + 1, steps);
                prop_assert_eq!(said, before != want, "{} step {}: whether it changed", node, i + 1);
            }
        }
    }

    #[test]
    fn following_pods_gives_the_table_computed_from_scratch(
        steps in proptest::collection::vec(proptest::collection::vec(0usize..4, 6), 2..5),
        policies in proptest::collection::vec(policy(), 0..4),
    ) {
        let clusters: Vec<Cluster> = steps.iter().map(|l| cluster(l, &policies)).collect();
        // What the incremental path is for: pods change, namespaces do not (a namespace's
        // change recompiles, as the agent's Live does).
        for w in clusters.windows(2) {
            prop_assert_eq!(&w[0].namespaces, &w[1].namespaces);
        }
        for node in ["node-0", "node-1", "node-2"] {
            let (mut compiler, mut plan) = Compiler::new(&clusters[0], node);
            prop_assert_eq!(&plan, &PolicyPlan::for_node(&clusters[0], node));
            for (i, w) in clusters.windows(2).enumerate() {
                let before = plan.clone();
                let said = compiler.pods_changed(&w[1], &changed(&w[0], &w[1]), &mut plan);
                let want = PolicyPlan::for_node(&w[1], node);
                prop_assert_eq!(&plan, &want, "{} after step {}: {:?}", node, i + 1, steps);
                prop_assert_eq!(said, before != want, "{} step {}: whether it changed", node, i + 1);
            }
        }
    }
}
