//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`), as the API documents it. Pure.
//!
//! Each direction of a connection is decided on its own: egress at the source pod, ingress at
//! the destination pod (the *subject*), and a connection passes only when both allow it. For
//! one direction the tiers are tried in order ([`crate::netpol::Policies::judge`]):
//!
//! 1. **Admin.** The Admin policies whose subject takes in the pod, by `priority` (lower
//!    first); within a policy its rules of that direction in order. The first rule whose peers
//!    and protocols match decides: `Accept` allows (nothing further in this direction is
//!    consulted; an egress Accept does not bypass the destination's ingress), `Deny` drops,
//!    `Pass` ends the Admin tier.
//! 2. **NetworkPolicy.** If NetworkPolicies isolate the pod in this direction, they decide
//!    (allowed when some rule of theirs allows), and the Baseline tier is not consulted.
//! 3. **Baseline.** As the Admin tier; `Pass`, like no match, leaves the default.
//! 4. **Default**: allowed.
//!
//! Where the API leaves a choice, podnet's:
//! - **Equal priorities.** "If two (or more) policies in the same tier with the same priority
//!   could match a connection, then the implementation can apply any of the matching
//!   policies": podnet applies them in name order, always (`check` warns of such pairs).
//! - **Host-network pods** are never subjects, and `namespaces`/`pods` peers never take them
//!   in; `nodes` and `networks` peers match their (the node's) address.
//! - **`domainNames`** (experimental, Accept rules only) match no connection: podnet does not
//!   resolve names in its dataplane. The rule stays inert, which fails closed (an allow-list
//!   of names followed by a Deny denies those names too); `check` warns.
//! - **Fail closed.** A peer or protocol with no field podnet knows (a newer CRD's) matches
//!   nothing in an Accept rule and everything in a Deny or Pass rule, as the API says.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Cluster, PodInfo, Protocol};
use crate::netpol::{Direction, End};
use crate::policy_api::{
    Action, ClusterNetworkPolicy, EgressPeer, IngressPeer, NamespacedPod, ProtocolMatch, Tier,
};
use crate::selector;

/// A rule of a ClusterNetworkPolicy, by place and with what it does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpRuleRef {
    pub policy: String,
    pub tier: Tier,
    pub priority: i32,
    pub direction: Direction,
    pub index: usize,
    /// The rule's `name`, if it has one.
    pub name: Option<String>,
    pub action: Action,
}

impl std::fmt::Display for CnpRuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        write!(
            f,
            "ClusterNetworkPolicy {} ({}, priority {}), rule ",
            self.policy, self.tier, self.priority
        )?;
        match &self.name {
            Some(n) => write!(f, "'{n}' (spec.{field}[{}], {})", self.index, self.action),
            None => write!(f, "spec.{field}[{}] ({})", self.index, self.action),
        }
    }
}

/// A policy's peers in one direction, alike for both.
#[derive(Debug, Clone, Copy)]
pub enum Peers<'a> {
    Ingress(&'a [IngressPeer]),
    Egress(&'a [EgressPeer]),
}

/// One rule, as the model and the compiler read it.
#[derive(Debug, Clone)]
pub struct Rule<'a> {
    pub at: CnpRuleRef,
    pub peers: Peers<'a>,
    pub protocols: Option<&'a [ProtocolMatch]>,
}

