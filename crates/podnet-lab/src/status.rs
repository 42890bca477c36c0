//! `lab status` and `lab exec`: what runs, as the lab and the kernel hold it.

use super::*;

/// Pod status for `lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The primary address.
    pub ip: Option<IpAddr>,
    /// One per family, the primary first.
    pub ips: Vec<IpAddr>,
    pub ready: bool,
    pub host_network: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub ip: IpAddr,
    /// Its IPv6 address (IPv6 and dual-stack labs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpAddr>,
    /// One per family.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<ipnet::IpNet>,
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub name: String,
    pub servers_running: bool,
    pub nodes: Vec<NodeStatus>,
    pub pods: Vec<PodStatus>,
}

pub fn status(lab: &str) -> Result<Status, LabError> {
    let st = load_state(lab)?;
    let alive = alive(lab, st.serve_pid);
    let nodes = st
        .plan
        .nodes
        .iter()
        .map(|n| NodeStatus {
            name: n.name.clone(),
            ip: n.ip,
            ip6: n.ip6,
            pod_cidrs: n.pod_cidrs.clone(),
            ready: podnet_node::sys::netns_path(&n.ns).exists(),
        })
        .collect();
    let pods = st
        .plan
        .pods
        .iter()
        .map(|p| PodStatus {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            ip: st.pod_ip(&p.namespace, &p.name),
            ips: st.pod_ips_of(&p.key()).to_vec(),
            ready: p.ready && alive && podnet_node::sys::netns_path(&p.netns).exists(),
            host_network: p.host_network,
        })
        .collect();
    Ok(Status {
        name: lab.to_string(),
        servers_running: alive,
        nodes,
        pods,
    })
}

/// The real pod IPs as the model wants them back.
/// The cluster as the lab runs it: each pod with the address its CNI ADD gave it; a pod whose
/// ADD has not returned (not in `st.pod_ips`) Pending, with no address, not ready, as the API
/// shows a pod whose sandbox is being created.
pub(super) fn as_served(st: &LabState, cluster: &Cluster) -> Cluster {
    let mut c = cluster.clone();
    let mut ips = actual_ips(st);
    for p in &mut c.pods {
        if p.node.is_some() && !p.host_network && !st.pod_ips.contains_key(&p.key()) {
            p.ready = false;
            p.phase = "Pending".into();
            ips.insert(p.key(), Vec::new());
        }
    }
    c.set_pod_ips(&ips);
    c
}

pub fn actual_ips(st: &LabState) -> HashMap<NsName, Vec<IpAddr>> {
    st.pod_ips
        .iter()
        .map(|(k, ips)| (k.clone(), ips.clone()))
        .collect()
}

/// The namespace `lab exec` enters for a target: `<ns>/<pod>`, `node/<name>` or `external`.
pub fn exec_target(st: &LabState, target: &str) -> Result<String, LabError> {
    if target == "external" {
        return Ok(st.plan.external.ns.clone());
    }
    if let Some(node) = target.strip_prefix("node/") {
        return st.plan.node(node).map(|n| n.ns.clone()).ok_or_else(|| {
            LabError::Invalid(format!(
                "no node {node:?}; nodes: {}",
                st.plan
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        });
    }
    let (ns, name) = target.split_once('/').ok_or_else(|| {
        LabError::Invalid(format!(
            "{target:?}: expected <namespace>/<pod>, node/<name> or external"
        ))
    })?;
    st.plan
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .map(|p| p.netns.clone())
        .ok_or_else(|| LabError::Invalid(format!("no pod {target:?} in lab {}", st.plan.name)))
}
