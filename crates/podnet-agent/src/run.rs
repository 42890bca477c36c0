//! The agent's loop: watches of the kinds a node needs ([`podnet_watch`]) keep the model
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
//! - The period's and `POST /verify`'s passes read the kernel (the ruleset, their slow part:
//!   350–500 ms at 10,000 Services; links, routes and settings) on a thread of their own
//!   ([`Reading`]) while the loop goes on taking events. Changes of the proxy's elements made
//!   meanwhile are replayed onto the read ([`podnet_node::effects::Read::replay`]); a read that
//!   any other write overtook is read again (on the loop after three in a row), so that what
//!   is compared is what the node holds.
//! - What the node was last verified to hold is written to `<node>.verified.json` (the lab
//!   waits on it, and compares it with its own model); what was last programmed, and the
//!   record, beside it in a quiet moment (100 ms without events, at least every 2 s). The
//!   loop hands a copy of each to a thread of its own that writes them ([`record`]): an event
//!   never waits for megabytes of JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_model::{ApiModel, ConfigOverrides};
use podnet_node::apply::Held;
use podnet_node::dataplane::NodeDataplane;
use podnet_node::effects::Effects;
use podnet_node::effects::Linux;
use podnet_node::effects::Read;
use podnet_node::live::{Delta, Live};

use crate::metrics::Metrics;
use crate::AgentError;
use podnet_watch::{ClusterWatch, Round};

mod programmed;
mod record;
use programmed::{programmed, Unprogrammed};
use record::Recorder;

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
    /// Where the CNI plugin asks the agent to program a new pod ([`crate::cni`]); the
    /// installed conflist names it.
    pub cni_socket: PathBuf,
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

    /// The addresses the CNI plugin told the agent and the API does not show yet: kept
    /// across a restart of the agent (a pod's IP reaches the API only after its ADD).
    fn hints_file(&self) -> PathBuf {
        self.state_dir.join(format!("{}.cni-ips.json", self.node))
    }
}

/// A CNI ADD waiting for its pod to be programmed.
struct Waiter {
    pod: podnet_model::NsName,
    ip: std::net::IpAddr,
    since: Instant,
    deadline: Instant,
    answer: tokio::sync::oneshot::Sender<podnet_cni::agent::Reply>,
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
    record::write_json(path, |w| serde_json::to_writer(w, v))
}

/// Writes podnet's CNI configuration for the node (atomically: a runtime may read it at any
/// moment).
fn install_cni(
    cni: &CniInstall,
    pod_cidrs: &[ipnet::IpNet],
    mtu: u32,
    ready: &Path,
    socket: &Path,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cni.conf_dir).map_err(|source| AgentError::Io {
        what: format!("creating {}", cni.conf_dir.display()),
        source,
    })?;
    let list = podnet_cni::spec::NetConfList::podnet(
        pod_cidrs,
        &cni.ipam_dir,
        mtu,
        Some(ready),
        Some(socket),
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
    /// A kernel read for a verify pass is over ([`Reading`]).
    Read(Box<ReadOutcome>),
    /// The CNI plugin asks.
    Cni(crate::cni::Asked),
    /// A CNI ADD's wait is over.
    Expired,
}

/// A read of the node for a verify pass (its ruleset, links, routes and settings), on a thread
/// of its own: the slow part of a pass (350–500 ms at 10,000 Services), during which the loop
/// goes on taking events. The proxy's element changes made meanwhile are replayed onto it;
/// after any other write it is stale, and is read again.
struct Reading {
    why: Verify,
    /// The proxy's transactions written since the read began, to replay onto it; None once
    /// anything else was written (the read is then stale).
    writes: Option<Vec<podnet_proxy::nft::Transaction>>,
    started: Instant,
    rx: tokio::sync::oneshot::Receiver<Result<Read, podnet_node::NodeError>>,
}