/// One peer, whatever its direction.
#[derive(Debug, Clone, Copy)]
pub enum Peer<'a> {
    Namespaces(&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector),
    Pods(&'a NamespacedPod),
    Nodes(&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector),
    Networks(&'a [String]),
    DomainNames,
    /// No field podnet knows: fail closed.
    Unknown,
}

impl<'a> Rule<'a> {
    /// Its peers, each as the one field it sets.
    pub fn peers(&self) -> Vec<Peer<'a>> {
        match self.peers {
            Peers::Ingress(list) => list
                .iter()
                .map(|p| match (&p.namespaces, &p.pods) {
                    (Some(n), None) => Peer::Namespaces(n),
                    (None, Some(p)) => Peer::Pods(p),
                    _ => Peer::Unknown,
                })
                .collect(),
            Peers::Egress(list) => list
                .iter()
                .map(|p| {
                    if p.fields() != 1 {
                        Peer::Unknown
                    } else if let Some(n) = &p.namespaces {
                        Peer::Namespaces(n)
                    } else if let Some(x) = &p.pods {
                        Peer::Pods(x)
                    } else if let Some(n) = &p.nodes {
                        Peer::Nodes(n)
                    } else if let Some(n) = &p.networks {
                        Peer::Networks(n)
                    } else {
                        Peer::DomainNames
                    }
                })
                .collect(),
        }
    }

    /// Whether a peer that fails closed takes in everything (Deny, Pass) or nothing (Accept).
    pub fn unknown_matches_all(&self) -> bool {
        self.at.action != Action::Accept
    }

    /// The ports the rule takes in towards `dest` (a named port resolves on a destination
    /// pod, and matches nothing towards any other address).
    pub fn ports(&self, dest: End<'_>) -> crate::netpol::Ports {
        let Some(list) = self.protocols else {
            return crate::netpol::Ports::Any;
        };
        let mut out = Vec::new();
        for p in list {
            if let Some((proto, lo, hi)) = numbered(p) {
                out.push((proto, lo, hi));
            } else if let Some(name) = &p.destination_named_port {
                if let End::Pod(pod) = dest {
                    for cp in pod.ports.iter().filter(|c| c.name.as_deref() == Some(name)) {
                        if let Ok(n) = u16::try_from(cp.container_port) {
                            out.push((cp.protocol, n, n));
                        }
                    }
                }
            } else if p.fields() != 1 && self.unknown_matches_all() {
                // A protocol podnet does not know, in a Deny or Pass rule: every port.
                return crate::netpol::Ports::Any;
            }
        }
        crate::netpol::Ports::Some(out)
    }

    /// Whether it names ports by name (they resolve on each destination pod).
    pub fn has_named_ports(&self) -> bool {
        self.protocols
            .into_iter()
            .flatten()
            .any(|p| p.destination_named_port.is_some())
    }
}

/// A numbered protocol match: (protocol, first port, last port).
fn numbered(p: &ProtocolMatch) -> Option<(Protocol, u16, u16)> {
    if p.fields() != 1 {
        return None;
    }
    let (proto, port) = if let Some(x) = &p.tcp {
        (Protocol::Tcp, x)
    } else if let Some(x) = &p.udp {
        (Protocol::Udp, x)
    } else if let Some(x) = &p.sctp {
        (Protocol::Sctp, x)
    } else {
        return None;
    };
    let port16 = |n: i32| u16::try_from(n).unwrap_or(0);
    Some(match &port.destination_port {
        None => (proto, 0, u16::MAX),
        Some(d) => match (d.number, &d.range) {
            (Some(n), _) => (proto, port16(n), port16(n)),
            (None, Some(r)) => (proto, port16(r.start), port16(r.end)),
            // Neither: the CRD refuses it; nothing.
            (None, None) => (proto, 1, 0),
        },
    })
}

/// The cluster's ClusterNetworkPolicies, by tier, each tier in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct ClusterPolicies<'a> {
    pub admin: Vec<&'a ClusterNetworkPolicy>,
    pub baseline: Vec<&'a ClusterNetworkPolicy>,
}

