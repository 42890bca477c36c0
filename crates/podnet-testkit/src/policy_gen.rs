//! Random NetworkPolicies and labels over a small cluster (6 pods in 2 namespaces on 3 nodes),
//! shared by the property tests that compare the compiled tables with the model: evaluated in
//! Rust (`podnet-policy/tests/props.rs`) and by the kernel, with real packets
//! (`podnet-node/tests/policy_packets.rs`).

use proptest::prelude::*;

const LABELS: [&str; 3] = ["a", "b", "c"];

fn selector(v: Option<usize>) -> String {
    match v {
        None => "{}".into(),
        Some(i) => format!("{{matchLabels: {{app: {}}}}}", LABELS[i % 3]),
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pods: Option<Option<usize>>,
    namespaces: Option<Option<usize>>,
    block: bool,
}

/// Rules: their peers, and their ports (number, named or not).
pub type Rules = Vec<(Vec<Peer>, Vec<(u16, bool)>)>;

#[derive(Debug, Clone)]
pub struct Policy {
    ns: usize,
    target: Option<usize>,
    ingress: Option<Rules>,
    egress: Option<Rules>,
}

fn peer() -> impl Strategy<Value = Peer> {
    (
        proptest::option::of(proptest::option::of(0usize..3)),
        proptest::option::of(proptest::option::of(0usize..2)),
        any::<bool>(),
    )
        .prop_map(|(pods, namespaces, block)| Peer {
            pods,
            namespaces,
            block,
        })
}

fn rules() -> impl Strategy<Value = Option<Rules>> {
    proptest::option::of(proptest::collection::vec(
        (
            proptest::collection::vec(peer(), 0..3),
            proptest::collection::vec((prop_oneof![Just(80u16), Just(81u16)], any::<bool>()), 0..2),
        ),
        0..3,
    ))
}

pub fn policy() -> impl Strategy<Value = Policy> {
    (0usize..2, proptest::option::of(0usize..3), rules(), rules()).prop_map(
        |(ns, target, ingress, egress)| Policy {
            ns,
            target,
            ingress,
            egress,
        },
    )
}

fn yaml_rules(field: &str, peers_field: &str, rules: &Rules) -> String {
    let mut s = format!("  {field}:\n");
    if rules.is_empty() {
        return format!("  {field}: []\n");
    }
    for (peers, ports) in rules {
        // The lines of one rule, the first after "- ".
        let mut lines: Vec<String> = Vec::new();
        if !peers.is_empty() {
            lines.push(format!("{peers_field}:"));
            for p in peers {
                if p.block {
                    lines.push("- ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}".into());
                    continue;
                }
                let mut parts = Vec::new();
                if let Some(sel) = p.pods {
                    parts.push(format!("podSelector: {}", selector(sel)));
                }
                if let Some(sel) = p.namespaces {
                    let ns = sel
                        .map(|i| format!("{{matchLabels: {{kubernetes.io/metadata.name: n{i}}}}}"));
                    parts.push(format!("namespaceSelector: {}", ns.unwrap_or("{}".into())));
                }
                if parts.is_empty() {
                    parts.push("podSelector: {}".into());
                }
                lines.push(format!("- {{{}}}", parts.join(", ")));
            }
        }
        if !ports.is_empty() {
            let list: Vec<String> = ports
                .iter()
                .map(|(p, named)| {
                    if *named {
                        format!("{{port: p{p}}}")
                    } else {
                        format!("{{port: {p}}}")
                    }
                })
                .collect();
            lines.push(format!("ports: [{}]", list.join(", ")));
        }
        if lines.is_empty() {
            s += "  - {}\n";
            continue;
        }
        for (i, l) in lines.iter().enumerate() {
            s += if i == 0 { "  - " } else { "    " };
            s += l;
            s += "\n";
        }
    }
    s
}

/// Pod `i` has the label `app` of `labels[i]` (past the labels: the pod is left out). The
/// namespaces are declared, so that they stay when all their pods go (a namespace exists
/// whether or not pods are in it, and the incremental compiler is told of pods only).
pub fn manifests(labels: &[usize], policies: &[Policy]) -> String {
    let mut s = String::new();
    for ns in 0..2 {
        s += &format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: n{ns}}}\n");
    }
    for (i, l) in labels.iter().enumerate() {
        if *l >= LABELS.len() {
            continue;
        }
        let (ns, node) = (i % 2, i % 3);
        // Pods name port 80 `p80`, and some name 81 too.
        let ports = if i % 2 == 0 {
            "[{name: p80, containerPort: 80}, {name: p81, containerPort: 81}]"
        } else {
            "[{name: p80, containerPort: 80}]"
        };
        s += &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: pod{i}, namespace: n{ns}, labels: {{app: {}, idx: \"{i}\"}}}}\nspec: {{nodeName: node-{node}, containers: [{{name: c, image: x, ports: {ports}}}]}}\n", LABELS[*l]);
    }
    for (k, p) in policies.iter().enumerate() {
        s += &format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{k}, namespace: n{}}}\nspec:\n  podSelector: {}\n", p.ns, selector(p.target));
        let mut types = Vec::new();
        if let Some(r) = &p.ingress {
            s += &yaml_rules("ingress", "from", r);
            types.push("Ingress");
        }
        if let Some(r) = &p.egress {
            s += &yaml_rules("egress", "to", r);
            types.push("Egress");
        }
        if !types.is_empty() && k % 2 == 0 {
            s += &format!("  policyTypes: [{}]\n", types.join(", "));
        }
    }
    s
}
