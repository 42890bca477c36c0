//! The lab: a whole multi-node cluster network on one machine, in network namespaces, built
//! from the model. See [`plan`] for the topology.

pub mod agents;
pub mod change;
mod diag;
pub mod lock;
pub mod net;
pub mod observe;
pub mod plan;
pub mod probe;
pub mod repair;
pub mod runtime;
pub mod serve;
pub mod statuses;
pub mod ui;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use podnet_cni::spec::AddResult;
use podnet_model::{Cluster, NsName};
use podnet_node::effects::{Effects, Linux};
use podnet_node::net::NetOp;
use podnet_node::{HealthCheck, Held, NodeDataplane, NodeError};
use serde::{Deserialize, Serialize};

use crate::plan::{LabPlan, PodPlan};
use crate::runtime::{Op, Runtime};

mod processes;
mod setup;
mod state;
mod status;

use processes::*;
pub use processes::{keep, serve_pid, server_processes};
pub use setup::program_nodes;
use setup::*;
use state::*;
pub use state::{exists, kubeconfig, lab_dir, load_state, LabState, ObjectStamp};
use status::*;
pub use status::{actual_ips, exec_target, status, NodeStatus, PodStatus, Status};

pub const RUN_DIR: &str = "/run/podnet";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("node {node}: applying its dataplane")]
    Dataplane {
        node: String,
        #[source]
        source: NodeError,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("CNI {op} for pod {pod}: {msg}")]
    Cni {
        pod: NsName,
        op: &'static str,
        msg: String,
    },
    #[error("the test servers: {0}")]
    Servers(String),
    #[error("the cluster DNS server")]
    Dns(#[source] podnet_dns::DnsError),
    #[error("{0}")]
    Invalid(String),
    #[error("nothing was changed: {}{}", podnet_node::chain(cause.as_ref()), rollback_note(rollback))]
    NotApplied {
        cause: Box<LabError>,
        /// What could not be undone; empty when the lab is exactly as it was.
        rollback: Vec<LabError>,
    },
    #[error("lab {0:?} is not up (no {1})")]
    NotUp(String, String),
    #[error("{} problem(s):\n  {}", .0.len(), .0.iter().map(|e| podnet_node::chain(e)).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<LabError>),
}

impl LabError {
    /// A node's dataplane failures, each naming the node.
    fn of_node(node: &str, failures: Vec<NodeError>) -> impl Iterator<Item = LabError> + '_ {
        failures.into_iter().map(move |source| LabError::Dataplane {
            node: node.to_string(),
            source,
        })
    }

    /// Ok for no failure, the failure itself for one, [`LabError::Many`] for more.
    fn all(mut v: Vec<LabError>) -> Result<(), LabError> {
        match v.len() {
            0 => Ok(()),
            1 => Err(v.remove(0)),
            _ => Err(LabError::Many(v)),
        }
    }
}

