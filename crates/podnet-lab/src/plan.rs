//! The lab's plan: the desired state of every namespace, computed from the model. Pure.
//!
//! Topology (all inside namespaces the lab creates; the host's root namespace is never touched):
//! - `podnet-<lab>-underlay` holds the bridge `br0`, the lab's physical network;
//! - `podnet-<lab>-<node>` per node: `eth0` on the underlay with the node's InternalIP, and
//!   the node's dataplane ([`podnet_node::NodeDataplane`]: the VXLAN overlay, the service
//!   proxy), applied as on a real node;
//! - `podnet-<lab>-external`: a client outside the cluster, on the underlay, that can reach the
//!   node IPs and nothing else;
//! - one namespace per pod, wired by the CNI plugin.

use std::net::IpAddr;

use ipnet::IpNet;
use podnet_model::{Cluster, NsName, Protocol};
use podnet_node::net::NetOp;
use serde::{Deserialize, Serialize};

/// A node's device on the underlay.
pub const UPLINK: &str = "eth0";
/// The underlay's bridge, in the underlay namespace.
const BRIDGE: &str = "br0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabPlan {
    pub name: String,
    pub underlay_ns: String,
    pub external: Endpoint,
    /// The lab's Kubernetes API, where the nodes' agents reach it.
    pub api: Endpoint,
    pub node_network: IpNet,
    /// The underlay's IPv6 network, on IPv6 and dual-stack clusters: every node, the external
    /// client and the API get an address of it too.
    #[serde(default)]
    pub node_network_ipv6: Option<IpNet>,
    /// Routed by each node towards its underlay, so that the node's own connections to
    /// ClusterIPs leave through a route before the proxy rewrites them. One per family.
    pub service_cidrs: Vec<IpNet>,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub ns: String,
    pub ip: IpAddr,
    /// Its IPv6 address on the underlay (IPv6 and dual-stack clusters).
    #[serde(default)]
    pub ip6: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    pub name: String,
    pub ns: String,
    pub ip: IpAddr,
    /// Its IPv6 address on the underlay (IPv6 and dual-stack clusters).
    #[serde(default)]
    pub ip6: Option<IpAddr>,
    /// One per family, the cluster's primary first.
    pub pod_cidrs: Vec<IpNet>,
    /// The underlay bridge's port for this node.
    pub underlay_port: String,
    /// Its pods' MTU (the node's dataplane's: the underlay's where no encapsulation is used).
    #[serde(default = "overlay_mtu")]
    pub pod_mtu: u32,
}

fn overlay_mtu() -> u32 {
    podnet_node::dataplane::OVERLAY_MTU
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The addresses the model planned (one per family); the CNI may give others.
    pub planned_ips: Vec<IpAddr>,
    pub ports: Vec<PortPlan>,
    /// Ports a Service targets on the pod that it does not declare (`containerPort` is
    /// informational): the test servers listen there too.
    #[serde(default)]
    pub service_ports: Vec<PortPlan>,
    pub ready: bool,
    /// One of the built-in cluster DNS pods: the lab runs the DNS server here.
    #[serde(default)]
    pub dns_server: bool,
    /// One of the built-in Ingress controller's pods: the lab runs `podnet ingress watch`
    /// here.
    #[serde(default)]
    pub ingress_controller: bool,
    /// One of a Gateway's proxy pods: the lab runs `podnet gateway watch` for that Gateway
    /// here.
    #[serde(default)]
    pub gateway: Option<NsName>,
    /// The `SERVICE_NAME` and `INGRESS_NAME` environment variables of the pod's containers,
    /// which the test servers report (as upstream's conformance echo server does).
    #[serde(default)]
    pub echo_env: std::collections::BTreeMap<String, String>,
    /// The certificate and key (PEM) the pod's test servers serve TLS with, as upstream's
    /// echo server reads them: the files `TLS_SERVER_CERT` and `TLS_SERVER_PRIV_KEY` (or
    /// `TLS_SERVER_PRIVKEY`) name, from the Secret volume mounted there.
    #[serde(default)]
    pub serving_cert: Option<(String, String)>,
    /// The CA certificates (PEM) the pod's HTTPS server verifies client certificates with, as
    /// upstream's echo server reads them: the file `TLS_CLIENT_CACERTS` names, from the
    /// ConfigMap volume mounted there (client certificates are asked for, not required).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// The pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet writes them (empty for
    /// hostNetwork pods, which see the node's).
    #[serde(default)]
    pub resolv_conf: String,
    #[serde(default)]
    pub hosts: String,
}

