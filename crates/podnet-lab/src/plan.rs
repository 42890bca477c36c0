//! The lab's plan: the desired state of every namespace, computed from the model. Pure.
//!
//! Topology (all inside namespaces the lab creates; the host's root namespace is never touched):
//! - `podnet-<lab>-underlay` holds the bridge `br0`, the lab's physical network;
//! - `podnet-<lab>-<node>` per node: `eth0` on the underlay with the node's InternalIP, and
//!   `vxlan0` (VNI 1, UDP 4789, no learning) with the node's VTEP address (its podCIDR's
//!   network address) and, per remote node, a route to its podCIDR via its VTEP, a permanent
//!   neighbour (VTEP → MAC) and an FDB entry (MAC → node IP);
//! - `podnet-<lab>-external`: a client outside the cluster, on the underlay, that can reach the
//!   node IPs and nothing else;
//! - one namespace per pod, wired by the CNI plugin.

use std::net::IpAddr;

use ipnet::IpNet;
use podnet_model::Cluster;
use serde::{Deserialize, Serialize};

/// VXLAN's 50 bytes of headers (outer Ethernet, IPv4, UDP, VXLAN) under a 1500-byte underlay.
pub const POD_MTU: u32 = 1450;
pub const VXLAN_PORT: u16 = 4789;
pub const VXLAN_VNI: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabPlan {
    pub name: String,
    pub underlay_ns: String,
    pub external: Endpoint,
    pub node_network: IpNet,
    /// Routed by each node towards its underlay, so that the node's own connections to
    /// ClusterIPs leave through a route before the proxy rewrites them.
    pub service_cidr: IpNet,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub ns: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    pub name: String,
    pub ns: String,
    pub ip: IpAddr,
    pub pod_cidr: IpNet,
    pub vtep_ip: IpAddr,
    pub vtep_mac: String,
    /// The underlay bridge's port for this node.
    pub underlay_port: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPlan {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The pod's network namespace; for hostNetwork pods, the node's.
    pub netns: String,
    pub host_network: bool,
    /// The CNI container ID: stable for the pod's lifetime.
    pub container_id: String,
    pub planned_ip: Option<IpAddr>,
    pub ports: Vec<PortPlan>,
    pub ready: bool,
    /// One of the built-in cluster DNS pods: the lab runs the DNS server here.
    #[serde(default)]
    pub dns_server: bool,
    /// The pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet writes them (empty for
    /// hostNetwork pods, which see the node's).
    #[serde(default)]
    pub resolv_conf: String,
    #[serde(default)]
    pub hosts: String,
}

/// What a lab node's own resolv.conf holds: no nameserver, since nothing in the lab leads out.
/// (glibc then tries 127.0.0.1, which refuses at once.)
pub fn node_resolv_conf() -> podnet_model::resolv::ResolvConf {
    podnet_model::resolv::ResolvConf::default()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPlan {
    pub port: u16,
    pub protocol: String,
}

/// The prefix of everything a lab creates.
pub fn prefix(lab: &str) -> String {
    format!("podnet-{lab}-")
}

/// Checks a lab name: it becomes part of namespace names and paths.
pub fn valid_lab_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "lab name {name:?}: use 1 to 20 lower-case letters, digits or '-'"
        ))
    }
}

