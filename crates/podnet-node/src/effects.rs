//! The effects a node's dataplane has on the kernel, behind one small trait: the real one
//! ([`Linux`], inside one network namespace) and a recording fake ([`Recording`]) that keeps
//! what a kernel would hold and can fail any call on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use ipnet::IpNet;
use podnet_proxy::nft::{Element, Elements, Op, StaleUdpFlow, Transaction};

use crate::dataplane::NodeDataplane;
use crate::net::NetOp;
use crate::nft::Session;
use crate::nlnft;
use crate::observe;
use crate::sys;
use crate::verify::{Drift, Observed};
use crate::NodeError;

/// What a dataplane does to one node.
pub trait Effects {
    /// One nftables transaction: all of it applies, or none.
    fn nft(&mut self, tx: &Transaction) -> Result<(), NodeError>;
    /// One transaction on the NetworkPolicy table.
    fn nft_policy(&mut self, tx: &podnet_policy::Transaction) -> Result<(), NodeError>;
    /// The masquerade table, replaced whole in one transaction.
    fn nft_masquerade(&mut self, m: &crate::dataplane::Masquerade) -> Result<(), NodeError>;
    /// Link, address, route, neighbour and FDB changes, in order.
    fn net(&mut self, ops: &[NetOp]) -> Result<(), NodeError>;
    /// Deletes the conntrack entries of a UDP flow; finding none is fine.
    fn forget_udp_flow(&mut self, flow: &StaleUdpFlow) -> Result<(), NodeError>;
    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), NodeError>;
    /// What the node holds, read from the kernel (not from any record): the parts `want`
    /// names (its settings, device, remote nodes) and podnet's tables.
    fn observe(&mut self, want: &NodeDataplane) -> Result<Observed, NodeError>;
    /// The addresses the kernel's policy table holds an ingress and an egress entry for (the
    /// keys of its two verdict maps), read from the kernel: what a new pod needs before its
    /// CNI ADD returns. By default from a whole [`Effects::observe`].
    fn policy_entries(&mut self, want: &NodeDataplane) -> Result<PolicyEntries, NodeError> {
        let held = self.observe(want)?.held;
        let p = held.policy.unwrap_or_default();
        Ok(PolicyEntries {
            ingress: p.ingress.keys().copied().collect(),
            egress: p.egress.keys().copied().collect(),
        })
    }
    /// A reader of what a verify pass compares, made for `want`, that can run on another
    /// thread while the caller goes on, when these effects read a kernel; None:
    /// [`Effects::observe`] reads everything.
    fn kernel_reader(&self, want: &NodeDataplane) -> Option<KernelReader> {
        let _ = want;
        None
    }
    /// [`Effects::observe`], with what [`KernelReader::read`] read already: the rest of the
    /// read (what it did not read, or read for another `want`) and the checks against `want`.
    fn observe_with(&mut self, want: &NodeDataplane, read: Read) -> Result<Observed, NodeError> {
        let _ = read;
        self.observe(want)
    }
}

/// What a [`KernelReader`] read: podnet's tables and, from a kernel, the rest of what a verify
/// pass compares.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub tables: observe::Tables,
    pub rest: Option<Rest>,
}

impl Read {
    /// Brings the read up to date with a proxy transaction written since it began, when the
    /// transaction changes elements alone; false (the read is then stale) when it does more,
    /// or touches a table the read did not find.
    ///
    /// Each element the read holds was read once, before or after the write (a transaction is
    /// atomic; a read of many sets is not, as a whole). Adding an element sets it and deleting
    /// one removes it, whatever was there: after every transaction since the read began is
    /// replayed in order, each element touched is as the last of them left it, as the kernel
    /// holds it, and every other element is as read.
    pub fn replay(&mut self, tx: &Transaction) -> bool {
        if tx
            .ops
            .iter()
            .any(|op| !matches!(op, Op::AddElements(_) | Op::DeleteElements(_)))
        {
            return false;
        }
        for op in &tx.ops {
            let (removed, added): (&[Element], &[Element]) = match op {
                Op::DeleteElements(v) => (v, &[]),
                Op::AddElements(v) => (&[], v),
                _ => unreachable!("elements alone"),
            };
            for (family, table) in [
                (podnet_model::IpFamily::Ipv4, &mut self.tables.proxy),
                (podnet_model::IpFamily::Ipv6, &mut self.tables.proxy6),
            ] {
                let of = |v: &[Element]| -> Vec<Element> {
                    v.iter().filter(|e| e.family() == family).copied().collect()
                };
                let (removed, added) = (of(removed), of(added));
                if removed.is_empty() && added.is_empty() {
                    continue;
                }
                let Some(t) = table else {
                    return false;
                };
                t.content.patch(&removed, &added);
            }
        }
        true
    }
}

