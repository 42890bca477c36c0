//! Every case of `../shared/conformance/netpol/cases.yaml`, judged by the model (the static
//! answer `podnet check --reach` gives): at every probe step every non-loopback cell of the
//! full model must equal upstream's expectation.

use std::collections::BTreeSet;

use podnet_model::netpol::Reach;

use super::netpol_cases::{run_cases, NAMESPACES};

#[test]
fn every_upstream_case_gives_the_expected_matrix() {
    let mut wrong = Vec::new();
    let Some((probes, listed)) = run_cases(|p| {
        let reach = Reach::of(&p.cluster, p.port, p.protocol, None);
        let user: Vec<usize> = (0..reach.pods.len())
            .filter(|i| NAMESPACES.contains(&reach.pods[*i].namespace.as_str()))
            .collect();
        assert_eq!(user.len(), 9);
        let mut got = BTreeSet::new();
        for &i in &user {
            for &j in &user {
                if i != j && !reach.allowed[i][j] {
                    got.insert(format!("{}->{}", reach.pods[i], reach.pods[j]));
                }
            }
        }
        if got != p.denied {
            wrong.push(format!(
                "{} {}/{}: denied but allowed upstream {:?}; allowed but denied upstream {:?}",
                p.case,
                p.protocol,
                p.port,
                got.difference(&p.denied).collect::<Vec<_>>(),
                p.denied.difference(&got).collect::<Vec<_>>()
            ));
        }
    }) else {
        return;
    };
    assert_eq!(probes, listed, "every probe step of every case");
    assert!(
        wrong.is_empty(),
        "{} of {probes} probe steps differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