fn vtep_mac(i: usize) -> String {
    // Locally administered, unicast: 02:70:6e ("pn") then the node index.
    format!("02:70:6e:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff)
}

/// A short, stable container ID for a pod.
pub fn container_id(lab: &str, namespace: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lab
        .bytes()
        .chain([0])
        .chain(namespace.bytes())
        .chain([0])
        .chain(name.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("podnet{h:016x}")
}

impl LabPlan {
    pub fn new(lab: &str, cluster: &Cluster) -> LabPlan {
        let p = prefix(lab);
        let node_network = cluster.config.node_network;
        let nodes: Vec<NodePlan> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let cidr = n.pod_cidrs[0];
                NodePlan {
                    name: n.name.clone(),
                    ns: format!("{p}{}", n.name),
                    ip: n.internal_ip,
                    pod_cidr: cidr,
                    vtep_ip: cidr.network(),
                    vtep_mac: vtep_mac(i),
                    underlay_port: format!("n{i}"),
                }
            })
            .collect();
        let pods = cluster
            .pods
            .iter()
            .filter_map(|pod| {
                let node = pod.node.clone()?;
                let netns = if pod.host_network {
                    format!("{p}{node}")
                } else {
                    format!("{p}pod-{}-{}", pod.namespace, pod.name)
                };
                let mut ports: Vec<PortPlan> = pod
                    .ports
                    .iter()
                    .filter_map(|cp| {
                        Some(PortPlan {
                            port: u16::try_from(cp.container_port).ok()?,
                            protocol: cp.protocol.clone(),
                        })
                    })
                    .collect();
                ports.dedup();
                Some(PodPlan {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    node,
                    netns,
                    host_network: pod.host_network,
                    container_id: container_id(lab, &pod.namespace, &pod.name),
                    planned_ip: pod.ips.first().copied(),
                    ports,
                    ready: pod.ready,
                    dns_server: podnet_model::dns::is_builtin_dns_pod(cluster, pod),
                    resolv_conf: if pod.host_network {
                        String::new()
                    } else {
                        format!(
                            "# Generated by podnet lab for {}/{} (dnsPolicy {}).\n{}",
                            pod.namespace,
                            pod.name,
                            pod.spec.dns_policy.as_deref().unwrap_or("ClusterFirst"),
                            podnet_model::resolv::for_pod(
                                pod,
                                cluster.config.dns_ip,
                                &cluster.config.cluster_domain,
                                &node_resolv_conf(),
                            )
                        )
                    },
                    hosts: if pod.host_network {
                        String::new()
                    } else {
                        podnet_model::resolv::hosts_file(pod, &cluster.config.cluster_domain)
                    },
                })
            })
            .collect();
        LabPlan {
            name: lab.to_string(),
            underlay_ns: format!("{p}underlay"),
            // The outside world sits at the node network's first address, as a gateway would.
            external: Endpoint {
                ns: format!("{p}external"),
                ip: podnet_model::config::nth_address(&node_network, 1)
                    .expect("node network has a first address"),
            },
            node_network,
            service_cidr: cluster.config.service_cidr,
            nodes,
            pods,
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// `ip -batch` lines for the underlay namespace: the bridge and one veth per node (and the
    /// external client), whose other end goes into the node's namespace as `eth0`.
    pub fn underlay_script(&self) -> String {
        let mut s = String::from("link set lo up\nlink add br0 type bridge\nlink set br0 up\n");
        for n in &self.nodes {
            s += &format!(
                "link add {} type veth peer name eth0 netns {}\n",
                n.underlay_port, n.ns
            );
            s += &format!("link set {} master br0 up\n", n.underlay_port);
        }
        s += &format!(
            "link add ext type veth peer name eth0 netns {}\nlink set ext master br0 up\n",
            self.external.ns
        );
        s
    }

    /// `ip -batch` lines for a node: its address, the VXLAN device and the routes and
    /// neighbours of every other node.
    pub fn node_script(&self, node: &NodePlan) -> String {
        let plen = self.node_network.prefix_len();
        let mut s = format!(
            "link set lo up\nlink set eth0 up\naddr add {ip}/{plen} dev eth0\n\
             link add vxlan0 type vxlan id {VXLAN_VNI} dstport {VXLAN_PORT} local {ip} dev eth0 nolearning\n\
             link set vxlan0 address {mac} mtu {POD_MTU} up\naddr add {vtep}/32 dev vxlan0\n",
            ip = node.ip,
            mac = node.vtep_mac,
            vtep = node.vtep_ip
        );
        // The node's own connections to ClusterIPs need a route before the proxy rewrites them.
        s += &format!("route add {} dev eth0\n", self.service_cidr);
        for r in self.nodes.iter().filter(|r| r.name != node.name) {
            s += &format!(
                "neigh add {} lladdr {} dev vxlan0 nud permanent\n",
                r.vtep_ip, r.vtep_mac
            );
            s += &format!(
                "route add {} via {} dev vxlan0 onlink\n",
                r.pod_cidr, r.vtep_ip
            );
        }
        s
    }

    /// `bridge -batch` lines for a node: where each remote VTEP MAC lives on the underlay.
    pub fn node_fdb_script(&self, node: &NodePlan) -> String {
        self.nodes
            .iter()
            .filter(|r| r.name != node.name)
            .map(|r| {
                format!(
                    "fdb append {} dev vxlan0 dst {} self permanent\n",
                    r.vtep_mac, r.ip
                )
            })
            .collect()
    }

    /// `ip -batch` lines for the external client.
    pub fn external_script(&self) -> String {
        format!(
            "link set lo up\nlink set eth0 up\naddr add {}/{} dev eth0\n",
            self.external.ip,
            self.node_network.prefix_len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_model::{build, parse_documents, ConfigOverrides};

    fn cluster() -> Cluster {
        let docs = parse_documents(
            "t.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec: {hostNetwork: true, nodeName: node-1, containers: [{name: c, image: x}]}\n",
        )
        .unwrap();
        build(&docs, &ConfigOverrides::default()).unwrap()
    }

    #[test]
    fn names_addresses_and_scripts() {
        let plan = LabPlan::new("demo", &cluster());
        assert_eq!(plan.underlay_ns, "podnet-demo-underlay");
        assert_eq!(plan.external.ip.to_string(), "172.18.0.1");
        let n1 = plan.node("node-1").unwrap();
        assert_eq!(n1.ns, "podnet-demo-node-1");
        assert_eq!(n1.vtep_ip.to_string(), "10.244.1.0");
        let script = plan.node_script(n1);
        assert!(
            script.contains("addr add 172.18.0.3/16 dev eth0\n"),
            "{script}"
        );
        assert!(script.contains(
            "link add vxlan0 type vxlan id 1 dstport 4789 local 172.18.0.3 dev eth0 nolearning\n"
        ));
        assert!(script.contains("route add 10.244.0.0/24 via 10.244.0.0 dev vxlan0 onlink\n"));
        assert!(
            script.contains("route add 10.96.0.0/16 dev eth0\n"),
            "the service CIDR: {script}"
        );
        assert!(script
            .contains("neigh add 10.244.2.0 lladdr 02:70:6e:00:00:02 dev vxlan0 nud permanent\n"));
        assert!(
            !script.contains("route add 10.244.1.0/24"),
            "no route to its own podCIDR over the overlay"
        );
        assert_eq!(plan.node_fdb_script(n1), "fdb append 02:70:6e:00:00:00 dev vxlan0 dst 172.18.0.2 self permanent\nfdb append 02:70:6e:00:00:02 dev vxlan0 dst 172.18.0.4 self permanent\n");
        let u = plan.underlay_script();
        assert!(u.contains("link add n2 type veth peer name eth0 netns podnet-demo-node-2\n"));
        let h = plan.pods.iter().find(|p| p.name == "h").unwrap();
        assert!(h.host_network);
        assert_eq!(h.netns, "podnet-demo-node-1");
        let dns: Vec<_> = plan.pods.iter().filter(|p| p.dns_server).collect();
        assert_eq!(dns.len(), 2, "the built-in cluster DNS pods");
        assert!(dns.iter().all(|p| p.namespace == "kube-system"));
        let web: Vec<_> = plan
            .pods
            .iter()
            .filter(|p| !p.host_network && !p.dns_server)
            .collect();
        assert_eq!(web.len(), 3);
        assert!(web[0].resolv_conf.contains("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"));
        assert!(h.resolv_conf.is_empty(), "hostNetwork pods see the node's");
        assert!(web
            .iter()
            .all(|p| p.netns.starts_with("podnet-demo-pod-default-web-")));
        assert_eq!(
            web[0].ports,
            [
                PortPlan {
                    port: 80,
                    protocol: "TCP".into()
                },
                PortPlan {
                    port: 53,
                    protocol: "UDP".into()
                }
            ]
        );
        assert!(web.iter().all(|p| p.container_id.len() == 22));
    }

    #[test]
    fn lab_names() {
        assert!(valid_lab_name("demo-1").is_ok());
        assert!(valid_lab_name("Demo").is_err());
        assert!(valid_lab_name("").is_err());
        assert!(valid_lab_name("a/b").is_err());
    }
}
