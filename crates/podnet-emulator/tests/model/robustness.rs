//! Hostile input (issue 10): deep nesting and alias bombs are refused before they are loaded,
//! with an error that names the place, and memory and time stay bounded.

use podnet_model::parse_documents;
use podnet_model::source::{MAX_ALIASES, MAX_DEPTH};

/// A ConfigMap holding a block sequence nested `depth` deep: `- - - … x`.
fn deep(depth: usize) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: |\n    y\nextra:\n",
    );
    s.push_str(&"- ".repeat(depth));
    s.push_str("x\n");
    s
}

#[test]
fn nesting_20000_deep_is_an_error_not_a_crash() {
    // Before: a stack overflow (SIGABRT) in check, lab up and lab apply.
    let e = parse_documents("deep.yaml", &deep(20_000)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("deep.yaml:8:"),
        "the line of the deep item: {msg}"
    );
    assert!(
        msg.contains(&format!("nesting deeper than {MAX_DEPTH} levels")),
        "{msg}"
    );
}

#[test]
fn the_limit_is_exact_and_deep_input_is_refused_fast() {
    // The document's own mapping is one level, `extra` a second: MAX_DEPTH - 1 sequences fit.
    assert!(parse_documents("ok.yaml", &deep(MAX_DEPTH - 1)).is_ok());
    assert!(parse_documents("no.yaml", &deep(MAX_DEPTH)).is_err());
    // Before: 10,000 deep took 348 MB; now it stops at the limit, after reading 100 levels.
    let start = std::time::Instant::now();
    assert!(parse_documents("deep.yaml", &deep(1_000_000)).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn flow_style_nesting_counts_too() {
    let text = format!("a: {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    // The streaming parser stops flow collections at its own recursion limit.
    let msg = parse_documents("flow.yaml", &text).unwrap_err().to_string();
    assert!(
        msg.contains("nesting deeper") || msg.contains("recursion limit exceeded"),
        "{msg}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = "a".to_string();
    for i in 0..(MAX_ALIASES / 10 + 5) {
        let name = format!("b{i}");
        text += &format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        );
        prev = name;
    }
    let msg = parse_documents("bomb.yaml", &text).unwrap_err().to_string();
    assert!(msg.contains("YAML aliases"), "{msg}");
}

/// Issue 10, defect 11: the API server's `IsDNS1123Subdomain` has no per-label limit, so a pod
/// whose name has a 64-character label is valid. Its hostname is cut to 63, as the kubelet does.
#[test]
fn a_pod_name_with_a_64_character_label_is_valid() {
    let name = format!("{}.x", "a".repeat(64));
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
    );
    let docs = parse_documents("p.yaml", &text).unwrap();
    let c = podnet_emulator::build(&docs, &podnet_model::ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let pod = c.pod("default", &name).unwrap();
    let hosts = podnet_model::resolv::hosts_file(pod, "cluster.local");
    assert!(
        hosts.contains(&format!("\t{}\n", "a".repeat(63))),
        "{hosts}"
    );
    // Still refused: a name over 253 characters, and a label with a bad character.
    for bad in ["a".repeat(254), "a_b.x".to_string()] {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {bad}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
        );
        let docs = parse_documents("p.yaml", &text).unwrap();
        assert!(
            podnet_emulator::build(&docs, &Default::default()).is_err(),
            "{bad}"
        );
    }
}

/// Issue 10, defect 12: an exhausted service CIDR fails with one error that counts the rest
/// (it used to give one error per Service, after minutes of probing).
#[test]
fn an_exhausted_service_cidr_is_one_error_that_counts_the_rest() {
    let n = 5000;
    let mut text = String::new();
    for i in 0..n {
        text += &format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{ports: [{{port: 80}}]}}\n");
    }
    let docs = parse_documents("many.yaml", &text).unwrap();
    let o = podnet_model::ConfigOverrides {
        service_cidr: Some("10.96.0.0/20".parse().unwrap()),
        ..Default::default()
    };
    let podnet_model::ModelError::Invalid(diags) = podnet_emulator::build(&docs, &o).unwrap_err();
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    // 4094 usable addresses: .1 is default/kubernetes, .10 is kube-dns, 4092 for the others.
    let more = n - 4092 - 1;
    assert!(
        errors[0].contains("serviceCIDR 10.96.0.0/20 is full: no ClusterIP is left for default/")
            && errors[0].contains(&format!("and {more} more Service(s)")),
        "{}",
        errors[0]
    );
}

/// Every address of a full range is used exactly once, and a full range answers at once.
#[test]
fn a_full_service_cidr_hands_out_every_address_once() {
    let mut text = String::new();
    for i in 0..252 {
        text += &format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{ports: [{{port: 80}}]}}\n");
    }
    let docs = parse_documents("full.yaml", &text).unwrap();
    let o = podnet_model::ConfigOverrides {
        service_cidr: Some("10.96.0.0/24".parse().unwrap()),
        ..Default::default()
    };
    // 254 usable: .1 and .10 are taken, 252 Services fill the rest exactly.
    let c = podnet_emulator::build(&docs, &o).unwrap_or_else(|e| panic!("{e}"));
    let mut ips: Vec<_> = c
        .services
        .iter()
        .flat_map(|s| s.cluster_ips.clone())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 254);
}

/// Issue 10, defect 3: adding one bare Pod to the seeds' examples moved every other pod to
/// another node and address. Built around the running pods, only the new one is placed.
#[test]
fn adding_a_pod_moves_no_running_pod() {
    let seeds = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let o = podnet_model::ConfigOverrides::default();
    let before = podnet_emulator::build(&parse_documents("seeds", &seeds).unwrap(), &o).unwrap();
    let running = placements_of(&before);
    let more = format!("{seeds}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: aaa-new}}\nspec: {{containers: [{{name: c, image: x}}]}}\n");
    let docs = parse_documents("seeds+1", &more).unwrap();
    // Without the running pods, the new one reshuffles the others (what the lab did).
    let fresh = podnet_emulator::build(&docs, &o).unwrap();
    let moved = |c: &podnet_model::Cluster| {
        before
            .pods
            .iter()
            .filter(|p| {
                let q = c.pod(&p.namespace, &p.name).unwrap();
                q.node != p.node || q.ips != p.ips
            })
            .count()
    };
    assert!(
        moved(&fresh) > 0,
        "the reproduction still reshuffles a fresh build"
    );
    let after = podnet_emulator::build_with(&docs, &o, &running).unwrap();
    assert_eq!(moved(&after), 0, "no running pod moves");
    let new = after.pod("default", "aaa-new").unwrap();
    assert!(new.node.is_some() && !new.ips.is_empty());
    assert!(
        !before.pods.iter().any(|p| p.ips == new.ips),
        "a free address"
    );
    // Removing a pod moves none of the others either.
    let after_removal = podnet_emulator::build_with(
        &parse_documents("seeds", &seeds).unwrap(),
        &o,
        &placements_of(&after),
    )
    .unwrap();
    assert_eq!(moved(&after_removal), 0);
}

/// Where a model's pods are, as a running lab reports them.
fn placements_of(c: &podnet_model::Cluster) -> podnet_model::Placements {
    c.pods
        .iter()
        .map(|p| {
            let at = podnet_model::Placement {
                node: p.node.clone().unwrap(),
                ips: p.ips.clone(),
            };
            (p.key(), at)
        })
        .collect()
}
