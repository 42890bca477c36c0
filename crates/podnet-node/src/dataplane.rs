//! What one node must hold, computed from the model. Pure.
//!
//! A node's dataplane is its part of the pod network (the VXLAN device and, per remote node, a
//! route to its pod CIDR, a permanent neighbour and an FDB entry), its service proxy (the
//! nftables elements of [`podnet_proxy::nft`]), the kernel settings it needs, and two facts that
//! others act on: the health checks it serves (`healthCheckNodePort`) and the external
//! addresses it can serve (what a load balancer announces towards it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use podnet_model::{Cluster, NsName};
use podnet_proxy::nft::Elements;
use serde::{Deserialize, Serialize};

/// The MTU of the overlay and of every pod interface: VXLAN's 50 bytes of headers (outer
/// Ethernet, IPv4, UDP, VXLAN) under a 1500-byte underlay. The CNI plugin's default.
pub const OVERLAY_MTU: u32 = podnet_cni::plugin::DEFAULT_MTU;
pub const VXLAN_PORT: u16 = 4789;
pub const VXLAN_VNI: u32 = 1;
pub const VXLAN_DEV: &str = "vxlan0";

/// An Ethernet address (`02:70:6e:00:00:01`, as text in JSON too).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_with::SerializeDisplay,
    serde_with::DeserializeFromStr,
)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Text that is not a MAC address (six hexadecimal bytes separated by ':').
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address")]
pub struct NotAMac(pub String);

impl FromStr for MacAddr {
    type Err = NotAMac;
    fn from_str(s: &str) -> Result<Self, NotAMac> {
        let parts: Vec<&str> = s.split(':').collect();
        let mut b = [0u8; 6];
        if parts.len() != 6 {
            return Err(NotAMac(s.to_string()));
        }
        for (i, p) in parts.iter().enumerate() {
            b[i] = u8::from_str_radix(p, 16).map_err(|_| NotAMac(s.to_string()))?;
        }
        Ok(MacAddr(b))
    }
}

/// A node's VXLAN tunnel endpoint: the node's own address on the underlay, and the device's
/// address and MAC (the pod CIDR's network address; a locally administered MAC per node).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vtep {
    pub node_ip: IpAddr,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// The node's own VXLAN device. One device carries both families of a dual-stack cluster
/// over the IPv4 underlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// The underlay device it sends from.
    pub uplink: String,
    pub mtu: u32,
    /// The VTEP of the cluster's primary family.
    pub vtep: Vtep,
    /// The device's address of the cluster's second family (the network address of the
    /// node's podCIDR of that family), on a dual-stack cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_ip: Option<IpAddr>,
}

/// Another node, as this node reaches its pods of one family. Over the overlay: a route to
/// its pod CIDR of that family via its VTEP address of that family, a permanent neighbour
/// (VTEP → MAC) and an FDB entry (MAC → node address); a dual-stack node is two of these, with
/// one MAC and one FDB entry. Routed natively (`gateway`): one route to its pod CIDR via the
/// node's own address of that family on the uplink, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNode {
    pub name: String,
    pub pod_cidr: IpNet,
    pub vtep: Vtep,
    /// Routed natively through this address of the node (no encapsulation); over the
    /// overlay when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl RemoteNode {
    /// How its pods are reached, as `check` and drift reports say it.
    pub fn path(&self) -> String {
        match self.gateway {
            Some(gw) => format!("{} via {gw} (native)", self.pod_cidr),
            None => format!(
                "{} via {} {} at {} (vxlan)",
                self.pod_cidr, self.vtep.ip, self.vtep.mac, self.vtep.node_ip
            ),
        }
    }
}

/// The MTU of a pod's interface where no encapsulation is used: the underlay's.
pub const NATIVE_MTU: u32 = 1500;

fn overlay_mtu() -> u32 {
    OVERLAY_MTU
}

/// A `healthCheckNodePort` on one node: 200 while the Service has ready endpoints on the node,
/// 503 otherwise (serving-but-terminating endpoints do not count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub node: String,
    pub port: u16,
    pub service: NsName,
    pub local_endpoints: usize,
}

