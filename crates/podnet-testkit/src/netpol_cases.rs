//! The upstream NetworkPolicy e2e model of `../shared/conformance/netpol/cases.yaml`: 9 pods
//! x/a … z/c, each with its Service; the steps of each case applied in order. Shared by the
//! model's tests and the policy compiler's (`#[path]`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use podnet_emulator::build;
use podnet_model::{parse_documents, Cluster, ConfigOverrides, Protocol};
use serde_json::{json, Value};

pub fn cases_file() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/netpol/cases.yaml");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "../shared/conformance/netpol/cases.yaml is missing, and CI=true"
    );
    eprintln!("SKIP: ../shared/conformance/netpol/cases.yaml is not beside the repository");
    None
}

/// The e2e model's state: labels of pods and namespaces, and the policies in force.
pub struct Model {
    pub ports: Vec<u16>,
    pub protocols: Vec<String>,
    pub pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub ns_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub policies: BTreeMap<String, Value>,
    /// The cluster's settings (its families: upstream runs these on IPv6 clusters too).
    pub settings: ConfigOverrides,
    /// The family the probes use on a dual-stack cluster: the placeholders are filled with
    /// the pods' addresses of it (None: each pod's primary address).
    pub family: Option<podnet_model::IpFamily>,
}

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

impl Model {
    pub fn new(server: &Value) -> Model {
        let list = |k: &str| server[k].as_array().unwrap().clone();
        let mut pod_labels = BTreeMap::new();
        for ns in NAMESPACES {
            for p in PODS {
                pod_labels.insert(
                    format!("{ns}/{p}"),
                    [("pod".to_string(), p.to_string())].into(),
                );
            }
        }
        Model {
            ports: list("ports")
                .iter()
                .map(|p| p.as_u64().unwrap() as u16)
                .collect(),
            protocols: list("protocols")
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect(),
            pod_labels,
            settings: ConfigOverrides::default(),
            family: None,
            ns_labels: NAMESPACES
                .iter()
                .map(|n| (n.to_string(), BTreeMap::new()))
                .collect(),
            policies: BTreeMap::new(),
        }
    }

    /// The manifests of the model, policies included (with placeholders filled from `ips`).
    pub fn manifests(&self, ips: &BTreeMap<String, String>) -> String {
        let mut docs: Vec<Value> = Vec::new();
        for ns in NAMESPACES {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": self.ns_labels[ns]}}));
            for p in PODS {
                let mut containers = Vec::new();
                let mut svc_ports = Vec::new();
                for port in &self.ports {
                    for proto in &self.protocols {
                        let lower = proto.to_lowercase();
                        containers.push(json!({"name": format!("cont-{port}-{lower}"), "image": "agnhost",
                            "ports": [{"name": format!("serve-{port}-{lower}"), "containerPort": port, "protocol": proto}]}));
                        svc_ports.push(json!({"name": format!("service-port-{lower}-{port}"),
                            "port": port, "targetPort": port, "protocol": proto}));
                    }
                }
                docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": p, "namespace": ns, "labels": self.pod_labels[&format!("{ns}/{p}")]},
                    "spec": {"containers": containers}}));
                let mut svc = json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("s-{ns}-{p}"), "namespace": ns},
                    "spec": {"selector": {"pod": p}, "ports": svc_ports}});
                if self.settings.ip_family == Some(podnet_model::config::ClusterFamily::Dual) {
                    // An address of each family, to probe either.
                    svc["spec"]["ipFamilyPolicy"] = "PreferDualStack".into();
                }
                docs.push(svc);
            }
        }
        let mut text: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
        for policy in self.policies.values() {
            text.push(fill(&policy.to_string(), ips));
        }
        if let Some(f) = self.settings.ip_family {
            // The cluster's family, as a ClusterConfig document beside the objects.
            text.push(format!(
                "{{\"apiVersion\": \"podnet.dev/v1alpha1\", \"kind\": \"ClusterConfig\", \"ipFamily\": \"{f}\"}}"
            ));
        }
        text.join("\n---\n")
    }

    /// The manifests (placeholders filled from the model's pod addresses) and their cluster.
    pub fn state(&self) -> (String, Cluster) {
        let o = ConfigOverrides::default();
        let first = build(
            &parse_documents("model.yaml", &self.manifests(&BTreeMap::new())).unwrap(),
            &o,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ips: BTreeMap<String, String> = first
            .pods
            .iter()
            .map(|p| {
                let ip = match self.family {
                    Some(f) => p.at(f).expect("an address of the family").ips[0],
                    None => p.ips[0],
                };
                (p.key().to_string(), ip.to_string())
            })
            .collect();
        let text = self.manifests(&ips);
        let c = build(&parse_documents("model.yaml", &text).unwrap(), &o)
            .unwrap_or_else(|e| panic!("{e}"));
        (text, c)
    }
}

