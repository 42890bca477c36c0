//! The proxy plan as nftables: one table per family, `ip podnet-proxy` and (on IPv6 and
//! dual-stack clusters) `ip6 podnet-proxy`, as kube-proxy's nftables mode has, of maps and
//! sets, with chains per endpoint count instead of per service (see
//! `docs/design/service-proxy.md`). Dispatch is two hash lookups whatever the number of
//! Services. One transaction changes both tables: the kernel applies all of it or none.
//!
//! Everything here is a typed value: the elements a node holds ([`Elements`]) and the changes
//! between two of them ([`Transaction`]). nft syntax is written only by
//! [`Transaction::render`], where the transaction is handed to the kernel, and never read back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};
use std::net::IpAddr;

use podnet_model::nftset::{Addr, ElementData, ElementOp, Registers, SetElement};
use podnet_model::{IpFamily, Protocol};
use serde::{Deserialize, Serialize};

use crate::plan::{Dispatch, ProxyPlan};

pub const TABLE: &str = "podnet-proxy";
/// The mark that asks postrouting to masquerade.
pub const MASQ_MARK: u32 = 0x4000;
/// Elements per `add element` statement.
const CHUNK: usize = 1000;

/// A key of the `services` map and the `no_endpoints` set: `ip . proto . port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub ip: IpAddr,
    pub proto: Protocol,
    pub port: u16,
}

/// A key of the `node_ports` map and the `no_endpoint_ports` set: `proto . port`, in the table
/// of `family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodePortKey {
    #[serde(default)]
    pub family: IpFamily,
    pub proto: Protocol,
    pub port: u16,
}

/// Where traffic enters: a virtual address or a node port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FrontendKey {
    Service(ServiceKey),
    NodePort(NodePortKey),
}

impl FrontendKey {
    pub fn proto(&self) -> Protocol {
        match self {
            FrontendKey::Service(k) => k.proto,
            FrontendKey::NodePort(k) => k.proto,
        }
    }
    pub fn is_node_port(&self) -> bool {
        matches!(self, FrontendKey::NodePort(_))
    }
    /// The table it is in.
    pub fn family(&self) -> IpFamily {
        match self {
            FrontendKey::Service(k) => IpFamily::of(k.ip),
            FrontendKey::NodePort(k) => k.family,
        }
    }
}

/// A dispatch chain: for Services or node ports, one protocol, with session affinity's timeout
/// or without, for `endpoints` endpoints. Each has a masquerading twin (`<name>_masq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Chain {
    /// The table it is in.
    #[serde(default)]
    pub family: IpFamily,
    pub node_port: bool,
    pub proto: Protocol,
    pub affinity: Option<u32>,
    pub endpoints: usize,
}

/// What a frontend's element jumps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    Goto { chain: Chain, masquerade: bool },
    Drop,
}

/// One of the backend maps: per protocol, for Services or node ports, with session affinity
/// (slots count from 1, the connection's ct mark) or without (slots count from 0, numgen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendMap {
    #[serde(default)]
    pub family: IpFamily,
    pub node_port: bool,
    pub affinity: bool,
    pub proto: Protocol,
}

/// A key of a backend map: a frontend and a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendSlot {
    pub map: BackendMap,
    pub frontend: FrontendKey,
    pub slot: u32,
}

/// An endpoint: where DNAT sends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
}

/// One element of one of the table's maps and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Service(ServiceKey, Verdict),
    NodePort(NodePortKey, Verdict),
    Backend(BackendSlot, Backend),
    NoEndpoints(ServiceKey),
    NoEndpointPort(NodePortKey),
    /// An endpoint reaching itself through a Service: `ip . ip`.
    Hairpin(IpAddr),
}

/// What a node's proxy holds: the elements of every map and set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elements {
    #[serde(with = "podnet_model::pairs")]
    pub services: BTreeMap<ServiceKey, Verdict>,
    #[serde(with = "podnet_model::pairs")]
    pub node_ports: BTreeMap<NodePortKey, Verdict>,
    #[serde(with = "podnet_model::pairs")]
    pub backends: BTreeMap<BackendSlot, Backend>,
    pub no_endpoints: BTreeSet<ServiceKey>,
    pub no_endpoint_ports: BTreeSet<NodePortKey>,
    pub hairpin: BTreeSet<IpAddr>,
    /// The node also has the `ip6` table (the cluster has IPv6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
}