impl From<observe::Tables> for Read {
    fn from(tables: observe::Tables) -> Read {
        Read { tables, rest: None }
    }
}

/// A node's links, routes, neighbours, FDB entries and settings, as read for the device
/// names and settings of a dataplane; interpreted against what the node must hold on the
/// caller's side (cheap: a few small JSON documents).
#[derive(Debug, Clone)]
pub struct Rest {
    names: Names,
    /// The settings asked that could be read, with their values.
    sysctls: BTreeMap<String, String>,
    /// The overlay's link, and its routes (IPv4, IPv6), neighbours and FDB (`ip -j`,
    /// `bridge -j`) when it is there.
    device: Option<netlink_packet_route::link::LinkMessage>,
    overlay: Option<[String; 4]>,
    /// The uplink's routes (IPv4, IPv6) when it is there.
    uplink_routes: Option<[String; 2]>,
}

/// What a [`Rest`] is read for: a dataplane's devices and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    vxlan: String,
    uplink: String,
    sysctls: BTreeSet<String>,
}

impl Names {
    fn of(want: &NodeDataplane) -> Names {
        Names {
            vxlan: want.vxlan.name.clone(),
            uplink: want.vxlan.uplink.clone(),
            sysctls: want.sysctls.keys().cloned().collect(),
        }
    }
}

impl Rest {
    /// Reads them in the network namespace at `netns`.
    fn read(netns: &std::path::Path, names: Names) -> Result<Rest, NodeError> {
        let run = |args: &[&str]| sys::run_in(netns, Command::new(args[0]).args(&args[1..]), None);
        let sysctls = sys::in_netns(netns, || {
            Ok(names
                .sysctls
                .iter()
                .filter_map(|k| {
                    let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
                    Some((
                        k.clone(),
                        std::fs::read_to_string(path).ok()?.trim().to_string(),
                    ))
                })
                .collect())
        })?;
        let dev = names.vxlan.as_str();
        let device = crate::netlink::link(netns, dev)?;
        let overlay = match device {
            Some(_) => Some([
                run(&["ip", "-j", "route", "show", "dev", dev])?,
                run(&["ip", "-j", "-6", "route", "show", "dev", dev])?,
                run(&["ip", "-j", "neigh", "show", "dev", dev])?,
                run(&["bridge", "-j", "fdb", "show", "dev", dev])?,
            ]),
            None => None,
        };
        let uplink = names.uplink.as_str();
        let uplink_routes = match crate::netlink::link(netns, uplink)? {
            Some(_) => Some([
                run(&["ip", "-j", "route", "show", "dev", uplink])?,
                run(&["ip", "-j", "-6", "route", "show", "dev", uplink])?,
            ]),
            None => None,
        };
        Ok(Rest {
            names,
            sysctls,
            device,
            overlay,
            uplink_routes,
        })
    }
}

/// Reads what a verify pass compares (the slow part of reading a node back: the nftables
/// ruleset over netlink, 350–500 ms at 10,000 Services; with the rest, links, routes and
/// settings, 10–30 ms more) on whatever thread calls [`KernelReader::read`], while the agent
/// goes on serving events.
#[derive(Clone)]
pub struct KernelReader(std::sync::Arc<dyn Fn() -> Result<Read, NodeError> + Send + Sync>);

impl std::fmt::Debug for KernelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelReader")
    }
}

impl KernelReader {
    /// A reader that calls `read` (a fake's, in tests).
    pub fn new(read: impl Fn() -> Result<Read, NodeError> + Send + Sync + 'static) -> KernelReader {
        KernelReader(std::sync::Arc::new(read))
    }

    /// The reader of the kernel in the network namespace at `netns`, for `want`'s devices
    /// and settings.
    pub fn kernel(netns: PathBuf, want: &NodeDataplane) -> KernelReader {
        let names = Names::of(want);
        KernelReader::new(move || {
            let rest = Rest::read(&netns, names.clone())?;
            let tables = ruleset_tables(&netns)?;
            Ok(Read {
                tables,
                rest: Some(rest),
            })
        })
    }