/// The table that gives pod traffic leaving the cluster, and other traffic entering the
/// overlay, the node's own address (`ip podnet-masq`, and `ip6 podnet-masq` for a cluster's
/// IPv6 pods, whose ULA addresses nothing outside routes either):
/// - from a pod to anywhere outside the cluster's pod CIDR (the Internet, the node network):
///   masqueraded to the address it leaves by, as kindnet, flannel (`ipMasq`) and Calico
///   (`natOutgoing`) do: nothing outside routes to pod addresses;
/// - towards another node's pods from an address that is not a pod's (the node itself, or a
///   client outside through a NodePort, reaching an endpoint on another node: kube-proxy
///   masquerades such traffic): masqueraded to the address of the device it leaves by (the
///   overlay device's, or the uplink's where the pods are routed natively), so the reply
///   comes back through this node, as the request went, and strict reverse-path filters
///   accept it.
///
/// Only a connection's first packet goes through NAT: replies of connections that came in
/// (a client outside reaching a pod) are never rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Masquerade {
    /// The cluster's pod CIDRs, one per family: one table each.
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own podCIDRs: traffic to them stays on the node.
    #[serde(default)]
    pub local: Vec<IpNet>,
    /// The overlay device.
    pub overlay: String,
}

/// The masquerade table's name.
pub const MASQ_TABLE: &str = "podnet-masq";

impl Masquerade {
    /// The whole tables, replacing any earlier ones, as one nftables transaction.
    pub fn render(&self) -> String {
        let (t, dev) = (MASQ_TABLE, &self.overlay);
        let mut s = String::new();
        for cidr in &self.pod_cidrs {
            let f = if cidr.addr().is_ipv4() { "ip" } else { "ip6" };
            // Another node's pods: the cluster's pod CIDR but for this node's own.
            let remote = match self
                .local
                .iter()
                .find(|l| l.addr().is_ipv4() == cidr.addr().is_ipv4())
            {
                Some(local) => format!("{f} daddr {cidr} {f} daddr != {local}"),
                None => format!("{f} daddr {cidr}"),
            };
            s.push_str(&format!(
                "add table {f} {t}\ndelete table {f} {t}\nadd table {f} {t}\n\
                 add chain {f} {t} postrouting {{ type nat hook postrouting priority srcnat + 10; policy accept; }}\n\
                 add rule {f} {t} postrouting {f} saddr {cidr} {f} daddr != {cidr} oifname != \"{dev}\" masquerade\n\
                 add rule {f} {t} postrouting {f} saddr != {cidr} {remote} masquerade\n"
            ));
        }
        s
    }

    /// Whether it has the `ip6` table.
    pub fn ipv6(&self) -> bool {
        self.pod_cidrs.iter().any(|c| c.addr().is_ipv6())
    }

    /// Whether it has the `ip` table.
    pub fn ipv4(&self) -> bool {
        self.pod_cidrs.iter().any(|c| c.addr().is_ipv4())
    }
}

/// Everything one node must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDataplane {
    pub node: String,
    /// Kernel settings, by sysctl key.
    pub sysctls: BTreeMap<String, String>,
    pub vxlan: VxlanDevice,
    pub remotes: BTreeSet<RemoteNode>,
    /// The MTU of the node's pod interfaces (the CNI configuration's): the underlay's where
    /// every other node's pods of every family are routed natively and `routing` is not
    /// `vxlan`, VXLAN's otherwise. A pod's MTU is fixed when it is made and the pod may talk
    /// to any node; with `auto`, a node that joins later from another subnet is reached over
    /// VXLAN, and pods made before then find its smaller MTU by path MTU discovery.
    #[serde(default = "overlay_mtu")]
    pub pod_mtu: u32,
    pub proxy: Elements,
    /// NetworkPolicy for the node's pods.
    #[serde(default)]
    pub policy: podnet_policy::PolicyPlan,
    pub health_checks: Vec<HealthCheck>,
    /// Masquerade for traffic leaving the cluster or entering the overlay, each family of the
    /// cluster's.
    #[serde(default)]
    pub masquerade: Option<Masquerade>,
    /// LoadBalancer IPs and externalIPs this node serves: all of them, but for
    /// `externalTrafficPolicy: Local` only those with an endpoint on this node (what MetalLB
    /// announces).
    pub serves_external: BTreeSet<IpAddr>,
}