type ReadOutcome =
    Result<Result<Read, podnet_node::NodeError>, tokio::sync::oneshot::error::RecvError>;

impl Reading {
    /// The node was programmed during the read with `delta`, which `applied`: replayable
    /// when nothing but the delta's proxy transaction was written.
    fn wrote(&mut self, delta: &Delta, applied: &podnet_node::Applied) {
        let Some(writes) = &mut self.writes else {
            return;
        };
        if !applied.failures.is_empty() || !applied.report.proxy_alone() {
            return self.stale();
        }
        match (&delta.proxy, applied.report.proxy_elements) {
            (Some(tx), Some(_)) => writes.push(tx.clone()),
            (_, None) => {}
            (None, Some(_)) => self.stale(),
        }
    }

    /// Something was written that cannot be replayed onto the read (a whole apply, a verify
    /// pass's repair).
    fn stale(&mut self) {
        self.writes = None;
    }
}

/// A read overtaken by writes this many times in a row is done on the loop instead (where
/// nothing can overtake it): a node that never quietens is verified all the same.
const STALE_READS: u32 = 3;

/// What the agent's loop keeps between its phases: its effects `E` are the node's kernel
/// ([`Linux`]) or, in tests, a fake.
struct Agent<E: Effects> {
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
    model: ApiModel,
    watch: ClusterWatch,
    /// One effects for the agent's life: its nft session stays.
    fx: E,
    /// The record of what the node holds: a cache. The first pass reads the kernel; the
    /// record gives only the conntrack deletions still owed.
    held: Held,
    live: Option<Live>,
    /// Whether the node holds what `live` held before its last update (then that update's
    /// delta is all there is to do).
    in_sync: bool,
    delta: Delta,
    ready: bool,
    failed_before: bool,
    verify: Option<Verify>,
    /// A kernel read under way for a verify pass.
    reading: Option<Reading>,
    /// Reads overtaken by writes in a row.
    stale_reads: u32,
    /// What the next verify pass compares (read off the loop), and when its read began.
    prefetched: Option<(Read, Instant)>,
    /// A verify pass owed once the events quieten (with `verify_changes`).
    verify_owed: bool,
    last_verify: Instant,
    /// What is yet to be written down (it waits for a quiet moment).
    unwritten: bool,
    last_write: Instant,
    /// The writer of the records, beside the loop.
    records: Recorder,
    /// When the events the next apply carries out were received.
    since: Instant,
    waiters: Vec<Waiter>,
    hints_written: std::collections::BTreeMap<podnet_model::ApiKey, std::net::IpAddr>,
    /// The node's flow log, as packets to tell as flows.
    flows: Option<crate::flows::FlowSource>,
}

/// The CNI plugin's requests, as the socket's listener hands them over.
type CniRequests = tokio::sync::mpsc::UnboundedReceiver<crate::cni::Asked>;

/// The error of watches that ended.
fn ended() -> AgentError {
    AgentError::Io {
        what: "the watches ended".into(),
        source: std::io::Error::other("watch dropped"),
    }
}

/// Runs the agent until the process ends: lists every kind, then programs the node, waits
/// for what comes next (a round of changes, a CNI plugin's request, an ADD's deadline, a
/// verify pass owed) and takes it, for good.
pub async fn run(
    client: kube::Client,
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
) -> Result<(), AgentError> {
    // One effects for the agent's life: its nft session stays.
    let fx = Linux::at(cfg.netns.clone());
    let flows = crate::flows::open(&cfg.netns, &metrics);
    run_with_flows(client, cfg, metrics, fx, flows).await
}

/// [`run`], with the node's effects given (a fake, in tests: the loop's every path runs
/// without a kernel).
pub async fn run_with<E: Effects>(
    client: kube::Client,
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
    fx: E,
) -> Result<(), AgentError> {
    run_with_flows(client, cfg, metrics, fx, None).await
}

