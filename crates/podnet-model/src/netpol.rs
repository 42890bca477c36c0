//! NetworkPolicy (networking.k8s.io/v1), as upstream defines it. Pure.
//!
//! - `policyTypes` defaults to `[Ingress]`, plus `Egress` when the policy has egress rules
//!   (the API server's `SetDefaults_NetworkPolicy`).
//! - A pod is isolated for ingress (egress) once any policy that selects it has that type; an
//!   isolated pod accepts (sends) only what some rule of those policies allows. Policies are
//!   additive: rules of every selecting policy are OR-ed.
//! - A rule matches when one of its peers matches (no `from`/`to`: every peer) and one of its
//!   ports matches (no `ports`: every port).
//! - A peer is `podSelector` (pods of the policy's namespace), `namespaceSelector` (every pod
//!   of the selected namespaces), both in one peer (those pods of those namespaces: AND), or
//!   `ipBlock` (`cidr` less `except`; pod addresses match it too, as upstream e2e expects).
//! - A port is a number, a number range (`endPort`) or a name; the protocol defaults to TCP.
//!   A named port resolves on the destination pod (its container port with that name and
//!   protocol), for ingress and egress rules alike; towards an address that is no pod, a
//!   named port matches nothing.
//! - Both directions must allow a connection: egress on the source's side, ingress on the
//!   destination's. Replies of an allowed connection always pass (the dataplane tracks
//!   connections), and a node always reaches its own pods (kubelet probes).
//! - Traffic to a Service is judged after translation: on the endpoint pod and its target
//!   port.
//!
//! Where upstream leaves a choice, podnet's (see docs/design/network-policy.md): hostNetwork
//! pods are never isolated (their traffic carries the node's address; as peers they match only
//! `ipBlock`s holding a node address), and traffic from outside the cluster through a NodePort
//! or LoadBalancer with `externalTrafficPolicy: Cluster` is judged with the node's address as
//! its source (it is masqueraded), with `Local` with the client's own.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::model::{Cluster, NsName, PodInfo, Protocol};
use crate::selector;

/// One end of a connection: a pod, or an address outside every pod.
#[derive(Debug, Clone, Copy)]
pub enum End<'a> {
    Pod(&'a PodInfo),
    Ip(IpAddr),
}

impl End<'_> {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            End::Pod(p) => p.ips.first().copied(),
            End::Ip(ip) => Some(*ip),
        }
    }
}

/// A direction of policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum Direction {
    Ingress,
    Egress,
}

/// A rule of a policy, by place: `spec.ingress[i]` or `spec.egress[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    pub policy: NsName,
    pub direction: Direction,
    pub index: usize,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        write!(
            f,
            "NetworkPolicy {} spec.{field}[{}]",
            self.policy, self.index
        )
    }
}

/// What one side (the source's egress, or the destination's ingress) says of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Side {
    /// No policy of that type selects the pod (or it is no pod we isolate).
    NotIsolated,
    /// These policies isolate the pod, and this rule allows the connection.
    Allowed {
        isolated_by: Vec<NsName>,
        rule: RuleRef,
    },
    /// These policies isolate the pod, and no rule of theirs matches.
    Denied { isolated_by: Vec<NsName> },
    /// A ClusterNetworkPolicy rule decided: an Accept or a Deny (Admin or Baseline tier), or
    /// a Baseline Pass (the default: allowed).
    Cluster {
        rule: crate::cnp::CnpRuleRef,
        allowed: bool,
    },
}

impl Side {
    pub fn allows(&self) -> bool {
        match self {
            Side::Denied { .. } => false,
            Side::Cluster { allowed, .. } => *allowed,
            _ => true,
        }
    }
}

/// The judgement of one connection, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub allowed: bool,
    pub egress: Side,
    pub ingress: Side,
    /// Admin-tier Pass rules that handed a side on to NetworkPolicy (and Baseline).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<crate::cnp::CnpRuleRef>,
}