/// A UDP flow that a removed backend served: its conntrack entries must go, or clients keep
/// sending to a gone endpoint. `vip` is None for a node port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StaleUdpFlow {
    pub vip: Option<IpAddr>,
    pub port: u16,
    pub endpoint: IpAddr,
}

impl Elements {
    pub fn of(plan: &ProxyPlan) -> Elements {
        let mut e = Elements::default();
        for (f, (owner, d)) in &plan.frontends {
            let key = FrontendKey::Service(ServiceKey {
                ip: f.ip,
                proto: f.proto,
                port: f.port,
            });
            e.add_frontend(key, plan.affinity.get(&owner.service).copied(), d);
        }
        for ((family, proto, port), (owner, d)) in &plan.node_ports {
            let key = FrontendKey::NodePort(NodePortKey {
                family: *family,
                proto: *proto,
                port: *port,
            });
            e.add_frontend(key, plan.affinity.get(&owner.service).copied(), d);
        }
        e
    }

    /// One frontend: its verdict or its place among the rejected, and its backends by slot.
    fn add_frontend(&mut self, key: FrontendKey, affinity: Option<u32>, d: &Dispatch) {
        let node_port = key.is_node_port();
        let verdict = match d {
            Dispatch::Endpoints {
                endpoints,
                masquerade,
            } => Some(Verdict::Goto {
                chain: Chain {
                    family: key.family(),
                    node_port,
                    proto: key.proto(),
                    affinity,
                    endpoints: endpoints.len(),
                },
                masquerade: *masquerade,
            }),
            Dispatch::Drop => Some(Verdict::Drop),
            Dispatch::Reject => None,
        };
        match (key, verdict) {
            (FrontendKey::Service(k), Some(v)) => {
                self.services.insert(k, v);
            }
            (FrontendKey::NodePort(k), Some(v)) => {
                self.node_ports.insert(k, v);
            }
            (FrontendKey::Service(k), None) => {
                self.no_endpoints.insert(k);
            }
            (FrontendKey::NodePort(k), None) => {
                self.no_endpoint_ports.insert(k);
            }
        }
        let Dispatch::Endpoints { endpoints, .. } = d else {
            return;
        };
        let map = BackendMap {
            family: key.family(),
            node_port,
            affinity: affinity.is_some(),
            proto: key.proto(),
        };
        let first = u32::from(affinity.is_some());
        // The plan gives a frontend endpoints of its own family only: slots without holes.
        for (i, &(ip, port)) in endpoints.iter().enumerate() {
            let slot = BackendSlot {
                map,
                frontend: key,
                slot: first + i as u32,
            };
            self.backends.insert(slot, Backend { ip, port });
            self.hairpin.insert(ip);
        }
    }

    /// Takes `removed` out and puts `added` in (a change computed elsewhere, part by part).
    pub fn patch(&mut self, removed: &[Element], added: &[Element]) {
        for e in removed {
            match e {
                Element::Service(k, _) => drop(self.services.remove(k)),
                Element::NodePort(k, _) => drop(self.node_ports.remove(k)),
                Element::Backend(k, _) => drop(self.backends.remove(k)),
                Element::NoEndpoints(k) => drop(self.no_endpoints.remove(k)),
                Element::NoEndpointPort(k) => drop(self.no_endpoint_ports.remove(k)),
                Element::Hairpin(ip) => drop(self.hairpin.remove(ip)),
            }
        }
        for e in added {
            match *e {
                Element::Service(k, v) => drop(self.services.insert(k, v)),
                Element::NodePort(k, v) => drop(self.node_ports.insert(k, v)),
                Element::Backend(k, v) => drop(self.backends.insert(k, v)),
                Element::NoEndpoints(k) => drop(self.no_endpoints.insert(k)),
                Element::NoEndpointPort(k) => drop(self.no_endpoint_ports.insert(k)),
                Element::Hairpin(ip) => drop(self.hairpin.insert(ip)),
            }
        }
    }

