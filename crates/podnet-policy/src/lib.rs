//! NetworkPolicy enforcement, compiled per node from the model's semantics
//! ([`podnet_model::netpol`], the same code `podnet check --reach` answers with).
//!
//! One table per node, `ip podnet-policy`, with a cost per packet that grows with neither the
//! number of policies nor the number of pods:
//! - `egress` and `ingress` are verdict maps from a local pod's address: on to the
//!   destination's check, or `accept`, for a pod no policy isolates in that direction, else to
//!   its *group*'s chain;
//! - a group is every local pod isolated by the same policies (for ingress, with the same
//!   resolution of the named ports those policies use); its chain looks the connection up in one
//!   interval set of (peer address, protocol, port) — every rule of every policy of the group,
//!   merged into disjoint elements ([`rects`]) — and drops what is not there;
//! - only new connections are judged (`ct state established,related accept` first), so replies
//!   always pass; node-originated traffic (kubelet probes) never crosses the forward hook;
//! - a local pod address the table does not know yet (a pod created a moment ago) is dropped
//!   until its entry is there: a new pod is never reachable before its policy is enforced.
//!
//! Pod churn and label changes edit map and set elements; every change is one transaction.

pub mod rects;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use podnet_model::netpol::{Direction, End, Policies, Ports, RuleView};
use podnet_model::{Cluster, NsName, PodInfo};
use serde::{Deserialize, Serialize};

pub use rects::Rect;

pub const TABLE: &str = "podnet-policy";

/// A group of local pods judged alike in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId {
    pub dir: Direction,
    pub id: u32,
}

impl GroupId {
    /// The group's chain; its set is `<chain>_allow`.
    pub fn chain(&self) -> String {
        match self.dir {
            Direction::Ingress => format!("ing_{:08x}", self.id),
            Direction::Egress => format!("egr_{:08x}", self.id),
        }
    }
}

/// What happens to a local pod's new connections in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// No policy isolates it.
    Open,
    Group(GroupId),
}

/// Everything a node's policy table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPlan {
    /// The node's pod CIDRs: a local address the maps do not know is dropped.
    pub local: BTreeSet<Ipv4Net>,
    #[serde(with = "podnet_model::pairs")]
    pub ingress: BTreeMap<Ipv4Addr, Target>,
    #[serde(with = "podnet_model::pairs")]
    pub egress: BTreeMap<Ipv4Addr, Target>,
    #[serde(with = "podnet_model::pairs")]
    pub groups: BTreeMap<GroupId, BTreeSet<Rect>>,
}

fn v4(p: &PodInfo) -> Option<Ipv4Addr> {
    p.ips.iter().find_map(|ip| match ip {
        IpAddr::V4(v) => Some(*v),
        IpAddr::V6(_) => None,
    })
}

impl PolicyPlan {
    /// The policy table of `node`.
    pub fn for_node(cluster: &Cluster, node: &str) -> PolicyPlan {
        let policies = Policies::of(cluster);
        let mut plan = PolicyPlan {
            local: cluster
                .node(node)
                .into_iter()
                .flat_map(|n| &n.pod_cidrs)
                .filter_map(|c| match c {
                    IpNet::V4(v) => Some(*v),
                    IpNet::V6(_) => None,
                })
                .collect(),
            ..Default::default()
        };
        let classes = classes(cluster);
        let mut keys: BTreeMap<String, GroupId> = BTreeMap::new();
        for class in &classes {
            let local: Vec<Ipv4Addr> = class
                .pods
                .iter()
                .filter(|(p, _)| p.node.as_deref() == Some(node))
                .map(|(_, ip)| *ip)
                .collect();
            if local.is_empty() {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                let selecting = policies.selecting(class.rep, dir);
                let target = if selecting.is_empty() {
                    Target::Open
                } else {
                    let key = group_key(&policies, class.rep, dir, &selecting);
                    let id = match keys.get(&key) {
                        Some(id) => *id,
                        None => {
                            let id = free_id(&keys, &key, dir);
                            keys.insert(key, id);
                            let rects =
                                group_rects(&policies, &classes, class.rep, dir, &selecting);
                            plan.groups
                                .insert(id, rects::normalize(&rects).into_iter().collect());
                            id
                        }
                    };
                    Target::Group(id)
                };
                let map = match dir {
                    Direction::Ingress => &mut plan.ingress,
                    Direction::Egress => &mut plan.egress,
                };
                map.extend(local.iter().map(|ip| (*ip, target)));
            }
        }
        plan
    }
}

