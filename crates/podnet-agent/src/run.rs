//! The agent's loop: watches of the kinds a node needs ([`crate::watch`]) keep the model
//! ([`podnet_model::ApiModel`]) current object by object; each round of events updates only the
//! parts of the node's dataplane they changed ([`podnet_node::live::Live`]) and issues only that
//! change ([`podnet_node::apply_delta`]).
//!
//! - Events that arrived together are applied together: a round takes every event waiting.
//! - The agent's record of what the node holds (`held`) is a cache for the incremental path,
//!   never the truth. A verify pass ([`podnet_node::verify`]) reads what the kernel holds,
//!   names every difference from what the node must hold (logged as a warning, counted in
//!   `podnet_dataplane_drift_total`) and repairs it with the smallest transaction from what is
//!   really there: at start (so a restarted agent changes only what differs, with no flush),
//!   every `verify_every` (30 s), after a failed change (instead of trusting the record), on
//!   `POST /verify`, and with `verify_changes` once events quieten after a change. `/readyz`
//!   is false while a repair failed.
//! - What the node was last verified to hold is written to `<node>.verified.json` (the lab
//!   waits on it, and compares it with its own model); what was last programmed, and the
//!   record, beside it in a quiet moment (100 ms without events, at least every 2 s), not on
//!   the path of an event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_model::{ApiModel, ConfigOverrides};
use podnet_node::apply::Held;
use podnet_node::effects::Linux;
use podnet_node::live::{Delta, Live};

use crate::metrics::Metrics;
use crate::watch::{ClusterWatch, Round};
use crate::AgentError;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (the downward API's `spec.nodeName`).
    pub node: String,
    /// The cluster's settings (pod and service CIDRs, ...), as `podnet check` takes them.
    pub overrides: ConfigOverrides,
    /// The node's link to the other nodes (the VXLAN device's underlay).
    pub uplink: String,
    /// The network namespace to program: the agent's own unless given.
    pub netns: PathBuf,
    /// Where the agent keeps what the node holds.
    pub state_dir: PathBuf,
    /// Installing the CNI configuration, as the well-known agents do: once the node is
    /// programmed, podnet's conflist (the node's podCIDR as its IPAM range) is written here.
    pub cni: Option<CniInstall>,
    /// How often the node is verified: the kernel read back, compared with what it must hold,
    /// and any difference repaired (also after a failed change, at start, and on
    /// `POST /verify`).
    pub verify_every: Duration,
    /// Verify after every change too, once events quieten (the lab does, to wait on the
    /// kernel rather than on the agent's word).
    pub verify_changes: bool,
}

/// Where the CNI configuration goes on a real node.
#[derive(Debug, Clone)]
pub struct CniInstall {
    /// The runtime's configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Where the plugin keeps its address reservations.
    pub ipam_dir: PathBuf,
}

impl AgentConfig {
    /// Present while the agent is ready: the CNI plugin's STATUS answers 50 without it.
    pub fn ready_file(&self) -> PathBuf {
        self.state_dir.join(format!("{}.ready", self.node))
    }

    fn held_file(&self) -> PathBuf {
        held_file(&self.state_dir, &self.node)
    }
}

/// Where an agent records what its node holds (read back at start).
pub fn held_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.held.json"))
}

/// Where an agent records the dataplane its node was last verified to hold: the kernel read
/// back and found (or repaired) equal to it. `lab up` and `lab apply` wait on this one.
pub fn verified_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.verified.json"))
}

/// Where an agent records what it last programmed without a failure.
pub fn programmed_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.programmed.json"))
}

/// Reads what an earlier run of the agent left the node holding.
fn read_held(path: &Path) -> Held {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    std::fs::write(&tmp, serde_json::to_vec(v).expect("JSON")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes podnet's CNI configuration for the node (atomically: a runtime may read it at any
/// moment).
fn install_cni(cni: &CniInstall, pod_cidr: ipnet::IpNet, ready: &Path) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cni.conf_dir).map_err(|source| AgentError::Io {
        what: format!("creating {}", cni.conf_dir.display()),
        source,
    })?;
    let list = podnet_cni::spec::NetConfList::podnet(
        pod_cidr,
        &cni.ipam_dir,
        podnet_node::dataplane::OVERLAY_MTU,
        Some(ready),
    );
    write_json(&cni.conf_dir.join(podnet_cni::spec::CONFLIST), &list)
}