    /// Every element, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = Element> + '_ {
        let services = self.services.iter().map(|(k, v)| Element::Service(*k, *v));
        let node_ports = self
            .node_ports
            .iter()
            .map(|(k, v)| Element::NodePort(*k, *v));
        let backends = self.backends.iter().map(|(k, v)| Element::Backend(*k, *v));
        services
            .chain(node_ports)
            .chain(backends)
            .chain(self.no_endpoints.iter().map(|k| Element::NoEndpoints(*k)))
            .chain(
                self.no_endpoint_ports
                    .iter()
                    .map(|k| Element::NoEndpointPort(*k)),
            )
            .chain(self.hairpin.iter().map(|ip| Element::Hairpin(*ip)))
    }

    /// The dispatch chains the elements jump to.
    pub fn chains(&self) -> BTreeSet<Chain> {
        self.services
            .values()
            .chain(self.node_ports.values())
            .filter_map(|v| match v {
                Verdict::Goto { chain, .. } => Some(*chain),
                Verdict::Drop => None,
            })
            .collect()
    }

    /// The endpoint counts the elements jump to.
    pub fn counts(&self) -> BTreeSet<usize> {
        self.chains().iter().map(|c| c.endpoints).collect()
    }

    /// The session-affinity timeouts in use, by table.
    pub fn timeouts(&self) -> BTreeSet<(IpFamily, u32)> {
        self.chains()
            .iter()
            .filter_map(|c| Some((c.family, c.affinity?)))
            .collect()
    }

    /// The tables the node holds: `ip`, and `ip6` on a cluster with IPv6.
    pub fn families(&self) -> Vec<IpFamily> {
        if self.ipv6 {
            vec![IpFamily::Ipv4, IpFamily::Ipv6]
        } else {
            vec![IpFamily::Ipv4]
        }
    }

    /// The elements of one table.
    pub fn of_family(&self, family: IpFamily) -> Elements {
        let mut e = Elements {
            ipv6: family == IpFamily::Ipv6,
            ..Default::default()
        };
        let mine: Vec<Element> = self.iter().filter(|x| x.family() == family).collect();
        e.patch(&[], &mine);
        e
    }

    /// UDP backends that `new` no longer has for their frontend (under any slot).
    pub fn stale_udp_flows(&self, new: &Elements) -> Vec<StaleUdpFlow> {
        let still: BTreeSet<(FrontendKey, IpAddr)> = new
            .backends
            .iter()
            .map(|(s, b)| (s.frontend, b.ip))
            .collect();
        let mut out: Vec<StaleUdpFlow> = self
            .backends
            .iter()
            .filter(|(s, b)| s.map.proto == Protocol::Udp && !still.contains(&(s.frontend, b.ip)))
            .map(|(s, b)| match s.frontend {
                FrontendKey::Service(k) => StaleUdpFlow {
                    vip: Some(k.ip),
                    port: k.port,
                    endpoint: b.ip,
                },
                FrontendKey::NodePort(k) => StaleUdpFlow {
                    vip: None,
                    port: k.port,
                    endpoint: b.ip,
                },
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every map and set with its elements in nft's notation, by name: what `podnet check
    /// --proxy -o json` prints (docs/check-schema.md); the `ip6` table's under `ipv6`.
    pub fn listing(&self) -> Listing {
        let mut l = self.listing_of(IpFamily::Ipv4);
        if self.ipv6 {
            l.ipv6 = Some(Box::new(self.listing_of(IpFamily::Ipv6)));
        }
        l
    }

    fn listing_of(&self, family: IpFamily) -> Listing {
        let mut l = Listing::default();
        for e in self.iter().filter(|e| e.family() == family) {
            let text = e.to_string();
            match e {
                Element::Service(..) => l.services.push(text),
                Element::NodePort(..) => l.node_ports.push(text),
                Element::Backend(s, _) => l.backends.entry(s.map.name()).or_default().push(text),
                Element::NoEndpoints(_) => l.no_endpoints.push(text),
                Element::NoEndpointPort(_) => l.no_endpoint_ports.push(text),
                Element::Hairpin(_) => l.hairpin.push(text),
            }
        }
        l.backends.values_mut().for_each(|v| v.sort());
        l
    }
}

/// A node's proxy in nft's notation, for people and `check -o json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub services: Vec<String>,
    pub node_ports: Vec<String>,
    pub backends: BTreeMap<String, Vec<String>>,
    pub no_endpoints: Vec<String>,
    pub no_endpoint_ports: Vec<String>,
    pub hairpin: Vec<String>,
    /// The `ip6` table, on a cluster with IPv6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Box<Listing>>,
}

/// One step of a transaction on the proxy's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A family's table with its fixed maps, sets and base chains.
    CreateTable(IpFamily),
    /// The client maps of a session-affinity timeout, in a family's table.
    AddAffinityMaps(IpFamily, u32),
    /// A dispatch chain and its masquerading twin.
    AddChain(Chain),
    DeleteElements(Vec<Element>),
    AddElements(Vec<Element>),
}

