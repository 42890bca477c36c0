//! A node's dataplane kept up to date change by change: the agent's incremental path.
//!
//! A node's proxy is the union of its Services' parts: each Service's frontends, backends,
//! health check and external addresses depend on that Service alone (with its endpoints) and
//! the node ([`ProxyPlan::add_service`]). [`Live`] keeps each part and how many parts hold each
//! element (two Services can share an endpoint's hairpin entry), so a changed Service costs
//! the work of that Service: its part is computed again and the elements that came and went
//! are the transaction. NetworkPolicy follows pods one by one ([`podnet_policy::Compiler`]: a
//! changed pod is placed again and the groups whose peers it was or is among are recomputed),
//! and is computed again whole when a namespace, a policy or the nodes changed; the overlay
//! when the nodes changed.
//!
//! [`NodeDataplane::for_node`] is built from the same parts, so the incremental path and the
//! whole computation cannot disagree; the tests hold them equal after any sequence of events.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use podnet_model::{Changed, Cluster, IpFamily, NsName, ServiceInfo};
use podnet_proxy::nft::{Chain, Element, Elements, StaleUdpFlow, Transaction, Verdict};
use podnet_proxy::{Dispatch, ProxyPlan};

use crate::dataplane::{HealthCheck, NodeDataplane};

/// One Service's part of a node's dataplane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Part {
    elements: Elements,
    health: Option<HealthCheck>,
    /// Its LoadBalancer IPs and externalIPs that this node serves.
    external: BTreeSet<IpAddr>,
}

impl Part {
    fn of(svc: &ServiceInfo, node: &str) -> Part {
        let mut plan = ProxyPlan {
            node: node.to_string(),
            ..Default::default()
        };
        plan.add_service(svc);
        let external_ips: BTreeSet<IpAddr> = svc
            .load_balancer_ips
            .iter()
            .chain(&svc.external_ips)
            .copied()
            .collect();
        let external = plan
            .frontends
            .iter()
            .filter(|(f, (_, d))| {
                external_ips.contains(&f.ip) && matches!(d, Dispatch::Endpoints { .. })
            })
            .map(|(f, _)| f.ip)
            .collect();
        let health = svc
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
            .map(|port| {
                let ready: BTreeSet<&IpAddr> = svc
                    .endpoints()
                    .filter(|(_, e)| e.ready && e.node_name.as_deref() == Some(node))
                    .flat_map(|(_, e)| &e.addresses)
                    .collect();
                HealthCheck {
                    node: node.to_string(),
                    port,
                    service: svc.key(),
                    local_endpoints: ready.len(),
                }
            });
        Part {
            elements: Elements::of(&plan),
            health,
            external,
        }
    }
}

/// What one update changed, for the node to be brought to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// The proxy's transaction from the dataplane before to the one after (None: no change).
    pub proxy: Option<Transaction>,
    /// UDP flows to backends that left their frontend.
    pub stale_flows: Vec<StaleUdpFlow>,
    /// The policy table changed.
    pub policy: bool,
    /// The overlay (device, remote nodes) may have changed.
    pub nodes: bool,
}

/// A node's dataplane and the parts it is made of.
#[derive(Debug, Clone)]
pub struct Live {
    uplink: String,
    want: NodeDataplane,
    parts: HashMap<NsName, Part>,
    /// How many parts hold each element, chain, affinity timeout and external address.
    elements: HashMap<Element, u32>,
    chains: HashMap<Chain, u32>,
    timeouts: HashMap<(IpFamily, u32), u32>,
    external: HashMap<IpAddr, u32>,
    policy: podnet_policy::Compiler,
}

/// What taking a part out or putting one in did to the counts.
#[derive(Default)]
struct Counted {
    removed: Vec<Element>,
    added: Vec<Element>,
    /// Each chain and affinity timeout touched, and whether it was in use before.
    chains: HashMap<Chain, bool>,
    timeouts: HashMap<(IpFamily, u32), bool>,
}