impl NodePlan {
    /// The node's own addresses, one per family of its podCIDRs, in their order: what its
    /// host-network pods have.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.pod_cidrs
            .iter()
            .filter_map(|c| match c {
                IpNet::V4(_) => Some(self.ip),
                IpNet::V6(_) => self.ip6,
            })
            .collect()
    }
}

impl PodPlan {
    pub fn key(&self) -> NsName {
        NsName::new(&self.namespace, &self.name)
    }
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
    pub protocol: Protocol,
}

/// The prefix of every namespace a lab creates: `podnet-<lab>.`. Lab names have no '.', so no
/// other lab's names start with it (`podnet-a.` is not a prefix of `podnet-a-b.`).
pub fn prefix(lab: &str) -> String {
    format!("podnet-{lab}.")
}

/// The longest name of a named network namespace (a file in `/run/netns`).
const NETNS_NAME_MAX: usize = 255;

/// A namespace name of the lab: `<prefix><kind>.<parts joined by '.'>`. Each kind's parts are
/// unambiguous (a pod's Kubernetes namespace has no '.'), so two objects never share a name.
/// A name over the kernel's limit becomes `<prefix><kind>-h.<hash of the parts>` instead, which
/// no unhashed name can equal (those have '.' right after the kind).
fn ns_name(lab: &str, kind: &str, parts: &[&str]) -> String {
    let full = format!("{}{kind}.{}", prefix(lab), parts.join("."));
    if full.len() <= NETNS_NAME_MAX {
        return full;
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    format!(
        "{}{kind}-h.{:016x}",
        prefix(lab),
        podnet_model::names::fnv64(&bytes)
    )
}

/// The namespace of a node.
pub fn node_ns(lab: &str, node: &str) -> String {
    ns_name(lab, "n", &[node])
}

/// The namespace of a pod that is not on its node's network.
pub fn pod_ns(lab: &str, pod: &NsName) -> String {
    ns_name(lab, "p", &[&pod.namespace, &pod.name])
}

/// A lab name that cannot be one: it becomes part of namespace names and paths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lab name {0:?}: use 1 to 20 lower-case letters, digits or '-'")]
pub struct BadLabName(pub String);

/// Checks a lab name: it becomes part of namespace names and paths.
pub fn valid_lab_name(name: &str) -> Result<(), BadLabName> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(BadLabName(name.to_string()))
    }
}

/// A short, stable container ID for a pod.
pub fn container_id(lab: &str, pod: &NsName) -> String {
    let h = podnet_model::names::fnv64(&[
        lab.as_bytes(),
        pod.namespace.as_bytes(),
        pod.name.as_bytes(),
    ]);
    format!("podnet{h:016x}")
}

/// The ports each pod is an endpoint on, from every Service's EndpointSlices.
fn targeted_ports(cluster: &Cluster) -> std::collections::HashMap<NsName, Vec<PortPlan>> {
    let mut out: std::collections::HashMap<NsName, Vec<PortPlan>> = Default::default();
    for svc in &cluster.services {
        for (slice, ep) in svc.endpoints() {
            let Some(pod) = &ep.pod else { continue };
            let list = out.entry(NsName::new(&svc.namespace, pod)).or_default();
            for p in &slice.ports {
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                let plan = PortPlan {
                    port,
                    protocol: p.protocol,
                };
                if !list.contains(&plan) {
                    list.push(plan);
                }
            }
        }
    }
    out.values_mut()
        .for_each(|v| v.sort_by_key(|p| (p.port, p.protocol)));
    out
}

