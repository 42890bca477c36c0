//! Cluster settings, with the defaults of a kubeadm/kind cluster.
//!
//! Set in a manifest document of `kind: ClusterConfig` (apiVersion `podnet.dev/v1alpha1`) and
//! overridden by command-line flags ([`ConfigOverrides`]).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, ObjectRef, Severity};
use crate::objects::Object;

pub const CONFIG_API_VERSION: &str = "podnet.dev/v1alpha1";

/// The `ClusterConfig` document as written. Every field is optional.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfigDoc {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<serde_json::Value>,
    #[serde(flatten)]
    pub settings: ConfigOverrides,
}

/// Settings that override the defaults. The same shape serves the config document and flags.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigOverrides {
    /// Number of nodes when no Node objects are given.
    pub nodes: Option<u32>,
    /// `ipv4`, `ipv6` or `dual` (kind's `networking.ipFamily`).
    pub ip_family: Option<ClusterFamily>,
    /// The cluster's pod CIDRs, one per family, the primary first (`10.244.0.0/16` or
    /// `10.244.0.0/16,fd00:10:244::/56`, as kind's `podSubnet` and kube-controller-manager's
    /// `--cluster-cidr`).
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<CidrList>,
    /// Prefix length of each node's IPv4 podCIDR (kube-controller-manager's
    /// `--node-cidr-mask-size-ipv4`).
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: Option<u8>,
    /// Prefix length of each node's IPv6 podCIDR (`--node-cidr-mask-size-ipv6`).
    #[serde(rename = "nodeCIDRMaskSizeIPv6")]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// The service CIDRs, one per family, the primary first (kube-apiserver's
    /// `--service-cluster-ip-range`).
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<CidrList>,
    /// Cluster DNS address; by default the 10th address of the primary service CIDR.
    #[serde(rename = "dnsIP")]
    pub dns_ip: Option<IpAddr>,
    /// `30000-32767`.
    pub node_port_range: Option<PortRange>,
    pub cluster_domain: Option<String>,
    /// The network the nodes' own addresses come from (the lab's underlay, IPv4).
    pub node_network: Option<IpNet>,
    /// The network the nodes' IPv6 addresses come from, on IPv6 and dual-stack clusters.
    #[serde(rename = "nodeNetworkIPv6")]
    pub node_network_ipv6: Option<IpNet>,
    /// Addresses for LoadBalancer Services: CIDRs or `first-last` ranges.
    pub load_balancer_pool: Option<Vec<IpRange>>,
    /// How pod traffic crosses between nodes: `auto` (the default), `native` or `vxlan`.
    pub routing: Option<Routing>,
    /// The percentage of new connections the policy table lets through that the flow log
    /// records (FORWARDED), from 0 (the default: drops and rejections only) to 100, in steps
    /// of 0.01.
    pub flow_sample: Option<f64>,
}

impl ConfigOverrides {
    /// These settings with each one `top` gives replacing this one's.
    pub fn over(mut self, top: &ConfigOverrides) -> ConfigOverrides {
        macro_rules! take {
            ($($f:ident),*) => { $(if top.$f.is_some() { self.$f = top.$f.clone(); })* };
        }
        take!(
            nodes,
            ip_family,
            pod_cidr,
            node_cidr_mask_size,
            node_cidr_mask_size_ipv6,
            service_cidr,
            dns_ip,
            node_port_range,
            cluster_domain,
            node_network,
            node_network_ipv6,
            load_balancer_pool,
            routing,
            flow_sample
        );
        self
    }
}

/// An IP family, as `spec.ipFamilies` names it. IPv4 by default (what a single-stack record
/// that names none is).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum IpFamily {
    #[default]
    #[serde(rename = "IPv4")]
    Ipv4,
    #[serde(rename = "IPv6")]
    Ipv6,
}

