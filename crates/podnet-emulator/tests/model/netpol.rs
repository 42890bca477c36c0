//! Every case of `../shared/conformance/netpol/cases.yaml`, judged by the model (the static
//! answer `podnet check --reach` gives): at every probe step every non-loopback cell of the
//! full model must equal upstream's expectation.

use std::collections::BTreeSet;

use podnet_emulator::build;
use podnet_model::netpol::Reach;
use podnet_model::{parse_documents, ConfigOverrides};

use podnet_testkit::netpol_cases::{run_cases, NAMESPACES};

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

/// netpol-api-02 (`api_cases` of the shared file): the API server's validation of `endPort`,
/// which `podnet check` applies to manifests: each policy is refused or accepted as upstream
/// expects, a refusal naming the file, line and field.
#[test]
fn upstream_endport_validation() {
    let Some(path) = podnet_testkit::netpol_cases::cases_file() else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let doc = &parse_documents("cases.yaml", &text).unwrap()[0].value;
    let case = doc["api_cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "netpol-api-02")
        .expect("netpol-api-02");
    let mut checked = 0;
    for check in case["checks"].as_array().unwrap() {
        let Some(ports) = check.get("egress_ports") else {
            continue;
        };
        let expect = check["expect"].as_str().unwrap();
        let manifest = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n  podSelector: {{}}\n  egress:\n  - ports: {}\n",
            serde_json::to_string(ports).unwrap()
        );
        let built = build(
            &parse_documents("np.yaml", &manifest).unwrap(),
            &ConfigOverrides::default(),
        );
        if expect.starts_with("create rejected") {
            let err = built.expect_err(expect).to_string();
            assert!(
                err.contains("np.yaml:7:") && err.contains("spec.egress[0].ports[0].endPort"),
                "{expect}: {err}"
            );
        } else {
            assert!(expect.starts_with("create succeeds"), "{expect}");
            built.unwrap_or_else(|e| panic!("{expect}: {e}"));
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}
