//! Making a node hold its dataplane: the difference between what it holds and what it must
//! hold, issued in an order that never drops traffic.
//!
//! 1. kernel settings;
//! 2. the VXLAN device, when the node has none (or another one);
//! 3. routes, neighbours and FDB entries of new remote nodes: their pods become reachable
//!    before the proxy sends anything to them;
//! 4. the proxy: one nftables transaction (the whole table on a node's first time, only the
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

use podnet_proxy::nft::{Elements, StaleUdpFlow, Transaction};
use serde::{Deserialize, Serialize};

use crate::dataplane::{NodeDataplane, RemoteNode, VxlanDevice};
use crate::effects::Effects;
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
    pub flows_forgotten: usize,
}

/// The outcome of an apply: what the node now holds, what was done, and every failure.
#[derive(Debug)]
pub struct Applied {
    pub held: Held,
    pub report: Report,
    pub failures: Vec<NodeError>,
}

impl Applied {
    /// Ok when nothing failed, else one error listing every failure.
    pub fn outcome(&self) -> Result<(), String> {
        match self.failures.as_slice() {
            [] => Ok(()),
            [one] => Err(crate::chain(one)),
            many => Err(format!(
                "{} failures:\n  {}",
                many.len(),
                many.iter()
                    .map(|e| crate::chain(e))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )),
        }
    }
}

fn remote_entries(r: &RemoteNode, dev: &str) -> [NetOp; 3] {
    [
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
    ]
}

fn remote_removals(r: &RemoteNode, dev: &str) -> [NetOp; 3] {
    [
        NetOp::DeleteRoute { dst: r.pod_cidr },
        NetOp::DeleteNeighbour {
            ip: r.vtep.ip,
            dev: dev.into(),
        },
        NetOp::DeleteFdb {
            mac: r.vtep.mac,
            dev: dev.into(),
            dst: r.vtep.node_ip,
        },
    ]
}

/// Makes the node hold `want`, from what it holds (`held`).
pub fn apply(held: &Held, want: &NodeDataplane, fx: &mut dyn Effects) -> Applied {
    let mut now = held.clone();
    let mut report = Report::default();
    let mut failures = Vec::new();

    // 1. Kernel settings.
    for (k, v) in &want.sysctls {
        if held.sysctls.get(k) != Some(v) {
            match fx.sysctl(k, v) {
                Ok(()) => {
                    now.sysctls.insert(k.clone(), v.clone());
                    report.sysctls += 1;
                }
                Err(e) => failures.push(e),
            }
        }
    }

    // 2. The device. A new one starts without entries.
    let dev = want.vxlan.name.clone();
    if held.vxlan.as_ref() != Some(&want.vxlan) {
        let mut ops = vec![NetOp::DeleteLink { name: dev.clone() }];
        if let Some(old) = &held.vxlan {
            ops.push(NetOp::DeleteLink {
                name: old.name.clone(),
            });
        }
        ops.push(NetOp::Vxlan(want.vxlan.clone()));
        now.vxlan = None;
        match fx.net(&ops) {
            Ok(()) => {
                now.vxlan = Some(want.vxlan.clone());
                now.remotes.clear();
                now.remotes_certain = true;
                report.created_vxlan = true;
            }
            Err(e) => failures.push(e),
        }
    }
    let have_device = now.vxlan.is_some();

    // 3. New remote nodes.
    let mut remotes_written = true;
    if have_device {
        let adding: Vec<&RemoteNode> = want
            .remotes
            .iter()
            .filter(|r| !now.remotes_certain || !now.remotes.contains(r))
            .collect();
        if !adding.is_empty() {
            let ops: Vec<NetOp> = adding
                .iter()
                .flat_map(|r| remote_entries(r, &dev))
                .collect();
            now.remotes.extend(adding.iter().map(|r| (*r).clone()));
            match fx.net(&ops) {
                Ok(()) => report.remotes_added = adding.len(),
                Err(e) => {
                    now.remotes_certain = false;
                    remotes_written = false;
                    failures.push(e);
                }
            }
        }
    }

    // 4. The proxy, in one transaction.
    let tx = match &held.proxy {
        None => Transaction::create(&want.proxy),
        Some(old) => Transaction::update(old, &want.proxy),
    };
    if !tx.is_empty() {
        let counts = tx.ops.iter().fold((0, 0), |(a, d), op| match op {
            podnet_proxy::nft::Op::AddElements(v) => (a + v.len(), d),
            podnet_proxy::nft::Op::DeleteElements(v) => (a, d + v.len()),
            _ => (a, d),
        });
        match fx.nft(&tx) {
            Ok(()) => {
                if let Some(old) = &held.proxy {
                    now.stale_flows.extend(old.stale_udp_flows(&want.proxy));
                }
                now.proxy = Some(want.proxy.clone());
                report.proxy_elements = Some(counts);
            }
            Err(e) => failures.push(e),
        }
    }

    // 5. Conntrack entries of UDP flows to gone backends.
    for flow in now.stale_flows.clone() {
        match fx.forget_udp_flow(&flow) {
            Ok(()) => {
                now.stale_flows.remove(&flow);
                report.flows_forgotten += 1;
            }
            Err(e) => failures.push(e),
        }
    }

    // 6. Remote nodes that left.
    if have_device {
        let leaving: Vec<RemoteNode> = now
            .remotes
            .iter()
            .filter(|r| !want.remotes.contains(r))
            .cloned()
            .collect();
        if !leaving.is_empty() {
            let ops: Vec<NetOp> = leaving
                .iter()
                .flat_map(|r| remote_removals(r, &dev))
                .collect();
            match fx.net(&ops) {
                Ok(()) => {
                    for r in &leaving {
                        now.remotes.remove(r);
                    }
                    report.remotes_removed = leaving.len();
                }
                Err(e) => {
                    now.remotes_certain = false;
                    remotes_written = false;
                    failures.push(e);
                }
            }
        }
        if remotes_written {
            // Every wanted entry was written and every other one removed.
            now.remotes_certain = true;
        }
    }

    Applied {
        held: now,
        report,
        failures,
    }
}
