//! Whether a node holds what a pod needs before its CNI ADD returns, and if not, what is
//! missing (the agent's answer to the plugin when it gives up waiting).

/// What a pod's CNI ADD still waits for: the agent answers the plugin with it when it gives up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unprogrammed {
    #[error("the API has no Pod {0} (yet: the agent watches for it)")]
    NoPod(podnet_model::NsName),
    #[error("Pod {pod} is on node {}, not on this node ({node})", .on.as_deref().unwrap_or("(none)"))]
    OtherNode {
        pod: podnet_model::NsName,
        on: Option<String>,
        node: String,
    },
    #[error("the API says Pod {pod} has {has:?}, not {ip}")]
    OtherAddress {
        pod: podnet_model::NsName,
        has: Vec<std::net::IpAddr>,
        ip: std::net::IpAddr,
    },
    #[error("the API has no Node {0} (yet)")]
    NoNode(String),
    #[error("the node's policy maps have no {} entry for {ip}", .missing.join(" and "))]
    NoPolicyEntry {
        ip: std::net::IpAddr,
        missing: Vec<&'static str>,
    },
    #[error("the node's kernel was not read back holding it yet")]
    NotVerified,
}

/// Whether the node, holding `want`, holds what the pod at `ip` needs; if not, what is
/// missing.
pub(super) fn programmed(
    cluster: &podnet_model::Cluster,
    node: &str,
    want: Option<&podnet_node::dataplane::NodeDataplane>,
    pod: &podnet_model::NsName,
    ip: std::net::IpAddr,
) -> Result<(), Unprogrammed> {
    let Some(p) = cluster.pod(&pod.namespace, &pod.name) else {
        return Err(Unprogrammed::NoPod(pod.clone()));
    };
    if p.node.as_deref() != Some(node) {
        return Err(Unprogrammed::OtherNode {
            pod: pod.clone(),
            on: p.node.clone(),
            node: node.to_string(),
        });
    }
    if !p.ips.contains(&ip) {
        return Err(Unprogrammed::OtherAddress {
            pod: pod.clone(),
            has: p.ips.clone(),
            ip,
        });
    }
    let Some(want) = want else {
        return Err(Unprogrammed::NoNode(node.to_string()));
    };
    if p.host_network {
        return Ok(());
    }
    // Every address of the pod (one per family), each in both policy maps.
    for &ip in &p.ips {
        let missing: Vec<&'static str> = [
            ("ingress", want.policy.ingress.contains_key(&ip)),
            ("egress", want.policy.egress.contains_key(&ip)),
        ]
        .iter()
        .filter(|(_, has)| !has)
        .map(|(d, _)| *d)
        .collect();
        if !missing.is_empty() {
            return Err(Unprogrammed::NoPolicyEntry { ip, missing });
        }
    }
    Ok(())
}