impl Counted {
    /// Notes whether a chain (and its timeout) was in use before this change first touched it.
    fn touch(
        &mut self,
        ch: Chain,
        chains: &HashMap<Chain, u32>,
        timeouts: &HashMap<(IpFamily, u32), u32>,
    ) {
        self.chains
            .entry(ch)
            .or_insert_with(|| chains.contains_key(&ch));
        if let Some(t) = ch.affinity {
            self.timeouts
                .entry((ch.family, t))
                .or_insert_with(|| timeouts.contains_key(&(ch.family, t)));
        }
    }
}

fn chain_of(e: &Element) -> Option<Chain> {
    match e {
        Element::Service(_, Verdict::Goto { chain, .. })
        | Element::NodePort(_, Verdict::Goto { chain, .. }) => Some(*chain),
        _ => None,
    }
}

/// Counts one up; true when it was not held before.
fn up<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K) -> bool {
    let n = m.entry(k).or_insert(0);
    *n += 1;
    *n == 1
}

/// Counts one down; true when nothing holds it any more.
fn down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: &K) -> bool {
    match m.get_mut(k) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            m.remove(k);
            true
        }
        None => false,
    }
}

impl Live {
    /// The node's dataplane, computed part by part; None when the cluster has no such node.
    pub fn new(cluster: &Cluster, node: &str, uplink: &str) -> Option<Live> {
        let base = NodeDataplane::overlay(cluster, node, uplink)?;
        let (policy, plan) = podnet_policy::Compiler::new(cluster, node);
        let mut live = Live {
            uplink: uplink.to_string(),
            want: base,
            parts: HashMap::with_capacity(cluster.services.len()),
            elements: HashMap::new(),
            chains: HashMap::new(),
            timeouts: HashMap::new(),
            external: HashMap::new(),
            policy,
        };
        let mut health = Vec::new();
        for svc in &cluster.services {
            let part = Part::of(svc, node);
            let mut counted = Counted::default();
            live.count_in(&part, &mut counted);
            live.want.proxy.patch(&[], &counted.added);
            health.extend(part.health.clone());
            live.parts.insert(svc.key(), part);
        }
        live.want.health_checks = health;
        live.want.serves_external = live.external.keys().copied().collect();
        live.want.policy = plan;
        Some(live)
    }

    /// The dataplane the node must hold now.
    pub fn dataplane(&self) -> &NodeDataplane {
        &self.want
    }

    fn count_in(&mut self, part: &Part, c: &mut Counted) {
        for e in part.elements.iter() {
            if let Some(ch) = chain_of(&e) {
                c.touch(ch, &self.chains, &self.timeouts);
                if up(&mut self.chains, ch) {
                    if let Some(t) = ch.affinity {
                        up(&mut self.timeouts, (ch.family, t));
                    }
                }
            }
            if up(&mut self.elements, e) {
                c.added.push(e);
            }
        }
        for ip in &part.external {
            up(&mut self.external, *ip);
        }
    }

    fn count_out(&mut self, part: &Part, c: &mut Counted) {
        for e in part.elements.iter() {
            if let Some(ch) = chain_of(&e) {
                c.touch(ch, &self.chains, &self.timeouts);
                if down(&mut self.chains, &ch) {
                    if let Some(t) = ch.affinity {
                        down(&mut self.timeouts, &(ch.family, t));
                    }
                }
            }
            if down(&mut self.elements, &e) {
                c.removed.push(e);
            }
        }
        for ip in &part.external {
            down(&mut self.external, ip);
        }
    }