/// The policies of a cluster, ready to judge connections.
#[derive(Debug, Clone)]
pub struct Policies<'a> {
    cluster: &'a Cluster,
    list: Vec<Policy<'a>>,
    /// The ClusterNetworkPolicies, by tier.
    pub tiers: crate::cnp::ClusterPolicies<'a>,
}

#[derive(Debug, Clone)]
struct Policy<'a> {
    key: NsName,
    obj: &'a NetworkPolicy,
    ingress: bool,
    egress: bool,
}

impl<'a> Policies<'a> {
    pub fn of(cluster: &'a Cluster) -> Policies<'a> {
        let list = cluster
            .network_policies
            .iter()
            .map(|s| {
                let obj = &s.obj;
                let spec = obj.spec.as_ref();
                let types: Vec<&str> = spec
                    .and_then(|s| s.policy_types.as_ref())
                    .map(|t| t.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let has_egress_rules = spec
                    .and_then(|s| s.egress.as_ref())
                    .is_some_and(|e| !e.is_empty());
                let (ingress, egress) = if types.is_empty() {
                    (true, has_egress_rules)
                } else {
                    (types.contains(&"Ingress"), types.contains(&"Egress"))
                };
                Policy {
                    key: NsName::new(
                        obj.metadata.namespace.as_deref().unwrap_or("default"),
                        obj.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    obj,
                    ingress,
                    egress,
                }
            })
            .collect::<Vec<_>>();
        // By namespace and name: what the policies compile to must not depend on the order
        // they were given in (a manifest's, or an API watch's).
        let mut list = list;
        list.sort_by(|a, b| a.key.cmp(&b.key));
        Policies {
            cluster,
            list,
            tiers: crate::cnp::ClusterPolicies::of(cluster),
        }
    }

    /// The cluster the policies are of.
    pub fn cluster(&self) -> &'a Cluster {
        self.cluster
    }

    /// Whether a connection from `from` to `to` on `port`/`protocol` is allowed, and why.
    pub fn judge(&self, from: End<'_>, to: End<'_>, port: u16, protocol: Protocol) -> Verdict {
        let mut passed = Vec::new();
        let egress = match from {
            End::Pod(p) if !p.host_network => {
                self.tiered(p, Direction::Egress, from, to, port, protocol, &mut passed)
            }
            _ => Side::NotIsolated,
        };
        let ingress = match to {
            End::Pod(p) if !p.host_network => {
                self.tiered(p, Direction::Ingress, from, to, port, protocol, &mut passed)
            }
            _ => Side::NotIsolated,
        };
        Verdict {
            allowed: egress.allows() && ingress.allows(),
            egress,
            ingress,
            passed,
        }
    }

    /// One side through the tiers: Admin, NetworkPolicy, Baseline, the default
    /// ([`crate::cnp`]).
    #[allow(clippy::too_many_arguments)]
    fn tiered(
        &self,
        pod: &PodInfo,
        dir: Direction,
        from: End<'_>,
        to: End<'_>,
        port: u16,
        protocol: Protocol,
        passed: &mut Vec<crate::cnp::CnpRuleRef>,
    ) -> Side {
        use crate::policy_api::{Action, Tier};
        let peer = if dir == Direction::Ingress { from } else { to };
        let decide = |tier: Tier| {
            let rules = self.tiers.rules_for(self.cluster, tier, pod, dir);
            crate::cnp::first_match(self.cluster, &rules, peer, to, port, protocol)
        };
        if let Some(rule) = decide(Tier::Admin) {
            match rule.action {
                Action::Pass => passed.push(rule),
                action => {
                    return Side::Cluster {
                        allowed: action == Action::Accept,
                        rule,
                    }
                }
            }
        }
        let side = self.side(pod, dir, from, to, port, protocol);
        if side != Side::NotIsolated {
            return side;
        }
        match decide(Tier::Baseline) {
            Some(rule) => Side::Cluster {
                allowed: rule.action != Action::Deny,
                rule,
            },
            None => Side::NotIsolated,
        }
    }

    /// The policies that select `pod` for `dir`.
    pub fn selecting(&self, pod: &PodInfo, dir: Direction) -> Vec<NsName> {
        self.list
            .iter()
            .filter(|p| match dir {
                Direction::Ingress => p.ingress,
                Direction::Egress => p.egress,
            })
            .filter(|p| p.key.namespace == pod.namespace)
            .filter(|p| {
                let sel = p.obj.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
                sel.is_none_or(|s| selector::matches(s, &pod.labels))
            })
            .map(|p| p.key.clone())
            .collect()
    }

    /// The rules of a policy in one direction (empty if it is not of that type).
    pub fn rules(&self, key: &NsName, dir: Direction) -> Vec<RuleView<'_>> {
        // The list is sorted by key.
        let Ok(i) = self.list.binary_search_by(|p| p.key.cmp(key)) else {
            return Vec::new();
        };
        let policy = &self.list[i];
        let spec = policy.obj.spec.as_ref();
        let parts: Vec<RuleParts<'_>> = match dir {
            Direction::Ingress if policy.ingress => spec
                .and_then(|s| s.ingress.as_ref())
                .map(|r| {
                    r.iter()
                        .map(|r| RuleParts {
                            peers: r.from.as_deref(),
                            ports: r.ports.as_deref(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Direction::Egress if policy.egress => spec
                .and_then(|s| s.egress.as_ref())
                .map(|r| {
                    r.iter()
                        .map(|r| RuleParts {
                            peers: r.to.as_deref(),
                            ports: r.ports.as_deref(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        parts
            .into_iter()
            .map(|parts| RuleView {
                namespace: key.namespace.clone(),
                parts,
            })
            .collect()
    }

    /// Whether a rule's pod peers (its selectors; not its `ipBlock`s, which match addresses)
    /// take in `pod`, or the rule names no peers at all. Pods alike in namespace and labels
    /// answer alike.
    pub fn selects(&self, rule: &RuleView<'_>, pod: &PodInfo) -> bool {
        match rule.parts.peers {
            None | Some([]) => true,
            Some(list) => list
                .iter()
                .filter(|p| p.ip_block.is_none())
                .any(|p| self.peer_matches(&rule.namespace, p, End::Pod(pod))),
        }
    }

    /// Whether a rule's peers take in `end` (any peer, or every end when it names none).
    pub fn peer_of(&self, rule: &RuleView<'_>, end: End<'_>) -> bool {
        match rule.parts.peers {
            None | Some([]) => true,
            Some(list) => list
                .iter()
                .any(|p| self.peer_matches(&rule.namespace, p, end)),
        }
    }

    fn side(
        &self,
        pod: &PodInfo,
        dir: Direction,
        from: End<'_>,
        to: End<'_>,
        port: u16,
        protocol: Protocol,
    ) -> Side {
        let isolated_by = self.selecting(pod, dir);
        if isolated_by.is_empty() {
            return Side::NotIsolated;
        }
        // The other end of the connection, and the pod whose ports a named port means.
        let peer = if dir == Direction::Ingress { from } else { to };
        for key in &isolated_by {
            // Policies that select the pod for `dir` are of that type: `rules` gives them all.
            let rules = self.rules(key, dir);
            for (index, rule) in rules.iter().enumerate() {
                if self.rule_matches(&key.namespace, &rule.parts, peer, to, port, protocol) {
                    return Side::Allowed {
                        isolated_by: isolated_by.clone(),
                        rule: RuleRef {
                            policy: key.clone(),
                            direction: dir,
                            index,
                        },
                    };
                }
            }
        }
        Side::Denied { isolated_by }
    }

    fn rule_matches(
        &self,
        policy_ns: &str,
        rule: &RuleParts<'_>,
        peer: End<'_>,
        dest: End<'_>,
        port: u16,
        protocol: Protocol,
    ) -> bool {
        let peers_ok = match rule.peers {
            None | Some([]) => true,
            Some(list) => list.iter().any(|p| self.peer_matches(policy_ns, p, peer)),
        };
        let ports_ok = match rule.ports {
            None | Some([]) => true,
            Some(list) => list.iter().any(|p| port_matches(p, dest, port, protocol)),
        };
        peers_ok && ports_ok
    }

    fn peer_matches(&self, policy_ns: &str, peer: &NetworkPolicyPeer, end: End<'_>) -> bool {
        if let Some(block) = &peer.ip_block {
            return end
                .ip()
                .is_some_and(|ip| ip_block_matches(&block.cidr, block.except.as_deref(), ip));
        }
        let End::Pod(pod) = end else {
            return false;
        };
        if pod.host_network {
            return false;
        }
        let ns_ok = match &peer.namespace_selector {
            None => pod.namespace == policy_ns,
            Some(sel) => self
                .cluster
                .namespaces
                .get(&pod.namespace)
                .is_some_and(|ns| selector::matches(sel, &ns.labels)),
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|sel: &LabelSelector| selector::matches(sel, &pod.labels));
        ns_ok && pod_ok
    }
}

/// A rule of a policy, for compiling it.
pub struct RuleView<'a> {
    namespace: String,
    parts: RuleParts<'a>,
}

/// The ports a rule allows towards one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Every protocol and port.
    Any,
    /// These protocols and port ranges (inclusive).
    Some(Vec<(Protocol, u16, u16)>),
}

impl RuleView<'_> {
    /// Whether the rule names peers at all (a rule without peers takes in every address).
    pub fn has_peers(&self) -> bool {
        !matches!(self.parts.peers, None | Some([]))
    }

    /// The rule's `ipBlock`s: each CIDR with its exceptions.
    pub fn ip_blocks(&self) -> Vec<(IpNet, Vec<IpNet>)> {
        self.parts
            .peers
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.ip_block.as_ref())
            .filter_map(|b| {
                let net = b.cidr.parse::<IpNet>().ok()?;
                let except = b
                    .except
                    .iter()
                    .flatten()
                    .filter_map(|e| e.parse().ok())
                    .collect();
                Some((net, except))
            })
            .collect()
    }

    /// The ports the rule allows towards `dest` (named ports resolve on a destination pod).
    pub fn ports(&self, dest: End<'_>) -> Ports {
        let list = match self.parts.ports {
            None | Some([]) => return Ports::Any,
            Some(list) => list,
        };
        let mut out = Vec::new();
        for p in list {
            let protocol = Protocol::of_checked(p.protocol.as_deref());
            match &p.port {
                None => out.push((protocol, 0, u16::MAX)),
                Some(IntOrString::Int(n)) => {
                    let lo = u16::try_from(*n).unwrap_or(0);
                    let hi = u16::try_from(p.end_port.unwrap_or(*n)).unwrap_or(lo);
                    out.push((protocol, lo, hi));
                }
                Some(IntOrString::String(name)) => {
                    if let End::Pod(pod) = dest {
                        if let Some(port) = pod
                            .find_port(name, protocol)
                            .and_then(|n| u16::try_from(n).ok())
                        {
                            out.push((protocol, port, port));
                        }
                    }
                }
            }
        }
        Ports::Some(out)
    }

    /// The names of the rule's named ports, with their protocols.
    pub fn named_ports(&self) -> Vec<(String, Protocol)> {
        self.parts
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| match &p.port {
                Some(IntOrString::String(n)) => {
                    Some((n.clone(), Protocol::of_checked(p.protocol.as_deref())))
                }
                _ => None,
            })
            .collect()
    }
}

/// The peers and ports of an ingress or egress rule, alike.
struct RuleParts<'a> {
    peers: Option<&'a [NetworkPolicyPeer]>,
    ports: Option<&'a [NetworkPolicyPort]>,
}

fn port_matches(p: &NetworkPolicyPort, dest: End<'_>, port: u16, protocol: Protocol) -> bool {
    if Protocol::of_checked(p.protocol.as_deref()) != protocol {
        return false;
    }
    match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let end = p.end_port.unwrap_or(*n);
            (*n..=end).contains(&i32::from(port))
        }
        Some(IntOrString::String(name)) => match dest {
            End::Pod(pod) => pod.find_port(name, protocol) == Some(i32::from(port)),
            End::Ip(_) => false,
        },
    }
}

fn ip_block_matches(cidr: &str, except: Option<&[String]>, ip: IpAddr) -> bool {
    let Ok(net) = cidr.parse::<IpNet>() else {
        return false;
    };
    net.contains(&ip)
        && !except
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.parse::<IpNet>().ok())
            .any(|e| e.contains(&ip))
}

/// The reachability of every pod from every pod on one port: what `podnet check --reach`
/// prints. Pods on their node's network and pods without an address are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub port: u16,
    pub protocol: Protocol,
    pub pods: Vec<NsName>,
    /// `allowed[i][j]`: from `pods[i]` to `pods[j]`.
    pub allowed: Vec<Vec<bool>>,
}

/// One cell of [`Reach`], for `-o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: bool,
}