impl LabPlan {
    pub fn new(lab: &str, cluster: &Cluster) -> LabPlan {
        let p = prefix(lab);
        let node_network = cluster.config.node_network;
        let nodes: Vec<NodePlan> = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodePlan {
                name: n.name.clone(),
                ns: node_ns(lab, &n.name),
                ip: n.internal_ip,
                ip6: n.internal_ipv6,
                pod_cidrs: n.pod_cidrs.clone(),
                underlay_port: format!("n{i}"),
                pod_mtu: podnet_node::dataplane::NodeDataplane::overlay(cluster, &n.name, UPLINK)
                    .map_or(podnet_node::dataplane::OVERLAY_MTU, |d| d.pod_mtu),
            })
            .collect();
        let targeted = targeted_ports(cluster);
        let pods = cluster
            .pods
            .iter()
            .filter_map(|pod| {
                let node = pod.node.clone()?;
                let netns = if pod.host_network {
                    node_ns(lab, &node)
                } else {
                    pod_ns(lab, &pod.key())
                };
                let mut ports: Vec<PortPlan> = pod
                    .ports
                    .iter()
                    .filter_map(|cp| {
                        Some(PortPlan {
                            port: u16::try_from(cp.container_port).ok()?,
                            protocol: cp.protocol,
                        })
                    })
                    .collect();
                ports.dedup();
                let service_ports: Vec<PortPlan> = targeted
                    .get(&pod.key())
                    .into_iter()
                    .flatten()
                    .filter(|p| !ports.contains(p))
                    .cloned()
                    .collect();
                Some(PodPlan {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    node,
                    netns,
                    host_network: pod.host_network,
                    container_id: container_id(lab, &pod.key()),
                    planned_ips: pod.ips.clone(),
                    ports,
                    service_ports,
                    ready: pod.ready,
                    dns_server: podnet_model::dns::is_builtin_dns_pod(cluster, pod),
                    ingress_controller: podnet_model::edge::is_builtin_ingress_pod(cluster, pod),
                    gateway: podnet_model::gateway::gateway_of_pod(cluster, pod),
                    echo_env: pod
                        .spec
                        .containers
                        .iter()
                        .flat_map(|c| c.env.iter().flatten())
                        .filter(|e| ECHO_ENV.contains(&e.name.as_str()))
                        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
                        .collect(),
                    serving_cert: serving_cert(cluster, pod),
                    client_ca: client_ca(cluster, pod),
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
        let node_network_ipv6 = cluster
            .config
            .pod_cidr_of(podnet_model::IpFamily::Ipv6)
            .map(|_| cluster.config.node_network_ipv6);
        LabPlan {
            name: lab.to_string(),
            underlay_ns: format!("{p}underlay"),
            // The outside world sits at the node network's first address, as a gateway would.
            external: Endpoint {
                ns: format!("{p}external"),
                ip: podnet_model::config::nth_address(&node_network, 1)
                    .expect("node network has a first address"),
                ip6: node_network_ipv6.and_then(|n| podnet_model::config::nth_address(&n, 1)),
            },
            // The API at the node network's last address, like a control-plane endpoint.
            api: Endpoint {
                ns: format!("{p}api"),
                ip: last_address(&node_network),
                ip6: node_network_ipv6.as_ref().map(last_address),
            },
            node_network,
            node_network_ipv6,
            service_cidrs: cluster.config.service_cidrs.clone(),
            nodes,
            pods,
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The address the API's clients reach it at: its IPv4 one, but on an IPv6 cluster (whose
    /// pods have no IPv4 address) its IPv6 one.
    pub fn api_client_ip(&self) -> IpAddr {
        let ipv6_only = !self.nodes.is_empty()
            && self
                .nodes
                .iter()
                .all(|n| n.pod_cidrs.iter().all(|c| c.addr().is_ipv6()));
        match (ipv6_only, self.api.ip6) {
            (true, Some(ip6)) => ip6,
            _ => self.api.ip,
        }
    }

    /// The underlay namespace: the bridge and one veth per node (and the external client),
    /// whose other end goes into the node's namespace as its uplink.
    pub fn underlay_ops(&self) -> Vec<NetOp> {
        let mut ops = vec![
            NetOp::LoopbackUp,
            NetOp::Bridge {
                name: BRIDGE.into(),
            },
            NetOp::Up {
                link: BRIDGE.into(),
                master: None,
            },
        ];
        let ports = self
            .nodes
            .iter()
            .map(|n| (n.underlay_port.as_str(), n.ns.as_str()))
            .chain([
                ("ext", self.external.ns.as_str()),
                ("api", self.api.ns.as_str()),
            ]);
        for (port, ns) in ports {
            ops.push(NetOp::Veth {
                name: port.into(),
                peer: UPLINK.into(),
                peer_netns: ns.into(),
            });
            ops.push(NetOp::Up {
                link: port.into(),
                master: Some(BRIDGE.into()),
            });
        }
        ops
    }

    /// A node's own side of the underlay: its address, and a route for the service CIDR so
    /// that the node's own connections to ClusterIPs leave through a route before the proxy
    /// rewrites them. (The overlay is the node's dataplane.)
    pub fn node_ops(&self, node: &NodePlan) -> Vec<NetOp> {
        let mut ops = self.host_ops(node.ip, node.ip6);
        for dst in &self.service_cidrs {
            ops.push(NetOp::Route {
                dst: *dst,
                via: vec![],
                dev: Some(UPLINK.into()),
                onlink: false,
            });
        }
        ops
    }

    /// The external client: its address(es) on the underlay, nothing else.
    pub fn external_ops(&self) -> Vec<NetOp> {
        self.host_ops(self.external.ip, self.external.ip6)
    }

    /// The API's namespace: its address(es) on the underlay, nothing else.
    pub fn api_ops(&self) -> Vec<NetOp> {
        self.host_ops(self.api.ip, self.api.ip6)
    }

    fn host_ops(&self, ip: IpAddr, ip6: Option<IpAddr>) -> Vec<NetOp> {
        let mut ops = vec![
            NetOp::LoopbackUp,
            NetOp::Up {
                link: UPLINK.into(),
                master: None,
            },
            NetOp::Address {
                dev: UPLINK.into(),
                addr: IpNet::new(ip, self.node_network.prefix_len()).expect("a valid prefix"),
            },
        ];
        if let (Some(ip6), Some(net6)) = (ip6, self.node_network_ipv6) {
            ops.push(NetOp::Address {
                dev: UPLINK.into(),
                addr: IpNet::new(ip6, net6.prefix_len()).expect("a valid prefix"),
            });
        }
        ops
    }
}

/// The last address of a network that a host can have.
fn last_address(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(n.broadcast()) - 1)),
        IpNet::V6(n) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n.broadcast()) - 1)),
    }
}

