//! Changes to the policy table as typed steps, the table they leave, and their nft syntax
//! (rendered only here, where the kernel is handed them).

use super::*;
use podnet_model::flow::Reason;
use podnet_model::nftset::{ElementData, ElementOp, Registers, SetElement};

/// One step of a transaction on the policy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A family's table.
    CreateTable(IpFamily),
    /// A group's chain and sets, in every table of the transaction; with its tiers' chains and
    /// sets where ClusterNetworkPolicies judge it.
    AddGroup(GroupId, Option<Layout>),
    DeleteGroup(GroupId, Option<Layout>),
    /// Elements, each in its family's table.
    AddRects(GroupId, Vec<Rect>),
    DeleteRects(GroupId, Vec<Rect>),
    /// Elements of a group's tiers, each with its action (the sets it goes to: points to the
    /// points set, ranges to the ranges set), each in its family's table.
    AddTier(TierId, Vec<(Rect, Action)>),
    DeleteTier(TierId, Vec<(Rect, Action)>),
    SetTargets(Direction, Vec<(IpAddr, Target)>),
    DeleteTargets(Direction, Vec<IpAddr>),
    AddLocal(Vec<IpNet>),
    DeleteLocal(Vec<IpNet>),
    /// The `sample` chain's rule made anew: new connections let through logged per 10,000
    /// (none at 0).
    SetSample(u16),
}

/// Changes to the policy tables that the kernel applies as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
    /// The node has the `ip6` table too: groups are made and removed in both.
    pub ipv6: bool,
}

pub(super) fn map_of(p: &PolicyPlan, dir: Direction) -> &BTreeMap<IpAddr, Target> {
    match dir {
        Direction::Ingress => &p.ingress,
        Direction::Egress => &p.egress,
    }
}

impl Transaction {
    /// The whole table, for a node's first load (replacing one an earlier run left).
    pub fn create(p: &PolicyPlan) -> Transaction {
        let before = PolicyPlan {
            ipv6: p.ipv6,
            ..Default::default()
        };
        let mut tx = Transaction::update(&before, p);
        let tables: Vec<Op> = p.families().into_iter().map(Op::CreateTable).collect();
        // (`update` set the sample from the empty table's 0.)
        tx.ops.splice(0..0, tables);
        tx
    }