/// Why a verify pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// The agent started: what the node holds is read, never assumed from a record.
    Start,
    /// The period (`verify_every`) passed.
    Period,
    /// A change failed: the repair starts from what the kernel holds.
    Failure,
    /// A change was applied (with `verify_changes`): the node is confirmed to hold it.
    Change,
    /// Asked for (`POST /verify`).
    Asked,
}

impl Verify {
    fn as_str(self) -> &'static str {
        match self {
            Verify::Start => "start",
            Verify::Period => "period",
            Verify::Failure => "after a failure",
            Verify::Change => "after a change",
            Verify::Asked => "asked",
        }
    }
}

/// What the loop does next.
enum Next {
    Round(Round),
    Verify(Verify),
}

/// Runs the agent until the process ends.
pub async fn run(
    client: kube::Client,
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| AgentError::Io {
        what: format!("creating {}", cfg.state_dir.display()),
        source,
    })?;
    let ended = || AgentError::Io {
        what: "the watches ended".into(),
        source: std::io::Error::other("watch dropped"),
    };
    let mut model = ApiModel::new(&cfg.overrides).map_err(AgentError::Model)?;
    let mut watch = ClusterWatch::start(&client, metrics.clone());
    let first = watch.until_ready(&mut model).await.ok_or_else(ended)?;
    log_refused(&cfg.node, &first.refused);
    tracing::info!(
        node = %cfg.node,
        objects = first.events,
        "every kind listed; programming"
    );
    // Not ready until the node holds what the API says.
    let _ = std::fs::remove_file(cfg.ready_file());
    let _ = std::fs::remove_file(verified_file(&cfg.state_dir, &cfg.node));
    // One effects for the agent's life: its nft session stays.
    let mut fx = Linux::at(cfg.netns.clone());
    // The record of what the node holds: a cache. The first pass reads the kernel; the
    // record gives only the conntrack deletions still owed.
    let mut held: Held = read_held(&cfg.held_file());
    let mut live: Option<Live> = None;
    // Whether the node holds what `live` held before its last update (then that update's
    // delta is all there is to do).
    let mut in_sync = false;
    let mut delta = Delta::default();
    let mut ready = false;
    let mut failed_before = false;
    let mut verify = Some(Verify::Start);
    // A verify pass owed once the events quieten (with `verify_changes`).
    let mut verify_owed = false;
    let mut last_verify = Instant::now();
    // What is yet to be written down (it waits for a quiet moment).
    let mut unwritten = false;
    let mut last_write = Instant::now();
    // When the events the next apply carries out were received.
    let mut since = first.oldest.unwrap_or_else(Instant::now);
    loop {
        if live.is_none() {
            live = Live::new(model.cluster(), &cfg.node, &cfg.uplink);
            in_sync = false;
            if live.is_none() {
                tracing::warn!(
                    node = %cfg.node,
                    "{} (waiting for it)",
                    AgentError::NoSuchNode(cfg.node.clone())
                );
            }
        }
        if let Some(l) = &live {
            let want = l.dataplane();
            let verifying = verify.is_some();
            let failures = match verify.take() {
                Some(why) => {
                    let started = Instant::now();
                    last_verify = started;
                    verify_owed = false;
                    match podnet_node::verify::verify(&held, want, &mut fx) {
                        Ok(v) => {
                            // At start, what differs is what this agent has yet to program
                            // (a new node holds nothing): said, not counted as drift.
                            let drifted: &[podnet_node::verify::Drift] =
                                if why == Verify::Start { &[] } else { &v.drift };
                            for d in &v.drift {
                                if why == Verify::Start {
                                    tracing::info!(node = %cfg.node, table = d.table, "at start: {}", d.what);
                                } else {
                                    tracing::warn!(
                                        node = %cfg.node,
                                        table = d.table,
                                        pass = why.as_str(),
                                        "drift repaired: {}",
                                        d.what
                                    );
                                }
                            }
                            held = v.held;
                            metrics.verified(started.elapsed(), drifted, !v.failures.is_empty());
                            v.failures
                        }
                        Err(e) => {
                            metrics.verified(started.elapsed(), &[], true);
                            vec![e]
                        }
                    }
                }
                None => {
                    let applied = if in_sync {
                        podnet_node::apply_delta(std::mem::take(&mut held), want, &delta, &mut fx)
                    } else {
                        podnet_node::apply(&held, want, &mut fx)
                    };
                    held = applied.held;
                    verify_owed = cfg.verify_changes;
                    applied.failures
                }
            };
            unwritten = true;
            if failures.is_empty() {
                in_sync = true;
                failed_before = false;
                if verifying {
                    // A verify pass has a histogram of its own.
                    metrics.holds(want);
                } else {
                    // From the round's first event to programmed.
                    metrics.synced(since.elapsed(), want);
                }
                if verifying {
                    // The kernel was read and found (or made) as wanted.
                    write_json(&verified_file(&cfg.state_dir, &cfg.node), want)?;
                }
                if !ready {
                    write_json(&cfg.held_file(), &held)?;
                    write_json(&programmed_file(&cfg.state_dir, &cfg.node), want)?;
                    unwritten = false;
                    write_json(&cfg.ready_file(), &true)?;
                    let pod_cidr = want.vxlan.vtep.ip;
                    let cidr = model
                        .cluster()
                        .node(&cfg.node)
                        .and_then(|n| n.pod_cidrs.iter().find(|c| c.contains(&pod_cidr)).copied());
                    if let (Some(cni), Some(cidr)) = (&cfg.cni, cidr) {
                        install_cni(cni, cidr, &cfg.ready_file())?;
                    }
                    ready = true;
                }
            } else {
                for f in &failures {
                    tracing::error!(node = %cfg.node, "{}", podnet_node::chain(f));
                }
                metrics.failed();
                in_sync = false;
                // The next try starts from what the kernel holds, not from the record.
                failed_before = true;
            }
        }
        metrics.set_ready(ready);
        // Wait for a change; write the record down in a quiet moment (at least every 2 s).
        let next = loop {
            let quiet = if unwritten || verify_owed {
                Duration::from_millis(100)
                    .min(Duration::from_secs(2).saturating_sub(last_write.elapsed()))
            } else {
                Duration::from_secs(3600)
            };
            let retry = if failed_before {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(3600)
            };
            let period = cfg.verify_every.saturating_sub(last_verify.elapsed());
            tokio::select! {
                r = watch.next(&mut model) => break Next::Round(r.ok_or_else(ended)?),
                _ = tokio::time::sleep(retry) => break Next::Verify(Verify::Failure),
                _ = tokio::time::sleep(period) => break Next::Verify(Verify::Period),
                _ = metrics.verify_now.notified() => break Next::Verify(Verify::Asked),
                _ = tokio::time::sleep(quiet), if unwritten || verify_owed => {
                    if unwritten {
                        write_json(&cfg.held_file(), &held)?;
                        if in_sync {
                            if let Some(l) = &live {
                                write_json(&programmed_file(&cfg.state_dir, &cfg.node), l.dataplane())?;
                            }
                        }
                        unwritten = false;
                        last_write = Instant::now();
                    }
                    if verify_owed && in_sync {
                        break Next::Verify(Verify::Change);
                    }
                }
            }
        };
        let round = match next {
            Next::Verify(why) => {
                verify = Some(why);
                continue;
            }
            Next::Round(r) => r,
        };
        log_refused(&cfg.node, &round.refused);
        since = if in_sync {
            round.oldest.unwrap_or_else(Instant::now)
        } else {
            since.min(round.oldest.unwrap_or(since))
        };
        delta = Delta::default();
        if let Some(l) = &mut live {
            match l.update(model.cluster(), &round.changed) {
                Some(d) => delta = d,
                None => live = None, // This node left the cluster.
            }
        }
    }
}

fn log_refused(node: &str, refused: &[(podnet_model::ApiKey, String)]) {
    for (key, why) in refused {
        tracing::warn!(node, "left out {key} (the rest is programmed): {why}");
    }
}