/// The port of the lab's Kubernetes API on the underlay.
pub const API_PORT: u16 = 6443;

/// The environment variables of a pod's containers its test servers act on, as upstream's
/// echo server does: the names it reports, and which server it is (`TCP_ECHO_SERVER`: the
/// line protocol of its TCP server; `GRPC_ECHO_SERVER`: its gRPC server).
const ECHO_ENV: [&str; 4] = [
    "SERVICE_NAME",
    "INGRESS_NAME",
    "TCP_ECHO_SERVER",
    "GRPC_ECHO_SERVER",
];

/// The file `TLS_CLIENT_CACERTS` names in a pod's containers, from a mounted ConfigMap or
/// Secret volume.
fn client_ca(cluster: &Cluster, pod: &podnet_model::PodInfo) -> Option<String> {
    pod.spec.containers.iter().find_map(|c| {
        let path = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "TLS_CLIENT_CACERTS")?
            .value
            .clone()?;
        volume_file(cluster, pod, c, &path)
    })
}

/// The content of the file `path` of a container: a key of the Secret or ConfigMap volume
/// mounted over it (None: no such volume, key or object).
fn volume_file(
    cluster: &Cluster,
    pod: &podnet_model::PodInfo,
    c: &k8s_openapi::api::core::v1::Container,
    path: &str,
) -> Option<String> {
    let spec = &pod.spec;
    for m in c.volume_mounts.iter().flatten() {
        let Some(rel) = path
            .strip_prefix(m.mount_path.trim_end_matches('/'))
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let v = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
        let key_of = |items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>| match items {
            Some(items) => items.iter().find(|i| i.path == rel).map(|i| i.key.clone()),
            None => Some(rel.to_string()),
        };
        if let Some(sv) = &v.secret {
            let key = key_of(&sv.items)?;
            let secret = cluster.secrets.iter().map(|s| &s.obj).find(|s| {
                s.metadata.namespace.as_deref().unwrap_or("default") == pod.namespace
                    && s.metadata.name.as_deref() == sv.secret_name.as_deref()
            })?;
            return secret
                .data
                .as_ref()
                .and_then(|d| d.get(&key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(&key))
                        .cloned()
                });
        }
        if let Some(cv) = &v.config_map {
            let key = key_of(&cv.items)?;
            let cm = cluster.config_maps.iter().map(|s| &s.obj).find(|s| {
                s.metadata.namespace.as_deref().unwrap_or("default") == pod.namespace
                    && s.metadata.name.as_deref() == Some(cv.name.as_str())
            })?;
            return cm.data.as_ref().and_then(|d| d.get(&key)).cloned();
        }
        return None;
    }
    None
}