/// A node's VTEP, from what its Node object says (its InternalIP and primary podCIDR): every
/// node computes every other's from the API alone, and it never changes while that node's
/// podCIDR does not, whatever other nodes come or go.
pub fn vtep(cluster: &Cluster, index: usize) -> Option<Vtep> {
    vteps(cluster, index)?.into_iter().next().map(|(_, v)| v)
}

/// A node's VTEP for each of its podCIDRs (one per family, the primary first): one MAC (from
/// the primary podCIDR), the address of each family the network address of that family's
/// podCIDR.
pub fn vteps(cluster: &Cluster, index: usize) -> Option<Vec<(IpNet, Vtep)>> {
    let n = cluster.nodes.get(index)?;
    let primary = n.pod_cidrs.first()?;
    // Locally administered, unicast: 02:70:6e ("pn"), then the three bytes of the primary
    // podCIDR's network address just above its host part (IPv4: the last three): distinct for
    // distinct podCIDRs of one cluster pod CIDR (a /8 or narrower; IPv6: a /40 or narrower).
    let b: [u8; 3] = match primary.network() {
        IpAddr::V4(a) => a.octets()[1..4].try_into().expect("three bytes"),
        IpAddr::V6(a) => {
            let end = usize::from(primary.prefix_len().div_ceil(8)).clamp(3, 16);
            a.octets()[end - 3..end].try_into().expect("three bytes")
        }
    };
    let mac = MacAddr([0x02, 0x70, 0x6e, b[0], b[1], b[2]]);
    Some(
        n.pod_cidrs
            .iter()
            .map(|c| {
                (
                    *c,
                    Vtep {
                        node_ip: n.internal_ip,
                        ip: c.network(),
                        mac,
                    },
                )
            })
            .collect(),
    )
}

/// The address of node `them` that node `me` routes `them`'s pods of `pod_cidr`'s family
/// through natively, or None where they go over the overlay: never with `vxlan`; with
/// `native`, whenever `them` has an address of that family; with `auto`, where both nodes'
/// addresses of that family are on the node network of that family (one subnet: the next hop
/// is on-link), as Calico's CrossSubnet decides per pair of nodes. Symmetric: `me` and `them`
/// swapped choose the same.
pub fn native_gateway(
    cluster: &Cluster,
    me: &podnet_model::NodeInfo,
    them: &podnet_model::NodeInfo,
    pod_cidr: &IpNet,
) -> Option<IpAddr> {
    use podnet_model::config::Routing;
    let (mine, theirs, net) = match pod_cidr {
        IpNet::V4(_) => (
            Some(me.internal_ip),
            Some(them.internal_ip),
            cluster.config.node_network,
        ),
        IpNet::V6(_) => (
            me.internal_ipv6,
            them.internal_ipv6,
            cluster.config.node_network_ipv6,
        ),
    };
    let theirs = theirs.filter(|ip| ip.is_ipv4() == pod_cidr.addr().is_ipv4())?;
    match cluster.config.routing {
        Routing::Vxlan => None,
        Routing::Native => Some(theirs),
        Routing::Auto => {
            let mine = mine.filter(|ip| ip.is_ipv4() == pod_cidr.addr().is_ipv4())?;
            (net.contains(&mine) && net.contains(&theirs)).then_some(theirs)
        }
    }
}

impl NodeDataplane {
    /// The cluster's pod CIDRs (one per family), as its masquerade table holds them.
    pub fn pod_cidrs(&self) -> &[IpNet] {
        self.masquerade
            .as_ref()
            .map_or(&[], |m| m.pod_cidrs.as_slice())
    }

    /// The dataplane of every node of the cluster, each computed once. `uplink` is the device
    /// that carries the overlay (the node's InternalIP's).
    pub fn for_cluster(cluster: &Cluster, uplink: &str) -> Vec<NodeDataplane> {
        Self::for_nodes(cluster, uplink, |_| true)
    }

    /// The dataplane of one node (an agent's own), or None when the cluster has no such node.
    pub fn for_node(cluster: &Cluster, node: &str, uplink: &str) -> Option<NodeDataplane> {
        Self::for_nodes(cluster, uplink, |n| n == node).pop()
    }