fn rollback_note(failures: &[LabError]) -> String {
    if failures.is_empty() {
        "; the lab is as it was".into()
    } else {
        format!(
            "; undoing what was done failed too, and the lab's state says what runs now:\n  {}",
            failures
                .iter()
                .map(|e| podnet_node::chain(e))
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.to_string();
    move |source| LabError::Io { what, source }
}

/// Builds the lab. `exe` is the podnet binary: it serves as the CNI plugin (`podnet-cni`) and
/// runs the test servers (`lab serve`). On failure everything built so far is removed.
pub fn up(lab: &str, cluster: &Cluster, exe: &Path) -> Result<LabState, LabError> {
    up_with(lab, cluster, exe, false)
}

/// [`up`], with the nodes run by `podnet agent` against the lab's API when `agents` is set.
pub fn up_with(
    lab: &str,
    cluster: &Cluster,
    exe: &Path,
    agents: bool,
) -> Result<LabState, LabError> {
    plan::valid_lab_name(lab).map_err(|e| LabError::Invalid(e.to_string()))?;
    let held = lock::lock(lab, "lab up")?;
    if load_state(lab).is_ok_and(|st| alive(lab, st.serve_pid)) {
        return Err(LabError::Invalid(format!("lab {lab:?} is already up: change it with `podnet lab apply --name {lab}`, or remove it with `podnet lab down --name {lab}`")));
    }
    // Leftovers of a crash: a lab whose servers are gone, or a half-built one.
    down_locked(lab)?;
    let result = build(lab, cluster, exe, agents);
    if result.is_err() {
        let _ = down_locked(lab);
        held.remove();
    }
    result
}

pub use change::ApplyReport;

/// Applies new manifests to a running lab, all or nothing ([`change::apply_with`]): pods that
/// are new are created, pods that are gone are deleted (CNI DEL, then their namespace), and
/// pods that did not change are not touched. Nodes cannot change live. The saved state
/// describes what runs, whatever happens.
pub fn apply(lab: &str, cluster: &Cluster) -> Result<ApplyReport, LabError> {
    plan::valid_lab_name(lab).map_err(|e| LabError::Invalid(e.to_string()))?;
    if !lab_dir(lab).join("state.json").exists() {
        // Not up: said without taking (and leaving) a lock.
        load_state(lab)?;
    }
    // One change at a time: a second `lab apply` waits for this one.
    let _held = lock::lock(lab, "lab apply")?;
    let mut st = load_state(lab)?;
    // What a change interrupted before this one left behind.
    let repaired = repair::repair(lab, &mut st)?;
    if !repaired.is_empty() {
        for r in &repaired {
            eprintln!("lab {lab:?}: {r}");
        }
        save_state(lab, &st)?;
    }
    st.serve_pid = serve_pid(lab).or(st.serve_pid);
    if !alive(lab, st.serve_pid) {
        return Err(LabError::Servers(format!(
            "the lab's server process is not running (see {}): nothing was changed; recover with `podnet lab down --name {lab}`, then `podnet lab up --name {lab} -f <manifests>`",
            lab_dir(lab).join("serve.log").display()
        )));
    }
    let next = LabPlan::new(lab, cluster);
    let result = change::apply_with(&mut st, cluster, next, &mut change::RealHost { lab });
    save_state(lab, &st)?;
    // What the nodes must hold now: the change's, or (rolled back) what they held before.
    agents::record_expected(lab, &st)?;
    let reloaded = reload_servers(lab, st.serve_pid);
    if reloaded.is_ok() {
        let waited = agents::wait(lab, &mut st);
        save_state(lab, &st)?;
        waited?;
    }
    let report = result?;
    reloaded?;
    Ok(report)
}

/// What `down` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    Removed,
    /// Nothing of a lab by that name exists.
    NoSuchLab,
}

/// Removes everything of the lab: its server processes, its namespaces (the pods' interfaces
/// and routes go with them) and its state. Idempotent; keeps going on failure and reports every
/// failure, not just the first. Only this lab's names are touched: [`plan::prefix`] ends with
/// a character no lab name has.
pub fn down(lab: &str) -> Result<Down, LabError> {
    plan::valid_lab_name(lab).map_err(|e| LabError::Invalid(e.to_string()))?;
    let held = lock::lock(lab, "lab down")?;
    let result = down_locked(lab);
    held.remove();
    result
}

/// [`down`], with the lab's lock held.
fn down_locked(lab: &str) -> Result<Down, LabError> {
    let servers = server_processes(lab);
    if !exists(lab) && servers.is_empty() {
        return Ok(Down::NoSuchLab);
    }
    let mut problems = Vec::new();
    // The keeper first (it would start the server again), then the server (it would start
    // the agents again).
    for pid in servers.iter().filter(|p| is_keeper_of(**p, lab)) {
        stop_process(*pid);
    }
    for pid in servers.iter().filter(|p| is_server_of(**p, lab)) {
        stop_process(*pid);
    }
    for pid in server_processes(lab) {
        stop_process(pid);
    }
    for ns in net::netns_list(&plan::prefix(lab)) {
        if let Err(e) = net::netns_del(&ns) {
            problems.push(e);
        }
    }
    for ns in net::etc_list(&plan::prefix(lab)) {
        if let Err(e) = net::etc_remove(&ns) {
            problems.push(e);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(lab_dir(lab)) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(io(lab_dir(lab).display())(e));
        }
    }
    LabError::all(problems).map(|()| Down::Removed)
}
