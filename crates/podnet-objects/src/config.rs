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
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<IpNet>,
    /// Prefix length of each node's podCIDR (kube-controller-manager's --node-cidr-mask-size).
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: Option<u8>,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: Option<IpNet>,
    /// Cluster DNS address; by default the 10th address of the service CIDR.
    #[serde(rename = "dnsIP")]
    pub dns_ip: Option<IpAddr>,
    /// `30000-32767`.
    pub node_port_range: Option<PortRange>,
    pub cluster_domain: Option<String>,
    /// The network the nodes' own addresses come from (the lab's underlay).
    pub node_network: Option<IpNet>,
    /// Addresses for LoadBalancer Services: CIDRs or `first-last` ranges.
    pub load_balancer_pool: Option<Vec<IpRange>>,
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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub nodes: u32,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: IpNet,
    #[serde(rename = "nodeCIDRMaskSize")]
    pub node_cidr_mask_size: u8,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: IpNet,
    #[serde(rename = "dnsIP")]
    pub dns_ip: IpAddr,
    pub node_port_range: PortRange,
    pub cluster_domain: String,
    pub node_network: IpNet,
    pub load_balancer_pool: Vec<IpRange>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            pod_cidr: "10.244.0.0/16".parse().expect("literal"),
            node_cidr_mask_size: 24,
            service_cidr: "10.96.0.0/16".parse().expect("literal"),
            dns_ip: "10.96.0.10".parse().expect("literal"),
            node_port_range: PortRange {
                first: 30000,
                last: 32767,
            },
            cluster_domain: "cluster.local".to_string(),
            node_network: "172.18.0.0/16".parse().expect("literal"),
            load_balancer_pool: vec!["172.18.255.200-172.18.255.250".parse().expect("literal")],
        }
    }
}

impl ClusterConfig {
    /// Applies overrides on top of `self`, then checks the result. On error: (field, reason).
    pub fn apply(&mut self, o: &ConfigOverrides) -> Result<(), (String, String)> {
        if let Some(n) = o.nodes {
            self.nodes = n;
        }
        if let Some(c) = o.pod_cidr {
            self.pod_cidr = c.trunc();
        }
        if let Some(m) = o.node_cidr_mask_size {
            self.node_cidr_mask_size = m;
        }
        if let Some(c) = o.service_cidr {
            self.service_cidr = c.trunc();
            if o.dns_ip.is_none() {
                self.dns_ip =
                    nth_address(&self.service_cidr, 10).unwrap_or(self.service_cidr.network());
            }
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
        if let Some(p) = &o.load_balancer_pool {
            self.load_balancer_pool = p.clone();
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
        let max = if self.pod_cidr.addr().is_ipv4() {
            32
        } else {
            128
        };
        if self.node_cidr_mask_size < self.pod_cidr.prefix_len()
            || self.node_cidr_mask_size > max - 2
        {
            return e(
                "nodeCIDRMaskSize",
                format!(
                    "{}: must be between the podCIDR's prefix length ({}) and {}",
                    self.node_cidr_mask_size,
                    self.pod_cidr.prefix_len(),
                    max - 2
                ),
            );
        }
        let node_slots = 1u128 << (self.node_cidr_mask_size - self.pod_cidr.prefix_len()).min(64);
        if u128::from(self.nodes) > node_slots {
            return e(
                "nodes",
                format!(
                    "{} nodes do not fit: podCIDR {} holds {node_slots} node CIDRs of /{}",
                    self.nodes, self.pod_cidr, self.node_cidr_mask_size
                ),
            );
        }
        let host_bits = if self.service_cidr.addr().is_ipv4() {
            32
        } else {
            128
        } - self.service_cidr.prefix_len();
        if host_bits < 4 {
            return e(
                "serviceCIDR",
                format!(
                    "{}: too small, use a prefix of /28 or larger",
                    self.service_cidr
                ),
            );
        }
        if !self.service_cidr.contains(&self.dns_ip) {
            return e(
                "dnsIP",
                format!(
                    "{} is not inside serviceCIDR {}",
                    self.dns_ip, self.service_cidr
                ),
            );
        }
        if self.pod_cidr.contains(&self.service_cidr.network())
            || self.service_cidr.contains(&self.pod_cidr.network())
        {
            return e(
                "serviceCIDR",
                format!("{} overlaps podCIDR {}", self.service_cidr, self.pod_cidr),
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
            if self.service_cidr.contains(&r.first) || self.pod_cidr.contains(&r.first) {
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
        "podCIDR" => "pod-cidr".into(),
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
        assert_eq!(c.nodes, 3);
        assert_eq!(c.dns_ip.to_string(), "10.96.0.10");
        assert_eq!(c.node_port_range.to_string(), "30000-32767");
        assert!(c.check().is_ok());
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