    /// What the kernel holds now.
    pub fn read(&self) -> Result<Read, NodeError> {
        (self.0)()
    }
}

/// podnet's tables as the kernel in `netns` holds them.
fn ruleset_tables(netns: &std::path::Path) -> Result<observe::Tables, NodeError> {
    let ruleset = crate::nlnft::ruleset(netns)?;
    observe::tables_of(&ruleset).map_err(|source| NodeError::Unreadable {
        what: "the ruleset".into(),
        source,
    })
}

/// The keys of the policy table's ingress and egress maps, as the kernel holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyEntries {
    pub ingress: BTreeSet<std::net::IpAddr>,
    pub egress: BTreeSet<std::net::IpAddr>,
}

/// The real effects, inside the network namespace at `netns`. nftables transactions go
/// through one long-lived `nft` ([`Session`]), started at the first; a transaction of the
/// proxy's or the policy's elements alone goes to the kernel as one netlink batch instead
/// ([`nlnft::apply`]), with no parser in between.
pub struct Linux {
    pub netns: PathBuf,
    session: Option<Session>,
    netlink: Option<netlink_sys::Socket>,
    seq: u32,
}

impl std::fmt::Debug for Linux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linux")
            .field("netns", &self.netns)
            .field("session", &self.session)
            .finish()
    }
}

impl Linux {
    pub fn at(netns: PathBuf) -> Linux {
        Linux {
            netns,
            session: None,
            netlink: None,
            seq: 0,
        }
    }

    /// The effects inside a named network namespace.
    pub fn named(name: &str) -> Linux {
        Linux::at(sys::netns_path(name))
    }
}

impl Linux {
    /// Hands one nftables transaction, rendered, to the namespace's `nft` session, or to
    /// `nft -f` when it is too big for one line.
    fn nft_script(&mut self, script: Option<String>) -> Result<(), NodeError> {
        let Some(script) = script else {
            return Ok(());
        };
        if Session::fits(&script) {
            if self.session.is_none() {
                self.session = Some(Session::start(&self.netns)?);
            }
            let session = self.session.as_mut().expect("started");
            let done = session.apply(&script);
            if done.is_err() {
                // Whatever went wrong, the next transaction starts on a fresh `nft`.
                self.session = None;
            }
            return done;
        }
        sys::run_in(
            &self.netns,
            Command::new("nft").args(["-f", "-"]),
            Some(script.as_bytes()),
        )
        .map(drop)
    }
}

impl Linux {
    /// A transaction of elements alone as one netlink batch (when it fits one), anything else
    /// as nft's text.
    fn elements_or_script(
        &mut self,
        ops: Option<Vec<podnet_model::nftset::ElementOp>>,
        empty: bool,
        render: impl FnOnce() -> String,
    ) -> Result<(), NodeError> {
        if let Some(ops) = ops.filter(|o| !o.is_empty()) {
            let batch = nlnft::encode(&ops, self.seq);
            self.seq = batch.end.wrapping_add(1);
            if batch.bytes.len() <= nlnft::BATCH_LIMIT {
                return self.netlink_batch(&batch);
            }
        }
        self.nft_script((!empty).then(render))
    }

    /// One batch on the namespace's netfilter socket, opened at the first. After a failure
    /// the next batch starts on a fresh socket (answers left unread stay with the old one).
    fn netlink_batch(&mut self, batch: &nlnft::Batch) -> Result<(), NodeError> {
        if self.netlink.is_none() {
            self.netlink = Some(nlnft::socket(&self.netns)?);
        }
        let done = nlnft::apply(self.netlink.as_ref().expect("opened"), batch);
        if done.is_err() {
            self.netlink = None;
        }
        done
    }
}

impl Effects for Linux {
    /// Two netlink dumps (the maps' elements), not a whole listing.
    fn policy_entries(&mut self, want: &NodeDataplane) -> Result<PolicyEntries, NodeError> {
        let socket = crate::nlnft::socket(&self.netns)?;
        let mut out = PolicyEntries::default();
        for family in want.policy.families() {
            let ty = crate::nlnft::SetType {
                key: vec![match family {
                    podnet_model::IpFamily::Ipv4 => "ipv4_addr".into(),
                    podnet_model::IpFamily::Ipv6 => "ipv6_addr".into(),
                }],
                data: Some(vec!["verdict".into()]),
                interval: false,
            };
            let keys = |map: &str| -> Result<Vec<std::net::IpAddr>, NodeError> {
                Ok(
                    crate::nlnft::elements_of(&socket, family, podnet_policy::TABLE, map, &ty)?
                        .iter()
                        .filter_map(|e| e[0].as_str()?.parse().ok())
                        .collect(),
                )
            };
            out.ingress.extend(keys("ingress")?);
            out.egress.extend(keys("egress")?);
        }
        Ok(out)
    }