impl<'a> ClusterPolicies<'a> {
    pub fn of(cluster: &'a Cluster) -> ClusterPolicies<'a> {
        let mut out = ClusterPolicies::default();
        for p in &cluster.cluster_network_policies {
            match p.obj.spec.tier {
                Some(Tier::Admin) => out.admin.push(&p.obj),
                Some(Tier::Baseline) => out.baseline.push(&p.obj),
                // Refused by validation; from an API without the CRD's checks, no tier: none.
                None => {}
            }
        }
        for list in [&mut out.admin, &mut out.baseline] {
            list.sort_by(|a, b| (a.spec.priority, a.name()).cmp(&(b.spec.priority, b.name())));
        }
        out
    }

    pub fn tier(&self, tier: Tier) -> &[&'a ClusterNetworkPolicy] {
        match tier {
            Tier::Admin => &self.admin,
            Tier::Baseline => &self.baseline,
        }
    }

    /// The rules, in evaluation order, of the policies of `tier` whose subject takes in `pod`
    /// for `dir` (none for a host-network pod).
    pub fn rules_for(
        &self,
        cluster: &Cluster,
        tier: Tier,
        pod: &PodInfo,
        dir: Direction,
    ) -> Vec<Rule<'a>> {
        if pod.host_network {
            return Vec::new();
        }
        self.tier(tier)
            .iter()
            .filter(|p| subject_matches(cluster, p, pod))
            .flat_map(|p| rules(p, dir))
            .collect()
    }
}

/// A policy's rules of one direction, in order.
pub fn rules(p: &ClusterNetworkPolicy, dir: Direction) -> Vec<Rule<'_>> {
    let at = |index: usize, name: &Option<String>, action: Option<Action>| CnpRuleRef {
        policy: p.name().to_string(),
        tier: p.spec.tier.unwrap_or(Tier::Baseline),
        priority: p.spec.priority,
        direction: dir,
        index,
        name: name.clone().filter(|n| !n.is_empty()),
        // Refused by validation; without an action a rule fails closed (a Deny).
        action: action.unwrap_or(Action::Deny),
    };
    match dir {
        Direction::Ingress => p
            .spec
            .ingress
            .iter()
            .enumerate()
            .map(|(i, r)| Rule {
                at: at(i, &r.name, r.action),
                peers: Peers::Ingress(&r.from),
                protocols: r.protocols.as_deref(),
            })
            .collect(),
        Direction::Egress => p
            .spec
            .egress
            .iter()
            .enumerate()
            .map(|(i, r)| Rule {
                at: at(i, &r.name, r.action),
                peers: Peers::Egress(&r.to),
                protocols: r.protocols.as_deref(),
            })
            .collect(),
    }
}

/// Whether a policy's subject takes in `pod` (never a host-network pod).
pub fn subject_matches(cluster: &Cluster, p: &ClusterNetworkPolicy, pod: &PodInfo) -> bool {
    if pod.host_network {
        return false;
    }
    let s = &p.spec.subject;
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => namespace_matches(cluster, ns, pod),
        (None, Some(np)) => namespaced_pod_matches(cluster, np, pod),
        // Refused by validation: none.
        _ => false,
    }
}

fn namespace_matches(
    cluster: &Cluster,
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    pod: &PodInfo,
) -> bool {
    cluster
        .namespaces
        .get(&pod.namespace)
        .is_some_and(|ns| selector::matches(sel, &ns.labels))
}

fn namespaced_pod_matches(cluster: &Cluster, np: &NamespacedPod, pod: &PodInfo) -> bool {
    namespace_matches(cluster, &np.namespace_selector, pod)
        && selector::matches(&np.pod_selector, &pod.labels)
}

/// Whether a peer takes in a pod by its selectors (`namespaces`, `pods`; never a
/// host-network pod). Pods alike in namespace and labels answer alike.
pub fn peer_selects(cluster: &Cluster, peer: &Peer<'_>, pod: &PodInfo) -> bool {
    if pod.host_network {
        return false;
    }
    match peer {
        Peer::Namespaces(sel) => namespace_matches(cluster, sel, pod),
        Peer::Pods(np) => namespaced_pod_matches(cluster, np, pod),
        _ => false,
    }
}

