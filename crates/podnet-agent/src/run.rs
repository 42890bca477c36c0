//! The agent's loop: reflectors of the kinds a node needs ([`translate::KINDS`]), and on every
//! change the node's dataplane computed from what they hold and applied to the node.
//!
//! - Changes that come together are applied together: after a change the loop waits a moment
//!   ([`SETTLE`]) for more before it computes.
//! - What the node holds is kept in a state file, written after every apply; an agent that
//!   restarts reads it back and changes only what differs (no flush: every nftables change is
//!   one transaction, and the tables are replaced whole only when there is no record of them).
//! - What the agent last programmed without a failure is written beside it
//!   (`<node>.programmed.json`): the lab waits on it, and compares it with its own model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use podnet_model::ConfigOverrides;
use podnet_node::apply::Held;
use podnet_node::dataplane::NodeDataplane;
use podnet_node::effects::Linux;
use serde_json::Value;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::{translate, AgentError};

/// How long the loop waits after a change for the changes that come with it.
pub const SETTLE: Duration = Duration::from_millis(5);

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

/// Where an agent records what it last programmed without a failure.
pub fn programmed_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.programmed.json"))
}

/// The objects of one kind, as the API serves them.
type Reader<K> = reflector::Store<K>;

/// Reflectors of every kind the model is computed from ([`translate::KINDS`]): what the API
/// holds, kept up to date, and a signal on every change. The agent and `podnet dns` share it.
pub struct ClusterWatch {
    changed: Arc<Notify>,
    namespaces: Reader<Namespace>,
    nodes: Reader<Node>,
    pods: Reader<Pod>,
    services: Reader<Service>,
    slices: Reader<EndpointSlice>,
    policies: Reader<NetworkPolicy>,
}

fn values<K>(r: &Reader<K>) -> Vec<Value>
where
    K: kube::Resource + serde::Serialize + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    r.state()
        .iter()
        .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
        .collect()
}

impl ClusterWatch {
    /// Starts the reflectors; [`ClusterWatch::ready`] waits for their first lists.
    pub fn start(client: &kube::Client, metrics: Arc<Metrics>) -> ClusterWatch {
        let changed = Arc::new(Notify::new());
        ClusterWatch {
            namespaces: reflect(client, changed.clone(), metrics.clone()),
            nodes: reflect(client, changed.clone(), metrics.clone()),
            pods: reflect(client, changed.clone(), metrics.clone()),
            services: reflect(client, changed.clone(), metrics.clone()),
            slices: reflect(client, changed.clone(), metrics.clone()),
            policies: reflect(client, changed.clone(), metrics),
            changed,
        }
    }

    /// Waits for a change after the last snapshot, and a moment ([`SETTLE`]) for the changes
    /// that come with it.
    pub async fn changed(&self) {
        self.changed.notified().await;
        tokio::time::sleep(SETTLE).await;
    }

    /// Asks for another round, without a change (a retry).
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Waits until every kind has been listed once; false if a reflector ended first.
    pub async fn ready(&self) -> bool {
        self.namespaces.wait_until_ready().await.is_ok()
            && self.nodes.wait_until_ready().await.is_ok()
            && self.pods.wait_until_ready().await.is_ok()
            && self.services.wait_until_ready().await.is_ok()
            && self.slices.wait_until_ready().await.is_ok()
            && self.policies.wait_until_ready().await.is_ok()
    }

    /// Every object held, in a stable order (a watch's stores have a hash map's).
    pub fn snapshot(&self) -> Vec<Value> {
        let mut out = values(&self.namespaces);
        out.extend(values(&self.nodes));
        out.extend(values(&self.pods));
        out.extend(values(&self.services));
        out.extend(values(&self.slices));
        out.extend(values(&self.policies));
        out.sort_by_cached_key(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        out
    }
}

/// Starts a reflector of every object of `K`, in every namespace; each change wakes `changed`.
fn reflect<K>(client: &kube::Client, changed: Arc<Notify>, metrics: Arc<Metrics>) -> Reader<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let api: kube::Api<K> = kube::Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let kind = K::kind(&Default::default()).to_string();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    metrics.watch_error();
                    eprintln!("watching {kind}: {e} (retrying)");
                }
            }
        }
    });
    reader
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

/// The node's dataplane from what the API holds.
pub fn desired(
    objects: &[Value],
    cfg: &AgentConfig,
) -> Result<(NodeDataplane, Option<ipnet::IpNet>), AgentError> {
    let (cluster, skipped) =
        translate::model_skipping(objects, &cfg.overrides).map_err(AgentError::Model)?;
    for s in &skipped {
        eprintln!(
            "node {}: left out {} (the rest is programmed): {}",
            cfg.node, s.object, s.why
        );
    }
    let pod_cidr = cluster
        .node(&cfg.node)
        .and_then(|n| n.pod_cidrs.first().copied());
    let d = NodeDataplane::for_node(&cluster, &cfg.node, &cfg.uplink)
        .ok_or_else(|| AgentError::NoSuchNode(cfg.node.clone()))?;
    Ok((d, pod_cidr))
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
    let stores = ClusterWatch::start(&client, metrics.clone());
    if !stores.ready().await {
        return Err(AgentError::Io {
            what: "the reflectors stopped before their first list".into(),
            source: std::io::Error::other("reflector dropped"),
        });
    }
    eprintln!("node {}: every kind listed; programming", cfg.node);
    // Not ready until the node holds what the API says.
    let _ = std::fs::remove_file(cfg.ready_file());
    // What the record says the node holds, as far as the kernel confirms it.
    let mut held = Linux::at(cfg.netns.clone()).confirm(read_held(&cfg.held_file()));
    let mut last_good: Option<NodeDataplane> = None;
    loop {
        let start = Instant::now();
        let objects = stores.snapshot();
        match desired(&objects, &cfg) {
            Ok((want, pod_cidr)) => {
                let fx_netns = cfg.netns.clone();
                let (h, failures) = {
                    let mut fx = Linux::at(fx_netns);
                    let applied = podnet_node::apply(&held, &want, &mut fx);
                    (applied.held, applied.failures)
                };
                held = h;
                write_json(&cfg.held_file(), &held)?;
                if failures.is_empty() {
                    if last_good.as_ref() != Some(&want) {
                        write_json(&programmed_file(&cfg.state_dir, &cfg.node), &want)?;
                    }
                    metrics.synced(start.elapsed(), &want);
                    if last_good.is_none() {
                        write_json(&cfg.ready_file(), &true)?;
                        if let (Some(cni), Some(cidr)) = (&cfg.cni, pod_cidr) {
                            install_cni(cni, cidr, &cfg.ready_file())?;
                        }
                    }
                    last_good = Some(want);
                } else {
                    for f in &failures {
                        eprintln!("node {}: {}", cfg.node, podnet_node::chain(f));
                    }
                    metrics.failed();
                    // Try again soon, even without a change.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    stores.poke();
                }
            }
            Err(e) => {
                // What cannot be used is reported; the node keeps what it holds.
                eprintln!("node {}: {}", cfg.node, podnet_node::chain(&e));
                metrics.failed();
            }
        }
        metrics.set_ready(last_good.is_some());
        stores.changed().await;
    }
}