    fn nft(&mut self, tx: &Transaction) -> Result<(), NodeError> {
        self.elements_or_script(tx.element_ops(), tx.is_empty(), || tx.render())
    }

    fn nft_policy(&mut self, tx: &podnet_policy::Transaction) -> Result<(), NodeError> {
        self.elements_or_script(tx.element_ops(), tx.is_empty(), || tx.render())
    }

    fn nft_masquerade(&mut self, m: &crate::dataplane::Masquerade) -> Result<(), NodeError> {
        self.nft_script(Some(m.render()))
    }

    fn net(&mut self, ops: &[NetOp]) -> Result<(), NodeError> {
        crate::netlink::apply(&self.netns, ops)
    }

    fn forget_udp_flow(&mut self, flow: &StaleUdpFlow) -> Result<(), NodeError> {
        let mut cmd = Command::new("conntrack");
        cmd.args(["-D", "-p", "udp"]);
        if flow.endpoint.is_ipv6() {
            cmd.args(["-f", "ipv6"]);
        }
        if let Some(vip) = flow.vip {
            cmd.args(["--orig-dst", &vip.to_string()]);
        }
        cmd.args(["--orig-port-dst", &flow.port.to_string()]);
        cmd.args(["--reply-src", &flow.endpoint.to_string()]);
        match sys::run_in(&self.netns, &mut cmd, None) {
            // conntrack exits 1 when it deleted nothing.
            Err(NodeError::Command { stderr, .. }) if stderr.contains("0 flow entries") => Ok(()),
            other => other.map(drop),
        }
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), NodeError> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        sys::in_netns(&self.netns, || {
            std::fs::write(&path, value).map_err(|source| NodeError::Sysctl {
                key: key.to_string(),
                source,
            })
        })
    }

    fn observe(&mut self, want: &NodeDataplane) -> Result<Observed, NodeError> {
        let tables = ruleset_tables(&self.netns)?;
        self.observe_with(want, tables.into())
    }

    fn kernel_reader(&self, want: &NodeDataplane) -> Option<KernelReader> {
        Some(KernelReader::kernel(self.netns.clone(), want))
    }

    fn observe_with(&mut self, want: &NodeDataplane, read: Read) -> Result<Observed, NodeError> {
        // Read for another dataplane's devices or settings: read again.
        let names = Names::of(want);
        let rest = match read.rest {
            Some(r) if r.names == names => r,
            _ => Rest::read(&self.netns, names)?,
        };
        let mut out = Observed::default();
        out.held.sysctls = rest.sysctls.clone();
        observe_overlay(want, &rest, &mut out.held)?;
        self.observe_tables(want, read.tables, &mut out);
        Ok(out)
    }
}

/// The overlay: the device as made, then its entries; the routes to other nodes' pods
/// through the uplink.
fn observe_overlay(
    want: &NodeDataplane,
    rest: &Rest,
    held: &mut crate::Held,
) -> Result<(), NodeError> {
    let device = rest
        .device
        .as_ref()
        .is_some_and(|l| observe::vxlan_matches(l, &want.vxlan));
    if let (true, Some(o)) = (device, &rest.overlay) {
        held.vxlan = Some(want.vxlan.clone());
        held.remotes = observe::remotes(&o[..2], &o[2], &o[3], &want.remotes)?;
    }
    if let Some(routes) = &rest.uplink_routes {
        held.remotes.extend(observe::native_remotes(
            routes,
            want.pod_cidrs(),
            &want.remotes,
        )?);
    }
    held.remotes_certain = true;
    Ok(())
}

