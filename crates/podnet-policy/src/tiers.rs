//! ClusterNetworkPolicy's tiers in a group's chains: the rules that judge a group's pods, and
//! each tier as the first-match partition of its rules' connections (each rule's computed as
//! NetworkPolicy's are), each element in the sets of its first rule's action: a new connection
//! costs at most two lookups per action per tier, however many rules the tier has.

use podnet_model::cnp::{self, Peer, Rule};
use podnet_model::policy_api::Tier;
use std::collections::BTreeMap;

use super::compile::{all_addresses, block_ranges, point, push, Class};
use super::*;

/// The ClusterNetworkPolicy rules that judge a pod in one direction: the Admin tier's, and the
/// Baseline tier's where no NetworkPolicy isolates it (where one does, the Baseline tier is
/// never consulted).
pub(super) struct TierRules<'a> {
    pub admin: Vec<Rule<'a>>,
    pub baseline: Vec<Rule<'a>>,
}

impl<'a> TierRules<'a> {
    pub fn of(policies: &Policies<'a>, pod: &PodInfo, dir: Direction, isolated: bool) -> Self {
        let c = policies.cluster();
        TierRules {
            admin: policies.tiers.rules_for(c, Tier::Admin, pod, dir),
            baseline: if isolated {
                Vec::new()
            } else {
                policies.tiers.rules_for(c, Tier::Baseline, pod, dir)
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.baseline.is_empty()
    }

    /// Each tier's rules cut into segments: (action, the rules' indexes in the tier).
    fn runs(rules: &[Rule<'a>], baseline: bool) -> Vec<(Action, Vec<usize>)> {
        let mut out: Vec<(Action, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            // A Baseline Pass leaves the default, which allows: an Accept.
            let a = match r.at.action {
                Action::Pass if baseline => Action::Accept,
                a => a,
            };
            match out.last_mut() {
                Some((last, v)) if *last == a => v.push(i),
                _ => out.push((a, vec![i])),
            }
        }
        out
    }

    /// The chains' shape; None where no ClusterNetworkPolicy judges the pod.
    pub fn layout(&self, isolated: bool) -> Option<Layout> {
        if self.is_empty() {
            return None;
        }
        let actions = |rules: &[Rule<'a>], baseline| -> Vec<Action> {
            Self::runs(rules, baseline)
                .into_iter()
                .map(|(a, _)| a)
                .collect()
        };
        let (admin, baseline) = (actions(&self.admin, false), actions(&self.baseline, true));
        // Each action once, in the order of its first rule.
        let once = |v: &[Action]| -> Vec<Action> {
            let mut out: Vec<Action> = Vec::new();
            for a in v {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
            out
        };
        Some(Layout {
            admin: once(&admin),
            isolated,
            baseline: once(&baseline),
            tail: admin.contains(&Action::Pass) || !baseline.is_empty(),
            deny: admin.iter().chain(&baseline).any(|a| *a == Action::Deny),
        })
    }

    /// What makes two pods' tiers the same: the rules (by policy and place, with their
    /// actions), and for ingress the ports their names resolve to on the pod.
    pub fn key(&self, pod: &PodInfo, dir: Direction) -> String {
        let mut key = String::new();
        for (tier, rules) in [("A", &self.admin), ("B", &self.baseline)] {
            let mut last = "";
            for r in rules.iter() {
                if r.at.policy != last {
                    let _ = write!(key, "|{tier}:{}@{}", r.at.policy, r.at.priority);
                    last = &r.at.policy;
                }
                let _ = write!(key, ",{}", r.at.action.as_str());
                if dir == Direction::Ingress && r.has_named_ports() {
                    let _ = write!(key, "={:?}", r.ports(End::Pod(pod)));
                }
            }
        }
        key
    }

    /// Each tier's elements (the tiers with rules): the first-match partition of its
    /// rules' connections for `pod` as the subject, each element with the action of the first
    /// rule that holds it. Points (one address, protocol and port: a selected pod's port) go
    /// as they are, with the action of the first rule holding them, ranges or points; ranges
    /// are made disjoint, the first rule's action winning where they overlap.
    pub fn elements(
        &self,
        policies: &Policies<'_>,
        classes: &[Class<'_>],
        pod: &PodInfo,
        dir: Direction,
        families: &[IpFamily],
    ) -> Vec<(Tier, BTreeMap<Rect, Action>)> {
        let mut out = Vec::new();
        for (tier, rules, baseline) in [
            (Tier::Admin, &self.admin, false),
            (Tier::Baseline, &self.baseline, true),
        ] {
            if rules.is_empty() {
                continue;
            }
            // Each run of rules of one action (a segment) is tagged by its place.
            let runs = Self::runs(rules, baseline);
            let mut points: Vec<(Rect, u16)> = Vec::new();
            let mut ranges: Vec<(Rect, u16)> = Vec::new();
            for (tag, (_, idx)) in runs.iter().enumerate() {
                let mut rects = Vec::new();
                for i in idx {
                    rule_rects(
                        policies, &rules[*i], classes, pod, dir, families, &mut rects,
                    );
                }
                rects.retain(|r| families.contains(&r.family));
                for r in rects {
                    if r.is_point() {
                        points.push((r, tag as u16));
                    } else {
                        ranges.push((r, tag as u16));
                    }
                }
            }
            let ranges = rects::first_match(&ranges);
            let mut map: BTreeMap<Rect, Action> = BTreeMap::new();
            // The ranges of one action merged where they touch (still disjoint from the
            // others': the partition's pieces of one action are merged among themselves).
            let mut by_action: BTreeMap<Action, Vec<Rect>> = BTreeMap::new();
            for (r, tag) in &ranges {
                by_action
                    .entry(runs[usize::from(*tag)].0)
                    .or_default()
                    .push(*r);
            }
            for (action, rs) in by_action {
                for r in rects::normalize(&rs) {
                    map.insert(r, action);
                }
            }
            // A point takes the first segment that holds it, as a point or in a range.
            let mut first: BTreeMap<Rect, u16> = BTreeMap::new();
            for (p, tag) in points {
                let (ip, proto, port) =
                    (rects::number_addr(p.family, p.addr.0), p.proto.0, p.port.0);
                let in_range = ranges
                    .iter()
                    .find(|(r, _)| r.contains(ip, proto, port))
                    .map(|(_, t)| *t);
                let tag = in_range.map_or(tag, |t| t.min(tag));
                let e = first.entry(p).or_insert(tag);
                *e = (*e).min(tag);
            }
            // After the ranges: a point that is also a range's whole box keeps its own answer.
            for (p, tag) in first {
                map.insert(p, runs[usize::from(tag)].0);
            }
            out.push((tier, map));
        }
        out
    }

    /// Whether the elements depend on which pods are in the classes of `reps`: a rule takes
    /// them in by selector.
    pub fn reads_pods(&self, policies: &Policies<'_>, reps: &[&PodInfo]) -> bool {
        let c = policies.cluster();
        self.admin.iter().chain(&self.baseline).any(|r| {
            r.peers().iter().any(|p| match p {
                Peer::Namespaces(_) | Peer::Pods(_) => {
                    reps.iter().any(|rep| cnp::peer_selects(c, p, rep))
                }
                // A peer failing closed with named ports resolves them on every pod.
                Peer::Unknown => r.unknown_matches_all() && r.has_named_ports(),
                _ => false,
            })
        })
    }
}

/// One rule's connections, for `pod` as its subject: ingress from its peers to the pod's
/// ports, egress from the pod to its peers' ports.
fn rule_rects(
    policies: &Policies<'_>,
    rule: &Rule<'_>,
    classes: &[Class<'_>],
    pod: &PodInfo,
    dir: Direction,
    families: &[IpFamily],
    out: &mut Vec<Rect>,
) {
    let c = policies.cluster();
    // Towards an address that is no pod only numbered ports count.
    let numbered = rule.ports(End::Ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
    for peer in rule.peers() {
        match peer {
            Peer::Unknown if rule.unknown_matches_all() => {
                let ports = match dir {
                    Direction::Ingress => rule.ports(End::Pod(pod)),
                    Direction::Egress => numbered.clone(),
                };
                for all in all_addresses(families) {
                    push(out, all, &ports);
                }
                if dir == Direction::Egress && rule.has_named_ports() {
                    for class in classes {
                        let ports = rule.ports(End::Pod(class.rep));
                        for &ip in &class.ips {
                            push(out, point(ip), &ports);
                        }
                    }
                }
            }
            Peer::Unknown | Peer::DomainNames => {}
            Peer::Namespaces(_) | Peer::Pods(_) => {
                for class in classes
                    .iter()
                    .filter(|k| cnp::peer_selects(c, &peer, k.rep))
                {
                    let ports = match dir {
                        Direction::Ingress => rule.ports(End::Pod(pod)),
                        Direction::Egress => rule.ports(End::Pod(class.rep)),
                    };
                    for &ip in &class.ips {
                        push(out, point(ip), &ports);
                    }
                }
            }
            Peer::Networks(_) | Peer::Nodes(_) => {
                for net in cnp::peer_networks(c, &peer) {
                    for addr in block_ranges(net, &[]) {
                        push(out, addr, &numbered);
                    }
                }
            }
        }
    }
}