impl IpFamily {
    pub const ALL: [IpFamily; 2] = [IpFamily::Ipv4, IpFamily::Ipv6];
    pub fn of(ip: IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::Ipv4,
            IpAddr::V6(_) => IpFamily::Ipv6,
        }
    }
    pub fn of_net(net: &IpNet) -> IpFamily {
        IpFamily::of(net.addr())
    }
    pub fn parse(s: &str) -> Option<IpFamily> {
        match s {
            "IPv4" => Some(IpFamily::Ipv4),
            "IPv6" => Some(IpFamily::Ipv6),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        }
    }
    /// The other family (what a dual-stack Service adds to its first).
    pub fn other(&self) -> IpFamily {
        match self {
            IpFamily::Ipv4 => IpFamily::Ipv6,
            IpFamily::Ipv6 => IpFamily::Ipv4,
        }
    }
    /// The number of bits of an address.
    pub fn bits(&self) -> u8 {
        match self {
            IpFamily::Ipv4 => 32,
            IpFamily::Ipv6 => 128,
        }
    }
}

/// The families a cluster runs (kind's `networking.ipFamily`). `dual` is IPv4-primary, as
/// kind's is; an IPv6-primary dual-stack cluster is asked for by giving the IPv6 CIDRs first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde_with::SerializeDisplay,
    serde_with::DeserializeFromStr,
)]
pub enum ClusterFamily {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

impl ClusterFamily {
    /// The families, the primary first, in the canonical order.
    pub fn families(&self) -> Vec<IpFamily> {
        match self {
            ClusterFamily::Ipv4 => vec![IpFamily::Ipv4],
            ClusterFamily::Ipv6 => vec![IpFamily::Ipv6],
            ClusterFamily::Dual => vec![IpFamily::Ipv4, IpFamily::Ipv6],
        }
    }
    fn of(families: &[IpFamily]) -> ClusterFamily {
        match families {
            [IpFamily::Ipv6] => ClusterFamily::Ipv6,
            [_, _] => ClusterFamily::Dual,
            _ => ClusterFamily::Ipv4,
        }
    }
}

impl std::fmt::Display for ClusterFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterFamily::Ipv4 => "ipv4",
            ClusterFamily::Ipv6 => "ipv6",
            ClusterFamily::Dual => "dual",
        })
    }
}

impl std::str::FromStr for ClusterFamily {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "ipv4" => Ok(ClusterFamily::Ipv4),
            "ipv6" => Ok(ClusterFamily::Ipv6),
            "dual" => Ok(ClusterFamily::Dual),
            _ => Err(BadValue {
                value: s.to_string(),
                expected: "ipv4, ipv6 or dual",
            }),
        }
    }
}

/// How pod traffic crosses from one node to another, as the CNI plugins that offer a choice
/// name it (Calico's `vxlanMode: Always | CrossSubnet | Never`, Cilium's `routingMode:
/// tunnel | native`, Flannel's `vxlan` and `host-gw` backends).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde_with::SerializeDisplay,
    serde_with::DeserializeFromStr,
)]
pub enum Routing {
    /// Per pair of nodes: native between two nodes whose addresses are both on the node
    /// network (one L2 segment: the next hop is on-link), VXLAN otherwise (Calico's
    /// CrossSubnet).
    #[default]
    Auto,
    /// Every pod CIDR routed through its node's address, unencapsulated (Flannel's host-gw).
    /// Only works where every node reaches every other directly on one L2 segment.
    Native,
    /// Every pod CIDR over the VXLAN overlay.
    Vxlan,
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Routing::Auto => "auto",
            Routing::Native => "native",
            Routing::Vxlan => "vxlan",
        })
    }
}

impl std::str::FromStr for Routing {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "auto" => Ok(Routing::Auto),
            "native" => Ok(Routing::Native),
            "vxlan" => Ok(Routing::Vxlan),
            _ => Err(BadValue {
                value: s.to_string(),
                expected: "auto, native or vxlan",
            }),
        }
    }
}

/// One or two CIDRs of distinct families, the primary first, written comma separated
/// (`10.244.0.0/16,fd00:10:244::/56`), as kind's subnets and the control plane's flags are.
#[derive(
    Debug, Clone, PartialEq, Eq, serde_with::SerializeDisplay, serde_with::DeserializeFromStr,
)]
pub struct CidrList(pub Vec<IpNet>);

