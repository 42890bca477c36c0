//! Making a node hold its dataplane: the difference between what it holds and what it must
//! hold, issued in an order that never drops traffic.
//!
//! 1. kernel settings;
//! 2. the VXLAN device, when the node has none (or another one);
//! 3. routes, neighbours and FDB entries of new remote nodes (a route on the uplink alone for
//!    those routed natively): their pods become reachable before the proxy sends anything to
//!    them;
//! 4. NetworkPolicy: one nftables transaction on its own table, before the proxy sends to new
//!    endpoints; then the proxy: one nftables transaction (the whole table on a node's first time, only the
//!    changed elements after that), so no frontend is ever half-programmed;
//! 5. the conntrack entries of UDP flows to backends that left (kube-proxy does the same:
//!    without it a client reusing its socket keeps going to the gone endpoint);
//! 6. routes, neighbours and FDB entries of remote nodes that left, after the proxy stopped
//!    sending to them.
//!
//! The caller creates new pods before and removes leaving pods after an apply.
//!
//! Every step runs even when an earlier one failed (but for the remotes, which need the
//! device), and every failure is reported. What the node is known to hold afterwards is
//! returned either way, so that the next apply repairs what failed: a failed nftables
//! transaction changed nothing; routes of a failed batch are treated as maybe there (re-added
//! with `replace`, removed tolerating their absence); owed conntrack deletions are kept.

use std::collections::{BTreeMap, BTreeSet};

use podnet_proxy::nft::{Elements, Op, StaleUdpFlow, Transaction};
use serde::{Deserialize, Serialize};

use crate::dataplane::{NodeDataplane, RemoteNode, VxlanDevice};
use crate::effects::Effects;
use crate::live::Delta;
use crate::net::NetOp;
use crate::NodeError;

/// What a node holds, as far as podnet knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub sysctls: BTreeMap<String, String>,
    pub vxlan: Option<VxlanDevice>,
    /// Remote nodes whose entries are there, or may be (see `remotes_certain`).
    pub remotes: BTreeSet<RemoteNode>,
    /// False after a failed batch: every wanted remote is then written again.
    pub remotes_certain: bool,
    /// The proxy's table: None before the first load.
    pub proxy: Option<Elements>,
    /// The policy table: None before the first load.
    #[serde(default)]
    pub policy: Option<podnet_policy::PolicyPlan>,
    /// The masquerade table: None before the first load.
    #[serde(default)]
    pub masquerade: Option<crate::dataplane::Masquerade>,
    /// Conntrack deletions still owed.
    pub stale_flows: BTreeSet<StaleUdpFlow>,
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub sysctls: usize,
    pub created_vxlan: bool,
    pub remotes_added: usize,
    pub remotes_removed: usize,
    /// Elements added and deleted by the proxy's transaction; None when it had nothing to do.
    pub proxy_elements: Option<(usize, usize)>,
    /// Whether the policy table changed.
    pub policy_changed: bool,
    /// Whether the masquerade table was replaced.
    pub masquerade_replaced: bool,
    pub flows_forgotten: usize,
}

impl Report {
    /// Whether nothing was written but the proxy's transaction (and conntrack deletions):
    /// no setting, link, route, neighbour or FDB entry, and no other table.
    pub fn proxy_alone(&self) -> bool {
        self.sysctls == 0
            && !self.created_vxlan
            && self.remotes_added == 0
            && self.remotes_removed == 0
            && !self.policy_changed
            && !self.masquerade_replaced
    }
}

/// The outcome of an apply: what the node now holds, what was done, and every failure.
#[derive(Debug)]
pub struct Applied {
    pub held: Held,
    pub report: Report,
    pub failures: Vec<NodeError>,
}