/// The addresses a peer takes in by address: its networks, or its nodes' addresses.
pub fn peer_networks(cluster: &Cluster, peer: &Peer<'_>) -> Vec<IpNet> {
    match peer {
        Peer::Networks(list) => list
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .map(|n| n.trunc())
            .collect(),
        Peer::Nodes(sel) => cluster
            .nodes
            .iter()
            .filter(|n| selector::matches(sel, &n.labels))
            .flat_map(|n| n.internal_ips())
            .map(IpNet::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a rule's peers take in `end` (the other end of the connection).
pub fn peers_match(cluster: &Cluster, rule: &Rule<'_>, end: End<'_>) -> bool {
    rule.peers().iter().any(|peer| match peer {
        Peer::Unknown => rule.unknown_matches_all(),
        Peer::DomainNames => false,
        Peer::Namespaces(_) | Peer::Pods(_) => match end {
            End::Pod(p) => peer_selects(cluster, peer, p),
            End::Ip(_) => false,
        },
        Peer::Networks(_) | Peer::Nodes(_) => {
            let ip: Option<IpAddr> = match end {
                End::Pod(p) => p.ips.first().copied(),
                End::Ip(ip) => Some(ip),
            };
            ip.is_some_and(|ip| peer_networks(cluster, peer).iter().any(|n| n.contains(&ip)))
        }
    })
}

/// Whether a rule matches a connection: its peers take in `peer` (the other end), and its
/// protocols the port of `dest`.
pub fn rule_matches(
    cluster: &Cluster,
    rule: &Rule<'_>,
    peer: End<'_>,
    dest: End<'_>,
    port: u16,
    protocol: Protocol,
) -> bool {
    let ports_ok = match rule.ports(dest) {
        crate::netpol::Ports::Any => true,
        crate::netpol::Ports::Some(list) => list
            .iter()
            .any(|(p, lo, hi)| *p == protocol && (*lo..=*hi).contains(&port)),
    };
    ports_ok && peers_match(cluster, rule, peer)
}

/// The first rule of a tier that matches, for the subject `pod` in `dir`.
pub fn first_match<'a>(
    cluster: &Cluster,
    rules: &[Rule<'a>],
    peer: End<'_>,
    dest: End<'_>,
    port: u16,
    protocol: Protocol,
) -> Option<CnpRuleRef> {
    rules
        .iter()
        .find(|r| rule_matches(cluster, r, peer, dest, port, protocol))
        .map(|r| r.at.clone())
}

/// What `check` warns of in the cluster's ClusterNetworkPolicies, by policy name: two policies
/// of one tier at one priority whose subjects share a pod (which wins is the implementation's
/// choice: podnet's is name order), and `domainNames` peers (which match nothing here).
pub fn warnings(cluster: &Cluster) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let tiers = ClusterPolicies::of(cluster);
    for tier in [Tier::Admin, Tier::Baseline] {
        let list = tiers.tier(tier);
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if a.spec.priority != b.spec.priority {
                    continue;
                }
                let shared = cluster
                    .pods
                    .iter()
                    .find(|p| subject_matches(cluster, a, p) && subject_matches(cluster, b, p));
                if let Some(p) = shared {
                    out.push((
                        b.name().to_string(),
                        format!(
                            "ClusterNetworkPolicies {} and {} are both in the {tier} tier at priority {} and both select {}: the API leaves the order between them to the implementation; podnet evaluates {} first (name order)",
                            a.name(),
                            b.name(),
                            a.spec.priority,
                            p.key(),
                            a.name()
                        ),
                    ));
                }
            }
        }
    }
    for p in &cluster.cluster_network_policies {
        for (i, r) in p.obj.spec.egress.iter().enumerate() {
            if r.to.iter().any(|t| t.domain_names.is_some()) {
                out.push((
                    p.obj.name().to_string(),
                    format!(
                        "ClusterNetworkPolicy {} spec.egress[{i}]: domainNames peers (experimental) match no connection in podnet, which does not resolve names in its dataplane",
                        p.obj.name()
                    ),
                ));
            }
        }
    }
    out
}