impl Reach {
    /// The matrix of the cluster's pods (of `namespace` only, if given), each pod reached at
    /// its primary address.
    pub fn of(cluster: &Cluster, port: u16, protocol: Protocol, namespace: Option<&str>) -> Reach {
        Reach::over(cluster, port, protocol, namespace, None)
    }

    /// [`Reach::of`] over one family: each pod at its address of that family (an ipBlock of
    /// the other family takes in none of these connections); pods without one are left out.
    pub fn over(
        cluster: &Cluster,
        port: u16,
        protocol: Protocol,
        namespace: Option<&str>,
        family: Option<crate::model::IpFamily>,
    ) -> Reach {
        let policies = Policies::of(cluster);
        let pods: Vec<std::borrow::Cow<'_, PodInfo>> = cluster
            .pods
            .iter()
            .filter(|p| !p.host_network && !p.ips.is_empty())
            .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
            .filter_map(|p| match family {
                None => Some(std::borrow::Cow::Borrowed(p)),
                Some(f) => p.at(f).map(std::borrow::Cow::Owned),
            })
            .collect();
        let allowed = pods
            .iter()
            .map(|from| {
                pods.iter()
                    .map(|to| {
                        policies
                            .judge(End::Pod(from), End::Pod(to), port, protocol)
                            .allowed
                    })
                    .collect()
            })
            .collect();
        Reach {
            port,
            protocol,
            pods: pods.iter().map(|p| p.key()).collect(),
            allowed,
        }
    }

    /// Every cell, row by row.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for (i, from) in self.pods.iter().enumerate() {
            for (j, to) in self.pods.iter().enumerate() {
                out.push(Cell {
                    from: from.to_string(),
                    to: to.to_string(),
                    port: self.port,
                    protocol: self.protocol,
                    allowed: self.allowed[i][j],
                });
            }
        }
        out
    }

    /// Upstream's truth table: a row per source, a column per destination, `.` allowed, `X`
    /// denied.
    pub fn render(&self) -> String {
        let mut s = format!("{}/{}\n-", self.protocol, self.port);
        for p in &self.pods {
            s.push('\t');
            s.push_str(&p.to_string());
        }
        s.push('\n');
        for (i, from) in self.pods.iter().enumerate() {
            s.push_str(&from.to_string());
            for cell in &self.allowed[i] {
                s.push_str(if *cell { "\t." } else { "\tX" });
            }
            s.push('\n');
        }
        s
    }
}