/// [`run_with`], with the node's flow log to tell as flows (None: none is read).
pub async fn run_with_flows<E: Effects>(
    client: kube::Client,
    cfg: AgentConfig,
    metrics: Arc<Metrics>,
    fx: E,
    flows: Option<crate::flows::FlowSource>,
) -> Result<(), AgentError> {
    let (mut agent, mut cni_rx) = Agent::start(client, cfg, metrics, fx).await?;
    agent.flows = flows;
    loop {
        agent.ensure_live();
        if agent.program()? {
            continue;
        }
        agent.metrics.set_ready(agent.ready);
        // Waits until there is something to program: a round of changes, or a verify pass to
        // run on the loop (a kernel read under way, or one overtaken and read again, is not).
        let round = loop {
            match agent.wait(&mut cni_rx).await? {
                Next::Verify(why) => {
                    if agent.start_reading(why) {
                        continue;
                    }
                    agent.verify = Some(why);
                    break None;
                }
                Next::Read(outcome) => {
                    agent.read(*outcome);
                    if agent.verify.is_some() {
                        break None;
                    }
                }
                Next::Round(r) => break Some(r),
                Next::Expired => {
                    if let Some(r) = agent.expired() {
                        break Some(r);
                    }
                }
                Next::Cni(asked) => match agent.cni(asked) {
                    Some(r) => break Some(r),
                    None if agent.verify.is_some() => break None,
                    None => {}
                },
            }
        };
        let Some(round) = round else { continue };
        agent.take(round);
    }
}

impl<E: Effects> Agent<E> {
    /// Lists every kind (with the pods' addresses the CNI plugin told, saved by an earlier
    /// run) and opens the CNI socket; the node is not ready until it holds what the API says.
    async fn start(
        client: kube::Client,
        cfg: AgentConfig,
        metrics: Arc<Metrics>,
        fx: E,
    ) -> Result<(Agent<E>, CniRequests), AgentError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| AgentError::Io {
            what: format!("creating {}", cfg.state_dir.display()),
            source,
        })?;
        let mut model = ApiModel::new(&cfg.overrides).map_err(AgentError::Model)?;
        let mut watch = ClusterWatch::start(&client, metrics.watch_errors());
        // The CNI plugin's requests: the socket is there from the start (an ADD that comes
        // before the node is programmed waits for it).
        let (cni_tx, cni_rx) = tokio::sync::mpsc::unbounded_channel();
        crate::cni::listen(&cfg.cni_socket, cni_tx)?;
        let saved: Vec<(String, String, std::net::IpAddr)> = std::fs::read(cfg.hints_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for (ns, name, ip) in saved {
            watch.hint(
                podnet_model::ApiKey::new(podnet_model::Kind::Pod, &ns, &name),
                Some(ip),
                &mut model,
            );
        }
        let hints_written = watch.hints().clone();
        let waiters: Vec<Waiter> = Vec::new();
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
        // The record of what the node holds: a cache. The first pass reads the kernel; the
        // record gives only the conntrack deletions still owed.
        let held: Held = read_held(&cfg.held_file());
        let live: Option<Live> = None;
        // Whether the node holds what `live` held before its last update (then that update's
        // delta is all there is to do).
        let in_sync = false;
        let delta = Delta::default();
        let ready = false;
        let failed_before = false;
        let verify = Some(Verify::Start);
        // A verify pass owed once the events quieten (with `verify_changes`).
        let verify_owed = false;
        let last_verify = Instant::now();
        // What is yet to be written down (it waits for a quiet moment).
        let unwritten = false;
        let last_write = Instant::now();
        let records = Recorder::new(&cfg.node)?;
        // When the events the next apply carries out were received.
        let since = first.oldest.unwrap_or_else(Instant::now);
        let agent = Agent {
            cfg,
            metrics,
            model,
            watch,
            fx,
            reading: None,
            stale_reads: 0,
            prefetched: None,
            held,
            live,
            in_sync,
            delta,
            ready,
            failed_before,
            verify,
            verify_owed,
            last_verify,
            unwritten,
            last_write,
            records,
            since,
            waiters,
            hints_written,
            flows: None,
        };
        Ok((agent, cni_rx))
    }
}

