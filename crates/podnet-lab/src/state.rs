//! What the lab keeps of itself in `/run/podnet/<lab>`: its state (the plan, the nodes'
//! held dataplanes, the objects' stamps), its files and whether it is up.

use super::*;

/// What a running lab keeps in `/run/podnet/<lab>/state.json`: always what is running.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub plan: LabPlan,
    /// The IPs the CNI plugin really assigned (one per family, the primary first).
    #[serde(with = "podnet_model::pairs")]
    pub pod_ips: BTreeMap<NsName, Vec<IpAddr>>,
    #[serde(default)]
    pub serve_pid: Option<i32>,
    /// What each node's dataplane holds, by node.
    #[serde(default)]
    pub nodes: BTreeMap<String, Held>,
    /// LoadBalancer IPs and externalIPs the external client routes to the nodes, with the
    /// nodes each goes to.
    #[serde(default)]
    pub external_routes: BTreeMap<IpAddr, Vec<IpAddr>>,
    /// The health checks of `externalTrafficPolicy: Local` LoadBalancers, on every node.
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    /// The cluster DNS zone the DNS pods serve.
    #[serde(default)]
    pub dns: Option<podnet_model::dns::StoredZone>,
    /// What the Ingress controller's pods serve (`podnet ingress watch --served`), when the
    /// lab has them.
    #[serde(default)]
    pub ingress: Option<serde_json::Value>,
    /// What each Gateway's proxy pods serve (`podnet gateway watch --served`), by Gateway.
    #[serde(default)]
    pub gateways: BTreeMap<String, serde_json::Value>,
    /// The creation time and generation the lab's API gives each Gateway API object (the API
    /// server's part: a route's age orders ties; status names the generation it observed),
    /// by `Kind/namespace/name`.
    #[serde(default)]
    pub gateway_meta: BTreeMap<String, ObjectStamp>,
    /// The objects the lab's Kubernetes API serves ([`podnet_api::project`]), without the
    /// status its controllers write.
    #[serde(default)]
    pub api: Vec<serde_json::Value>,
    /// Whether the nodes run `podnet agent` against the lab's API (which then programs them),
    /// instead of being programmed by the lab process.
    #[serde(default)]
    pub agents: bool,
    /// With agents: what each node must come to hold (the lab waits for it).
    #[serde(skip)]
    pub expected: BTreeMap<String, NodeDataplane>,
    /// The status the lab's controllers are to write through its API (the lab waits for it).
    #[serde(skip)]
    pub statuses: Vec<crate::statuses::Expected>,
}

/// What the API server stamps on an object: when it was created, and its spec's generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStamp {
    pub created: String,
    pub generation: i64,
    pub spec: serde_json::Value,
}

/// Gives each Gateway API object its creation time (kept from the first time the lab saw it)
/// and generation (one more each time its spec changes), as the API server would.
pub(super) fn stamp_gateway_objects(st: &mut LabState, c: &mut Cluster) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut stamp = |kind: podnet_model::Kind, meta: &mut ObjectMeta, spec: serde_json::Value| {
        let key = format!(
            "{kind}/{}/{}",
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or("")
        );
        let e = st
            .gateway_meta
            .entry(key.clone())
            .or_insert_with(|| ObjectStamp {
                created: now.clone(),
                generation: 1,
                spec: spec.clone(),
            });
        if e.spec != spec {
            e.generation += 1;
            e.spec = spec;
        }
        meta.generation = Some(e.generation);
        meta.creation_timestamp = e.created.parse().ok().map(Time);
        seen.insert(key);
    };
    fn json(spec: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(spec).unwrap_or_default()
    }
    macro_rules! stamp_each {
        ($($list:ident => $kind:ident),*) => {
            $(for o in &mut c.$list {
                let spec = json(&o.obj.spec);
                stamp(podnet_model::Kind::$kind, &mut o.obj.metadata, spec);
            })*
        };
    }
    stamp_each!(
        gateway_classes => GatewayClass,
        gateways => Gateway,
        http_routes => HTTPRoute,
        tls_routes => TLSRoute,
        grpc_routes => GRPCRoute,
        backend_tls_policies => BackendTLSPolicy,
        reference_grants => ReferenceGrant,
        listener_sets => ListenerSet
    );
    st.gateway_meta.retain(|k, _| seen.contains(k));
}