impl Linux {
    /// The tables, from the kernel's structure: each whole as podnet made it, or not held.
    fn observe_tables(&self, want: &NodeDataplane, tables: observe::Tables, out: &mut Observed) {
        let mut check =
            |table: &'static str,
             family: &str,
             name: &str,
             rules: Option<(&observe::RuleCounts, &[(String, observe::Unreadable)])>,
             script: &str|
             -> bool {
                let Some((kernel, unreadable)) = rules else {
                    out.notes.push(Drift {
                        table,
                        what: format!("table {family} {name} missing"),
                    });
                    return false;
                };
                let mut bad =
                    observe::rules_differ(kernel, &observe::rules_of_family(script, family, name));
                bad.extend(
                    unreadable
                        .iter()
                        .map(|(set, why)| format!("not podnet's: {set}: {why}")),
                );
                for what in &bad {
                    out.notes.push(Drift {
                        table,
                        what: what.clone(),
                    });
                }
                bad.is_empty()
            };
        let skeleton = podnet_proxy::nft::Transaction {
            ops: want
                .proxy
                .families()
                .into_iter()
                .map(Op::CreateTable)
                .chain(
                    want.proxy
                        .timeouts()
                        .into_iter()
                        .map(|(f, t)| Op::AddAffinityMaps(f, t)),
                )
                .chain(want.proxy.chains().into_iter().map(Op::AddChain))
                .collect(),
        }
        .render();
        let proxy_ok = check(
            "proxy",
            "ip",
            podnet_proxy::nft::TABLE,
            tables.proxy.as_ref().map(observe::Table::checked),
            &skeleton,
        );
        // The ip6 table where the cluster has IPv6; its content joins the ip table's.
        let proxy6_ok = !want.proxy.ipv6
            || check(
                "proxy",
                "ip6",
                podnet_proxy::nft::TABLE,
                tables.proxy6.as_ref().map(observe::Table::checked),
                &skeleton,
            );
        let policy_skeleton = podnet_policy::PolicyPlan {
            groups: want
                .policy
                .groups
                .keys()
                .map(|g| (*g, Default::default()))
                .collect(),
            layouts: want.policy.layouts.clone(),
            ipv6: want.policy.ipv6,
            sample: want.policy.sample,
            ..Default::default()
        };
        let policy_script = podnet_policy::Transaction::create(&policy_skeleton).render();
        let policy_ok = check(
            "policy",
            "ip",
            podnet_policy::TABLE,
            tables.policy.as_ref().map(observe::Table::checked),
            &policy_script,
        );
        let policy6_ok = !want.policy.ipv6
            || check(
                "policy",
                "ip6",
                podnet_policy::TABLE,
                tables.policy6.as_ref().map(observe::Table::checked),
                &policy_script,
            );
        let masq_ok = match &want.masquerade {
            Some(m) => {
                let script = m.render();
                let v4 = !m.ipv4()
                    || check(
                        "masquerade",
                        "ip",
                        crate::dataplane::MASQ_TABLE,
                        tables.masquerade.as_ref().map(observe::Table::checked),
                        &script,
                    );
                let v6 = !m.ipv6()
                    || check(
                        "masquerade",
                        "ip6",
                        crate::dataplane::MASQ_TABLE,
                        tables.masquerade6.as_ref().map(observe::Table::checked),
                        &script,
                    );
                v4 && v6
            }
            None => false,
        };
        let held = &mut out.held;
        held.proxy = match (tables.proxy, proxy_ok && proxy6_ok) {
            (Some(t), true) => {
                let mut content = t.content;
                if want.proxy.ipv6 {
                    let six = tables.proxy6.map(|t| t.content).unwrap_or_default();
                    let elements: Vec<_> = six.iter().collect();
                    content.patch(&[], &elements);
                    content.ipv6 = true;
                }
                Some(content)
            }
            _ => None,
        };
        held.policy = match (tables.policy, policy_ok && policy6_ok) {
            (Some(t), true) => {
                let mut content = t.content;
                if want.policy.ipv6 {
                    // The ip6 table's maps, local ranges and group elements join the ip
                    // table's (the groups are the same in both).
                    let six = tables.policy6.map(|t| t.content).unwrap_or_default();
                    content.ingress.extend(six.ingress);
                    content.egress.extend(six.egress);
                    content.local.extend(six.local);
                    for (g, rects) in six.groups {
                        content.groups.entry(g).or_default().extend(rects);
                    }
                    for (g, map) in six.tiers {
                        content.tiers.entry(g).or_default().extend(map);
                    }
                    content.ipv6 = true;
                }
                Some(content)
            }
            _ => None,
        };
        held.masquerade = want.masquerade.clone().filter(|_| masq_ok);
    }
}

/// Effects shared with whoever else holds them (a test that watches a fake while the agent's
/// loop drives it, or heals it half-way).
#[derive(Debug, Default, Clone)]
pub struct Shared<E>(pub std::sync::Arc<std::sync::Mutex<E>>);