/// Changes to the proxy's table that the kernel applies as one: all of them, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

impl Transaction {
    /// The whole table, for a node's first load.
    pub fn create(e: &Elements) -> Transaction {
        let mut ops: Vec<Op> = e.families().into_iter().map(Op::CreateTable).collect();
        ops.extend(
            e.timeouts()
                .into_iter()
                .map(|(f, t)| Op::AddAffinityMaps(f, t)),
        );
        ops.extend(e.chains().into_iter().map(Op::AddChain));
        ops.push(Op::AddElements(e.iter().collect()));
        Transaction { ops }.pruned()
    }

    /// The changes from `old` to `new`: only the elements that differ (a changed map value is
    /// a delete and an add of the same key, in that order), and chains and affinity maps that
    /// are new. Empty when nothing changed.
    pub fn update(old: &Elements, new: &Elements) -> Transaction {
        // A table the old state did not have (the cluster gained a family).
        let mut ops: Vec<Op> = new
            .families()
            .into_iter()
            .filter(|f| !old.families().contains(f))
            .map(Op::CreateTable)
            .collect();
        ops.extend(
            new.timeouts()
                .difference(&old.timeouts())
                .map(|(f, t)| Op::AddAffinityMaps(*f, *t)),
        );
        ops.extend(
            new.chains()
                .difference(&old.chains())
                .map(|c| Op::AddChain(*c)),
        );
        let (o, n): (BTreeSet<Element>, BTreeSet<Element>) =
            (old.iter().collect(), new.iter().collect());
        ops.push(Op::DeleteElements(o.difference(&n).copied().collect()));
        ops.push(Op::AddElements(n.difference(&o).copied().collect()));
        Transaction { ops }.pruned()
    }

    /// A change computed elsewhere (an agent's, part by part): the affinity maps and chains
    /// that come into use, then the elements deleted and added.
    pub fn delta(
        timeouts: impl IntoIterator<Item = (IpFamily, u32)>,
        chains: impl IntoIterator<Item = Chain>,
        removed: Vec<Element>,
        added: Vec<Element>,
    ) -> Transaction {
        let mut ops: Vec<Op> = timeouts
            .into_iter()
            .map(|(f, t)| Op::AddAffinityMaps(f, t))
            .collect();
        ops.extend(chains.into_iter().map(Op::AddChain));
        ops.push(Op::DeleteElements(removed));
        ops.push(Op::AddElements(added));
        Transaction { ops }.pruned()
    }

    /// The transaction as element operations alone, in its order, when it is nothing else
    /// (no table, map or chain to make): what the node can hand the kernel as one netlink
    /// batch instead of nft's text.
    pub fn element_ops(&self) -> Option<Vec<ElementOp>> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::DeleteElements(v) => {
                    Some(ElementOp::Delete(v.iter().map(Element::wire).collect()))
                }
                Op::AddElements(v) => Some(ElementOp::Add(v.iter().map(Element::wire).collect())),
                _ => None,
            })
            .collect()
    }

    fn pruned(mut self) -> Transaction {
        self.ops
            .retain(|op| !matches!(op, Op::DeleteElements(v) | Op::AddElements(v) if v.is_empty()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The transaction in nft's syntax, for `nft -f`: the one place it is written.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for op in &self.ops {
            match op {
                Op::CreateTable(f) => render_table(&mut s, *f),
                Op::AddAffinityMaps(f, t) => render_affinity_maps(&mut s, *f, *t),
                Op::AddChain(c) => c.render(&mut s),
                Op::DeleteElements(v) => render_elements(&mut s, "delete", v, true),
                Op::AddElements(v) => render_elements(&mut s, "add", v, false),
            }
        }
        s
    }
}