    /// Brings the dataplane up to what `cluster` now is, after these parts of it changed
    /// ([`podnet_model::ApiModel::apply`] says which). None when this node left the cluster.
    pub fn update(&mut self, cluster: &Cluster, changed: &[Changed]) -> Option<Delta> {
        let node = self.want.node.clone();
        let mut delta = Delta::default();
        let mut counted = Counted::default();
        let mut stale = Vec::new();
        let mut services: Vec<&NsName> = changed
            .iter()
            .filter_map(|c| match c {
                Changed::Service(s) => Some(s),
                _ => None,
            })
            .collect();
        services.sort();
        services.dedup();
        for key in services {
            let new = cluster
                .service(&key.namespace, &key.name)
                .map(|s| Part::of(s, &node))
                .unwrap_or_default();
            let old = self.parts.remove(key).unwrap_or_default();
            if old == new {
                if new != Part::default() {
                    self.parts.insert(key.clone(), new);
                }
                continue;
            }
            // Taken out before put in: an element both parts hold stays (its count goes
            // down, then up) and is in neither list.
            let mut out = Counted {
                chains: std::mem::take(&mut counted.chains),
                timeouts: std::mem::take(&mut counted.timeouts),
                ..Default::default()
            };
            self.count_out(&old, &mut out);
            let mut inn = Counted {
                chains: out.chains,
                timeouts: out.timeouts,
                ..Default::default()
            };
            self.count_in(&new, &mut inn);
            let came: BTreeSet<Element> = inn.added.iter().copied().collect();
            let went: BTreeSet<Element> = out.removed.iter().copied().collect();
            counted.removed.extend(went.difference(&came).copied());
            counted.added.extend(came.difference(&went).copied());
            counted.chains = inn.chains;
            counted.timeouts = inn.timeouts;
            stale.extend(old.elements.stale_udp_flows(&new.elements));
            if old.health != new.health {
                let hc = &mut self.want.health_checks;
                hc.retain(|h| h.service != *key);
                if let Some(h) = &new.health {
                    let at = hc.partition_point(|h| h.service < *key);
                    hc.insert(at, h.clone());
                }
            }
            if old.external != new.external {
                self.want.serves_external = self.external.keys().copied().collect();
            }
            if new != Part::default() {
                self.parts.insert(key.clone(), new);
            }
        }
        // The chains and affinity maps that came into use (those in use before are there).
        let chains = came_into_use(counted.chains, &self.chains);
        let timeouts = came_into_use(counted.timeouts, &self.timeouts);
        if !counted.removed.is_empty() || !counted.added.is_empty() || !chains.is_empty() {
            self.want.proxy.patch(&counted.removed, &counted.added);
            let tx = Transaction::delta(timeouts, chains, counted.removed, counted.added);
            delta.proxy = (!tx.is_empty()).then_some(tx);
        }
        stale.sort();
        stale.dedup();
        delta.stale_flows = stale;
        let pods: Vec<NsName> = changed
            .iter()
            .filter_map(|c| match c {
                Changed::Pod(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        if changed.iter().any(|c| {
            matches!(
                c,
                Changed::Namespace(_) | Changed::NetworkPolicy(_) | Changed::Nodes
            )
        }) {
            let (policy, plan) = podnet_policy::Compiler::new(cluster, &node);
            delta.policy = plan != self.want.policy;
            self.want.policy = plan;
            self.policy = policy;
        } else if !pods.is_empty() {
            delta.policy = self
                .policy
                .pods_changed(cluster, &pods, &mut self.want.policy);
        }
        if changed.contains(&Changed::Nodes) {
            let base = NodeDataplane::overlay(cluster, &node, &self.uplink)?;
            delta.nodes = base.vxlan != self.want.vxlan || base.remotes != self.want.remotes;
            self.want.vxlan = base.vxlan;
            self.want.remotes = base.remotes;
            self.want.sysctls = base.sysctls;
            self.want.masquerade = base.masquerade;
        }
        Some(delta)
    }
}

/// The counted keys not in use before (`false`) that are in use now.
fn came_into_use<K: Ord + std::hash::Hash, V>(
    counted: impl IntoIterator<Item = (K, bool)>,
    in_use: &HashMap<K, V>,
) -> BTreeSet<K> {
    counted
        .into_iter()
        .filter(|(k, before)| !before && in_use.contains_key(k))
        .map(|(k, _)| k)
        .collect()
}