impl LabState {
    /// A lab about to be built: its plan, the addresses its pods have already (host-network
    /// pods: their node's), and whether its nodes run agents.
    pub fn new(plan: LabPlan, pod_ips: BTreeMap<NsName, Vec<IpAddr>>, agents: bool) -> LabState {
        LabState {
            plan,
            pod_ips,
            serve_pid: None,
            nodes: BTreeMap::new(),
            external_routes: BTreeMap::new(),
            health_checks: Vec::new(),
            dns: None,
            ingress: None,
            gateways: BTreeMap::new(),
            gateway_meta: BTreeMap::new(),
            api: Vec::new(),
            agents,
            expected: BTreeMap::new(),
            statuses: Vec::new(),
        }
    }

    /// A pod's primary address.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        self.pod_ips
            .get(&NsName::new(namespace, name))
            .and_then(|l| l.first())
            .copied()
    }

    /// A pod's addresses, one per family.
    pub fn pod_ips_of(&self, key: &NsName) -> &[IpAddr] {
        self.pod_ips.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Where the lab's pods run: what the model keeps when the lab changes.
    pub fn placements(&self) -> podnet_model::Placements {
        self.plan
            .pods
            .iter()
            .map(|p| {
                let placement = podnet_model::Placement {
                    node: p.node.clone(),
                    ips: self.pod_ips_of(&p.key()).to_vec(),
                };
                (p.key(), placement)
            })
            .collect()
    }
}

pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(RUN_DIR).join(lab)
}

pub fn load_state(lab: &str) -> Result<LabState, LabError> {
    let path = lab_dir(lab).join("state.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|_| LabError::NotUp(lab.to_string(), path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|source| LabError::Json {
        what: path.display().to_string(),
        source,
    })
}

pub(super) fn save_state(lab: &str, st: &LabState) -> Result<(), LabError> {
    let path = lab_dir(lab).join("state.json");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(st).expect("serializes"))
        .map_err(io(tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(io(path.display()))
}

/// Whether anything of the lab exists: its state directory or any of its namespaces.
pub fn exists(lab: &str) -> bool {
    lab_dir(lab).exists() || !net::netns_list(&plan::prefix(lab)).is_empty()
}

/// Whether the lab's server runs: the process exists and is still `podnet lab serve` for this
/// lab (not a zombie, not a recycled PID).
pub(super) fn alive(lab: &str, pid: Option<i32>) -> bool {
    pid.is_some_and(|p| is_server_of(p, lab)) || serve_pid(lab).is_some()
}

/// Where the lab keeps a node's CNI files.
pub(super) fn node_dir(lab: &str, node: &str) -> PathBuf {
    lab_dir(lab).join("nodes").join(node)
}

/// Writes a kubeconfig for the lab's Kubernetes API (on the host's loopback) into the lab's
/// directory and returns its path.
pub fn kubeconfig(lab: &str) -> Result<PathBuf, LabError> {
    let addr_file = serve::api_addr_file(lab);
    let addr = std::fs::read_to_string(&addr_file)
        .map_err(|_| LabError::NotUp(lab.to_string(), addr_file.display().to_string()))?;
    let name = format!("podnet-{lab}");
    let text = podnet_api::kubeconfig(&name, addr.trim());
    let path = lab_dir(lab).join("kubeconfig");
    std::fs::write(&path, text).map_err(io(path.display()))?;
    Ok(path)
}

/// A pod's files for `/etc/netns/<ns>/`.
pub(super) fn pod_etc(p: &PodPlan) -> [(&'static str, &str); 2] {
    [("resolv.conf", &p.resolv_conf), ("hosts", &p.hosts)]
}

/// A node's (and the external client's) resolv.conf file: the one pods with `dnsPolicy:
/// Default` inherit ([`plan::node_resolv_conf`]).
pub(super) fn node_resolv_conf_file() -> String {
    format!(
        "# podnet lab: nodes have no upstream DNS (nothing in the lab leads out).\n{}",
        plan::node_resolv_conf()
    )
}