/// The entries of a remote node: over the overlay device `dev`, a permanent neighbour, an FDB
/// entry and a route via the VTEP; routed natively, one route via the node's address on the
/// uplink (on-link: the nodes share one L2 segment).
fn remote_entries(r: &RemoteNode, v: &VxlanDevice) -> Vec<NetOp> {
    let dev = &v.name;
    match r.gateway {
        Some(gw) => vec![NetOp::Route {
            dst: r.pod_cidr,
            via: vec![gw],
            dev: Some(v.uplink.clone()),
            onlink: true,
        }],
        None => vec![
            NetOp::Neighbour {
                ip: r.vtep.ip,
                mac: r.vtep.mac,
                dev: dev.into(),
            },
            NetOp::Fdb {
                mac: r.vtep.mac,
                dev: dev.into(),
                dst: r.vtep.node_ip,
            },
            NetOp::Route {
                dst: r.pod_cidr,
                via: vec![r.vtep.ip],
                dev: Some(dev.into()),
                onlink: true,
            },
        ],
    }
}

/// Removes a remote node's entries, but for those a wanted remote still uses: its route when a
/// wanted remote routes the same pod CIDR (the node changed between native and overlay: the
/// route was replaced in step 3), its FDB entry when a wanted remote over the overlay shares
/// it (a dual-stack node's families).
fn remote_removals(r: &RemoteNode, dev: &str, want: &BTreeSet<RemoteNode>) -> Vec<NetOp> {
    let mut ops = Vec::new();
    if !want.iter().any(|w| w.pod_cidr == r.pod_cidr) {
        ops.push(NetOp::DeleteRoute { dst: r.pod_cidr });
    }
    if r.gateway.is_none() {
        let overlay = || want.iter().filter(|w| w.gateway.is_none());
        if !overlay().any(|w| w.vtep.ip == r.vtep.ip) {
            ops.push(NetOp::DeleteNeighbour {
                ip: r.vtep.ip,
                dev: dev.into(),
            });
        }
        if !overlay().any(|w| w.vtep.mac == r.vtep.mac && w.vtep.node_ip == r.vtep.node_ip) {
            ops.push(NetOp::DeleteFdb {
                mac: r.vtep.mac,
                dev: dev.into(),
                dst: r.vtep.node_ip,
            });
        }
    }
    ops
}

/// Makes the node hold `want`, from what it holds (`held`).
pub fn apply(held: &Held, want: &NodeDataplane, fx: &mut dyn Effects) -> Applied {
    apply_as(held.clone(), want, None, fx)
}

/// Makes the node hold `want` when it holds what the caller wanted before (`held`, as the
/// last apply without a failure left it) and `delta` is the change from that to `want`: the
/// agent's incremental path. Only the delta's transactions are issued; the policy table only
/// when the delta says it changed. A table the node does not hold yet is loaded whole.
pub fn apply_delta(
    held: Held,
    want: &NodeDataplane,
    delta: &Delta,
    fx: &mut dyn Effects,
) -> Applied {
    apply_as(held, want, Some(delta), fx)
}

fn apply_as(
    held: Held,
    want: &NodeDataplane,
    delta: Option<&Delta>,
    fx: &mut dyn Effects,
) -> Applied {
    let mut run = Run {
        now: held,
        report: Report::default(),
        failures: Vec::new(),
        fx,
    };
    run.settings(want);
    run.device(want);
    run.masquerade(want);
    // The remotes need the device.
    let has_device = run.now.vxlan.is_some();
    let added = has_device && run.add_remotes(want);
    // Policy before the proxy: a new endpoint's policy is in force before traffic goes to it.
    if delta.is_none_or(|d| d.policy) || run.now.policy.is_none() {
        run.policy(want);
    }
    match delta {
        Some(d) if run.now.proxy.is_some() => run.proxy_delta(d),
        _ => run.proxy(want),
    }
    run.forget_stale_flows();
    if has_device {
        let removed = run.remove_remotes(want);
        if added && removed {
            // Every wanted entry was written and every other one removed.
            run.now.remotes_certain = true;
        }
    }
    Applied {
        held: run.now,
        report: run.report,
        failures: run.failures,
    }
}

/// One apply under way: what the node holds so far, and what happened.
struct Run<'a> {
    now: Held,
    report: Report,
    failures: Vec<NodeError>,
    fx: &'a mut dyn Effects,
}