/// Fills `${POD_IP:ns/pod}`, `${HOST_MASK}` and `${CIDR4_CONTAINING:ns/pod}` (as upstream's
/// `makeLargeCIDRForIP`, the /4 holding the address, of either family).
pub fn fill(text: &str, ips: &BTreeMap<String, String>) -> String {
    let v6 = ips.values().next().is_some_and(|ip| ip.contains(':'));
    let mut s = text.replace("${HOST_MASK}", if v6 { "128" } else { "32" });
    while let Some(start) = s.find("${") {
        let end = start + s[start..].find('}').unwrap();
        let (kind, pod) = s[start + 2..end].split_once(':').unwrap();
        let ip: std::net::IpAddr = ips.get(pod).map(|s| s.parse().unwrap()).unwrap_or(if v6 {
            "fd00:10:244::2".parse().unwrap()
        } else {
            "10.244.0.2".parse().unwrap()
        });
        let value = match kind {
            "POD_IP" => ip.to_string(),
            "CIDR4_CONTAINING" => ipnet::IpNet::new(ip, 4).unwrap().trunc().to_string(),
            other => panic!("placeholder {other}"),
        };
        s.replace_range(start..=end, &value);
    }
    s
}

/// A probe step: the model's state, the port and protocol, and the pairs upstream denies.
pub struct Probe<'a> {
    pub case: &'a str,
    /// The manifests of the state, as a lab would be given them.
    pub manifests: String,
    pub cluster: Cluster,
    pub port: u16,
    pub protocol: Protocol,
    pub denied: BTreeSet<String>,
}

/// Runs every case's steps; calls `probe` at each probe step. Returns (probes, listed probes),
/// or None when the file is not beside the repository (a visible skip).
pub fn run_cases(probe: impl FnMut(Probe<'_>)) -> Option<(usize, usize)> {
    run_cases_in(ConfigOverrides::default(), None, probe)
}

/// [`run_cases`] on a cluster of these settings (an IPv6 cluster: its addresses in the
/// placeholders, its family in the manifests).
pub fn run_cases_in(
    settings: ConfigOverrides,
    family: Option<podnet_model::IpFamily>,
    mut probe: impl FnMut(Probe<'_>),
) -> Option<(usize, usize)> {
    let path = cases_file()?;
    let text = std::fs::read_to_string(path).unwrap();
    let doc = &parse_documents("cases.yaml", &text).unwrap()[0].value;
    let cases = doc["cases"].as_array().unwrap();
    // The file holds a subset of upstream's 48 (its header says so); every one of them runs.
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut probes = 0;
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let mut model = Model::new(&case["server"]);
        model.settings = settings.clone();
        model.family = family;
        for step in case["steps"].as_array().unwrap() {
            match step["action"].as_str().unwrap() {
                "create_policy" | "update_policy" => {
                    let p = &step["policy"];
                    let key = format!(
                        "{}/{}",
                        p["metadata"]["namespace"].as_str().unwrap(),
                        p["metadata"]["name"].as_str().unwrap()
                    );
                    model.policies.insert(key, p.clone());
                }
                "add_pod_labels" => {
                    let labels = model
                        .pod_labels
                        .get_mut(step["pod"].as_str().unwrap())
                        .unwrap();
                    for (k, v) in step["labels"].as_object().unwrap() {
                        labels.insert(k.clone(), v.as_str().unwrap().to_string());
                    }
                }
                "add_namespace_labels" => {
                    let labels = model
                        .ns_labels
                        .get_mut(step["namespace"].as_str().unwrap())
                        .unwrap();
                    for (k, v) in step["labels"].as_object().unwrap() {
                        labels.insert(k.clone(), v.as_str().unwrap().to_string());
                    }
                }
                "delete_all_policies" => model.policies.clear(),
                "probe" => {
                    probes += 1;
                    let (manifests, cluster) = model.state();
                    probe(Probe {
                        case: id,
                        manifests,
                        cluster,
                        port: step["port"].as_u64().unwrap() as u16,
                        protocol: Protocol::parse(step["protocol"].as_str().unwrap()).unwrap(),
                        denied: step["expected"]["full_model"]["denied"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|d| d.as_str().unwrap().to_string())
                            .collect(),
                    });
                }
                other => panic!("{id}: unknown action {other}"),
            }
        }
    }
    Some((probes, text.matches("- action: probe").count()))
}