impl<E: Effects> Agent<E> {
    /// A node in the model to program: the node's dataplane computed once it is there.
    fn ensure_live(&mut self) {
        if self.live.is_none() {
            self.live = Live::new(self.model.cluster(), &self.cfg.node, &self.cfg.uplink);
            self.in_sync = false;
            if self.live.is_none() {
                tracing::warn!(
                    node = %self.cfg.node,
                    "{} (waiting for it)",
                    AgentError::NoSuchNode(self.cfg.node.clone())
                );
            }
        }
    }

    /// Programs the node (or verifies it, when a pass is owed) and answers the CNI ADDs it now
    /// holds; true when a whole verify pass is to follow at once.
    fn program(&mut self) -> Result<bool, AgentError> {
        let Some(l) = &self.live else {
            return Ok(false);
        };
        self.records.check()?;
        let want = l.dataplane();
        let verifying = self.verify.is_some();
        let failures = match self.verify.take() {
            Some(why) => {
                self.last_verify = Instant::now();
                self.verify_owed = false;
                // A read under way may not see what the pass repairs.
                if let Some(r) = &mut self.reading {
                    r.stale();
                }
                verify_pass(
                    why,
                    &mut self.held,
                    want,
                    &mut self.fx,
                    self.prefetched.take(),
                    &self.metrics,
                    &self.cfg.node,
                )
            }
            None => {
                // Taken: a delta is carried out once.
                let delta = std::mem::take(&mut self.delta);
                let applied = if self.in_sync {
                    podnet_node::apply_delta(
                        std::mem::take(&mut self.held),
                        want,
                        &delta,
                        &mut self.fx,
                    )
                } else {
                    podnet_node::apply(&self.held, want, &mut self.fx)
                };
                // A read under way saw this or not: replayed onto it if it can be.
                if let Some(r) = &mut self.reading {
                    match self.in_sync {
                        true => r.wrote(&delta, &applied),
                        false => r.stale(),
                    }
                }
                self.held = applied.held;
                self.verify_owed = self.cfg.verify_changes;
                applied.failures
            }
        };
        self.unwritten = true;
        if failures.is_empty() {
            self.in_sync = true;
            self.failed_before = false;
            if verifying {
                // A self.verify pass has a histogram of its own.
                self.metrics.holds(want);
            } else {
                // From the round's first event to programmed.
                self.metrics.synced(self.since.elapsed(), want);
            }
            if verifying {
                // The kernel was read and found (or made) as wanted: written beside the loop.
                self.records.write(
                    verified_file(&self.cfg.state_dir, &self.cfg.node),
                    want.clone(),
                )?;
                // A pass reads the node's whole ruleset (tens of MB of JSON at 10,000 Services).
                self.records.trim("a verify pass")?;
                // Each CNI ADD whose pod the node now holds returns, once the address
                // the plugin told is written down (the API may not show it yet).
                if !self.waiters.is_empty() {
                    save_hints(&self.cfg, &self.watch, &mut self.hints_written)?;
                }
                answer(
                    &mut self.waiters,
                    self.model.cluster(),
                    &self.cfg.node,
                    want,
                    None,
                    &self.metrics,
                );
            }
            if !self.ready {
                self.records
                    .write(self.cfg.held_file(), self.held.clone())?;
                self.records.write(
                    programmed_file(&self.cfg.state_dir, &self.cfg.node),
                    want.clone(),
                )?;
                self.unwritten = false;
                self.records.write(self.cfg.ready_file(), true)?;
                // Ready is said (and the CNI installed) once written.
                self.records.sync()?;
                // The node's podCIDRs, one per family (the CNI gives each pod an address
                // of each).
                let cidrs = self
                    .model
                    .cluster()
                    .node(&self.cfg.node)
                    .map(|n| n.pod_cidrs.clone())
                    .unwrap_or_default();
                if let (Some(cni), false) = (&self.cfg.cni, cidrs.is_empty()) {
                    install_cni(
                        cni,
                        &cidrs,
                        want.pod_mtu,
                        &self.cfg.ready_file(),
                        &self.cfg.cni_socket,
                    )?;
                }
                self.ready = true;
                // The first lists' and the first programming's peak is over (210 MB at 10,000
                // Services and pods, 90 MB live after it).
                self.records.trim("the first programming")?;
            }
            if !verifying && !self.waiters.is_empty() {
                // A pod's ADD waits: read back from the kernel what it needs (the policy
                // maps' keys, two netlink dumps); a whole self.verify pass if that fails or
                // finds the kernel short of what was just programmed.
                save_hints(&self.cfg, &self.watch, &mut self.hints_written)?;
                match self.fx.policy_entries(want) {
                    Ok(kernel) => {
                        let short = answer(
                            &mut self.waiters,
                            self.model.cluster(),
                            &self.cfg.node,
                            want,
                            Some(&kernel),
                            &self.metrics,
                        );
                        if short {
                            self.verify = Some(Verify::Change);
                            self.metrics.set_ready(self.ready);
                            return Ok(true);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.cfg.node, "reading the policy maps back: {} (verifying whole)", podnet_node::chain(&e));
                        self.verify = Some(Verify::Change);
                        self.metrics.set_ready(self.ready);
                        return Ok(true);
                    }
                }
            }
        } else {
            for f in &failures {
                tracing::error!(node = %self.cfg.node, "{}", podnet_node::chain(f));
            }
            self.metrics.failed();
            self.in_sync = false;
            // The next try starts from what the kernel holds, not from the record.
            self.failed_before = true;
        }
        Ok(false)
    }