impl std::str::FromStr for CidrList {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let bad = || BadValue {
            value: s.to_string(),
            expected: "one CIDR, or two of different families separated by a comma",
        };
        let nets = s
            .split(',')
            .map(|c| c.trim().parse::<IpNet>().map(|n| n.trunc()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        match nets.as_slice() {
            [_] => Ok(CidrList(nets)),
            [a, b] if IpFamily::of_net(a) != IpFamily::of_net(b) => Ok(CidrList(nets)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for CidrList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&shown.join(","))
    }
}

impl From<IpNet> for CidrList {
    fn from(n: IpNet) -> Self {
        CidrList(vec![n])
    }
}

/// An inclusive port range, written `30000-32767` (as text in JSON and YAML too).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde_with::SerializeDisplay, serde_with::DeserializeFromStr,
)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, p: i32) -> bool {
        p >= i32::from(self.first) && p <= i32::from(self.last)
    }
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A setting's value (a flag's, a config file's) that does not parse: the value and what was
/// expected of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: expected {expected}")]
pub struct BadValue {
    pub value: String,
    pub expected: &'static str,
}

impl std::str::FromStr for PortRange {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let bad = || BadValue {
            value: s.to_string(),
            expected: "FIRST-LAST port numbers, 1 <= FIRST <= LAST <= 65535 (e.g. 30000-32767)",
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// An inclusive address range: a CIDR (`172.18.255.0/24`), a range (`a.b.c.d-e.f.g.h`) or one IP.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde_with::SerializeDisplay, serde_with::DeserializeFromStr,
)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip >= self.first && ip <= self.last && ip.is_ipv4() == self.first.is_ipv4()
    }
    /// The addresses in the range, at most `limit` of them.
    pub fn iter(&self, limit: usize) -> impl Iterator<Item = IpAddr> + '_ {
        let (a, b) = (ip_to_u128(self.first), ip_to_u128(self.last));
        let v4 = self.first.is_ipv4();
        (a..=b).take(limit).map(move |n| u128_to_ip(n, v4))
    }
}

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn u128_to_ip(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(n.into())
    }
}

impl std::str::FromStr for IpRange {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let bad = || BadValue {
            value: s.to_string(),
            expected: "a CIDR, an IP address, or FIRST-LAST addresses of one family, FIRST <= LAST",
        };
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(IpRange {
                first: net.network(),
                last: net.broadcast(),
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if first.is_ipv4() != last.is_ipv4() || first > last {
                return Err(bad());
            }
            return Ok(IpRange { first, last });
        }
        let ip: IpAddr = s.parse().map_err(|_| bad())?;
        Ok(IpRange {
            first: ip,
            last: ip,
        })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub nodes: u32,
    pub ip_family: ClusterFamily,
    /// One per family, the primary first.
    pub pod_cidrs: Vec<IpNet>,
    /// Of each node's IPv4 podCIDR.
    pub node_cidr_mask_size: u8,
    /// Of each node's IPv6 podCIDR.
    pub node_cidr_mask_size_ipv6: u8,
    /// One per family, in the order of `pod_cidrs`.
    pub service_cidrs: Vec<IpNet>,
    pub dns_ip: IpAddr,
    pub node_port_range: PortRange,
    pub cluster_domain: String,
    /// The nodes' IPv4 network: the underlay that carries the overlay in every family.
    pub node_network: IpNet,
    /// The nodes' IPv6 addresses' network (IPv6 and dual-stack clusters).
    pub node_network_ipv6: IpNet,
    pub load_balancer_pool: Vec<IpRange>,
    /// How pod traffic crosses between nodes.
    pub routing: Routing,
    /// New connections allowed that the flow log records, per 10,000.
    pub flow_sample: u16,
}

/// The settings as `check -o json` shows them: every field, and the primary CIDRs also under
/// their single-stack names (`podCIDR`, `serviceCIDR`), which v1alpha1 keeps.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigView<'a> {
    nodes: u32,
    ip_family: ClusterFamily,
    #[serde(rename = "podCIDR")]
    pod_cidr: IpNet,
    #[serde(rename = "podCIDRs")]
    pod_cidrs: &'a [IpNet],
    #[serde(rename = "nodeCIDRMaskSize")]
    node_cidr_mask_size: u8,
    #[serde(rename = "nodeCIDRMaskSizeIPv6")]
    node_cidr_mask_size_ipv6: u8,
    #[serde(rename = "serviceCIDR")]
    service_cidr: IpNet,
    #[serde(rename = "serviceCIDRs")]
    service_cidrs: &'a [IpNet],
    #[serde(rename = "dnsIP")]
    dns_ip: IpAddr,
    node_port_range: PortRange,
    cluster_domain: &'a str,
    node_network: IpNet,
    #[serde(rename = "nodeNetworkIPv6")]
    node_network_ipv6: IpNet,
    load_balancer_pool: &'a [IpRange],
    routing: Routing,
    /// Percent.
    flow_sample: f64,
}