    /// The changes from `old` to `new`, in an order the kernel accepts within one transaction:
    /// new groups first, their elements, then the maps, and gone groups last, once nothing
    /// refers to them.
    pub fn update(old: &PolicyPlan, new: &PolicyPlan) -> Transaction {
        // A group whose chain would change shape (an id taken again by another group after
        // the policies changed): the tables made again, whole, in this one transaction.
        let reshaped = new
            .groups
            .keys()
            .any(|g| old.groups.contains_key(g) && old.layouts.get(g) != new.layouts.get(g));
        if new.ipv6 != old.ipv6 || reshaped {
            // The tables a node has changed (the cluster gained or lost IPv6): both made
            // again, whole, in this one transaction.
            return Transaction::create(new);
        }
        let mut ops = Vec::new();
        for id in new.groups.keys().filter(|g| !old.groups.contains_key(g)) {
            ops.push(Op::AddGroup(*id, new.layouts.get(id).cloned()));
        }
        let none = BTreeMap::new();
        for (id, map) in &new.tiers {
            let before = old.tiers.get(id).unwrap_or(&none);
            // An element whose action changed leaves its action's sets for the new one's.
            let gone: Vec<(Rect, Action)> = before
                .iter()
                .filter(|(r, a)| map.get(r) != Some(a))
                .map(|(r, a)| (*r, *a))
                .collect();
            let added: Vec<(Rect, Action)> = map
                .iter()
                .filter(|(r, a)| before.get(r) != Some(a))
                .map(|(r, a)| (*r, *a))
                .collect();
            if !gone.is_empty() {
                ops.push(Op::DeleteTier(*id, gone));
            }
            if !added.is_empty() {
                ops.push(Op::AddTier(*id, added));
            }
        }
        let empty = BTreeSet::new();
        for (id, rects) in &new.groups {
            let before = old.groups.get(id).unwrap_or(&empty);
            if before == rects {
                continue;
            }
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
            let gone: Vec<IpAddr> = o
                .iter()
                .filter(|(ip, t)| n.get(ip) != Some(t))
                .map(|(ip, _)| *ip)
                .collect();
            let set: Vec<(IpAddr, Target)> = n
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
        let gone: Vec<IpNet> = old.local.difference(&new.local).copied().collect();
        let added: Vec<IpNet> = new.local.difference(&old.local).copied().collect();
        if !gone.is_empty() {
            ops.push(Op::DeleteLocal(gone));
        }
        if !added.is_empty() {
            ops.push(Op::AddLocal(added));
        }
        for id in old.groups.keys().filter(|g| !new.groups.contains_key(g)) {
            ops.push(Op::DeleteGroup(*id, old.layouts.get(id).cloned()));
        }
        if new.sample != old.sample {
            ops.push(Op::SetSample(new.sample));
        }
        Transaction {
            ops,
            ipv6: new.ipv6,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The transaction as element operations alone, in its order, when it is nothing else
    /// (no table, group or `local` change): what the node can hand the kernel as one netlink
    /// batch. A pod's labels or a policy's peers changing is this.
    pub fn element_ops(&self) -> Option<Vec<ElementOp>> {
        let rects = |g: &GroupId, v: &[Rect]| -> Vec<SetElement> {
            v.iter().map(|r| rect_element(g, r)).collect()
        };
        self.ops
            .iter()
            .map(|op| match op {
                Op::AddRects(g, v) => Some(ElementOp::Add(rects(g, v))),
                Op::DeleteRects(g, v) => Some(ElementOp::Delete(rects(g, v))),
                Op::AddTier(id, v) => Some(ElementOp::Add(
                    v.iter().map(|(r, a)| tier_element(id, r, *a)).collect(),
                )),
                Op::DeleteTier(id, v) => Some(ElementOp::Delete(
                    v.iter().map(|(r, a)| tier_element(id, r, *a)).collect(),
                )),
                Op::SetTargets(dir, v) => Some(ElementOp::Add(
                    v.iter()
                        .map(|(ip, t)| target_element(*dir, *ip, Some(*t)))
                        .collect(),
                )),
                Op::DeleteTargets(dir, v) => Some(ElementOp::Delete(
                    v.iter().map(|ip| target_element(*dir, *ip, None)).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The transaction in nft's syntax: the one place it is written.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let families: &[IpFamily] = if self.ipv6 {
            &[IpFamily::Ipv4, IpFamily::Ipv6]
        } else {
            &[IpFamily::Ipv4]
        };
        for op in &self.ops {
            render_op(&mut s, op, families);
        }
        s
    }
}

/// What a transaction's step needs and the table does not hold (a group's chain, an element,
/// an entry): the kernel refuses the step with ENOENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: no such object in the table")]
pub struct Missing(pub String);

impl PolicyPlan {
    /// The table after `tx`, as the kernel holds it after the transaction; an error (and the
    /// table left part-way) for a step the kernel would refuse: a missing table, group or
    /// element. What a node's applier keeps of what it programmed, without a copy of the whole.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), Missing> {
        for op in &tx.ops {
            match op {
                Op::CreateTable(IpFamily::Ipv4) => {
                    *self = PolicyPlan {
                        ipv6: self.ipv6,
                        ..Default::default()
                    }
                }
                Op::CreateTable(IpFamily::Ipv6) => {
                    // The ip6 table made again: what it held goes, the ip table's stays.
                    let v4 = |ip: &IpAddr| ip.is_ipv4();
                    self.ingress.retain(|ip, _| v4(ip));
                    self.egress.retain(|ip, _| v4(ip));
                    self.local.retain(|n| n.addr().is_ipv4());
                    for set in self.groups.values_mut() {
                        set.retain(|r| r.family == IpFamily::Ipv4);
                    }
                    for map in self.tiers.values_mut() {
                        map.retain(|r, _| r.family == IpFamily::Ipv4);
                    }
                    self.ipv6 = true;
                }
                Op::AddGroup(g, layout) => {
                    self.groups.insert(*g, BTreeSet::new());
                    if let Some(l) = layout {
                        for (tier, _) in l.tiers() {
                            self.tiers
                                .insert(TierId { group: *g, tier }, BTreeMap::new());
                        }
                        self.layouts.insert(*g, l.clone());
                    }
                }
                Op::DeleteGroup(g, _) => {
                    self.groups.remove(g).ok_or_else(|| Missing(g.chain()))?;
                    if let Some(l) = self.layouts.remove(g) {
                        for (tier, _) in l.tiers() {
                            self.tiers.remove(&TierId { group: *g, tier });
                        }
                    }
                }
                Op::AddRects(g, v) => {
                    let set = self.groups.get_mut(g).ok_or_else(|| Missing(g.chain()))?;
                    set.extend(v.iter().copied());
                }
                Op::DeleteRects(g, v) => {
                    let set = self.groups.get_mut(g).ok_or_else(|| Missing(g.chain()))?;
                    for r in v {
                        if !set.remove(r) {
                            return Err(Missing(format!(
                                "{} element {}",
                                g.chain(),
                                render_rect(r)
                            )));
                        }
                    }
                }
                Op::AddTier(id, v) => {
                    let map = self.tiers.get_mut(id).ok_or_else(|| {
                        Missing(format!("{:?} tier of {}", id.tier, id.group.chain()))
                    })?;
                    for (r, a) in v {
                        // The kernel refuses an element its set holds already (and the sets of
                        // one tier hold disjoint elements).
                        if map.insert(*r, *a).is_some() {
                            return Err(Missing(format!(
                                "{} element {} (it is there already)",
                                id.sets(*a).0,
                                render_rect(r)
                            )));
                        }
                    }
                }
                Op::DeleteTier(id, v) => {
                    let map = self.tiers.get_mut(id).ok_or_else(|| {
                        Missing(format!("{:?} tier of {}", id.tier, id.group.chain()))
                    })?;
                    for (r, a) in v {
                        if map.get(r) != Some(a) {
                            return Err(Missing(format!(
                                "{} element {}",
                                id.sets(*a).0,
                                render_rect(r)
                            )));
                        }
                        map.remove(r);
                    }
                }
                Op::SetTargets(dir, v) => map_mut(self, *dir).extend(v.iter().copied()),
                Op::DeleteTargets(dir, v) => {
                    let map = map_mut(self, *dir);
                    for ip in v {
                        map.remove(ip).ok_or_else(|| Missing(ip.to_string()))?;
                    }
                }
                Op::SetSample(n) => self.sample = *n,
                Op::AddLocal(v) => self.local.extend(v.iter().copied()),
                Op::DeleteLocal(v) => {
                    for n in v {
                        if !self.local.remove(n) {
                            return Err(Missing(n.to_string()));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A family's words: the table's family and the header's expressions (`ip`, `ip6`), an
/// address's type.
fn words(f: IpFamily) -> (&'static str, &'static str) {
    match f {
        IpFamily::Ipv4 => ("ip", "ipv4_addr"),
        IpFamily::Ipv6 => ("ip6", "ipv6_addr"),
    }
}

/// `verb element <family> podnet-policy <set> { ... }` in chunks, each element in its
/// family's table.
fn render_elements<T>(
    s: &mut String,
    verb: &str,
    set: &str,
    v: &[T],
    family: impl Fn(&T) -> IpFamily,
    text: impl Fn(&T) -> String,
) {
    for f in IpFamily::ALL {
        let elems: Vec<String> = v.iter().filter(|e| family(e) == f).map(&text).collect();
        let (fam, _) = words(f);
        for chunk in elems.chunks(1000) {
            let _ = writeln!(
                s,
                "{verb} element {fam} {TABLE} {set} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
}

pub(super) fn render_op(s: &mut String, op: &Op, families: &[IpFamily]) {
    let t = TABLE;
    match op {
        Op::CreateTable(f) => render_table(s, *f),
        Op::AddGroup(g, layout) => {
            for f in families {
                render_group(s, *g, layout.as_ref(), *f);
            }
        }
        Op::DeleteGroup(g, layout) => {
            let c = g.chain();
            for f in families {
                let (fam, _) = words(*f);
                let _ = writeln!(s, "delete chain {fam} {t} {c}");
                if let Some(l) = layout {
                    // Each thing once nothing refers to it: the Admin sets (looked up by the
                    // group's chain), the `_t` chain (the group's chain goes there), the
                    // Baseline sets (looked up by it), the `_d` chain (both go there).
                    let sets = |s: &mut String, tier, actions: &[Action]| {
                        for a in actions {
                            let (points, ranges) = TierId { group: *g, tier }.sets(*a);
                            let _ = writeln!(s, "delete set {fam} {t} {points}");
                            let _ = writeln!(s, "delete set {fam} {t} {ranges}");
                        }
                    };
                    sets(s, podnet_model::policy_api::Tier::Admin, &l.admin);
                    if l.tail {
                        let _ = writeln!(s, "delete chain {fam} {t} {c}_t");
                    }
                    sets(s, podnet_model::policy_api::Tier::Baseline, &l.baseline);
                    if l.deny {
                        let _ = writeln!(s, "delete chain {fam} {t} {c}_d");
                    }
                }
                let _ = writeln!(s, "delete set {fam} {t} {c}_pts");
                let _ = writeln!(s, "delete set {fam} {t} {c}_allow");
            }
        }
        Op::AddTier(id, v) | Op::DeleteTier(id, v) => {
            let verb = if matches!(op, Op::AddTier(..)) {
                "add"
            } else {
                "delete"
            };
            for action in [Action::Accept, Action::Deny, Action::Pass] {
                let (points, ranges): (Vec<&Rect>, Vec<&Rect>) = v
                    .iter()
                    .filter(|(_, a)| *a == action)
                    .map(|(r, _)| r)
                    .partition(|r| r.is_point());
                let (ps, rs) = id.sets(action);
                for (name, v) in [(ps, points), (rs, ranges)] {
                    render_elements(s, verb, &name, &v, |r| r.family, |r| render_rect(r));
                }
            }
        }
        Op::AddRects(g, v) | Op::DeleteRects(g, v) => {
            let verb = if matches!(op, Op::AddRects(..)) {
                "add"
            } else {
                "delete"
            };
            let (points, ranges): (Vec<&Rect>, Vec<&Rect>) = v.iter().partition(|r| r.is_point());
            for (set, v) in [("pts", points), ("allow", ranges)] {
                let set = format!("{}_{set}", g.chain());
                render_elements(s, verb, &set, &v, |r| r.family, |r| render_rect(r));
            }
        }
        Op::SetTargets(dir, v) => {
            render_elements(
                s,
                "add",
                map_name(*dir),
                v,
                |(ip, _)| IpFamily::of(*ip),
                |(ip, target)| format!("{ip} : {}", verdict(*dir, *target)),
            );
        }
        Op::DeleteTargets(dir, v) => {
            render_elements(
                s,
                "delete",
                map_name(*dir),
                v,
                |ip| IpFamily::of(*ip),
                ToString::to_string,
            );
        }
        Op::SetSample(n) => {
            for f in families {
                let (fam, _) = words(*f);
                let _ = writeln!(s, "flush chain {fam} {t} sample");
                let log = Reason::Allowed.log_statement();
                match *n {
                    0 => {}
                    // Every one (`numgen random mod 10000` is at most 9,999).
                    10000.. => {
                        let _ = writeln!(s, "add rule {fam} {t} sample ct state new {log}");
                    }
                    n => {
                        let _ = writeln!(
                            s,
                            "add rule {fam} {t} sample ct state new numgen random mod 10000 < {n} {log}"
                        );
                    }
                }
            }
        }
        Op::AddLocal(v) | Op::DeleteLocal(v) => {
            let verb = if matches!(op, Op::AddLocal(_)) {
                "add"
            } else {
                "delete"
            };
            render_elements(s, verb, "local", v, IpFamily::of_net, ToString::to_string);
        }
    }
}

pub(super) fn map_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// A rect as the kernel holds it: a point in the group's `_pts` set, a range (its first and
/// last keys) in its `_allow` set; each field in whole registers as [`render_rect`] writes it.
fn rect_element(g: &GroupId, r: &Rect) -> SetElement {
    let key = |a: u128, proto: u8, port: u16| {
        Registers::new()
            .addr(rects::number_addr(r.family, a))
            .proto_number(proto)
            .port(port)
            .0
    };
    let point = r.is_point();
    SetElement {
        family: r.family,
        table: TABLE,
        set: format!("{}_{}", g.chain(), if point { "pts" } else { "allow" }),
        key: key(r.addr.0, r.proto.0, r.port.0),
        key_end: (!point).then(|| key(r.addr.1, r.proto.1, r.port.1)),
        data: None,
    }
}

/// A pod's entry in the ingress or egress map, with its verdict (none to delete it).
fn target_element(dir: Direction, ip: IpAddr, target: Option<Target>) -> SetElement {
    SetElement {
        family: IpFamily::of(ip),
        table: TABLE,
        set: map_name(dir).into(),
        key: Registers::new().addr(ip).0,
        key_end: None,
        data: target.map(|t| match (dir, t) {
            (Direction::Ingress, Target::Open) => ElementData::Accept,
            (Direction::Egress, Target::Open) => ElementData::Goto("ingress_check".into()),
            (_, Target::Group(g)) => ElementData::Goto(g.chain()),
        }),
    }
}

/// Not isolated: ingress accepts; egress goes on to the destination's ingress.
pub(super) fn verdict(dir: Direction, t: Target) -> String {
    match (dir, t) {
        (Direction::Ingress, Target::Open) => "accept".into(),
        (Direction::Egress, Target::Open) => "goto ingress_check".into(),
        (Direction::Ingress, Target::Group(g)) => format!("goto {}", g.chain()),
        (Direction::Egress, Target::Group(g)) => format!("goto {}", g.chain()),
    }
}

/// A group's sets and chains in one family's table. A group of NetworkPolicy alone: its points
/// and ranges allow, anything else is logged and dropped. A group with tiers ([`Layout`]): the
/// Admin tier's sets, two per action (each element in its first rule's action's: Accept
/// allows this way, Deny goes to the `_d` chain that logs and drops, Pass to the `_t` chain,
/// the rest), then NetworkPolicy's sets as above where NetworkPolicies isolate the pods, else
/// (in the `_t` chain) the Baseline tier's sets and allow.
fn render_group(s: &mut String, g: GroupId, layout: Option<&Layout>, f: IpFamily) {
    let t = TABLE;
    let c = g.chain();
    let (fam, addr_type) = words(f);
    let key = format!("{addr_type} . inet_proto . inet_service");
    let _ = writeln!(s, "add set {fam} {t} {c}_pts {{ type {key}; }}");
    let _ = writeln!(
        s,
        "add set {fam} {t} {c}_allow {{ type {key}; flags interval; }}"
    );
    let reason = match g.dir {
        Direction::Ingress => Reason::PolicyIngress,
        Direction::Egress => Reason::PolicyEgress,
    };
    let matched = match g.dir {
        Direction::Ingress => format!("{fam} saddr . meta l4proto . th dport"),
        Direction::Egress => format!("{fam} daddr . meta l4proto . th dport"),
    };
    // Allowed in this direction: ingress is done, egress goes on to the destination's side.
    let allow = match g.dir {
        Direction::Ingress => "accept",
        Direction::Egress => "goto ingress_check",
    };
    // NetworkPolicy's part: its sets allow, anything else is logged (the flow log; one sent to
    // a Service as such) and dropped.
    let np = |s: &mut String, chain: &str| {
        for set in ["pts", "allow"] {
            let _ = writeln!(s, "add rule {fam} {t} {chain} {matched} @{c}_{set} {allow}");
        }
        let _ = writeln!(
            s,
            "add rule {fam} {t} {chain} {} drop",
            reason.log_translated()
        );
        let _ = writeln!(
            s,
            "add rule {fam} {t} {chain} {} drop",
            reason.log_statement()
        );
    };
    let Some(l) = layout else {
        let _ = writeln!(s, "add chain {fam} {t} {c}");
        np(s, &c);
        return;
    };
    // The chains a rule goes to exist before it.
    if l.deny {
        let _ = writeln!(s, "add chain {fam} {t} {c}_d");
        let _ = writeln!(
            s,
            "add rule {fam} {t} {c}_d {} drop",
            reason.log_translated()
        );
        let _ = writeln!(
            s,
            "add rule {fam} {t} {c}_d {} drop",
            reason.log_statement()
        );
    }
    let rest = if l.tail {
        let _ = writeln!(s, "add chain {fam} {t} {c}_t");
        format!("{c}_t")
    } else {
        c.clone()
    };
    for (tier, actions) in l.tiers() {
        for a in actions {
            let (points, ranges) = TierId { group: g, tier }.sets(*a);
            let _ = writeln!(s, "add set {fam} {t} {points} {{ type {key}; }}");
            let _ = writeln!(
                s,
                "add set {fam} {t} {ranges} {{ type {key}; flags interval; }}"
            );
        }
    }
    let _ = writeln!(s, "add chain {fam} {t} {c}");
    // Every action's points first, then every action's ranges: a point holds the answer of
    // the first rule that takes it in, which a range of a later rule of another action may
    // cover too (the ranges are disjoint among themselves, and so are the points).
    let lookups = |s: &mut String, chain: &str, tier, actions: &[Action]| {
        for ranges in [false, true] {
            for a in actions {
                let (points_set, ranges_set) = TierId { group: g, tier }.sets(*a);
                let set = if ranges { ranges_set } else { points_set };
                let _ = writeln!(
                    s,
                    "add rule {fam} {t} {chain} {matched} @{set} {}",
                    tier_verdict(g, *a)
                );
            }
        }
    };
    lookups(s, &c, podnet_model::policy_api::Tier::Admin, &l.admin);
    if rest != c {
        let _ = writeln!(s, "add rule {fam} {t} {c} goto {rest}");
    }
    if l.isolated {
        np(s, &rest);
    } else {
        lookups(
            s,
            &rest,
            podnet_model::policy_api::Tier::Baseline,
            &l.baseline,
        );
        let _ = writeln!(s, "add rule {fam} {t} {rest} {allow}");
    }
}

/// What a tier's element does: its action as the group's chains say it.
fn tier_verdict(g: GroupId, a: Action) -> String {
    match (a, g.dir) {
        (Action::Accept, Direction::Ingress) => "accept".into(),
        (Action::Accept, Direction::Egress) => "goto ingress_check".into(),
        (Action::Deny, _) => format!("goto {}_d", g.chain()),
        (Action::Pass, _) => format!("goto {}_t", g.chain()),
    }
}

/// A tier's element: a point in its action's points set, a range in its ranges set.
fn tier_element(id: &TierId, r: &Rect, a: Action) -> SetElement {
    let mut e = rect_element(&id.group, r);
    let (points, ranges) = id.sets(a);
    e.set = if r.is_point() { points } else { ranges };
    e
}

pub(super) fn render_rect(r: &Rect) -> String {
    let addr = |a: u128| rects::number_addr(r.family, a).to_string();
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

pub(super) fn render_table(s: &mut String, family: IpFamily) {
    let t = TABLE;
    let (f, addr_type) = words(family);
    let unknown = Reason::UnknownPod.log_statement();
    let lines = [
        format!("add table {f} {t}"),
        format!("delete table {f} {t}"),
        format!("add table {f} {t}"),
        format!("add map {f} {t} ingress {{ type {addr_type} : verdict; }}"),
        format!("add map {f} {t} egress {{ type {addr_type} : verdict; }}"),
        format!("add set {f} {t} local {{ type {addr_type}; flags interval; }}"),
        // The destination's side, once the source's allows: a known local pod by its map
        // entry, an unknown local address dropped, anything else (no local pod) passes.
        format!("add chain {f} {t} ingress_check"),
        format!("add rule {f} {t} ingress_check {f} daddr vmap @ingress"),
        format!(
            "add rule {f} {t} ingress_check {f} daddr @local {unknown} drop"
        ),
        format!("add chain {f} {t} forward {{ type filter hook forward priority filter; policy accept; }}"),
        format!("add rule {f} {t} forward ct state established,related accept"),
        format!("add rule {f} {t} forward {f} saddr vmap @egress"),
        // A local pod the table does not know yet: nothing out until it does (nor in, above).
        format!("add rule {f} {t} forward {f} saddr @local {unknown} drop"),
        format!("add rule {f} {t} forward goto ingress_check"),
        // A pod's connections to its own node are egress too.
        format!("add chain {f} {t} input {{ type filter hook input priority filter; policy accept; }}"),
        format!("add rule {f} {t} input ct state established,related accept"),
        format!("add rule {f} {t} input {f} saddr vmap @egress"),
        // After the verdicts above (a higher priority on the same hook): only what they let
        // through reaches it. The flow log's sample of new connections allowed (`SetSample`).
        format!("add chain {f} {t} sample {{ type filter hook forward priority 10; policy accept; }}"),
    ];
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
}
