//! The ClusterNetworkPolicy conformance suite of `../shared/conformance/clusternetworkpolicy/`
//! (network-policy-api's `CNPAdminTier*` and `CNPBaselineTier*` tests, as data), and the
//! upstream tests that subset leaves out, written from upstream's Go and YAML in the same
//! format (`tests/cnp-more.yaml` of this crate). The fixture is upstream's
//! (`conformance/base/manifests.yaml`): five namespaces of two pods each, the last two on
//! their nodes' network. Shared by the model's and the compiler's tests and the lab's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use podnet_emulator::build;
use podnet_model::{parse_documents, Cluster, ConfigOverrides, Protocol};
use serde_json::{json, Value};

/// (house, StatefulSet, host network).
pub const HOUSES: [(&str, &str, bool); 5] = [
    ("gryffindor", "harry-potter", false),
    ("slytherin", "draco-malfoy", false),
    ("hufflepuff", "cedric-diggory", false),
    ("ravenclaw", "luna-lovegood", false),
    ("forbidden-forrest", "centaur", true),
];

/// The namespace of a house.
pub fn namespace(house: &str) -> String {
    format!("network-policy-conformance-{house}")
}

pub fn cases_file() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/clusternetworkpolicy/cases.yaml");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "../shared/conformance/clusternetworkpolicy/cases.yaml is missing, and CI=true"
    );
    eprintln!(
        "SKIP: ../shared/conformance/clusternetworkpolicy/cases.yaml is not beside the repository"
    );
    None
}

/// The upstream tests the shared file leaves out, in its format.
pub fn more_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cnp-more.yaml")
}

/// The fixture's objects: the namespaces (with `conformance-house` labels, replaced as the
/// cases relabel them) and the pods, each replica on a node of its own choosing (the
/// host-network ones apart, as their ports would clash).
pub fn fixture(ns_labels: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut docs = Vec::new();
    for (h, (house, sts, host)) in HOUSES.iter().enumerate() {
        let ns = namespace(house);
        let labels = ns_labels
            .get(&ns)
            .cloned()
            .unwrap_or_else(|| json!({"conformance-house": house}));
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels}}));
        for r in 0..2 {
            let containers = if *host {
                let port = |n: u16, proto: &str, name: Option<String>| {
                    let mut p = json!({"containerPort": n, "protocol": proto});
                    if let Some(name) = name {
                        p["name"] = name.into();
                    }
                    json!({"name": format!("{sts}-{n}"), "image": "agnhost", "ports": [p]})
                };
                vec![
                    port(34345, "TCP", Some("web-34345".into())),
                    port(34346, "TCP", Some("web-34346".into())),
                    port(34347, "UDP", Some("dns-34347".into())),
                    port(34349, "UDP", Some("dns-34349".into())),
                    port(34351, "SCTP", None),
                    port(34352, "SCTP", None),
                ]
            } else {
                let port = |n: u16, proto: &str, name: Option<&str>| {
                    let mut p = json!({"containerPort": n, "protocol": proto});
                    if let Some(name) = name {
                        p["name"] = name.into();
                    }
                    json!({"name": format!("{sts}-{n}"), "image": "agnhost", "ports": [p]})
                };
                vec![
                    json!({"name": format!("{sts}-client"), "image": "agnhost"}),
                    port(80, "TCP", Some("web")),
                    port(8080, "TCP", None),
                    port(5353, "UDP", None),
                    port(53, "UDP", Some("dns")),
                    port(9003, "SCTP", None),
                    port(9005, "SCTP", None),
                ]
            };
            let mut spec =
                json!({"nodeName": format!("node-{}", (h + r) % 3), "containers": containers});
            if *host {
                spec["hostNetwork"] = true.into();
            }
            docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{sts}-{r}"), "namespace": ns,
                    "labels": {"conformance-house": house}},
                "spec": spec}));
        }
    }
    docs
}

/// One probe, with the state it is made in.
pub struct Probe<'a> {
    pub case: &'a str,
    pub step: u64,
    /// The whole state as manifests (fixture, policies), as a lab would be given them.
    pub manifests: String,
    /// The policies alone, for `lab apply` onto the fixture.
    pub cluster: Cluster,
    /// `<namespace>/<pod>`.
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
    pub allowed: bool,
    /// Upstream's reasons, as the file gives them.
    pub decided_by: String,
}

/// The state of one case as it goes: the policies (by kind and name) and namespace labels.
struct State {
    policies: BTreeMap<(String, String), Value>,
    ns_labels: BTreeMap<String, Value>,
}

impl State {
    fn manifests(&self, ips: &BTreeMap<String, String>) -> String {
        let mut text: Vec<String> = fixture(&self.ns_labels)
            .iter()
            .map(Value::to_string)
            .collect();
        for p in self.policies.values() {
            text.push(fill(&p.to_string(), ips));
        }
        text.join("\n---\n")
    }