impl Serialize for ClusterConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConfigView {
            nodes: self.nodes,
            ip_family: self.ip_family,
            pod_cidr: self.pod_cidr(),
            pod_cidrs: &self.pod_cidrs,
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_cidr_mask_size_ipv6: self.node_cidr_mask_size_ipv6,
            service_cidr: self.service_cidr(),
            service_cidrs: &self.service_cidrs,
            dns_ip: self.dns_ip,
            node_port_range: self.node_port_range,
            cluster_domain: &self.cluster_domain,
            node_network: self.node_network,
            node_network_ipv6: self.node_network_ipv6,
            load_balancer_pool: &self.load_balancer_pool,
            routing: self.routing,
            flow_sample: self.flow_sample_percent(),
        }
        .serialize(s)
    }
}

/// kind's defaults, per family.
fn default_pod_cidr(f: IpFamily) -> IpNet {
    match f {
        IpFamily::Ipv4 => "10.244.0.0/16",
        IpFamily::Ipv6 => "fd00:10:244::/56",
    }
    .parse()
    .expect("literal")
}

fn default_service_cidr(f: IpFamily) -> IpNet {
    match f {
        IpFamily::Ipv4 => "10.96.0.0/16",
        IpFamily::Ipv6 => "fd00:10:96::/112",
    }
    .parse()
    .expect("literal")
}

fn default_lb_pool(f: IpFamily) -> IpRange {
    match f {
        IpFamily::Ipv4 => "172.18.255.200-172.18.255.250",
        IpFamily::Ipv6 => "fc00:f853:ccd:e793::ff00-fc00:f853:ccd:e793::ff32",
    }
    .parse()
    .expect("literal")
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            ip_family: ClusterFamily::Ipv4,
            pod_cidrs: vec![default_pod_cidr(IpFamily::Ipv4)],
            node_cidr_mask_size: 24,
            node_cidr_mask_size_ipv6: 64,
            service_cidrs: vec![default_service_cidr(IpFamily::Ipv4)],
            dns_ip: "10.96.0.10".parse().expect("literal"),
            node_port_range: PortRange {
                first: 30000,
                last: 32767,
            },
            cluster_domain: "cluster.local".to_string(),
            node_network: "172.18.0.0/16".parse().expect("literal"),
            // kind's docker network's IPv6 subnet.
            node_network_ipv6: "fc00:f853:ccd:e793::/64".parse().expect("literal"),
            load_balancer_pool: vec![default_lb_pool(IpFamily::Ipv4)],
            routing: Routing::Auto,
            flow_sample: 0,
        }
    }
}

impl ClusterConfig {
    /// The cluster's families, the primary first.
    pub fn families(&self) -> Vec<IpFamily> {
        self.pod_cidrs.iter().map(IpFamily::of_net).collect()
    }
    /// The primary family.
    pub fn primary(&self) -> IpFamily {
        IpFamily::of_net(&self.pod_cidrs[0])
    }
    pub fn is_dual(&self) -> bool {
        self.pod_cidrs.len() == 2
    }
    /// The primary pod CIDR.
    pub fn pod_cidr(&self) -> IpNet {
        self.pod_cidrs[0]
    }
    pub fn pod_cidr_of(&self, f: IpFamily) -> Option<IpNet> {
        self.pod_cidrs
            .iter()
            .find(|c| IpFamily::of_net(c) == f)
            .copied()
    }
    /// The primary service CIDR.
    pub fn service_cidr(&self) -> IpNet {
        self.service_cidrs[0]
    }
    pub fn service_cidr_of(&self, f: IpFamily) -> Option<IpNet> {
        self.service_cidrs
            .iter()
            .find(|c| IpFamily::of_net(c) == f)
            .copied()
    }
    /// The prefix length of a node's podCIDR of a family.
    pub fn node_mask(&self, f: IpFamily) -> u8 {
        match f {
            IpFamily::Ipv4 => self.node_cidr_mask_size,
            IpFamily::Ipv6 => self.node_cidr_mask_size_ipv6,
        }
    }
    /// Whether an address is in one of the cluster's pod CIDRs.
    pub fn is_pod_ip(&self, ip: &IpAddr) -> bool {
        self.pod_cidrs.iter().any(|c| c.contains(ip))
    }