/// The certificate and key a pod's containers name in `TLS_SERVER_CERT` and
/// `TLS_SERVER_PRIV_KEY` (or `TLS_SERVER_PRIVKEY`): files of a Secret volume, read from the
/// Secret (None: not named, or not found).
fn serving_cert(cluster: &Cluster, pod: &podnet_model::PodInfo) -> Option<(String, String)> {
    let spec = &pod.spec;
    for c in &spec.containers {
        let env = |n: &str| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        let (Some(cert), Some(key)) = (
            env("TLS_SERVER_CERT"),
            env("TLS_SERVER_PRIV_KEY").or_else(|| env("TLS_SERVER_PRIVKEY")),
        ) else {
            continue;
        };
        let file = |path: &str| volume_file(cluster, pod, c, path);
        if let (Some(c), Some(k)) = (file(&cert), file(&key)) {
            return Some((c, k));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_emulator::build;
    use podnet_model::{parse_documents, ConfigOverrides};

    fn cluster() -> Cluster {
        let docs = parse_documents(
            "t.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec: {hostNetwork: true, nodeName: node-1, containers: [{name: c, image: x}]}\n",
        )
        .unwrap();
        build(&docs, &ConfigOverrides::default()).unwrap()
    }

    #[test]
    fn names_addresses_and_topology() {
        let plan = LabPlan::new("demo", &cluster());
        assert_eq!(plan.underlay_ns, "podnet-demo.underlay");
        assert_eq!(plan.external.ip.to_string(), "172.18.0.1");
        let n1 = plan.node("node-1").unwrap();
        assert_eq!(n1.ns, "podnet-demo.n.node-1");
        let render = |ops: &[NetOp]| -> String { podnet_node::net::render(ops) };
        let script = render(&plan.node_ops(n1));
        assert!(
            script.contains("addr add 172.18.0.3/16 dev eth0\n"),
            "{script}"
        );
        assert!(
            script.contains("route replace 10.96.0.0/16 dev eth0\n"),
            "the service CIDR: {script}"
        );
        let u = render(&plan.underlay_ops());
        assert!(u.contains("link add n2 type veth peer name eth0 netns podnet-demo.n.node-2\n"));
        assert!(u.contains("link add ext type veth peer name eth0 netns podnet-demo.external\n"));
        let h = plan.pods.iter().find(|p| p.name == "h").unwrap();
        assert!(h.host_network);
        assert_eq!(h.netns, "podnet-demo.n.node-1");
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
            .all(|p| p.netns.starts_with("podnet-demo.p.default.web-")));
        assert_eq!(
            web[0].ports,
            [
                PortPlan {
                    port: 80,
                    protocol: Protocol::Tcp
                },
                PortPlan {
                    port: 53,
                    protocol: Protocol::Udp
                }
            ]
        );
        assert!(web.iter().all(|p| p.container_id.len() == 22));
    }

    /// Issue 10, defects 1 and 9: names never collide, across labs or within one.
    #[test]
    fn namespace_names_are_distinct_and_within_the_kernels_limit() {
        // `a/b-c` and `a-b/c` used to share a namespace.
        let (x, y) = (NsName::new("a", "b-c"), NsName::new("a-b", "c"));
        assert_ne!(pod_ns("lab", &x), pod_ns("lab", &y));
        // A node named like the lab's own namespaces.
        for n in ["external", "underlay"] {
            let plan_names = [format!("podnet-lab.{n}")];
            assert!(!plan_names.contains(&node_ns("lab", n)));
        }
        // No lab's prefix starts another lab's names.
        assert!(!node_ns("rp2-x", "node-0").starts_with(&prefix("rp2")));
        // The longest names Kubernetes accepts fit, and stay distinct.
        let long = |c: char| NsName::new(&"n".repeat(63), &c.to_string().repeat(253));
        let (a, b) = (
            pod_ns("abcdefghijklmnopqrst", &long('a')),
            pod_ns("abcdefghijklmnopqrst", &long('b')),
        );
        assert!(a.len() <= 255 && b.len() <= 255, "{a}");
        assert_ne!(a, b);
        assert!(a.starts_with("podnet-abcdefghijklmnopqrst.p-h."), "{a}");
        assert!(node_ns("l", &"x".repeat(253)).len() <= 255);
    }

    #[test]
    fn lab_names() {
        assert!(valid_lab_name("demo-1").is_ok());
        assert!(valid_lab_name("Demo").is_err());
        assert!(valid_lab_name("").is_err());
        assert!(valid_lab_name("a/b").is_err());
    }
}