/// `add element` / `delete element` statements, one per table, map or set and chunk, each
/// element written straight into the script (a node's first load writes a hundred thousand).
fn render_elements(s: &mut String, verb: &str, v: &[Element], key_only: bool) {
    let mut by_set: BTreeMap<(IpFamily, SetId), Vec<&Element>> = BTreeMap::new();
    for e in v {
        by_set.entry((e.family(), e.set_id())).or_default().push(e);
    }
    for ((family, set), elems) in by_set {
        let t = Nft::of(family).table;
        let name = set.name();
        for chunk in elems.chunks(CHUNK) {
            let _ = write!(s, "{verb} element {t} {TABLE} {name} {{ ");
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = if key_only {
                    e.write_key(s)
                } else {
                    write!(s, "{e}")
                };
            }
            s.push_str(" }\n");
        }
    }
}

/// Which map or set of a table an element is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SetId {
    Services,
    NodePorts,
    Backends(BackendMap),
    NoEndpoints,
    NoEndpointPorts,
    Hairpin,
}

impl SetId {
    fn name(&self) -> String {
        match self {
            SetId::Services => "services".into(),
            SetId::NodePorts => "node_ports".into(),
            SetId::Backends(m) => m.name(),
            SetId::NoEndpoints => "no_endpoints".into(),
            SetId::NoEndpointPorts => "no_endpoint_ports".into(),
            SetId::Hairpin => "hairpin".into(),
        }
    }
}

/// A family's words in nft's syntax.
#[derive(Debug, Clone, Copy)]
struct Nft {
    /// The table's family: `ip`, `ip6`.
    table: &'static str,
    /// The network header's expressions: `ip saddr`, `ip6 saddr`.
    addr: &'static str,
    /// An address's type: `ipv4_addr`, `ipv6_addr`.
    addr_type: &'static str,
    /// ICMP's port unreachable.
    unreachable: &'static str,
}

impl Nft {
    fn of(family: IpFamily) -> Nft {
        match family {
            IpFamily::Ipv4 => Nft {
                table: "ip",
                addr: "ip",
                addr_type: "ipv4_addr",
                unreachable: "icmp port-unreachable",
            },
            IpFamily::Ipv6 => Nft {
                table: "ip6",
                addr: "ip6",
                addr_type: "ipv6_addr",
                unreachable: "icmpv6 port-unreachable",
            },
        }
    }
}

impl BackendMap {
    pub fn name(&self) -> String {
        format!(
            "{}{}backends_{}",
            if self.node_port { "np_" } else { "" },
            if self.affinity { "aff_" } else { "" },
            self.proto.lower()
        )
    }
}

impl Chain {
    pub fn name(&self) -> String {
        let aff = self
            .affinity
            .map(|t| format!("aff{t}_"))
            .unwrap_or_default();
        format!(
            "{}_{}_{aff}ep{}",
            if self.node_port { "np" } else { "svc" },
            self.proto.lower(),
            self.endpoints
        )
    }

    /// The chain a frontend's element goes to: this one or its masquerading twin.
    pub fn target(&self, masquerade: bool) -> String {
        format!("{}{}", self.name(), if masquerade { "_masq" } else { "" })
    }