impl Run<'_> {
    /// 1. Kernel settings.
    fn settings(&mut self, want: &NodeDataplane) {
        for (k, v) in &want.sysctls {
            if self.now.sysctls.get(k) == Some(v) {
                continue;
            }
            match self.fx.sysctl(k, v) {
                Ok(()) => {
                    self.now.sysctls.insert(k.clone(), v.clone());
                    self.report.sysctls += 1;
                }
                Err(e) => self.failures.push(e),
            }
        }
    }

    /// 2. The VXLAN device. A new one starts without entries.
    fn device(&mut self, want: &NodeDataplane) {
        if self.now.vxlan.as_ref() == Some(&want.vxlan) {
            return;
        }
        let mut ops = vec![NetOp::DeleteLink {
            name: want.vxlan.name.clone(),
        }];
        if let Some(old) = &self.now.vxlan {
            ops.push(NetOp::DeleteLink {
                name: old.name.clone(),
            });
        }
        ops.push(NetOp::Vxlan(want.vxlan.clone()));
        self.now.vxlan = None;
        match self.fx.net(&ops) {
            Ok(()) => {
                self.now.vxlan = Some(want.vxlan.clone());
                self.now.remotes.clear();
                self.now.remotes_certain = true;
                self.report.created_vxlan = true;
            }
            Err(e) => self.failures.push(e),
        }
    }

    /// 2b. The masquerade table, replaced whole when it differs (it is two rules).
    fn masquerade(&mut self, want: &NodeDataplane) {
        if self.now.masquerade == want.masquerade {
            return;
        }
        let Some(m) = &want.masquerade else {
            return; // An IPv6 cluster: nothing to masquerade here.
        };
        match self.fx.nft_masquerade(m) {
            Ok(()) => {
                self.now.masquerade = Some(m.clone());
                self.report.masquerade_replaced = true;
            }
            Err(e) => self.failures.push(e),
        }
    }

    /// 3. New remote nodes (all wanted ones when unsure what is there). True on success.
    fn add_remotes(&mut self, want: &NodeDataplane) -> bool {
        let adding: Vec<RemoteNode> = want
            .remotes
            .iter()
            .filter(|r| !self.now.remotes_certain || !self.now.remotes.contains(r))
            .cloned()
            .collect();
        if adding.is_empty() {
            return true;
        }
        let ops: Vec<NetOp> = adding
            .iter()
            .flat_map(|r| remote_entries(r, &want.vxlan))
            .collect();
        let n = adding.len();
        self.now.remotes.extend(adding);
        self.remotes_changed(ops, |r| r.remotes_added = n)
    }

    /// 6. Remote nodes that left. True on success.
    fn remove_remotes(&mut self, want: &NodeDataplane) -> bool {
        let leaving: Vec<RemoteNode> = self
            .now
            .remotes
            .difference(&want.remotes)
            .cloned()
            .collect();
        if leaving.is_empty() {
            return true;
        }
        let dev = &want.vxlan.name;
        let ops: Vec<NetOp> = leaving
            .iter()
            .flat_map(|r| remote_removals(r, dev, &want.remotes))
            .collect();
        let ok = self.remotes_changed(ops, |r| r.remotes_removed = leaving.len());
        if ok {
            for r in &leaving {
                self.now.remotes.remove(r);
            }
        }
        ok
    }

    /// Issues route, neighbour and FDB changes; on failure the remotes are uncertain.
    fn remotes_changed(&mut self, ops: Vec<NetOp>, count: impl FnOnce(&mut Report)) -> bool {
        match self.fx.net(&ops) {
            Ok(()) => {
                count(&mut self.report);
                true
            }
            Err(e) => {
                self.now.remotes_certain = false;
                self.failures.push(e);
                false
            }
        }
    }

    /// 4a. NetworkPolicy, in one transaction.
    fn policy(&mut self, want: &NodeDataplane) {
        let tx = match &self.now.policy {
            None => podnet_policy::Transaction::create(&want.policy),
            Some(old) => podnet_policy::Transaction::update(old, &want.policy),
        };
        if tx.is_empty() {
            return;
        }
        match self.fx.nft_policy(&tx) {
            Ok(()) => {
                // What the kernel holds now: the held table with the transaction applied
                // (a copy of the whole only when that cannot be).
                let applied = self
                    .now
                    .policy
                    .as_mut()
                    .is_some_and(|held| held.apply(&tx).is_ok());
                debug_assert!(!applied || self.now.policy.as_ref() == Some(&want.policy));
                if !applied {
                    self.now.policy = Some(want.policy.clone());
                }
                self.report.policy_changed = true;
            }
            Err(e) => {
                // The kernel refused the change (all of it: one transaction), so its table is
                // not the one held (someone changed it, or an older podnet made it another
                // shape): the next apply replaces it whole, in one transaction.
                self.now.policy = None;
                self.failures.push(e);
            }
        }
    }

    /// 4b. The proxy, in one transaction: the change from the table held.
    fn proxy(&mut self, want: &NodeDataplane) {
        let tx = match &self.now.proxy {
            None => Transaction::create(&want.proxy),
            Some(old) => Transaction::update(old, &want.proxy),
        };
        if tx.is_empty() {
            return;
        }
        let counts = tx.ops.iter().fold((0, 0), |(a, d), op| match op {
            Op::AddElements(v) => (a + v.len(), d),
            Op::DeleteElements(v) => (a, d + v.len()),
            _ => (a, d),
        });
        match self.fx.nft(&tx) {
            Ok(()) => {
                if let Some(old) = &self.now.proxy {
                    let stale = old.stale_udp_flows(&want.proxy);
                    self.now.stale_flows.extend(stale);
                }
                self.now.proxy = Some(want.proxy.clone());
                self.report.proxy_elements = Some(counts);
            }
            Err(e) => self.failures.push(e),
        }
    }

    /// 4b. The proxy, in one transaction: the change the caller computed.
    fn proxy_delta(&mut self, delta: &Delta) {
        let Some(tx) = &delta.proxy else {
            return;
        };
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        for op in &tx.ops {
            match op {
                Op::AddElements(v) => added.extend_from_slice(v),
                Op::DeleteElements(v) => removed.extend_from_slice(v),
                _ => {}
            }
        }
        match self.fx.nft(tx) {
            Ok(()) => {
                let table = self.now.proxy.as_mut().expect("held");
                table.patch(&removed, &added);
                self.now
                    .stale_flows
                    .extend(delta.stale_flows.iter().copied());
                self.report.proxy_elements = Some((added.len(), removed.len()));
            }
            Err(e) => self.failures.push(e),
        }
    }

    /// 5. Conntrack entries of UDP flows to gone backends, including those still owed.
    fn forget_stale_flows(&mut self) {
        for flow in self.now.stale_flows.clone() {
            match self.fx.forget_udp_flow(&flow) {
                Ok(()) => {
                    self.now.stale_flows.remove(&flow);
                    self.report.flows_forgotten += 1;
                }
                Err(e) => self.failures.push(e),
            }
        }
    }
}

/// Brings a node back to what it held before (`before`), from what it holds now (`now`):
/// the rollback of a change that failed half-way. The same applier, so the same order and the
/// same repair of failures.
pub fn restore(now: &Held, before: &Held, node: &str, fx: &mut dyn Effects) -> Applied {
    let Some(vxlan) = before.vxlan.clone().or_else(|| now.vxlan.clone()) else {
        // The node never had a dataplane: nothing to go back to.
        return Applied {
            held: now.clone(),
            report: Report::default(),
            failures: Vec::new(),
        };
    };
    let want = NodeDataplane {
        node: node.to_string(),
        sysctls: before.sysctls.clone(),
        pod_mtu: crate::dataplane::OVERLAY_MTU,
        vxlan,
        remotes: before.remotes.clone(),
        proxy: before.proxy.clone().unwrap_or_default(),
        policy: before.policy.clone().unwrap_or_default(),
        health_checks: Vec::new(),
        masquerade: before.masquerade.clone().or_else(|| now.masquerade.clone()),
        serves_external: Default::default(),
    };
    apply(now, &want, fx)
}
