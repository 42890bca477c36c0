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

/// A random ClusterNetworkPolicy over the same cluster: its tier, priority (a few values, so
/// that equal priorities occur), subject and rules.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    admin: bool,
    priority: u8,
    /// By namespace (None: every namespace), or by pods (their label).
    subject: (Option<usize>, Option<Option<usize>>),
    ingress: Vec<ClusterRule>,
    egress: Vec<ClusterRule>,
}

/// A rule: its action, peers and protocols.
#[derive(Debug, Clone)]
pub struct ClusterRule {
    /// 0 Accept, 1 Deny, 2 Pass.
    action: usize,
    peers: Vec<ClusterPeer>,
    /// None: every port; else some of tcp 80, tcp 80-81, udp 80, named p80, named p81.
    protocols: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
pub enum ClusterPeer {
    /// Every pod of the namespace (None: of every namespace).
    Namespaces(Option<usize>),
    /// Pods by label in a namespace (None: any namespace; the label None: any pod).
    Pods(Option<usize>, Option<usize>),
    /// Egress only: one of a few CIDRs (a node's pod range, all pods, everything).
    Networks(usize),
}

const CIDRS: [&str; 3] = ["10.244.1.0/24", "10.244.0.0/16", "0.0.0.0/0"];
const ACTIONS: [&str; 3] = ["Accept", "Deny", "Pass"];

fn cluster_rule(egress: bool) -> impl Strategy<Value = ClusterRule> {
    let peer = prop_oneof![
        proptest::option::of(0usize..2).prop_map(ClusterPeer::Namespaces),
        (
            proptest::option::of(0usize..2),
            proptest::option::of(0usize..3)
        )
            .prop_map(|(n, l)| ClusterPeer::Pods(n, l)),
        (0usize..3).prop_map(move |i| if egress {
            ClusterPeer::Networks(i)
        } else {
            ClusterPeer::Namespaces(None)
        }),
    ];
    (
        0usize..3,
        proptest::collection::vec(peer, 1..3),
        proptest::option::of(proptest::collection::vec(0usize..5, 1..3)),
    )
        .prop_map(|(action, peers, protocols)| {
            // The CRD refuses named ports beside networks peers: numbered ones there.
            let networks = peers.iter().any(|p| matches!(p, ClusterPeer::Networks(_)));
            let protocols = protocols.map(|v| {
                v.into_iter()
                    .map(|p| if networks { p % 3 } else { p })
                    .collect()
            });
            ClusterRule {
                action,
                peers,
                protocols,
            }
        })
}

pub fn cluster_policy() -> impl Strategy<Value = ClusterPolicy> {
    (
        any::<bool>(),
        0u8..3,
        (
            proptest::option::of(0usize..2),
            proptest::option::of(proptest::option::of(0usize..3)),
        ),
        proptest::collection::vec(cluster_rule(false), 0..3),
        proptest::collection::vec(cluster_rule(true), 0..3),
    )
        .prop_map(
            |(admin, priority, subject, ingress, egress)| ClusterPolicy {
                admin,
                priority,
                subject,
                ingress,
                egress,
            },
        )
}

fn ns_selector(ns: Option<usize>) -> String {
    match ns {
        None => "{}".into(),
        Some(i) => format!("{{matchLabels: {{kubernetes.io/metadata.name: n{i}}}}}"),
    }
}

fn cluster_rules(field: &str, peers_field: &str, rules: &[ClusterRule]) -> String {
    if rules.is_empty() {
        return String::new();
    }
    let mut s = format!("  {field}:\n");
    for (i, r) in rules.iter().enumerate() {
        let peers: Vec<String> = r
            .peers
            .iter()
            .map(|p| match p {
                ClusterPeer::Namespaces(ns) => format!("{{namespaces: {}}}", ns_selector(*ns)),
                ClusterPeer::Pods(ns, l) => format!(
                    "{{pods: {{namespaceSelector: {}, podSelector: {}}}}}",
                    ns_selector(*ns),
                    selector(*l)
                ),
                ClusterPeer::Networks(i) => format!("{{networks: [{}]}}", CIDRS[*i]),
            })
            .collect();
        s += &format!(
            "  - {{name: r{i}, action: {}, {peers_field}: [{}]",
            ACTIONS[r.action],
            peers.join(", ")
        );
        if let Some(list) = &r.protocols {
            let protocols: Vec<&str> = list
                .iter()
                .map(|p| match p {
                    0 => "{tcp: {destinationPort: {number: 80}}}",
                    1 => "{tcp: {destinationPort: {range: {start: 80, end: 81}}}}",
                    2 => "{udp: {destinationPort: {number: 80}}}",
                    3 => "{destinationNamedPort: p80}",
                    _ => "{destinationNamedPort: p81}",
                })
                .collect();
            s += &format!(", protocols: [{}]", protocols.join(", "));
        }
        s += "}\n";
    }
    s
}

/// The ClusterNetworkPolicies' manifests, to add to [`manifests`]'.
pub fn cluster_manifests(policies: &[ClusterPolicy]) -> String {
    let mut s = String::new();
    for (k, p) in policies.iter().enumerate() {
        let subject = match p.subject {
            (ns, None) => format!("{{namespaces: {}}}", ns_selector(ns)),
            (ns, Some(l)) => format!(
                "{{pods: {{namespaceSelector: {}, podSelector: {}}}}}",
                ns_selector(ns),
                selector(l)
            ),
        };
        s += &format!(
            "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: c{k}}}\nspec:\n  tier: {}\n  priority: {}\n  subject: {subject}\n",
            if p.admin { "Admin" } else { "Baseline" },
            p.priority
        );
        s += &cluster_rules("ingress", "from", &p.ingress);
        s += &cluster_rules("egress", "to", &p.egress);
    }
    s
}