    /// The chain and its masquerading twin.
    fn render(&self, out: &mut String) {
        let (name, n) = (self.name(), self.endpoints);
        let Nft {
            table: fam, addr, ..
        } = Nft::of(self.family);
        // Flushed first: a chain made again (it fell out of use, then came back) gets its
        // rules once.
        let _ = writeln!(out, "add chain {fam} {TABLE} {name}");
        let _ = writeln!(out, "flush chain {fam} {TABLE} {name}");
        let (key, np) = if self.node_port {
            ("meta l4proto . th dport".to_string(), "np_")
        } else {
            (format!("{addr} daddr . meta l4proto . th dport"), "")
        };
        let backends = |affinity| {
            BackendMap {
                family: self.family,
                node_port: self.node_port,
                affinity,
                proto: self.proto,
            }
            .name()
        };
        match self.affinity {
            None => {
                let _ = writeln!(
                    out,
                    "add rule {fam} {TABLE} {name} dnat {addr} to {key} . numgen random mod {n} map @{}",
                    backends(false)
                );
            }
            Some(t) if self.family == IpFamily::Ipv6 => {
                // nft 1.0.6 cannot update a map whose key holds an IPv6 address (its
                // linearizer asserts), so the slot + 1 is part of the key of a set instead,
                // as kube-proxy's affinity sets hold it: the first slot the client has an entry
                // for, else one drawn; the entry refreshed; the slot's backend.
                let client = format!("ip6 saddr . {key} . ct mark");
                let then = format!(
                    "update @{np}aff_{t} {{ {client} }} dnat ip6 to {key} . ct mark map @{}",
                    backends(true)
                );
                for k in 1..=n {
                    let _ = writeln!(
                        out,
                        "add rule ip6 {TABLE} {name} ct mark set {k} {client} @{np}aff_{t} {then}"
                    );
                }
                let _ = writeln!(
                    out,
                    "add rule ip6 {TABLE} {name} ct mark set numgen random mod {n} offset 1 {then}"
                );
            }
            Some(t) => {
                // The slot + 1 lives in the connection's ct mark: restored from the client's
                // entry if it has one (and it still fits), drawn otherwise, then recorded.
                let client = format!("ip saddr . {key}");
                let _ = writeln!(
                    out,
                    "add rule ip {TABLE} {name} ct mark set {client} map @{np}aff_{t}"
                );
                let _ = writeln!(out, "add rule ip {TABLE} {name} ct mark 0 ct mark set numgen random mod {n} offset 1");
                let _ = writeln!(out, "add rule ip {TABLE} {name} ct mark > {n} ct mark set numgen random mod {n} offset 1");
                let _ = writeln!(
                    out,
                    "add rule ip {TABLE} {name} update @{np}aff_{t} {{ {client} : ct mark }}"
                );
                let _ = writeln!(
                    out,
                    "add rule ip {TABLE} {name} dnat ip to {key} . ct mark map @{}",
                    backends(true)
                );
            }
        }
        let _ = writeln!(out, "add chain {fam} {TABLE} {name}_masq");
        let _ = writeln!(out, "flush chain {fam} {TABLE} {name}_masq");
        let _ = writeln!(
            out,
            "add rule {fam} {TABLE} {name}_masq meta mark set meta mark | {MASQ_MARK:#x} goto {name}"
        );
    }
}

impl Element {
    /// The table the element is in.
    pub fn family(&self) -> IpFamily {
        match self {
            Element::Service(k, _) | Element::NoEndpoints(k) => IpFamily::of(k.ip),
            Element::NodePort(k, _) | Element::NoEndpointPort(k) => k.family,
            Element::Backend(s, _) => s.map.family,
            Element::Hairpin(ip) => IpFamily::of(*ip),
        }
    }

    /// The map or set the element belongs to.
    pub fn set_name(&self) -> String {
        self.set_id().name()
    }

    fn set_id(&self) -> SetId {
        match self {
            Element::Service(..) => SetId::Services,
            Element::NodePort(..) => SetId::NodePorts,
            Element::Backend(s, _) => SetId::Backends(s.map),
            Element::NoEndpoints(_) => SetId::NoEndpoints,
            Element::NoEndpointPort(_) => SetId::NoEndpointPorts,
            Element::Hairpin(_) => SetId::Hairpin,
        }
    }