    /// Every setting as overrides: applied to the defaults, they give `self` back (what a
    /// node's agent is started with).
    pub fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            nodes: Some(self.nodes),
            ip_family: Some(self.ip_family),
            pod_cidr: Some(CidrList(self.pod_cidrs.clone())),
            node_cidr_mask_size: Some(self.node_cidr_mask_size),
            node_cidr_mask_size_ipv6: Some(self.node_cidr_mask_size_ipv6),
            service_cidr: Some(CidrList(self.service_cidrs.clone())),
            dns_ip: Some(self.dns_ip),
            node_port_range: Some(self.node_port_range),
            cluster_domain: Some(self.cluster_domain.clone()),
            node_network: Some(self.node_network),
            node_network_ipv6: Some(self.node_network_ipv6),
            load_balancer_pool: Some(self.load_balancer_pool.clone()),
            routing: Some(self.routing),
            flow_sample: Some(self.flow_sample_percent()),
        }
    }

    /// [`ClusterConfig::flow_sample`] as a percentage.
    pub fn flow_sample_percent(&self) -> f64 {
        f64::from(self.flow_sample) / 100.0
    }

    /// Applies overrides on top of `self`, then checks the result. On error: (field, reason).
    pub fn apply(&mut self, o: &ConfigOverrides) -> Result<(), (String, String)> {
        let e = |f: &str, m: String| Err((f.to_string(), m));
        if let Some(n) = o.nodes {
            self.nodes = n;
        }
        // The families: as asked, else those of the CIDRs given, else as they were. Given
        // two CIDRs, their order decides the primary.
        let given = |l: &Option<CidrList>| l.as_ref().map(|l| l.0.clone()).unwrap_or_default();
        let (pods, services) = (given(&o.pod_cidr), given(&o.service_cidr));
        let families: Vec<IpFamily> = [&pods, &services]
            .into_iter()
            .find(|l| l.len() == 2)
            .map(|l| l.iter().map(IpFamily::of_net).collect())
            .or_else(|| o.ip_family.map(|f| f.families()))
            .or_else(|| {
                [&pods, &services]
                    .into_iter()
                    .find(|l| !l.is_empty())
                    .map(|l| l.iter().map(IpFamily::of_net).collect())
            })
            .unwrap_or_else(|| self.families());
        if let Some(asked) = o.ip_family {
            if ClusterFamily::of(&families) != asked {
                let field = if pods.len() == 2 || (!pods.is_empty() && services.len() != 2) {
                    "podCIDR"
                } else {
                    "serviceCIDR"
                };
                return e(
                    field,
                    format!(
                        "gives the families of an {} cluster, but ipFamily is {asked}",
                        ClusterFamily::of(&families)
                    ),
                );
            }
        }
        let order = |l: &[IpNet]| l.iter().map(IpFamily::of_net).collect::<Vec<_>>();
        if services.len() == 2 && order(&services) != families {
            return e(
                "serviceCIDR",
                format!(
                    "{}: the primary service CIDR must be of the primary pod CIDR's family ({})",
                    services[0],
                    families[0].as_str()
                ),
            );
        }
        self.ip_family = ClusterFamily::of(&families);
        let primary_before = self.service_cidr();
        for (field, list, now, default) in [
            (
                "podCIDR",
                &pods,
                &mut self.pod_cidrs,
                default_pod_cidr as fn(IpFamily) -> IpNet,
            ),
            (
                "serviceCIDR",
                &services,
                &mut self.service_cidrs,
                default_service_cidr,
            ),
        ] {
            for c in list {
                if !families.contains(&IpFamily::of_net(c)) {
                    return e(
                        field,
                        format!(
                            "{c}: an {} range on an {} cluster",
                            IpFamily::of_net(c).as_str(),
                            self.ip_family
                        ),
                    );
                }
            }
            let pick = |f: IpFamily| {
                list.iter()
                    .chain(now.iter())
                    .find(|c| IpFamily::of_net(c) == f)
                    .copied()
                    .unwrap_or_else(|| default(f))
            };
            *now = families.iter().map(|f| pick(*f)).collect();
        }
        if let Some(m) = o.node_cidr_mask_size {
            self.node_cidr_mask_size = m;
        }
        if let Some(m) = o.node_cidr_mask_size_ipv6 {
            self.node_cidr_mask_size_ipv6 = m;
        }
        if self.service_cidr() != primary_before && o.dns_ip.is_none() {
            self.dns_ip =
                nth_address(&self.service_cidr(), 10).unwrap_or(self.service_cidr().network());
        }
        if let Some(ip) = o.dns_ip {
            self.dns_ip = ip;
        }
        if let Some(r) = o.node_port_range {
            self.node_port_range = r;
        }
        if let Some(d) = &o.cluster_domain {
            self.cluster_domain = d.trim_end_matches('.').to_string();
        }
        if let Some(n) = o.node_network {
            self.node_network = n.trunc();
        }
        if let Some(n) = o.node_network_ipv6 {
            self.node_network_ipv6 = n.trunc();
        }
        if let Some(r) = o.routing {
            self.routing = r;
        }
        if let Some(p) = o.flow_sample {
            if !(0.0..=100.0).contains(&p) {
                return Err((
                    "flowSample".to_string(),
                    format!("{p}: a percentage from 0 to 100"),
                ));
            }
            self.flow_sample = (p * 100.0).round() as u16;
        }
        match &o.load_balancer_pool {
            Some(p) => self.load_balancer_pool = p.clone(),
            // The default pool follows the families.
            None => {
                let defaults: Vec<IpRange> = IpFamily::ALL.map(default_lb_pool).into();
                if self.load_balancer_pool.iter().all(|r| defaults.contains(r)) {
                    self.load_balancer_pool =
                        families.iter().map(|f| default_lb_pool(*f)).collect();
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), (String, String)> {
        let e = |f: &str, m: String| Err((f.to_string(), m));
        if self.nodes == 0 || self.nodes > 256 {
            return e(
                "nodes",
                format!("{}: must be between 1 and 256", self.nodes),
            );
        }
        if self.primary() != IpFamily::of_net(&self.service_cidr()) {
            return e(
                "serviceCIDR",
                format!(
                    "{}: the primary service CIDR must be of the primary pod CIDR's family ({})",
                    self.service_cidr(),
                    self.pod_cidr()
                ),
            );
        }
        for pod_cidr in &self.pod_cidrs {
            let family = IpFamily::of_net(pod_cidr);
            let mask = self.node_mask(family);
            let field = match family {
                IpFamily::Ipv4 => "nodeCIDRMaskSize",
                IpFamily::Ipv6 => "nodeCIDRMaskSizeIPv6",
            };
            let max = family.bits();
            if mask < pod_cidr.prefix_len() || mask > max - 2 {
                return e(
                    field,
                    format!(
                        "{mask}: must be between the podCIDR's prefix length ({}) and {}",
                        pod_cidr.prefix_len(),
                        max - 2
                    ),
                );
            }
            let node_slots = 1u128 << (mask - pod_cidr.prefix_len()).min(64);
            if u128::from(self.nodes) > node_slots {
                return e(
                    "nodes",
                    format!(
                        "{} nodes do not fit: podCIDR {pod_cidr} holds {node_slots} node CIDRs of /{mask}",
                        self.nodes
                    ),
                );
            }
        }
        for service_cidr in &self.service_cidrs {
            let host_bits = IpFamily::of_net(service_cidr).bits() - service_cidr.prefix_len();
            if host_bits < 4 {
                return e(
                    "serviceCIDR",
                    format!("{service_cidr}: too small, use a prefix of /28 or larger"),
                );
            }
            for pod_cidr in &self.pod_cidrs {
                if pod_cidr.contains(&service_cidr.network())
                    || service_cidr.contains(&pod_cidr.network())
                {
                    return e(
                        "serviceCIDR",
                        format!("{service_cidr} overlaps podCIDR {pod_cidr}"),
                    );
                }
            }
        }
        if !self.service_cidr().contains(&self.dns_ip) {
            return e(
                "dnsIP",
                format!(
                    "{} is not inside the primary serviceCIDR {}",
                    self.dns_ip,
                    self.service_cidr()
                ),
            );
        }
        if !self.node_network.addr().is_ipv4() {
            return e(
                "nodeNetwork",
                format!("{}: the nodes' underlay network is IPv4", self.node_network),
            );
        }
        if self.node_network_ipv6.addr().is_ipv4() {
            return e(
                "nodeNetworkIPv6",
                format!("{}: must be an IPv6 network", self.node_network_ipv6),
            );
        }
        if crate::validation::dns1123_subdomain(&self.cluster_domain).is_err() {
            return e(
                "clusterDomain",
                format!(
                    "{:?}: must be a DNS subdomain such as cluster.local",
                    self.cluster_domain
                ),
            );
        }
        for r in &self.load_balancer_pool {
            if self.service_cidrs.iter().any(|c| c.contains(&r.first)) || self.is_pod_ip(&r.first) {
                return e(
                    "loadBalancerPool",
                    format!("{r} overlaps the pod or service CIDR"),
                );
            }
        }
        Ok(())
    }
}

/// The `n`th address of a network (0 is the network address), if it is inside.
pub fn nth_address(net: &IpNet, n: u128) -> Option<IpAddr> {
    let base = ip_to_u128(net.network());
    let ip = u128_to_ip(base.checked_add(n)?, net.addr().is_ipv4());
    net.contains(&ip).then_some(ip)
}

/// Defaults ← the ClusterConfig document ← flags.
pub fn settings(
    objects: &[Object],
    overrides: &ConfigOverrides,
    diags: &mut Vec<Diagnostic>,
) -> ClusterConfig {
    let mut config = ClusterConfig::default();
    let docs: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            Object::ClusterConfig(x) => Some(x),
            _ => None,
        })
        .collect();
    if let Some(extra) = docs.get(1) {
        diags.push(Diagnostic::error(
            extra.start.clone(),
            format!(
                "a second ClusterConfig document; the first is at {}",
                docs[0].start
            ),
        ));
    }
    if let Some(doc) = docs.first() {
        if let Err((field, why)) = config.apply(&doc.obj.settings) {
            diags.push(
                Diagnostic::error(doc.locate(&field), why)
                    .with_object(ObjectRef::new("ClusterConfig", None, ""))
                    .with_field(field),
            );
        }
    }
    if let Err((field, why)) = config.apply(overrides) {
        diags.push(Diagnostic {
            severity: Severity::Error,
            location: None,
            object: None,
            field: Some(format!("--{}", flag_name(&field))),
            message: why,
        });
    }
    config
}