    fn cluster(&self) -> (String, Cluster) {
        let o = ConfigOverrides::default();
        let first = build(
            &parse_documents("fixture.yaml", &self.manifests(&BTreeMap::new())).unwrap(),
            &o,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ips: BTreeMap<String, String> = first
            .pods
            .iter()
            .map(|p| (p.key().to_string(), p.ips[0].to_string()))
            .collect();
        let text = self.manifests(&ips);
        let c = build(&parse_documents("state.yaml", &text).unwrap(), &o)
            .unwrap_or_else(|e| panic!("{e}"));
        (text, c)
    }

    fn policy(&mut self, name: &str) -> &mut Value {
        self.policies
            .get_mut(&("ClusterNetworkPolicy".to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no policy {name}"))
    }
}

/// Fills `${POD_IP:<house>/<pod>}` (a house's namespace) and `${HOST_MASK}`.
pub fn fill(text: &str, ips: &BTreeMap<String, String>) -> String {
    let v6 = ips.values().next().is_some_and(|ip| ip.contains(':'));
    let mut s = text.replace("${HOST_MASK}", if v6 { "128" } else { "32" });
    while let Some(start) = s.find("${POD_IP:") {
        let end = start + s[start..].find('}').unwrap();
        let (house, pod) = s[start + 9..end].split_once('/').unwrap();
        let key = format!("{}/{pod}", namespace(house));
        let ip = ips
            .get(&key)
            .cloned()
            .unwrap_or_else(|| "10.244.0.2".into());
        s.replace_range(start..=end, &ip);
    }
    s
}

fn patch(state: &mut State, p: &Value) {
    let name = p["policy"].as_str().unwrap();
    let dir = p["direction"].as_str().unwrap_or("egress");
    let policy = state.policy(name);
    match p["op"].as_str().unwrap() {
        "swap_rules" => {
            let i = p["indexes"][0].as_u64().unwrap() as usize;
            let j = p["indexes"][1].as_u64().unwrap() as usize;
            policy["spec"][dir].as_array_mut().unwrap().swap(i, j);
        }
        "set_priority" => policy["spec"]["priority"] = p["value"].clone(),
        "set_rule_action" => {
            let i = p["index"].as_u64().unwrap() as usize;
            policy["spec"][dir][i]["action"] = p["value"].clone();
        }
        "replace_rule_protocols" => {
            let i = p["index"].as_u64().unwrap() as usize;
            policy["spec"][dir][i]["protocols"] = p["value"].clone();
        }
        "prepend_egress_rule" => {
            policy["spec"]["egress"]
                .as_array_mut()
                .unwrap()
                .insert(0, p["value"].clone());
        }
        other => panic!("unknown patch {other}"),
    }
}

/// Checks a patched policy's rule order against `rules_after_patch`.
fn check_order(state: &mut State, want: &Value) {
    for (what, names) in want.as_object().into_iter().flatten() {
        let mut words = what.split(' ');
        let (policy, dir) = (words.next().unwrap(), words.next().unwrap());
        let got: Vec<String> = state.policy(policy)["spec"][dir]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} ({})",
                    r["name"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap()
                )
            })
            .collect();
        let want: Vec<String> = names
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

/// The cases of a file (the shared subset or `cnp-more.yaml`).
pub fn cases_of(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = &parse_documents(&path.display().to_string(), &text).unwrap()[0].value;
    doc["cases"].as_array().unwrap().clone()
}

/// Every case (the shared file's, then the ones written here), each step's state built and
/// every probe handed to `probe`; returns the number of cases and probes run. None when the
/// shared file is not beside the repository (a visible skip).
pub fn run_cases(mut probe: impl FnMut(Probe<'_>)) -> Option<(usize, usize)> {
    let shared = cases_file()?;
    let mut cases = cases_of(&shared);
    cases.extend(cases_of(&more_file()));
    let mut probes = 0;
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let mut state = State {
            policies: BTreeMap::new(),
            ns_labels: BTreeMap::new(),
        };
        for o in case["objects_applied"].as_array().unwrap() {
            let key = (
                o["kind"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                ),
            );
            let key = if key.0 == "ClusterNetworkPolicy" {
                (key.0, o["metadata"]["name"].as_str().unwrap().to_string())
            } else {
                key
            };
            state.policies.insert(key, o.clone());
        }
        for step in case["steps"].as_array().unwrap() {
            let n = step["step"].as_u64().unwrap();
            // The state is built once per run of probes, not once per probe.
            let mut built: Option<(String, Cluster)> = None;
            for action in step["actions"].as_array().unwrap() {
                if let Some(patches) = action.get("patch_policy") {
                    for p in patches.as_array().unwrap() {
                        patch(&mut state, p);
                    }
                    if let Some(order) = action.get("rules_after_patch") {
                        check_order(&mut state, order);
                    }
                    built = None;
                } else if let Some(r) = action.get("relabel_namespace") {
                    let ns = r["namespace"].as_str().unwrap().to_string();
                    state
                        .ns_labels
                        .insert(ns, r["labels_replaced_with"].clone());
                    built = None;
                } else if let Some(d) = action.get("delete_networkpolicy") {
                    let key = ("NetworkPolicy".to_string(), d.as_str().unwrap().to_string());
                    assert!(state.policies.remove(&key).is_some(), "{id}: no {key:?}");
                    built = None;
                } else if let Some(p) = action.get("probe") {
                    let (manifests, cluster) = built.get_or_insert_with(|| state.cluster()).clone();
                    probes += 1;
                    probe(Probe {
                        case: id,
                        step: n,
                        manifests,
                        cluster,
                        from: p["from_pod"].as_str().unwrap().to_string(),
                        to: p["to_pod"].as_str().unwrap().to_string(),
                        protocol: Protocol::parse(p["protocol"].as_str().unwrap()).unwrap(),
                        port: p["port"].as_u64().unwrap() as u16,
                        allowed: match p["expect"].as_str().unwrap() {
                            "allowed" => true,
                            "denied" => false,
                            other => panic!("{id}: expect {other}"),
                        },
                        decided_by: p["decided_by"].to_string(),
                    });
                } else {
                    panic!("{id}: unknown action {action}");
                }
            }
        }
    }
    Some((cases.len(), probes))
}