    /// The element as the kernel holds it: the key's registers (the map's `typeof`, field by
    /// field) and the data, as `add element` with [`fmt::Display`]'s text would make it.
    pub fn wire(&self) -> SetElement {
        let service = |k: &ServiceKey| Registers::new().addr(k.ip).proto(k.proto).port(k.port);
        let node_port = |k: &NodePortKey| Registers::new().proto(k.proto).port(k.port);
        let verdict = |v: &Verdict| match v {
            Verdict::Goto { chain, masquerade } => ElementData::Goto(chain.target(*masquerade)),
            Verdict::Drop => ElementData::Drop,
        };
        let (key, data) = match self {
            Element::Service(k, v) => (service(k), Some(verdict(v))),
            Element::NodePort(k, v) => (node_port(k), Some(verdict(v))),
            Element::Backend(s, b) => {
                let front = match &s.frontend {
                    FrontendKey::Service(k) => service(k),
                    FrontendKey::NodePort(k) => node_port(k),
                };
                let value = Registers::new().addr(b.ip).port(b.port);
                (front.host_u32(s.slot), Some(ElementData::Value(value.0)))
            }
            Element::NoEndpoints(k) => (service(k), None),
            Element::NoEndpointPort(k) => (node_port(k), None),
            Element::Hairpin(ip) => (Registers::new().addr(*ip).addr(*ip), None),
        };
        SetElement {
            family: self.family(),
            table: TABLE,
            set: self.set_name(),
            key: key.0,
            key_end: None,
            data,
        }
    }

    /// The element's key: what `delete element` names.
    fn write_key(&self, s: &mut String) -> fmt::Result {
        match self {
            Element::Service(k, _) | Element::NoEndpoints(k) => write!(s, "{k}"),
            Element::NodePort(k, _) | Element::NoEndpointPort(k) => write!(s, "{k}"),
            Element::Backend(b, _) => write!(s, "{b}"),
            Element::Hairpin(_) => write!(s, "{self}"),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} . {} . {}",
            Addr(self.ip),
            self.proto.lower(),
            self.port
        )
    }
}

impl fmt::Display for NodePortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {}", self.proto.lower(), self.port)
    }
}

impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendKey::Service(k) => k.fmt(f),
            FrontendKey::NodePort(k) => k.fmt(f),
        }
    }
}

impl fmt::Display for BackendSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} . {}", self.frontend, self.slot)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Goto { chain, masquerade } => write!(f, "goto {}", chain.target(*masquerade)),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Service(k, v) => write!(f, "{k} : {v}"),
            Element::NodePort(k, v) => write!(f, "{k} : {v}"),
            Element::Backend(s, b) => write!(f, "{s} : {} . {}", Addr(b.ip), b.port),
            Element::NoEndpoints(k) => k.fmt(f),
            Element::NoEndpointPort(k) => k.fmt(f),
            Element::Hairpin(ip) => write!(f, "{} . {}", Addr(*ip), Addr(*ip)),
        }
    }
}

/// The session-affinity maps for a timeout (IPv6: sets whose key ends with the slot).
fn render_affinity_maps(out: &mut String, family: IpFamily, t: u32) {
    match family {
        IpFamily::Ipv4 => {
            let _ = writeln!(out, "add map ip {TABLE} aff_{t} {{ typeof ip saddr . ip daddr . meta l4proto . th dport : ct mark; flags dynamic,timeout; timeout {t}s; }}");
            let _ = writeln!(out, "add map ip {TABLE} np_aff_{t} {{ typeof ip saddr . meta l4proto . th dport : ct mark; flags dynamic,timeout; timeout {t}s; }}");
        }
        IpFamily::Ipv6 => {
            let _ = writeln!(out, "add set ip6 {TABLE} aff_{t} {{ typeof ip6 saddr . ip6 daddr . meta l4proto . th dport . ct mark; flags dynamic,timeout; timeout {t}s; }}");
            let _ = writeln!(out, "add set ip6 {TABLE} np_aff_{t} {{ typeof ip6 saddr . meta l4proto . th dport . ct mark; flags dynamic,timeout; timeout {t}s; }}");
        }
    }
}