impl<E> Shared<E> {
    pub fn new(e: E) -> Shared<E> {
        Shared(std::sync::Arc::new(std::sync::Mutex::new(e)))
    }

    /// The effects, for a look or a change.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, E> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<E: Effects> Effects for Shared<E> {
    fn nft(&mut self, tx: &Transaction) -> Result<(), NodeError> {
        self.lock().nft(tx)
    }
    fn nft_policy(&mut self, tx: &podnet_policy::Transaction) -> Result<(), NodeError> {
        self.lock().nft_policy(tx)
    }
    fn nft_masquerade(&mut self, m: &crate::dataplane::Masquerade) -> Result<(), NodeError> {
        self.lock().nft_masquerade(m)
    }
    fn net(&mut self, ops: &[NetOp]) -> Result<(), NodeError> {
        self.lock().net(ops)
    }
    fn forget_udp_flow(&mut self, flow: &StaleUdpFlow) -> Result<(), NodeError> {
        self.lock().forget_udp_flow(flow)
    }
    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), NodeError> {
        self.lock().sysctl(key, value)
    }
    fn observe(&mut self, want: &NodeDataplane) -> Result<Observed, NodeError> {
        self.lock().observe(want)
    }
    fn policy_entries(&mut self, want: &NodeDataplane) -> Result<PolicyEntries, NodeError> {
        self.lock().policy_entries(want)
    }
    fn kernel_reader(&self, want: &NodeDataplane) -> Option<KernelReader> {
        self.lock().kernel_reader(want)
    }
    fn observe_with(&mut self, want: &NodeDataplane, read: Read) -> Result<Observed, NodeError> {
        self.lock().observe_with(want, read)
    }
}

/// One call the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Nft(Transaction),
    NftPolicy(podnet_policy::Transaction),
    NftMasquerade(crate::dataplane::Masquerade),
    Net(Vec<NetOp>),
    ForgetUdpFlow(StaleUdpFlow),
    Sysctl(String, String),
}

/// Which calls fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fail {
    Nft,
    Net,
    ForgetUdpFlow,
    Sysctl,
}

/// A recording fake: it keeps every call, and the state a kernel would hold after them (the
/// proxy's elements, the routes, neighbours, FDB entries, links and sysctls), so that a test
/// can compare it with what was asked. `fail` makes the next calls of a kind fail without an
/// effect.
#[derive(Debug, Default, Clone)]
pub struct Recording {
    pub calls: Vec<Call>,
    pub fail: BTreeSet<Fail>,
    /// Whether the proxy's table exists, and its elements.
    pub table: Option<Elements>,
    /// Whether the policy table exists, and what it holds.
    pub policy: Option<podnet_policy::PolicyPlan>,
    /// Whether the masquerade table exists, and what it holds.
    pub masquerade: Option<crate::dataplane::Masquerade>,
    pub links: BTreeSet<String>,
    pub routes: BTreeMap<IpNet, (Vec<IpAddr>, Option<String>)>,
    pub neighbours: BTreeSet<(IpAddr, String)>,
    pub fdb: BTreeSet<(String, String, IpAddr)>,
    pub sysctls: BTreeMap<String, String>,
    pub forgotten: Vec<StaleUdpFlow>,
}

impl Recording {
    pub fn failing(mut self, f: Fail) -> Recording {
        self.fail.insert(f);
        self
    }

    pub fn heal(&mut self) {
        self.fail.clear();
    }