    fn for_nodes(
        cluster: &Cluster,
        uplink: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Vec<NodeDataplane> {
        cluster
            .nodes
            .iter()
            .filter(|n| wanted(&n.name))
            .filter_map(|n| crate::live::Live::new(cluster, &n.name, uplink))
            .map(|l| l.dataplane().clone())
            .collect()
    }

    /// A node's overlay and settings, with an empty proxy and policy (which
    /// [`crate::live::Live`] fills part by part); None when the cluster has no such node or it
    /// has no podCIDR yet.
    pub fn overlay(cluster: &Cluster, node: &str, uplink: &str) -> Option<NodeDataplane> {
        let me_info = cluster.nodes.iter().find(|n| n.name == node)?;
        let remotes: Vec<RemoteNode> = (0..cluster.nodes.len())
            .flat_map(|i| {
                let them = &cluster.nodes[i];
                vteps(cluster, i)
                    .into_iter()
                    .flatten()
                    .map(move |(pod_cidr, vtep)| RemoteNode {
                        name: them.name.clone(),
                        gateway: native_gateway(cluster, me_info, them, &pod_cidr),
                        pod_cidr,
                        vtep,
                    })
            })
            .collect();
        let mine: Vec<&RemoteNode> = remotes.iter().filter(|r| r.name == node).collect();
        let me = mine.first()?;
        let mut sysctls: BTreeMap<String, String> =
            [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
        if cluster
            .config
            .pod_cidr_of(podnet_model::IpFamily::Ipv6)
            .is_some()
        {
            sysctls.insert("net.ipv6.conf.all.forwarding".into(), "1".into());
        }
        let others: Vec<&RemoteNode> = remotes.iter().filter(|r| r.name != node).collect();
        let native = cluster.config.routing != podnet_model::config::Routing::Vxlan
            && others.iter().all(|r| r.gateway.is_some());
        Some(NodeDataplane {
            node: node.to_string(),
            pod_mtu: if native { NATIVE_MTU } else { OVERLAY_MTU },
            sysctls,
            vxlan: VxlanDevice {
                name: VXLAN_DEV.into(),
                vni: VXLAN_VNI,
                port: VXLAN_PORT,
                uplink: uplink.into(),
                mtu: OVERLAY_MTU,
                vtep: me.vtep.clone(),
                secondary_ip: mine.get(1).map(|r| r.vtep.ip),
            },
            remotes: others.into_iter().cloned().collect(),
            // The ip6 table too where the cluster has IPv6.
            proxy: Elements {
                ipv6: cluster
                    .config
                    .pod_cidr_of(podnet_model::IpFamily::Ipv6)
                    .is_some(),
                ..Default::default()
            },
            policy: Default::default(),
            health_checks: Vec::new(),
            masquerade: Some(Masquerade {
                pod_cidrs: cluster.config.pod_cidrs.clone(),
                local: mine.iter().map(|r| r.pod_cidr).collect(),
                overlay: VXLAN_DEV.into(),
            }),
            serves_external: BTreeSet::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_emulator::build;
    use podnet_model::{parse_documents, ConfigOverrides};

    fn cluster(extra: &str) -> Cluster {
        let base = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\n";
        let docs = parse_documents("t.yaml", &format!("{base}---\n{extra}")).unwrap();
        build(&docs, &ConfigOverrides::default()).unwrap()
    }

    #[test]
    fn every_node_reaches_every_other_over_the_overlay() {
        let docs = parse_documents(
            "t.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
        )
        .unwrap();
        let o = ConfigOverrides {
            routing: Some(podnet_model::config::Routing::Vxlan),
            ..Default::default()
        };
        let dps = NodeDataplane::for_cluster(&build(&docs, &o).unwrap(), "eth0");
        assert_eq!(dps.len(), 3);
        let n1 = &dps[1];
        assert_eq!(n1.vxlan.vtep.ip.to_string(), "10.244.1.0");
        assert_eq!(n1.vxlan.vtep.mac.to_string(), "02:70:6e:f4:01:00");
        assert_eq!(n1.vxlan.mtu, 1450);
        let names: Vec<&str> = n1.remotes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["node-0", "node-2"], "every node but itself");
        assert_eq!(n1.sysctls["net.ipv4.ip_forward"], "1");
        assert!(n1.health_checks.is_empty());
    }

    #[test]
    fn a_dual_stack_node_reaches_each_other_nodes_pods_of_both_families_with_one_mac() {
        let docs = parse_documents(
            "t.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
        )
        .unwrap();
        let o = ConfigOverrides {
            ip_family: Some(podnet_model::config::ClusterFamily::Dual),
            ..Default::default()
        };
        let c = build(&docs, &o).unwrap();
        let dps = NodeDataplane::for_cluster(&c, "eth0");
        let n1 = &dps[1];
        assert_eq!(n1.vxlan.vtep.ip.to_string(), "10.244.1.0");
        assert_eq!(
            n1.vxlan.secondary_ip.unwrap().to_string(),
            "fd00:10:244:1::"
        );
        assert_eq!(n1.sysctls["net.ipv6.conf.all.forwarding"], "1");
        let to_n2: Vec<&RemoteNode> = n1.remotes.iter().filter(|r| r.name == "node-2").collect();
        let cidrs: Vec<String> = to_n2.iter().map(|r| r.pod_cidr.to_string()).collect();
        assert_eq!(cidrs, ["10.244.2.0/24", "fd00:10:244:2::/64"]);
        assert_eq!(to_n2[0].vtep.mac, to_n2[1].vtep.mac);
        assert_eq!(to_n2[1].vtep.ip.to_string(), "fd00:10:244:2::");
        // An IPv6 cluster: MACs from the bits above each node's /64, distinct.
        let o = ConfigOverrides {
            ip_family: Some(podnet_model::config::ClusterFamily::Ipv6),
            ..Default::default()
        };
        let c = build(&docs, &o).unwrap();
        let macs: BTreeSet<MacAddr> = NodeDataplane::for_cluster(&c, "eth0")
            .iter()
            .map(|d| d.vxlan.vtep.mac)
            .collect();
        assert_eq!(macs.len(), 3, "{macs:?}");
    }

    #[test]
    fn local_load_balancers_are_served_where_they_have_endpoints() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80}]}\n";
        let c = cluster(svc);
        let lb = c.service("default", "lb").unwrap().load_balancer_ips[0];
        let dps = NodeDataplane::for_cluster(&c, "eth0");
        for dp in &dps {
            let local = c.pods.iter().any(|p| {
                p.labels.get("app").map(String::as_str) == Some("web")
                    && p.node.as_deref() == Some(dp.node.as_str())
            });
            assert_eq!(dp.serves_external.contains(&lb), local, "{}", dp.node);
            let hc: Vec<_> = dp.health_checks.iter().map(|h| h.local_endpoints).collect();
            assert_eq!(hc, [usize::from(local)], "{}", dp.node);
        }
    }