/// The table, its fixed maps and sets, and its base chains. Backend maps exist per protocol:
/// nft reads a map's data type (`ip daddr . udp dport`) into the rules that use the map, so each
/// map serves one protocol. (A protocol-neutral `th dport` loads, but nft cannot read it back
/// from the kernel, and every later transaction on the table would fail.)
///
/// A table left by an earlier run (a crash between a load and saving state) is replaced in the
/// same transaction: `add` makes sure it exists, `delete` removes it with all it holds.
fn render_table(s: &mut String, family: IpFamily) {
    let Nft {
        table: fam,
        addr,
        addr_type,
        unreachable,
    } = Nft::of(family);
    let _ = writeln!(s, "add table {fam} {TABLE}");
    let _ = writeln!(s, "delete table {fam} {TABLE}");
    let _ = writeln!(s, "add table {fam} {TABLE}");
    let _ = writeln!(
        s,
        "add map {fam} {TABLE} services {{ type {addr_type} . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        s,
        "add map {fam} {TABLE} node_ports {{ type inet_proto . inet_service : verdict; }}"
    );
    for proto in Protocol::ALL {
        for node_port in [false, true] {
            for affinity in [false, true] {
                let map = BackendMap {
                    family,
                    node_port,
                    affinity,
                    proto,
                };
                let key = if node_port {
                    "meta l4proto . th dport".to_string()
                } else {
                    format!("{addr} daddr . meta l4proto . th dport")
                };
                let slot = if affinity {
                    "ct mark"
                } else {
                    "numgen random mod 2"
                };
                let _ = writeln!(
                    s,
                    "add map {fam} {TABLE} {} {{ typeof {key} . {slot} : {addr} daddr . {} dport; }}",
                    map.name(),
                    proto.lower()
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "add set {fam} {TABLE} no_endpoints {{ type {addr_type} . inet_proto . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "add set {fam} {TABLE} no_endpoint_ports {{ type inet_proto . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "add set {fam} {TABLE} hairpin {{ type {addr_type} . {addr_type}; }}"
    );
    // DNAT: new connections to a frontend, from pods (prerouting) and from the node (output).
    let _ = writeln!(s, "add chain {fam} {TABLE} dispatch");
    let _ = writeln!(
        s,
        "add rule {fam} {TABLE} dispatch {addr} daddr . meta l4proto . th dport vmap @services"
    );
    let _ = writeln!(s, "add rule {fam} {TABLE} dispatch fib daddr type local meta l4proto . th dport vmap @node_ports");
    let _ = writeln!(s, "add chain {fam} {TABLE} nat_prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}");
    let _ = writeln!(s, "add rule {fam} {TABLE} nat_prerouting jump dispatch");
    let _ = writeln!(
        s,
        "add chain {fam} {TABLE} nat_output {{ type nat hook output priority -100; policy accept; }}"
    );
    let _ = writeln!(s, "add rule {fam} {TABLE} nat_output jump dispatch");
    // Refuse, don't time out: frontends without endpoints.
    let _ = writeln!(s, "add chain {fam} {TABLE} reject_chain");
    // Logged first (the flow log: REJECTED, no endpoints), the Service's address and port
    // still the packet's (the DNAT never happened).
    let log = podnet_model::flow::Reason::NoEndpoints.log_statement();
    let _ = writeln!(
        s,
        "add rule {fam} {TABLE} reject_chain meta l4proto tcp {log} reject with tcp reset"
    );
    let _ = writeln!(
        s,
        "add rule {fam} {TABLE} reject_chain {log} reject with {unreachable}"
    );
    for (chain, hook) in [
        ("filter_prerouting", "prerouting"),
        ("filter_output", "output"),
    ] {
        let _ = writeln!(s, "add chain {fam} {TABLE} {chain} {{ type filter hook {hook} priority -90; policy accept; }}");
        if hook == "prerouting" {
            // Hairpin: a pod reaching itself through a Service must see another source.
            let _ = writeln!(s, "add rule {fam} {TABLE} {chain} ct status dnat {addr} saddr . {addr} daddr @hairpin meta mark set meta mark | {MASQ_MARK:#x}");
        }
        let _ = writeln!(s, "add rule {fam} {TABLE} {chain} ct state new {addr} daddr . meta l4proto . th dport @no_endpoints goto reject_chain");
        let _ = writeln!(s, "add rule {fam} {TABLE} {chain} ct state new fib daddr type local meta l4proto . th dport @no_endpoint_ports goto reject_chain");
    }
    let _ = writeln!(s, "add chain {fam} {TABLE} nat_postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}");
    let _ = writeln!(s, "add rule {fam} {TABLE} nat_postrouting meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark & {:#x} masquerade fully-random", !MASQ_MARK);
}

/// A Service's key, for the tests below.
#[cfg(test)]
fn svc(ns: &str, name: &str) -> podnet_model::NsName {
    podnet_model::NsName::new(ns, name)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod load;

#[cfg(test)]
pub(crate) mod tests_support;