/// The command-line flag that sets a config field.
fn flag_name(field: &str) -> String {
    match field {
        "ipFamily" => "ip-family".into(),
        "podCIDR" => "pod-cidr".into(),
        "nodeCIDRMaskSizeIPv6" => "node-cidr-mask-size-ipv6".into(),
        "nodeCIDRMaskSize" => "node-cidr-mask-size".into(),
        "serviceCIDR" => "service-cidr".into(),
        "dnsIP" => "dns-ip".into(),
        "nodePortRange" => "node-port-range".into(),
        "clusterDomain" => "cluster-domain".into(),
        "loadBalancerPool" => "lb-pool".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubeadm_like() {
        let c = ClusterConfig::default();
        let mut again = ClusterConfig::default();
        let dual = ConfigOverrides {
            ip_family: Some(ClusterFamily::Dual),
            ..Default::default()
        };
        again.apply(&dual).unwrap();
        let mut back = ClusterConfig::default();
        back.apply(&again.overrides()).unwrap();
        assert_eq!(back, again, "overrides give the settings back");
        assert_eq!(c.nodes, 3);
        assert_eq!(c.dns_ip.to_string(), "10.96.0.10");
        assert_eq!(c.node_port_range.to_string(), "30000-32767");
        assert!(c.check().is_ok());
    }

    #[test]
    fn the_flow_sample_is_a_percentage_kept_per_ten_thousand() {
        let with = |p: f64| {
            let mut c = ClusterConfig::default();
            c.apply(&ConfigOverrides {
                flow_sample: Some(p),
                ..Default::default()
            })
            .map(|()| c)
        };
        assert_eq!(with(1.0).unwrap().flow_sample, 100);
        assert_eq!(with(0.25).unwrap().flow_sample, 25);
        let all = with(100.0).unwrap();
        assert_eq!(all.flow_sample, 10_000);
        let mut back = ClusterConfig::default();
        back.apply(&all.overrides()).unwrap();
        assert_eq!(back, all);
        let (field, why) = with(150.0).unwrap_err();
        assert_eq!(field, "flowSample");
        assert!(why.contains("from 0 to 100"), "{why}");
        assert!(with(-1.0).is_err());
    }

    #[test]
    fn service_cidr_moves_dns() {
        let mut c = ClusterConfig::default();
        let o = ConfigOverrides {
            service_cidr: Some("10.100.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        c.apply(&o).unwrap();
        assert_eq!(c.dns_ip.to_string(), "10.100.0.10");
    }

    #[test]
    fn families_from_the_setting_or_the_cidrs() {
        let of = |o: ConfigOverrides| {
            let mut c = ClusterConfig::default();
            c.apply(&o).map(|()| c)
        };
        let v6 = of(ConfigOverrides {
            ip_family: Some(ClusterFamily::Ipv6),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v6.pod_cidrs[0].to_string(), "fd00:10:244::/56");
        assert_eq!(v6.service_cidrs[0].to_string(), "fd00:10:96::/112");
        assert_eq!(v6.dns_ip.to_string(), "fd00:10:96::a");
        assert_eq!(v6.load_balancer_pool.len(), 1);
        assert!(v6.load_balancer_pool[0].first.is_ipv6());
        let dual = of(ConfigOverrides {
            ip_family: Some(ClusterFamily::Dual),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(dual.families(), [IpFamily::Ipv4, IpFamily::Ipv6]);
        assert_eq!(dual.dns_ip.to_string(), "10.96.0.10");
        assert_eq!(dual.load_balancer_pool.len(), 2);
        // IPv6 first: an IPv6-primary dual-stack cluster.
        let v6_first = of(ConfigOverrides {
            pod_cidr: Some("fd00:1::/56,10.1.0.0/16".parse().unwrap()),
            service_cidr: Some("fd00:2::/112,10.2.0.0/16".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v6_first.ip_family, ClusterFamily::Dual);
        assert_eq!(v6_first.primary(), IpFamily::Ipv6);
        assert_eq!(v6_first.dns_ip.to_string(), "fd00:2::a");
        // CIDRs that contradict the setting.
        let err = of(ConfigOverrides {
            ip_family: Some(ClusterFamily::Ipv4),
            pod_cidr: Some("fd00:1::/56".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.0, "podCIDR", "{err:?}");
        // Primary families that differ.
        let err = of(ConfigOverrides {
            pod_cidr: Some("10.1.0.0/16,fd00:1::/56".parse().unwrap()),
            service_cidr: Some("fd00:2::/112,10.2.0.0/16".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.0, "serviceCIDR", "{err:?}");
        assert!("10.0.0.0/8,10.1.0.0/16".parse::<CidrList>().is_err());
        assert!("ipv5".parse::<ClusterFamily>().is_err());
    }

    #[test]
    fn bad_settings() {
        let mut c = ClusterConfig::default();
        let o = ConfigOverrides {
            nodes: Some(300),
            ..Default::default()
        };
        assert_eq!(c.apply(&o).unwrap_err().0, "nodes");
        let mut c = ClusterConfig::default();
        let o = ConfigOverrides {
            service_cidr: Some("10.244.0.0/20".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(c.apply(&o).unwrap_err().0, "serviceCIDR");
        assert!("32767-30000".parse::<PortRange>().is_err());
        assert!("10.0.0.5-10.0.0.1".parse::<IpRange>().is_err());
        let r: IpRange = "10.0.0.0/30".parse().unwrap();
        assert_eq!(r.iter(10).count(), 4);
    }
}
