//! Changes to the policy table as typed steps, the table they leave, and their nft syntax
//! (rendered only here, where the kernel is handed them).

use super::*;

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

pub(super) fn map_of(p: &PolicyPlan, dir: Direction) -> &BTreeMap<Ipv4Addr, Target> {
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
                Op::CreateTable => *self = PolicyPlan::default(),
                Op::AddGroup(g) => drop(self.groups.insert(*g, BTreeSet::new())),
                Op::DeleteGroup(g) => {
                    self.groups.remove(g).ok_or_else(|| Missing(g.chain()))?;
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
                Op::SetTargets(dir, v) => map_mut(self, *dir).extend(v.iter().copied()),
                Op::DeleteTargets(dir, v) => {
                    let map = map_mut(self, *dir);
                    for ip in v {
                        map.remove(ip).ok_or_else(|| Missing(ip.to_string()))?;
                    }
                }
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

pub(super) fn render_op(s: &mut String, op: &Op) {
    let t = TABLE;
    match op {
        Op::CreateTable => render_table(s),
        Op::AddGroup(g) => {
            let c = g.chain();
            let _ = writeln!(
                s,
                "add set ip {t} {c}_pts {{ type ipv4_addr . inet_proto . inet_service; }}"
            );
            let _ = writeln!(s, "add set ip {t} {c}_allow {{ type ipv4_addr . inet_proto . inet_service; flags interval; }}");
            let _ = writeln!(s, "add chain ip {t} {c}");
            for set in ["pts", "allow"] {
                let _ = match g.dir {
                    Direction::Ingress => writeln!(
                        s,
                        "add rule ip {t} {c} ip saddr . meta l4proto . th dport @{c}_{set} accept"
                    ),
                    Direction::Egress => writeln!(
                        s,
                        "add rule ip {t} {c} ip daddr . meta l4proto . th dport @{c}_{set} goto ingress_check"
                    ),
                };
            }
            let _ = writeln!(s, "add rule ip {t} {c} drop");
        }
        Op::DeleteGroup(g) => {
            let c = g.chain();
            let _ = writeln!(s, "delete chain ip {t} {c}");
            let _ = writeln!(s, "delete set ip {t} {c}_pts");
            let _ = writeln!(s, "delete set ip {t} {c}_allow");
        }
        Op::AddRects(g, v) | Op::DeleteRects(g, v) => {
            let verb = if matches!(op, Op::AddRects(..)) {
                "add"
            } else {
                "delete"
            };
            let (points, ranges): (Vec<&Rect>, Vec<&Rect>) = v.iter().partition(|r| r.is_point());
            for (set, v) in [("pts", points), ("allow", ranges)] {
                let elems: Vec<String> = v.into_iter().map(render_rect).collect();
                for chunk in elems.chunks(1000) {
                    let _ = writeln!(
                        s,
                        "{verb} element ip {t} {}_{set} {{ {} }}",
                        g.chain(),
                        chunk.join(", ")
                    );
                }
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

pub(super) fn map_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
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

pub(super) fn render_rect(r: &Rect) -> String {
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

pub(super) fn render_table(s: &mut String) {
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