    #[test]
    fn a_node_that_joins_changes_no_other_nodes_vtep() {
        let node = |name: &str, i: u8| {
            format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDR: 10.244.{i}.0/24}}\nstatus: {{addresses: [{{type: InternalIP, address: 172.18.0.{}}}]}}\n", i + 2)
        };
        let of = |nodes: &[(&str, u8)]| {
            let text: Vec<String> = nodes.iter().map(|(n, i)| node(n, *i)).collect();
            let docs = parse_documents("n.yaml", &text.join("---\n")).unwrap();
            let c = build(&docs, &ConfigOverrides::default()).unwrap();
            NodeDataplane::for_cluster(&c, "eth0")
        };
        let before = of(&[("node-a", 0), ("node-c", 2)]);
        let after = of(&[("node-a", 0), ("node-b", 1), ("node-c", 2)]);
        let vtep = |dps: &[NodeDataplane], n: &str| {
            dps.iter().find(|d| d.node == n).unwrap().vxlan.vtep.clone()
        };
        assert_eq!(vtep(&before, "node-c"), vtep(&after, "node-c"));
        assert_eq!(vtep(&before, "node-a"), vtep(&after, "node-a"));
        let macs: BTreeSet<MacAddr> = after.iter().map(|d| d.vxlan.vtep.mac).collect();
        assert_eq!(macs.len(), 3, "distinct");
    }

    #[test]
    fn auto_routing_chooses_per_pair_of_nodes_by_subnet() {
        // Two nodes on the node network (172.18.0.0/16), one elsewhere; dual-stack.
        let node = |name: &str, i: u8, ip: &str, ip6: Option<&str>| {
            let v6 = ip6.map_or(String::new(), |a| {
                format!(", {{type: InternalIP, address: \"{a}\"}}")
            });
            format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDRs: [10.244.{i}.0/24, \"fd00:10:244:{i}::/64\"]}}\nstatus: {{addresses: [{{type: InternalIP, address: {ip}}}{v6}]}}\n")
        };
        let text = [
            node("node-a", 0, "172.18.0.2", Some("fc00:f853:ccd:e793::2")),
            node("node-b", 1, "172.18.0.3", Some("fc00:f853:ccd:e793::3")),
            node("node-c", 2, "10.0.0.2", None),
        ]
        .join("---\n");
        let docs = parse_documents("n.yaml", &text).unwrap();
        let of = |routing| {
            let o = ConfigOverrides {
                ip_family: Some(podnet_model::config::ClusterFamily::Dual),
                routing,
                ..Default::default()
            };
            NodeDataplane::for_cluster(&build(&docs, &o).unwrap(), "eth0")
        };
        let paths = |dps: &[NodeDataplane]| -> Vec<String> {
            dps.iter()
                .flat_map(|d| {
                    d.remotes.iter().map(move |r| {
                        format!(
                            "{}->{} {}",
                            d.node,
                            r.name,
                            r.gateway.map_or("vxlan".to_string(), |g| g.to_string())
                        )
                    })
                })
                .collect()
        };
        let auto = of(None);
        assert_eq!(
            paths(&auto),
            [
                "node-a->node-b 172.18.0.3",
                "node-a->node-b fc00:f853:ccd:e793::3",
                "node-a->node-c vxlan",
                // Each family apart: node-c's IPv6 address (the next of the network, as the
                // cluster gives a node that reports none) is on the IPv6 node network.
                "node-a->node-c fc00:f853:ccd:e793::4",
                "node-b->node-a 172.18.0.2",
                "node-b->node-a fc00:f853:ccd:e793::2",
                "node-b->node-c vxlan",
                "node-b->node-c fc00:f853:ccd:e793::4",
                "node-c->node-a vxlan",
                "node-c->node-a fc00:f853:ccd:e793::2",
                "node-c->node-b vxlan",
                "node-c->node-b fc00:f853:ccd:e793::3",
            ]
        );
        // Some pair needs the overlay: every pod gets VXLAN's MTU.
        assert!(auto.iter().all(|d| d.pod_mtu == OVERLAY_MTU));
        // native: every pair with an address of the family, whatever its subnet.
        let native = of(Some(podnet_model::config::Routing::Native));
        assert!(paths(&native).contains(&"node-a->node-c 10.0.0.2".to_string()));
        assert!(native.iter().all(|d| d.pod_mtu == NATIVE_MTU));
        let vxlan = of(Some(podnet_model::config::Routing::Vxlan));
        assert!(vxlan
            .iter()
            .all(|d| d.remotes.iter().all(|r| r.gateway.is_none())));
        // The masquerade for other nodes' pods leaves the node's own podCIDR out.
        let script = auto[0].masquerade.as_ref().unwrap().render();
        assert!(
            script.contains("ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 ip daddr != 10.244.0.0/24 masquerade"),
            "{script}"
        );
    }

    #[test]
    fn pods_get_the_underlay_mtu_only_where_every_pair_is_native() {
        let c = cluster("");
        assert!(NodeDataplane::for_cluster(&c, "eth0")
            .iter()
            .all(|d| d.pod_mtu == NATIVE_MTU && d.remotes.iter().all(|r| r.gateway.is_some())));
    }

    #[test]
    fn mac_addresses_print_and_parse() {
        let m: MacAddr = "02:70:6e:00:01:ff".parse().unwrap();
        assert_eq!(m.0, [2, 0x70, 0x6e, 0, 1, 0xff]);
        assert_eq!(m.to_string(), "02:70:6e:00:01:ff");
        assert!("02:70".parse::<MacAddr>().is_err());
        assert!("zz:70:6e:00:01:ff".parse::<MacAddr>().is_err());
    }
}