    /// Waits for what comes next; writes the record down in a quiet moment (at least every
    /// 2 s).
    async fn wait(&mut self, cni_rx: &mut CniRequests) -> Result<Next, AgentError> {
        loop {
            let quiet = if self.unwritten || self.verify_owed {
                Duration::from_millis(100)
                    .min(Duration::from_secs(2).saturating_sub(self.last_write.elapsed()))
            } else {
                Duration::from_secs(3600)
            };
            let retry = if self.failed_before {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(3600)
            };
            let period = self
                .cfg
                .verify_every
                .saturating_sub(self.last_verify.elapsed());
            let first_deadline = self
                .waiters
                .iter()
                .map(|w| w.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let reading = self.reading.is_some();
            let read = self.reading.as_mut().map(|r| &mut r.rx);
            let logged = self.flows.as_mut();
            tokio::select! {
                packet = async move {
                    match logged {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match packet {
                    Some(p) => self.tell_flows(p),
                    // The reader ended (it said why).
                    None => self.flows = None,
                },
                Some(asked) = cni_rx.recv() => return Ok(Next::Cni(asked)),
                outcome = async move {
                    match read {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if reading => return Ok(Next::Read(Box::new(outcome))),
                _ = tokio::time::sleep_until(first_deadline.into()), if !self.waiters.is_empty() => return Ok(Next::Expired),
                r = self.watch.next(&mut self.model) => return Ok(Next::Round(r.ok_or_else(ended)?)),
                _ = tokio::time::sleep(retry) => return Ok(Next::Verify(Verify::Failure)),
                _ = tokio::time::sleep(period) => return Ok(Next::Verify(Verify::Period)),
                _ = self.metrics.verify_now.notified() => return Ok(Next::Verify(Verify::Asked)),
                _ = tokio::time::sleep(quiet), if self.unwritten || self.verify_owed => {
                    save_hints(&self.cfg, &self.watch, &mut self.hints_written)?;
                    if self.unwritten {
                        // Copies (2-4 ms at 10,000 Services), written beside the loop.
                        self.records.write(self.cfg.held_file(), self.held.clone())?;
                        if self.in_sync {
                            if let Some(l) = &self.live {
                                self.records.write(
                                    programmed_file(&self.cfg.state_dir, &self.cfg.node),
                                    l.dataplane().clone(),
                                )?;
                            }
                        }
                        self.unwritten = false;
                        self.last_write = Instant::now();
                    }
                    if self.verify_owed && self.in_sync {
                        return Ok(Next::Verify(Verify::Change));
                    }
                }
            }
        }
    }

    /// Packets of the flow log told as flows from the model as it is now: this one and those
    /// already waiting, at most 256 at a time (a flood cannot hold the loop for long; each
    /// pod and policy looked up once per batch).
    fn tell_flows(&mut self, first: podnet_flow::packet::Packet) {
        let mut batch = vec![first];
        if let Some(rx) = self.flows.as_mut() {
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let now = jiff::Timestamp::now();
        let mut teller = podnet_flow::record::Teller::new(self.model.cluster(), &self.cfg.node);
        for p in &batch {
            self.metrics.flow(teller.tell(p, now));
        }
    }

    /// CNI ADDs whose wait is over answered with what is missing; the addresses they told
    /// forgotten. None when nothing changed.
    fn expired(&mut self) -> Option<Round> {
        let now = Instant::now();
        let mut round = Round::default();
        for w in std::mem::take(&mut self.waiters) {
            if w.deadline > now {
                self.waiters.push(w);
                return None;
            }
            let want = self.live.as_ref().map(Live::dataplane);
            let why = programmed(self.model.cluster(), &self.cfg.node, want, &w.pod, w.ip)
                .err()
                .unwrap_or(Unprogrammed::NotVerified);
            tracing::warn!(node = %self.cfg.node, pod = %w.pod, ip = %w.ip, "a CNI ADD gave up waiting: {why}");
            self.metrics.cni_gave_up();
            let _ = w
                .answer
                .send(podnet_cni::agent::Reply::missing(why.to_string()));
            // The plugin undoes the ADD (its address may go to another pod): the
            // address it told is forgotten.
            let key =
                podnet_model::ApiKey::new(podnet_model::Kind::Pod, &w.pod.namespace, &w.pod.name);
            let r = self.watch.hint(key, None, &mut self.model);
            round.changed.extend(r.changed);
            round.events += r.events;
            self.unwritten = true;
        }
        if round.changed.is_empty() {
            return None;
        }
        Some(round)
    }

    /// A CNI plugin's request: an ADD waits for its pod (the address it gave read in until the
    /// API shows one), a DEL forgets it. None when nothing is to be programmed.
    fn cni(&mut self, (req, answer): crate::cni::Asked) -> Option<Round> {
        let key = podnet_model::ApiKey::new(podnet_model::Kind::Pod, &req.namespace, &req.name);
        let pod = podnet_model::NsName::new(&req.namespace, &req.name);
        match (req.op, req.ip) {
            (podnet_cni::agent::Op::Add, Some(ip)) => {
                tracing::info!(node = %self.cfg.node, %pod, %ip, "CNI ADD: programming the pod");
                self.waiters.push(Waiter {
                    pod,
                    ip,
                    since: Instant::now(),
                    deadline: Instant::now() + Duration::from_millis(req.wait_ms.max(1)),
                    answer,
                });
                self.unwritten = true;
                // Verify even if the pod changes nothing (its entries may be there).
                self.verify_owed = true;
                let r = self.watch.hint(key, Some(ip), &mut self.model);
                if r.changed.is_empty() && self.in_sync {
                    self.verify = Some(Verify::Change);
                    return None;
                }
                Some(r)
            }
            (podnet_cni::agent::Op::Add, None) => {
                let _ = answer.send(podnet_cni::agent::Reply::missing(
                    "an ADD must carry the pod's address",
                ));
                None
            }
            (podnet_cni::agent::Op::Del, _) => {
                let _ = answer.send(podnet_cni::agent::Reply::ok());
                self.unwritten = true;
                Some(self.watch.hint(key, None, &mut self.model))
            }
        }
    }

    /// Starts a verify pass's kernel read on a thread of its own, for the passes that wait
    /// for no one (the period's, and `POST /verify`), when the node is programmed and its
    /// effects can read that way; false: the pass is to run on the loop.
    fn start_reading(&mut self, why: Verify) -> bool {
        if !matches!(why, Verify::Period | Verify::Asked) || !self.in_sync || self.live.is_none() {
            return false;
        }
        if self.reading.is_some() {
            // One is under way: it serves this one too.
            return true;
        }
        let Some(reader) = self
            .live
            .as_ref()
            .and_then(|l| self.fx.kernel_reader(l.dataplane()))
        else {
            return false;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("podnet-verify".into())
            .spawn(move || {
                let _ = tx.send(reader.read());
            });
        if let Err(e) = spawned {
            tracing::warn!(node = %self.cfg.node, "no thread for the kernel read ({e}): verifying on the loop");
            return false;
        }
        // The period runs from the pass's start.
        self.last_verify = Instant::now();
        self.reading = Some(Reading {
            why,
            writes: Some(Vec::new()),
            started: Instant::now(),
            rx,
        });
        true
    }

    /// A kernel read is over: its verify pass runs next when nothing was written to the node
    /// meanwhile but changes of the proxy's elements (replayed onto the read); else it is read
    /// again (on the loop, after [`STALE_READS`] in a row).
    fn read(&mut self, outcome: ReadOutcome) {
        let Some(r) = self.reading.take() else {
            return;
        };
        // A read that every write since it began can be replayed onto is what the node holds.
        let outcome = outcome.map(|read| {
            read.map(|mut read| {
                let current = self.in_sync
                    && r.writes
                        .as_ref()
                        .is_some_and(|w| w.iter().all(|tx| read.replay(tx)));
                (read, current)
            })
        });
        match outcome {
            Ok(Ok((read, true))) => {
                let replayed = r.writes.as_ref().map_or(0, Vec::len);
                if replayed > 0 {
                    tracing::debug!(node = %self.cfg.node, replayed, "the proxy's changes during the kernel read replayed onto it");
                    self.metrics.replayed(replayed);
                }
                self.stale_reads = 0;
                self.prefetched = Some((read, r.started));
                self.verify = Some(r.why);
            }
            Ok(Ok((_, false))) => {
                self.stale_reads += 1;
                self.metrics.stale_read();
                tracing::debug!(node = %self.cfg.node, stale = self.stale_reads, "the node changed during the kernel read: reading again");
                if self.stale_reads >= STALE_READS || !self.start_reading(r.why) {
                    tracing::info!(node = %self.cfg.node, stale = self.stale_reads, pass = r.why.as_str(), "the node changed during each kernel read: verifying on the loop");
                    self.stale_reads = 0;
                    self.verify = Some(r.why);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %self.cfg.node, "reading the kernel: {} (verifying on the loop)", podnet_node::chain(&e));
                self.verify = Some(r.why);
            }
            Err(_) => self.verify = Some(r.why),
        }
    }

    /// A round of changes: what the next apply carries out, from when.
    fn take(&mut self, round: Round) {
        log_refused(&self.cfg.node, &round.refused);
        self.since = if self.in_sync {
            round.oldest.unwrap_or_else(Instant::now)
        } else {
            self.since.min(round.oldest.unwrap_or(self.since))
        };
        self.delta = Delta::default();
        if let Some(l) = &mut self.live {
            match l.update(self.model.cluster(), &round.changed) {
                Some(d) => self.delta = d,
                None => self.live = None, // This node left the cluster.
            }
        }
    }
}

/// A verify pass: the kernel read, what differs from `want` repaired and said (at start, what
/// this agent has yet to program, not counted as drift); the failures.
fn verify_pass(
    why: Verify,
    held: &mut Held,
    want: &NodeDataplane,
    fx: &mut impl Effects,
    prefetched: Option<(Read, Instant)>,
    metrics: &Metrics,
    node: &str,
) -> Vec<podnet_node::NodeError> {
    let (read, started) = match prefetched {
        Some((r, at)) => (Some(r), at),
        None => (None, Instant::now()),
    };
    match podnet_node::verify::verify_with(held, want, fx, read) {
        Ok(v) => {
            let drifted: &[podnet_node::verify::Drift] =
                if why == Verify::Start { &[] } else { &v.drift };
            for d in &v.drift {
                if why == Verify::Start {
                    tracing::info!(node = %node, table = d.table, "at start: {}", d.what);
                } else {
                    tracing::warn!(
                        node = %node,
                        table = d.table,
                        pass = why.as_str(),
                        "drift repaired: {}",
                        d.what
                    );
                }
            }
            *held = v.held;
            metrics.verified(started.elapsed(), drifted, !v.failures.is_empty());
            v.failures
        }
        Err(e) => {
            metrics.verified(started.elapsed(), &[], true);
            vec![e]
        }
    }
}

/// Answers each waiting CNI ADD whose pod the node holds: in `want`, and (when `kernel` is
/// given) in the policy maps read back from the kernel; with `kernel` None, `want` was just
/// verified whole. True when a pod `want` holds was missing from the kernel (drift: the
/// caller verifies whole).
fn answer(
    waiters: &mut Vec<Waiter>,
    cluster: &podnet_model::Cluster,
    node: &str,
    want: &NodeDataplane,
    kernel: Option<&podnet_node::effects::PolicyEntries>,
    metrics: &Metrics,
) -> bool {
    let mut short = false;
    let mut i = 0;
    while i < waiters.len() {
        let w = &waiters[i];
        let planned = programmed(cluster, node, Some(want), &w.pod, w.ip).is_ok();
        // Each of the pod's addresses the table judges, in both maps of the kernel's.
        let ips: Vec<std::net::IpAddr> = cluster
            .pod(&w.pod.namespace, &w.pod.name)
            .map(|p| p.ips.clone())
            .unwrap_or_else(|| vec![w.ip]);
        let held = match kernel {
            None => true,
            Some(k) => ips.iter().all(|ip| {
                let needs = want.policy.ingress.contains_key(ip);
                !needs || (k.ingress.contains(ip) && k.egress.contains(ip))
            }),
        };
        if planned && !held {
            short = true;
        }
        if planned && held {
            let w = waiters.swap_remove(i);
            metrics.cni_waited(w.since);
            let _ = w.answer.send(podnet_cni::agent::Reply::ok());
        } else {
            i += 1;
        }
    }
    short
}

/// Writes down the addresses the CNI plugin told, if they changed since `written`.
fn save_hints(
    cfg: &AgentConfig,
    watch: &ClusterWatch,
    written: &mut std::collections::BTreeMap<podnet_model::ApiKey, std::net::IpAddr>,
) -> Result<(), AgentError> {
    if watch.hints() == written {
        return Ok(());
    }
    let list: Vec<_> = watch
        .hints()
        .iter()
        .map(|(k, ip)| (&k.namespace, &k.name, ip))
        .collect();
    write_json(&cfg.hints_file(), &list)?;
    *written = watch.hints().clone();
    Ok(())
}

fn log_refused(node: &str, refused: &[(podnet_model::ApiKey, String)]) {
    for (key, why) in refused {
        tracing::warn!(node, "left out {key} (the rest is programmed): {why}");
    }
}

#[cfg(test)]
mod tests;