    fn check(&self, f: Fail, what: &str) -> Result<(), NodeError> {
        if self.fail.contains(&f) {
            Err(NodeError::Command {
                cmd: what.to_string(),
                status: Some(1),
                stderr: "failed on purpose (test)".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Effects for Recording {
    fn nft(&mut self, tx: &Transaction) -> Result<(), NodeError> {
        self.calls.push(Call::Nft(tx.clone()));
        self.check(Fail::Nft, "nft -f -")?;
        // Check the whole transaction first: the kernel applies all of it or none.
        let mut table = self.table.clone();
        for op in &tx.ops {
            match op {
                Op::CreateTable(podnet_model::IpFamily::Ipv4) => {
                    table = Some(Elements {
                        ipv6: table.as_ref().is_some_and(|t| t.ipv6),
                        ..Default::default()
                    })
                }
                Op::CreateTable(podnet_model::IpFamily::Ipv6) => {
                    // The ip6 table made again: its elements go, the ip table's stay.
                    let t = table.get_or_insert_with(Elements::default);
                    let gone: Vec<Element> = t
                        .iter()
                        .filter(|e| e.family() == podnet_model::IpFamily::Ipv6)
                        .collect();
                    t.patch(&gone, &[]);
                    t.ipv6 = true;
                }
                Op::AddAffinityMaps(..) | Op::AddChain(_) => {
                    if table.is_none() {
                        return Err(no_table());
                    }
                }
                Op::DeleteElements(v) => {
                    let t = table.as_mut().ok_or_else(no_table)?;
                    for e in v {
                        if !remove(t, e) {
                            return Err(NodeError::Command {
                                cmd: "nft -f -".into(),
                                status: Some(1),
                                stderr: format!(
                                    "Could not process rule: No such file or directory: {e}"
                                ),
                            });
                        }
                    }
                }
                Op::AddElements(v) => {
                    let t = table.as_mut().ok_or_else(no_table)?;
                    for e in v {
                        insert(t, e);
                    }
                }
            }
        }
        self.table = table;
        Ok(())
    }

    fn nft_policy(&mut self, tx: &podnet_policy::Transaction) -> Result<(), NodeError> {
        self.calls.push(Call::NftPolicy(tx.clone()));
        self.check(Fail::Nft, "nft -f -")?;
        self.policy = Some(policy_after(self.policy.clone(), tx)?);
        Ok(())
    }

    fn nft_masquerade(&mut self, m: &crate::dataplane::Masquerade) -> Result<(), NodeError> {
        self.calls.push(Call::NftMasquerade(m.clone()));
        self.check(Fail::Nft, "nft -f -")?;
        self.masquerade = Some(m.clone());
        Ok(())
    }

    fn net(&mut self, ops: &[NetOp]) -> Result<(), NodeError> {
        self.calls.push(Call::Net(ops.to_vec()));
        self.check(Fail::Net, "ip -batch -")?;
        for op in ops {
            match op {
                NetOp::Vxlan(d) => {
                    self.links.insert(d.name.clone());
                }
                NetOp::Bridge { name } | NetOp::Veth { name, .. } => {
                    self.links.insert(name.clone());
                }
                NetOp::DeleteLink { name } => {
                    self.links.remove(name);
                    self.routes.retain(|_, (_, dev)| dev.as_ref() != Some(name));
                    self.neighbours.retain(|(_, dev)| dev != name);
                    self.fdb.retain(|(_, dev, _)| dev != name);
                }
                NetOp::Route { dst, via, dev, .. } => {
                    self.routes.insert(*dst, (via.clone(), dev.clone()));
                }
                NetOp::DeleteRoute { dst } => {
                    self.routes.remove(dst);
                }
                NetOp::Neighbour { ip, dev, .. } => {
                    self.neighbours.insert((*ip, dev.clone()));
                }
                NetOp::DeleteNeighbour { ip, dev } => {
                    self.neighbours.remove(&(*ip, dev.clone()));
                }
                NetOp::Fdb { mac, dev, dst } => {
                    self.fdb.insert((mac.to_string(), dev.clone(), *dst));
                }
                NetOp::DeleteFdb { mac, dev, dst } => {
                    self.fdb.remove(&(mac.to_string(), dev.clone(), *dst));
                }
                NetOp::LoopbackUp | NetOp::Up { .. } | NetOp::Address { .. } => {}
            }
        }
        Ok(())
    }

    fn forget_udp_flow(&mut self, flow: &StaleUdpFlow) -> Result<(), NodeError> {
        self.calls.push(Call::ForgetUdpFlow(*flow));
        self.check(Fail::ForgetUdpFlow, "conntrack -D")?;
        self.forgotten.push(*flow);
        Ok(())
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<(), NodeError> {
        self.calls.push(Call::Sysctl(key.into(), value.into()));
        self.check(Fail::Sysctl, "sysctl")?;
        self.sysctls.insert(key.into(), value.into());
        Ok(())
    }

    /// What the fake's kernel holds, as [`Linux::observe`] reads a real one.
    fn observe(&mut self, want: &NodeDataplane) -> Result<Observed, NodeError> {
        let dev = &want.vxlan.name;
        let device = self.links.contains(dev);
        // Routed natively: a route on the uplink, read as the kernel's are.
        let native: BTreeSet<crate::dataplane::RemoteNode> = self
            .routes
            .iter()
            .filter(|(_, (_, d))| d.as_deref() == Some(want.vxlan.uplink.as_str()))
            .filter_map(|(dst, (via, _))| {
                observe::native_remote(*dst, *via.first()?, want.pod_cidrs(), &want.remotes)
            })
            .collect();
        let mut remotes: BTreeSet<crate::dataplane::RemoteNode> = if device {
            // A remote node is there when its route, neighbour and FDB entry all are.
            self.routes
                .iter()
                .filter(|(_, (_, d))| d.as_deref() == Some(dev.as_str()))
                .filter_map(|(dst, (via, _))| {
                    let gw = *via.first()?;
                    let w = want
                        .remotes
                        .iter()
                        .find(|r| r.pod_cidr == *dst && r.vtep.ip == gw);
                    let r = w.cloned().unwrap_or(crate::dataplane::RemoteNode {
                        name: "?".into(),
                        pod_cidr: *dst,
                        vtep: crate::dataplane::Vtep {
                            node_ip: gw,
                            ip: gw,
                            mac: crate::dataplane::MacAddr([0; 6]),
                        },
                        gateway: None,
                    });
                    let complete = self.neighbours.contains(&(r.vtep.ip, dev.clone()))
                        && self.fdb.contains(&(
                            r.vtep.mac.to_string(),
                            dev.clone(),
                            r.vtep.node_ip,
                        ));
                    complete.then_some(r)
                })
                .collect()
        } else {
            Default::default()
        };
        remotes.extend(native);
        Ok(Observed {
            held: crate::apply::Held {
                sysctls: self
                    .sysctls
                    .iter()
                    .filter(|(k, _)| want.sysctls.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                vxlan: device.then(|| want.vxlan.clone()),
                remotes,
                remotes_certain: true,
                proxy: self.table.clone(),
                policy: self.policy.clone(),
                masquerade: self.masquerade.clone(),
                stale_flows: Default::default(),
            },
            notes: Vec::new(),
        })
    }
}

fn no_table() -> NodeError {
    NodeError::Command {
        cmd: "nft -f -".into(),
        status: Some(1),
        stderr: "No such file or directory: table ip podnet-proxy".into(),
    }
}

fn insert(t: &mut Elements, e: &Element) {
    match *e {
        Element::Service(k, v) => {
            t.services.insert(k, v);
        }
        Element::NodePort(k, v) => {
            t.node_ports.insert(k, v);
        }
        Element::Backend(k, v) => {
            t.backends.insert(k, v);
        }
        Element::NoEndpoints(k) => {
            t.no_endpoints.insert(k);
        }
        Element::NoEndpointPort(k) => {
            t.no_endpoint_ports.insert(k);
        }
        Element::Hairpin(ip) => {
            t.hairpin.insert(ip);
        }
    }
}

/// Deletes an element by key, as nft does; false when there is none.
fn remove(t: &mut Elements, e: &Element) -> bool {
    match e {
        Element::Service(k, _) => t.services.remove(k).is_some(),
        Element::NodePort(k, _) => t.node_ports.remove(k).is_some(),
        Element::Backend(k, _) => t.backends.remove(k).is_some(),
        Element::NoEndpoints(k) => t.no_endpoints.remove(k),
        Element::NoEndpointPort(k) => t.no_endpoint_ports.remove(k),
        Element::Hairpin(ip) => t.hairpin.remove(ip),
    }
}

/// The policy table after a transaction, as the kernel would hold it; an error (and no
/// change) for one it would refuse: a missing table, group or element.
fn policy_after(
    table: Option<podnet_policy::PolicyPlan>,
    tx: &podnet_policy::Transaction,
) -> Result<podnet_policy::PolicyPlan, NodeError> {
    let refuse = |what: podnet_policy::Missing| NodeError::Command {
        cmd: "nft -f -".into(),
        status: Some(1),
        stderr: format!(
            "Could not process rule: No such file or directory: {}",
            what.0
        ),
    };
    let starts = matches!(tx.ops.first(), Some(podnet_policy::Op::CreateTable(_)));
    let mut t = match table {
        Some(t) => t,
        None if starts => Default::default(),
        None => {
            return Err(refuse(podnet_policy::Missing(
                "table ip podnet-policy".into(),
            )))
        }
    };
    t.apply(tx).map_err(refuse)?;
    Ok(t)
}