/// Pods that policies cannot tell apart: the same namespace, the same values of the labels
/// policies select on, and the same container ports (replicas, mostly). Selectors are
/// evaluated once per class, not once per pod.
struct Class<'a> {
    rep: &'a PodInfo,
    pods: Vec<(&'a PodInfo, Ipv4Addr)>,
}

/// The pod label keys any policy's selectors read: other labels cannot tell pods apart.
fn selected_keys(cluster: &Cluster) -> BTreeSet<&str> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    fn keys<'a>(sel: Option<&'a LabelSelector>, out: &mut BTreeSet<&'a str>) {
        let Some(sel) = sel else { return };
        out.extend(sel.match_labels.iter().flatten().map(|(k, _)| k.as_str()));
        out.extend(
            sel.match_expressions
                .iter()
                .flatten()
                .map(|e| e.key.as_str()),
        );
    }
    let mut out = BTreeSet::new();
    for p in &cluster.network_policies {
        let Some(spec) = p.obj.spec.as_ref() else {
            continue;
        };
        keys(spec.pod_selector.as_ref(), &mut out);
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten()),
            );
        for peer in peers {
            keys(peer.pod_selector.as_ref(), &mut out);
        }
    }
    out
}

/// Namespace, the values of the labels policies read, container ports.
type ClassKey<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    &'a [podnet_model::ContainerPortInfo],
);

fn classes(cluster: &Cluster) -> Vec<Class<'_>> {
    let read = selected_keys(cluster);
    let mut index: std::collections::HashMap<ClassKey<'_>, usize> =
        std::collections::HashMap::new();
    let mut out: Vec<Class<'_>> = Vec::new();
    for p in cluster.pods.iter().filter(|p| !p.host_network) {
        let Some(ip) = v4(p) else { continue };
        // Only the labels a selector reads (their absence too) tell pods apart.
        let labels: Vec<(&str, &str)> = p
            .labels
            .iter()
            .filter(|(k, _)| read.contains(k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = (p.namespace.as_str(), labels, p.ports.as_slice());
        match index.get(&key) {
            Some(&i) => out[i].pods.push((p, ip)),
            None => {
                index.insert(key, out.len());
                out.push(Class {
                    rep: p,
                    pods: vec![(p, ip)],
                });
            }
        }
    }
    out
}

/// What makes two pods' judgement the same: the policies, and for ingress the ports the
/// policies' names resolve to on the pod.
fn group_key(
    policies: &Policies<'_>,
    pod: &PodInfo,
    dir: Direction,
    selecting: &[NsName],
) -> String {
    let mut key = format!("{dir:?}");
    for p in selecting {
        let _ = write!(key, "|{p}");
        if dir == Direction::Ingress {
            for rule in policies.rules(p, dir) {
                for (name, proto) in rule.named_ports() {
                    let _ = write!(key, ",{name}/{proto}={:?}", pod.find_port(&name, proto));
                }
            }
        }
    }
    key
}

/// A stable id from the key's hash, moved on past any other key's.
fn free_id(keys: &BTreeMap<String, GroupId>, key: &str, dir: Direction) -> GroupId {
    let mut id = podnet_model::names::fnv64(&[key.as_bytes()]) as u32;
    while keys.values().any(|g| g.dir == dir && g.id == id) {
        id = id.wrapping_add(1);
    }
    GroupId { dir, id }
}

const ALL_ADDRESSES: (u32, u32) = (0, u32::MAX);

/// Every connection a group's pods may take in (ingress: from these addresses to this pod's
/// ports) or make (egress: to these addresses and ports).
fn group_rects(
    policies: &Policies<'_>,
    classes: &[Class<'_>],
    pod: &PodInfo,
    dir: Direction,
    selecting: &[NsName],
) -> Vec<Rect> {
    let mut out = Vec::new();
    for key in selecting {
        for rule in policies.rules(key, dir) {
            match dir {
                Direction::Ingress => {
                    let ports = rule.ports(End::Pod(pod));
                    for addr in peer_ranges(policies, &rule, classes) {
                        push(&mut out, addr, &ports);
                    }
                }
                Direction::Egress => {
                    // Named ports resolve on each destination pod; towards other addresses
                    // only numbered ports count.
                    let numbered = rule.ports(End::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
                    if !rule.has_peers() {
                        push(&mut out, ALL_ADDRESSES, &numbered);
                    }
                    let blocks: Vec<(u32, u32)> = rule
                        .ip_blocks()
                        .into_iter()
                        .flat_map(|(net, except)| block_ranges(net, &except))
                        .collect();
                    for addr in &blocks {
                        push(&mut out, *addr, &numbered);
                    }
                    // A pod inside a block: its named ports count too.
                    if !rule.named_ports().is_empty() {
                        for class in classes {
                            let ports = rule.ports(End::Pod(class.rep));
                            for &(_, ip) in &class.pods {
                                let ip = u32::from(ip);
                                if blocks.iter().any(|(a, b)| (*a..=*b).contains(&ip)) {
                                    push(&mut out, (ip, ip), &ports);
                                }
                            }
                        }
                    }
                    for class in classes {
                        if policies.selects(&rule, class.rep) {
                            let ports = rule.ports(End::Pod(class.rep));
                            for &(_, ip) in &class.pods {
                                let ip = u32::from(ip);
                                push(&mut out, (ip, ip), &ports);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The addresses a rule's peers take in: every address without peers, else the matching
/// pods' and the ipBlocks'.
fn peer_ranges(
    policies: &Policies<'_>,
    rule: &RuleView<'_>,
    classes: &[Class<'_>],
) -> Vec<(u32, u32)> {
    if !rule.has_peers() {
        return vec![ALL_ADDRESSES];
    }
    let mut out: Vec<(u32, u32)> = classes
        .iter()
        .filter(|c| policies.selects(rule, c.rep))
        .flat_map(|c| {
            c.pods
                .iter()
                .map(|(_, ip)| (u32::from(*ip), u32::from(*ip)))
        })
        .collect();
    for (net, except) in rule.ip_blocks() {
        out.extend(block_ranges(net, &except));
    }
    out
}

/// An IPv4 block less its exceptions, as ranges.
fn block_ranges(net: IpNet, except: &[IpNet]) -> Vec<(u32, u32)> {
    let IpNet::V4(net) = net else {
        return Vec::new();
    };
    let mut ranges = vec![(u32::from(net.network()), u32::from(net.broadcast()))];
    for e in except {
        let IpNet::V4(e) = e else { continue };
        let (a, b) = (u32::from(e.network()), u32::from(e.broadcast()));
        ranges = ranges
            .into_iter()
            .flat_map(|(lo, hi)| {
                let mut parts = Vec::new();
                if b < lo || a > hi {
                    parts.push((lo, hi));
                } else {
                    if a > lo {
                        parts.push((lo, a - 1));
                    }
                    if b < hi {
                        parts.push((b + 1, hi));
                    }
                }
                parts
            })
            .collect();
    }
    ranges
}

fn push(out: &mut Vec<Rect>, addr: (u32, u32), ports: &Ports) {
    match ports {
        Ports::Any => out.push(Rect {
            addr,
            proto: (0, 255),
            port: (0, u16::MAX),
        }),
        Ports::Some(list) => out.extend(list.iter().map(|(proto, lo, hi)| {
            let n = protocol_number(*proto);
            Rect {
                addr,
                proto: (n, n),
                port: (*lo, *hi),
            }
        })),
    }
}

/// The number the kernel sees for a protocol.
pub fn protocol_number(p: podnet_model::Protocol) -> u8 {
    match p {
        podnet_model::Protocol::Tcp => 6,
        podnet_model::Protocol::Udp => 17,
        podnet_model::Protocol::Sctp => 132,
    }
}

/// One step of a transaction on the policy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateTable,
    AddGroup(GroupId),
    DeleteGroup(GroupId),
    AddRects(GroupId, Vec<Rect>),
    DeleteRects(GroupId, Vec<Rect>),
    SetTargets(Direction, Vec<(Ipv4Addr, Target)>),
    DeleteTargets(Direction, Vec<Ipv4Addr>),
    AddLocal(Vec<Ipv4Net>),
    DeleteLocal(Vec<Ipv4Net>),
}

/// Changes to the policy table that the kernel applies as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

fn map_of(p: &PolicyPlan, dir: Direction) -> &BTreeMap<Ipv4Addr, Target> {
    match dir {
        Direction::Ingress => &p.ingress,
        Direction::Egress => &p.egress,
    }
}

impl Transaction {
    /// The whole table, for a node's first load (replacing one an earlier run left).
    pub fn create(p: &PolicyPlan) -> Transaction {
        Transaction::update(&PolicyPlan::default(), p).with_table()
    }

    fn with_table(mut self) -> Transaction {
        self.ops.insert(0, Op::CreateTable);
        self
    }

    /// The changes from `old` to `new`, in an order the kernel accepts within one transaction:
    /// new groups first, their elements, then the maps, and gone groups last, once nothing
    /// refers to them.
    pub fn update(old: &PolicyPlan, new: &PolicyPlan) -> Transaction {
        let mut ops = Vec::new();
        for id in new.groups.keys().filter(|g| !old.groups.contains_key(g)) {
            ops.push(Op::AddGroup(*id));
        }
        let empty = BTreeSet::new();
        for (id, rects) in &new.groups {
            let before = old.groups.get(id).unwrap_or(&empty);
            let gone: Vec<Rect> = before.difference(rects).copied().collect();
            let added: Vec<Rect> = rects.difference(before).copied().collect();
            if !gone.is_empty() {
                ops.push(Op::DeleteRects(*id, gone));
            }
            if !added.is_empty() {
                ops.push(Op::AddRects(*id, added));
            }
        }
        for dir in [Direction::Egress, Direction::Ingress] {
            let (o, n) = (map_of(old, dir), map_of(new, dir));
            let gone: Vec<Ipv4Addr> = o
                .iter()
                .filter(|(ip, t)| n.get(ip) != Some(t))
                .map(|(ip, _)| *ip)
                .collect();
            let set: Vec<(Ipv4Addr, Target)> = n
                .iter()
                .filter(|(ip, t)| o.get(ip) != Some(t))
                .map(|(ip, t)| (*ip, *t))
                .collect();
            if !gone.is_empty() {
                ops.push(Op::DeleteTargets(dir, gone));
            }
            if !set.is_empty() {
                ops.push(Op::SetTargets(dir, set));
            }
        }
        let gone: Vec<Ipv4Net> = old.local.difference(&new.local).copied().collect();
        let added: Vec<Ipv4Net> = new.local.difference(&old.local).copied().collect();
        if !gone.is_empty() {
            ops.push(Op::DeleteLocal(gone));
        }
        if !added.is_empty() {
            ops.push(Op::AddLocal(added));
        }
        for id in old.groups.keys().filter(|g| !new.groups.contains_key(g)) {
            ops.push(Op::DeleteGroup(*id));
        }
        Transaction { ops }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The transaction in nft's syntax: the one place it is written.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for op in &self.ops {
            render_op(&mut s, op);
        }
        s
    }
}

fn render_op(s: &mut String, op: &Op) {
    let t = TABLE;
    match op {
        Op::CreateTable => render_table(s),
        Op::AddGroup(g) => {
            let c = g.chain();
            let _ = writeln!(s, "add set ip {t} {c}_allow {{ type ipv4_addr . inet_proto . inet_service; flags interval; }}");
            let _ = writeln!(s, "add chain ip {t} {c}");
            let _ = match g.dir {
                Direction::Ingress => writeln!(
                    s,
                    "add rule ip {t} {c} ip saddr . meta l4proto . th dport @{c}_allow accept"
                ),
                Direction::Egress => writeln!(
                    s,
                    "add rule ip {t} {c} ip daddr . meta l4proto . th dport @{c}_allow goto ingress_check"
                ),
            };
            let _ = writeln!(s, "add rule ip {t} {c} drop");
        }
        Op::DeleteGroup(g) => {
            let c = g.chain();
            let _ = writeln!(s, "delete chain ip {t} {c}");
            let _ = writeln!(s, "delete set ip {t} {c}_allow");
        }
        Op::AddRects(g, v) | Op::DeleteRects(g, v) => {
            let verb = if matches!(op, Op::AddRects(..)) {
                "add"
            } else {
                "delete"
            };
            let elems: Vec<String> = v.iter().map(render_rect).collect();
            for chunk in elems.chunks(1000) {
                let _ = writeln!(
                    s,
                    "{verb} element ip {t} {}_allow {{ {} }}",
                    g.chain(),
                    chunk.join(", ")
                );
            }
        }
        Op::SetTargets(dir, v) => {
            let elems: Vec<String> = v
                .iter()
                .map(|(ip, target)| format!("{ip} : {}", verdict(*dir, *target)))
                .collect();
            for chunk in elems.chunks(1000) {
                let _ = writeln!(
                    s,
                    "add element ip {t} {} {{ {} }}",
                    map_name(*dir),
                    chunk.join(", ")
                );
            }
        }
        Op::DeleteTargets(dir, v) => {
            let elems: Vec<String> = v.iter().map(ToString::to_string).collect();
            for chunk in elems.chunks(1000) {
                let _ = writeln!(
                    s,
                    "delete element ip {t} {} {{ {} }}",
                    map_name(*dir),
                    chunk.join(", ")
                );
            }
        }
        Op::AddLocal(v) | Op::DeleteLocal(v) => {
            let verb = if matches!(op, Op::AddLocal(_)) {
                "add"
            } else {
                "delete"
            };
            let elems: Vec<String> = v.iter().map(ToString::to_string).collect();
            let _ = writeln!(s, "{verb} element ip {t} local {{ {} }}", elems.join(", "));
        }
    }
}

fn map_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// Not isolated: ingress accepts; egress goes on to the destination's ingress.
fn verdict(dir: Direction, t: Target) -> String {
    match (dir, t) {
        (Direction::Ingress, Target::Open) => "accept".into(),
        (Direction::Egress, Target::Open) => "goto ingress_check".into(),
        (Direction::Ingress, Target::Group(g)) => format!("goto {}", g.chain()),
        (Direction::Egress, Target::Group(g)) => format!("goto {}", g.chain()),
    }
}

fn render_rect(r: &Rect) -> String {
    let addr = |a: u32| Ipv4Addr::from(a).to_string();
    let span =
        |lo: String, hi: String, single: bool| if single { lo } else { format!("{lo}-{hi}") };
    format!(
        "{} . {} . {}",
        span(addr(r.addr.0), addr(r.addr.1), r.addr.0 == r.addr.1),
        span(
            r.proto.0.to_string(),
            r.proto.1.to_string(),
            r.proto.0 == r.proto.1
        ),
        span(
            r.port.0.to_string(),
            r.port.1.to_string(),
            r.port.0 == r.port.1
        ),
    )
}

fn render_table(s: &mut String) {
    let t = TABLE;
    let lines = [
        format!("add table ip {t}"),
        format!("delete table ip {t}"),
        format!("add table ip {t}"),
        format!("add map ip {t} ingress {{ type ipv4_addr : verdict; }}"),
        format!("add map ip {t} egress {{ type ipv4_addr : verdict; }}"),
        format!("add set ip {t} local {{ type ipv4_addr; flags interval; }}"),
        // The destination's side, once the source's allows: a known local pod by its map
        // entry, an unknown local address dropped, anything else (no local pod) passes.
        format!("add chain ip {t} ingress_check"),
        format!("add rule ip {t} ingress_check ip daddr vmap @ingress"),
        format!("add rule ip {t} ingress_check ip daddr @local drop"),
        format!("add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}"),
        format!("add rule ip {t} forward ct state established,related accept"),
        format!("add rule ip {t} forward ip saddr vmap @egress"),
        // A local pod the table does not know yet: nothing out until it does (nor in, above).
        format!("add rule ip {t} forward ip saddr @local drop"),
        format!("add rule ip {t} forward goto ingress_check"),
        // A pod's connections to its own node are egress too.
        format!("add chain ip {t} input {{ type filter hook input priority filter; policy accept; }}"),
        format!("add rule ip {t} input ct state established,related accept"),
        format!("add rule ip {t} input ip saddr vmap @egress"),
    ];
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
}

impl PolicyPlan {
    /// What this node's table does with a new connection crossing its forward hook, as the
    /// kernel would evaluate the maps and sets: true if it passes.
    pub fn passes(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: u16) -> bool {
        let local = |ip: Ipv4Addr| self.local.iter().any(|n| n.contains(&ip));
        let allowed_by = |g: &GroupId, peer: Ipv4Addr| {
            self.groups.get(g).is_some_and(|set| {
                set.iter().any(|r| {
                    (r.addr.0..=r.addr.1).contains(&u32::from(peer))
                        && (r.proto.0..=r.proto.1).contains(&proto)
                        && (r.port.0..=r.port.1).contains(&port)
                })
            })
        };
        match self.egress.get(&src) {
            Some(Target::Group(g)) if !allowed_by(g, dst) => return false,
            None if local(src) => return false,
            _ => {}
        }
        match self.ingress.get(&dst) {
            Some(Target::Open) => true,
            Some(Target::Group(g)) => allowed_by(g, src),
            None => !local(dst),
        }
    }
}

/// The policy tables of every node, judging a connection as the packets would meet them: the
/// source's node first, then the destination's (one node when both are there).
pub fn passes(
    plans: &BTreeMap<String, PolicyPlan>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    port: u16,
) -> bool {
    let node_of = |ip: Ipv4Addr| {
        plans
            .iter()
            .find(|(_, p)| p.local.iter().any(|n| n.contains(&ip)))
            .map(|(n, _)| n.clone())
    };
    let mut nodes: Vec<String> = [node_of(src), node_of(dst)].into_iter().flatten().collect();
    nodes.dedup();
    nodes.iter().all(|n| plans[n].passes(src, dst, proto, port))
}
