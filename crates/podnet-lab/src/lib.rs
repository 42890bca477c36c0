//! The lab: a whole multi-node cluster network on one machine, in network namespaces, built
//! from the model. See [`plan`] for the topology.

pub mod agents;
pub mod change;
mod diag;
pub mod fdstore;
pub mod lock;
pub mod net;
pub mod plan;
pub mod probe;
pub mod repair;
pub mod runtime;
pub mod serve;

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

/// What a running lab keeps in `/run/podnet/<lab>/state.json`: always what is running.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub plan: LabPlan,
    /// The IPs the CNI plugin really assigned.
    #[serde(with = "podnet_model::pairs")]
    pub pod_ips: BTreeMap<NsName, IpAddr>,
    #[serde(default)]
    pub serve_pid: Option<i32>,
    /// What each node's dataplane holds, by node.
    #[serde(default)]
    pub nodes: BTreeMap<String, Held>,
    /// LoadBalancer IPs and externalIPs the external client routes to the nodes, with the
    /// nodes each goes to.
    #[serde(default)]
    pub external_routes: BTreeMap<IpAddr, Vec<IpAddr>>,
    /// The health checks of `externalTrafficPolicy: Local` LoadBalancers, on every node.
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    /// The cluster DNS zone the DNS pods serve.
    #[serde(default)]
    pub dns: Option<podnet_model::dns::StoredZone>,
    /// What the Ingress controller's pods serve (`podnet ingress watch --served`), when the
    /// lab has them.
    #[serde(default)]
    pub ingress: Option<serde_json::Value>,
    /// What each Gateway's proxy pods serve (`podnet gateway watch --served`), by Gateway.
    #[serde(default)]
    pub gateways: BTreeMap<String, serde_json::Value>,
    /// The creation time and generation the lab's API gives each Gateway API object (the API
    /// server's part: a route's age orders ties; status names the generation it observed),
    /// by `Kind/namespace/name`.
    #[serde(default)]
    pub gateway_meta: BTreeMap<String, ObjectStamp>,
    /// The objects the lab's Kubernetes API serves ([`podnet_api::project`]).
    #[serde(default)]
    pub api: Vec<serde_json::Value>,
    /// Whether the nodes run `podnet agent` against the lab's API (which then programs them),
    /// instead of being programmed by the lab process.
    #[serde(default)]
    pub agents: bool,
    /// With agents: what each node must come to hold (the lab waits for it).
    #[serde(skip)]
    pub expected: BTreeMap<String, NodeDataplane>,
}

/// What the API server stamps on an object: when it was created, and its spec's generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStamp {
    pub created: String,
    pub generation: i64,
    pub spec: serde_json::Value,
}

/// Gives each Gateway API object its creation time (kept from the first time the lab saw it)
/// and generation (one more each time its spec changes), as the API server would.
fn stamp_gateway_objects(st: &mut LabState, c: &mut Cluster) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut stamp = |kind: &str, meta: &mut ObjectMeta, spec: serde_json::Value| {
        let key = format!(
            "{kind}/{}/{}",
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or("")
        );
        let e = st
            .gateway_meta
            .entry(key.clone())
            .or_insert_with(|| ObjectStamp {
                created: now.clone(),
                generation: 1,
                spec: spec.clone(),
            });
        if e.spec != spec {
            e.generation += 1;
            e.spec = spec;
        }
        meta.generation = Some(e.generation);
        meta.creation_timestamp = e.created.parse().ok().map(Time);
        seen.insert(key);
    };
    fn json(spec: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(spec).unwrap_or_default()
    }
    for o in &mut c.gateway_classes {
        let spec = json(&o.obj.spec);
        stamp("GatewayClass", &mut o.obj.metadata, spec);
    }
    for o in &mut c.gateways {
        let spec = json(&o.obj.spec);
        stamp("Gateway", &mut o.obj.metadata, spec);
    }
    for o in &mut c.http_routes {
        let spec = json(&o.obj.spec);
        stamp("HTTPRoute", &mut o.obj.metadata, spec);
    }
    for o in &mut c.reference_grants {
        let spec = json(&o.obj.spec);
        stamp("ReferenceGrant", &mut o.obj.metadata, spec);
    }
    st.gateway_meta.retain(|k, _| seen.contains(k));
}

impl LabState {
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        self.pod_ips.get(&NsName::new(namespace, name)).copied()
    }

    /// Where the lab's pods run: what the model keeps when the lab changes.
    pub fn placements(&self) -> podnet_model::Placements {
        self.plan
            .pods
            .iter()
            .map(|p| {
                let placement = podnet_model::Placement {
                    node: p.node.clone(),
                    ip: self.pod_ips.get(&p.key()).copied(),
                };
                (p.key(), placement)
            })
            .collect()
    }
}

pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(RUN_DIR).join(lab)
}

pub fn load_state(lab: &str) -> Result<LabState, LabError> {
    let path = lab_dir(lab).join("state.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|_| LabError::NotUp(lab.to_string(), path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|source| LabError::Json {
        what: path.display().to_string(),
        source,
    })
}

fn save_state(lab: &str, st: &LabState) -> Result<(), LabError> {
    let path = lab_dir(lab).join("state.json");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(st).expect("serializes"))
        .map_err(io(tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(io(path.display()))
}

/// Whether anything of the lab exists: its state directory or any of its namespaces.
pub fn exists(lab: &str) -> bool {
    lab_dir(lab).exists() || !net::netns_list(&plan::prefix(lab)).is_empty()
}

/// Whether the lab's server runs: the process exists and is still `podnet lab serve` for this
/// lab (not a zombie, not a recycled PID).
fn alive(lab: &str, pid: Option<i32>) -> bool {
    pid.is_some_and(|p| is_server_of(p, lab)) || serve_pid(lab).is_some()
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
    plan::valid_lab_name(lab).map_err(LabError::Invalid)?;
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

/// Where the lab keeps a node's CNI files.
fn node_dir(lab: &str, node: &str) -> PathBuf {
    lab_dir(lab).join("nodes").join(node)
}

fn build(lab: &str, cluster: &Cluster, exe: &Path, agents: bool) -> Result<LabState, LabError> {
    let plan = LabPlan::new(lab, cluster);
    install_plugin(lab, exe)?;
    create_namespaces(&plan)?;
    wire_underlay(&plan)?;
    for node in &plan.nodes {
        write_conflist(lab, node, agents)?;
    }
    let pod_ips: BTreeMap<NsName, IpAddr> = plan
        .pods
        .iter()
        .filter(|p| p.host_network)
        .filter_map(|p| Some((p.key(), plan.node(&p.node)?.ip)))
        .collect();
    let mut state = LabState {
        plan,
        pod_ips,
        serve_pid: None,
        nodes: BTreeMap::new(),
        external_routes: BTreeMap::new(),
        health_checks: Vec::new(),
        dns: None,
        ingress: None,
        gateways: BTreeMap::new(),
        gateway_meta: BTreeMap::new(),
        api: Vec::new(),
        agents,
        expected: BTreeMap::new(),
    };
    // The API's clients (agents, DNS and Ingress controller pods) read these.
    agents::prepare(lab, &state.plan, cluster)?;
    if agents {
        // As on a cluster: the nodes' agents run before any pod, whose CNI ADD returns only
        // once its node's agent has programmed it; until then the API shows it Pending,
        // with no address, and none of its processes runs.
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        state.serve_pid = Some(start_servers(lab, exe)?);
        agents::wait(lab, &mut state)?;
        let added = add_pods(lab, &state.plan, &state.plan.pods)?;
        state.pod_ips.extend(added);
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        reload_servers(lab, serve_pid(lab).or(state.serve_pid))?;
    } else {
        let added = add_pods(lab, &state.plan, &state.plan.pods)?;
        state.pod_ips.extend(added);
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        state.serve_pid = Some(start_servers(lab, exe)?);
    }
    agents::wait(lab, &mut state)?;
    save_state(lab, &state)?;
    Ok(state)
}

/// The podnet binary as the lab's CNI plugin.
fn install_plugin(lab: &str, exe: &Path) -> Result<(), LabError> {
    let bin = lab_dir(lab).join("bin");
    std::fs::create_dir_all(&bin).map_err(io("creating the lab directory"))?;
    std::os::unix::fs::symlink(exe, bin.join("podnet-cni")).map_err(io("linking the CNI plugin"))
}

/// Every namespace of the plan, with its `/etc/netns` files.
fn create_namespaces(plan: &LabPlan) -> Result<(), LabError> {
    let node_resolv = node_resolv_conf_file();
    let host_files = [("resolv.conf", node_resolv.as_str())];
    let hosts = std::iter::once(&plan.underlay_ns)
        .chain([&plan.external.ns, &plan.api.ns])
        .chain(plan.nodes.iter().map(|n| &n.ns));
    for ns in hosts {
        net::netns_add(ns)?;
        if *ns != plan.underlay_ns {
            net::etc_write(ns, &host_files)?;
        }
    }
    for p in plan.pods.iter().filter(|p| !p.host_network) {
        create_pod_namespace(p)?;
    }
    Ok(())
}

fn create_pod_namespace(p: &PodPlan) -> Result<(), LabError> {
    net::netns_add(&p.netns)?;
    net::etc_write(&p.netns, &pod_etc(p))
}

/// The underlay: its bridge, the nodes' and the external client's uplinks and addresses.
fn wire_underlay(plan: &LabPlan) -> Result<(), LabError> {
    Linux::named(&plan.underlay_ns).net(&plan.underlay_ops())?;
    Linux::named(&plan.external.ns).net(&plan.external_ops())?;
    Linux::named(&plan.api.ns).net(&plan.api_ops())?;
    for node in &plan.nodes {
        Linux::named(&node.ns).net(&plan.node_ops(node))?;
    }
    Ok(())
}

/// A node's CNI configuration; with agents, its ADD waits for the node's agent.
fn write_conflist(lab: &str, node: &plan::NodePlan, agents: bool) -> Result<(), LabError> {
    let dir = node_dir(lab, &node.name);
    let netd = dir.join("net.d");
    std::fs::create_dir_all(&netd).map_err(io(netd.display()))?;
    let socket = agents.then(|| agents::socket(lab, &node.name));
    let list = runtime::conflist(node, &dir.join("ipam"), socket.as_deref());
    let path = netd.join(runtime::CONFLIST);
    std::fs::write(&path, serde_json::to_vec_pretty(&list).expect("serializes"))
        .map_err(io(path.display()))
}

fn runtime_for(lab: &str, plan: &LabPlan, p: &PodPlan) -> Runtime {
    let node = plan.node(&p.node).expect("pods are on planned nodes");
    Runtime {
        cni_path: lab_dir(lab).join("bin"),
        conf_dir: node_dir(lab, &node.name).join("net.d"),
        node_ns: node.ns.clone(),
    }
}

fn result_file(lab: &str, p: &PodPlan) -> PathBuf {
    node_dir(lab, &p.node).join(format!("{}.result.json", p.container_id))
}

/// CNI ADD for one pod, whose namespace exists; its result is kept for DEL.
fn add_pod(lab: &str, plan: &LabPlan, pod: &PodPlan) -> Result<IpAddr, LabError> {
    let res = runtime_for(lab, plan, pod)
        .run(Op::Add, pod, None)?
        .unwrap_or_default();
    let ip = runtime::result_ip(&res).ok_or_else(|| LabError::Cni {
        pod: pod.key(),
        op: "ADD",
        msg: "the result has no IP".into(),
    })?;
    let path = result_file(lab, pod);
    std::fs::write(&path, serde_json::to_vec(&res).expect("serializes"))
        .map_err(io(path.display()))?;
    Ok(ip)
}

/// CNI ADD for the pods that have a namespace of their own, a few at a time.
fn add_pods(
    lab: &str,
    plan: &LabPlan,
    pods: &[PodPlan],
) -> Result<Vec<(NsName, IpAddr)>, LabError> {
    let pods: Vec<&PodPlan> = pods.iter().filter(|p| !p.host_network).collect();
    let workers = 8.min(pods.len().max(1));
    let results: Vec<Result<Vec<(NsName, IpAddr)>, LabError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let chunk: Vec<&PodPlan> = pods.iter().skip(w).step_by(workers).copied().collect();
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|pod| Ok((pod.key(), add_pod(lab, plan, pod)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a CNI worker panicked"))
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Makes every node hold its dataplane, computed from the model with the pods' real IPs; then
/// routes LoadBalancer IPs and externalIPs from the external client to the nodes that serve
/// them. Every node is tried; every failure is reported. The state records what each node
/// holds either way.
pub fn program_nodes(
    st: &mut LabState,
    cluster: &Cluster,
    host: &mut dyn change::Host,
) -> Result<(), LabError> {
    let mut c = as_served(st, cluster);
    stamp_gateway_objects(st, &mut c);
    // What each Gateway's proxy will serve: the same function over the same objects.
    let gateways = podnet_gateway::compute(&c);
    st.gateways = st
        .plan
        .pods
        .iter()
        .filter_map(|p| p.gateway.clone())
        .map(|g| {
            let summary = gateways
                .configs
                .get(&g)
                .cloned()
                .unwrap_or_default()
                .summary();
            (g.to_string(), summary)
        })
        .collect();
    // The DNS zone from the same endpoints; the DNS pods load it when the servers reload.
    st.dns = Some(podnet_model::dns::DnsZone::from_cluster(&c).to_stored());
    // What the Ingress controller will serve: the same function over the same objects.
    st.ingress = st
        .plan
        .pods
        .iter()
        .any(|p| p.ingress_controller)
        .then(|| podnet_ingress::edge::config(&c).summary());
    // And the API's objects, which the servers' process serves when it reloads.
    st.api = podnet_api::project::project_with(&c, &gateways);
    let dataplanes = NodeDataplane::for_cluster(&c, plan::UPLINK);
    let mut failures = Vec::new();
    if st.agents {
        // The agents program the nodes from the API; the lab waits for them (agents::wait).
        st.expected = dataplanes
            .iter()
            .map(|d| (d.node.clone(), d.clone()))
            .collect();
    }
    for dp in dataplanes.iter().filter(|_| !st.agents) {
        let node = st
            .plan
            .node(&dp.node)
            .expect("the lab's nodes are the model's");
        let held = st.nodes.get(&dp.node).cloned().unwrap_or_default();
        let applied = podnet_node::apply(&held, dp, &mut *host.effects(&node.ns));
        st.nodes.insert(dp.node.clone(), applied.held);
        failures.extend(LabError::of_node(&dp.node, applied.failures));
    }
    st.health_checks = dataplanes
        .iter()
        .flat_map(|d| d.health_checks.iter().cloned())
        .collect();
    if let Err(e) = route_external(st, &c, &dataplanes, host) {
        failures.push(e);
    }
    LabError::all(failures)
}

/// Each external address is routed from the external client to the nodes that serve it (as
/// MetalLB announces); with no endpoint anywhere, to every node (which refuses the connection).
fn route_external(
    st: &mut LabState,
    c: &Cluster,
    dataplanes: &[NodeDataplane],
    host: &mut dyn change::Host,
) -> Result<(), LabError> {
    let node_ip = |name: &str| st.plan.node(name).map(|n| n.ip);
    let all: Vec<IpAddr> = st.plan.nodes.iter().map(|n| n.ip).collect();
    let want: BTreeMap<IpAddr, Vec<IpAddr>> = c
        .services
        .iter()
        .flat_map(|s| s.load_balancer_ips.iter().chain(&s.external_ips))
        .filter(|ip| ip.is_ipv4())
        .map(|ip| {
            let serving: Vec<IpAddr> = dataplanes
                .iter()
                .filter(|d| d.serves_external.contains(ip))
                .filter_map(|d| node_ip(&d.node))
                .collect();
            let via = if serving.is_empty() {
                all.clone()
            } else {
                serving
            };
            (*ip, via)
        })
        .collect();
    let ops = route_changes(&st.external_routes, &want);
    if !ops.is_empty() {
        host.effects(&st.plan.external.ns).net(&ops)?;
    }
    st.external_routes = want;
    Ok(())
}

/// The route operations from one set of external routes to another.
fn route_changes(
    from: &BTreeMap<IpAddr, Vec<IpAddr>>,
    to: &BTreeMap<IpAddr, Vec<IpAddr>>,
) -> Vec<NetOp> {
    let gone = from
        .keys()
        .filter(|ip| !to.contains_key(ip))
        .map(|ip| NetOp::DeleteRoute {
            dst: IpNet::from(*ip),
        });
    let changed = to
        .iter()
        .filter(|(ip, via)| from.get(ip) != Some(via))
        .map(|(ip, via)| NetOp::Route {
            dst: IpNet::from(*ip),
            via: via.clone(),
            dev: None,
            onlink: false,
        });
    gone.chain(changed).collect()
}

/// Starts the lab's process (`podnet lab serve`, kept running by `podnet lab keep`) in the
/// background and waits until every listener is bound; returns the server's pid.
fn start_servers(lab: &str, exe: &Path) -> Result<i32, LabError> {
    use std::os::unix::process::CommandExt;
    let log_path = lab_dir(lab).join("serve.log");
    let log = std::fs::File::create(&log_path).map_err(io(log_path.display()))?;
    let mut child = Command::new(exe)
        .args(["lab", "keep", "--name", lab])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io("starting the test servers"))?;
    // Recorded before it serves: whatever happens next, down finds it.
    let pid_file = lab_dir(lab).join("keep.pid");
    std::fs::write(&pid_file, child.id().to_string()).map_err(io(pid_file.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(io("waiting for the test servers"))?;
    if line.trim() != "ready" {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(LabError::Servers(format!("they did not start: {log}")));
    }
    serve_pid(lab).ok_or_else(|| LabError::Servers("ready, but no serve.pid".into()))
}

/// The running server's pid, as it recorded it (it changes when the keeper starts it again).
pub fn serve_pid(lab: &str) -> Option<i32> {
    std::fs::read_to_string(lab_dir(lab).join("serve.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| is_server_of(*p, lab))
}

/// Keeps `podnet lab serve --name <lab>` running, as a node's init keeps its kubelet: started
/// again whenever it exits (killed, crashed), for as long as the lab exists. The first
/// server's `ready` goes to this process's standard output (`lab up` waits for it); each
/// server records its own pid (`serve.pid`) before it serves. The server takes back the
/// agents and pods' processes that outlived the one before ([`agents`]).
pub fn keep(lab: &str) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(io("the podnet binary"))?;
    let log_path = lab_dir(lab).join("serve.log");
    // The servers' sockets outlive each server ([`fdstore`]).
    let store = fdstore::Store::default();
    let store_path = lab_dir(lab).join("fds.sock");
    store
        .listen(&store_path)
        .map_err(io(format!("the socket store {}", store_path.display())))?;
    let mut first = true;
    loop {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(log_path.display()))?;
        let mut child = Command::new(&exe)
            .args(["lab", "serve", "--name", lab])
            .env(fdstore::ENV, &store_path)
            .stdin(Stdio::null())
            .stdout(if first { Stdio::piped() } else { Stdio::null() })
            .stderr(log)
            .spawn()
            .map_err(io("starting the lab's server"))?;
        if first {
            first = false;
            let mut line = String::new();
            let stdout = child.stdout.take().expect("piped");
            let _ = BufReader::new(stdout).read_line(&mut line);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        let started = Instant::now();
        let status = child.wait().map_err(io("waiting for the lab's server"))?;
        if !lab_dir(lab).join("state.json").exists() {
            return Ok(());
        }
        eprintln!("the lab's server exited ({status}); starting it again");
        if started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub use change::ApplyReport;

/// Applies new manifests to a running lab, all or nothing ([`change::apply_with`]): pods that
/// are new are created, pods that are gone are deleted (CNI DEL, then their namespace), and
/// pods that did not change are not touched. Nodes cannot change live. The saved state
/// describes what runs, whatever happens.
pub fn apply(lab: &str, cluster: &Cluster) -> Result<ApplyReport, LabError> {
    plan::valid_lab_name(lab).map_err(LabError::Invalid)?;
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

/// Writes a kubeconfig for the lab's Kubernetes API (on the host's loopback) into the lab's
/// directory and returns its path.
pub fn kubeconfig(lab: &str) -> Result<PathBuf, LabError> {
    let addr_file = serve::api_addr_file(lab);
    let addr = std::fs::read_to_string(&addr_file)
        .map_err(|_| LabError::NotUp(lab.to_string(), addr_file.display().to_string()))?;
    let name = format!("podnet-{lab}");
    let text = podnet_api::kubeconfig(&name, addr.trim());
    let path = lab_dir(lab).join("kubeconfig");
    std::fs::write(&path, text).map_err(io(path.display()))?;
    Ok(path)
}

/// A pod's files for `/etc/netns/<ns>/`.
fn pod_etc(p: &PodPlan) -> [(&'static str, &str); 2] {
    [("resolv.conf", &p.resolv_conf), ("hosts", &p.hosts)]
}

/// A node's (and the external client's) resolv.conf file: the one pods with `dnsPolicy:
/// Default` inherit ([`plan::node_resolv_conf`]).
fn node_resolv_conf_file() -> String {
    format!(
        "# podnet lab: nodes have no upstream DNS (nothing in the lab leads out).\n{}",
        plan::node_resolv_conf()
    )
}

/// CNI DEL (with the pod's ADD result as prevResult), then its namespace.
fn remove_pod(lab: &str, plan: &LabPlan, p: &PodPlan) -> Result<(), LabError> {
    if p.host_network {
        return Ok(());
    }
    let path = result_file(lab, p);
    let prev: Option<AddResult> = std::fs::read(&path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    runtime_for(lab, plan, p).run(Op::Del, p, prev.as_ref())?;
    let _ = std::fs::remove_file(&path);
    net::netns_del(&p.netns)
}

fn reload_servers(lab: &str, pid: Option<i32>) -> Result<(), LabError> {
    use nix::sys::signal::{kill, Signal};
    let Some(pid) = pid else {
        return Err(LabError::Servers("not running".into()));
    };
    let gen_file = lab_dir(lab).join("serve.gen");
    let before = std::fs::read_to_string(&gen_file).unwrap_or_default();
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| LabError::Io {
        what: "signalling the test servers".into(),
        source: e.into(),
    })?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(&gen_file).unwrap_or_default() != before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(LabError::Servers(
        "they did not reload in 10 s (see serve.log)".into(),
    ))
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
    plan::valid_lab_name(lab).map_err(LabError::Invalid)?;
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

/// The lab's server processes: the one its state and its pid file name, and any other whose
/// command line is exactly `<podnet> lab serve --name <lab>` (one whose pid was never recorded,
/// if `lab up` died at the wrong moment).
pub fn server_processes(lab: &str) -> Vec<i32> {
    let mut pids: BTreeSet<i32> = BTreeSet::new();
    pids.extend(load_state(lab).ok().and_then(|st| st.serve_pid));
    for file in ["serve.pid", "keep.pid"] {
        pids.extend(
            std::fs::read_to_string(lab_dir(lab).join(file))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok()),
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        pids.extend(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()));
    }
    pids.into_iter()
        .filter(|p| is_keeper_of(*p, lab) || is_server_of(*p, lab) || agents::is_agent_of(*p, lab))
        .collect()
}

/// Whether process `pid` is `podnet lab <verb> --name <lab>`.
fn is_lab_process(pid: i32, verb: &str, lab: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    args.len() == 5 && args[1..] == [&b"lab"[..], verb.as_bytes(), b"--name", lab.as_bytes()]
}

/// Whether process `pid` is `podnet lab serve --name <lab>`.
fn is_server_of(pid: i32, lab: &str) -> bool {
    is_lab_process(pid, "serve", lab)
}

/// Whether process `pid` is `podnet lab keep --name <lab>`.
fn is_keeper_of(pid: i32, lab: &str) -> bool {
    is_lab_process(pid, "keep", lab)
}

/// Whether process `pid` has exited and only waits to be reaped (a zombie: `kill(pid, 0)`
/// still succeeds on one). The lab's agents and pods' processes outlive the process that
/// started them, and whoever adopts them may reap them late, or never.
pub(crate) fn exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_none_or(|state| state == "Z" || state == "X")
}

fn stop_process(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let start = Instant::now();
    while kill(p, None).is_ok() && !exited(pid) && start.elapsed() < Duration::from_secs(2) {
        // Reap it if it is our child (lab up's own), so that it does not linger as a zombie.
        let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
}

/// Pod status for `lab status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: Option<IpAddr>,
    pub ready: bool,
    pub host_network: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub ip: IpAddr,
    pub pod_cidr: ipnet::IpNet,
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub name: String,
    pub servers_running: bool,
    pub nodes: Vec<NodeStatus>,
    pub pods: Vec<PodStatus>,
}

pub fn status(lab: &str) -> Result<Status, LabError> {
    let st = load_state(lab)?;
    let alive = alive(lab, st.serve_pid);
    let nodes = st
        .plan
        .nodes
        .iter()
        .map(|n| NodeStatus {
            name: n.name.clone(),
            ip: n.ip,
            pod_cidr: n.pod_cidr,
            ready: podnet_node::sys::netns_path(&n.ns).exists(),
        })
        .collect();
    let pods = st
        .plan
        .pods
        .iter()
        .map(|p| PodStatus {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            ip: st.pod_ip(&p.namespace, &p.name),
            ready: p.ready && alive && podnet_node::sys::netns_path(&p.netns).exists(),
            host_network: p.host_network,
        })
        .collect();
    Ok(Status {
        name: lab.to_string(),
        servers_running: alive,
        nodes,
        pods,
    })
}

/// The real pod IPs as the model wants them back.
/// The cluster as the lab runs it: each pod with the address its CNI ADD gave it; a pod whose
/// ADD has not returned (not in `st.pod_ips`) Pending, with no address, not ready, as the API
/// shows a pod whose sandbox is being created.
fn as_served(st: &LabState, cluster: &Cluster) -> Cluster {
    let mut c = cluster.clone();
    let mut ips = actual_ips(st);
    for p in &mut c.pods {
        if p.node.is_some() && !p.host_network && !st.pod_ips.contains_key(&p.key()) {
            p.ready = false;
            p.phase = "Pending".into();
            ips.insert(p.key(), Vec::new());
        }
    }
    c.set_pod_ips(&ips);
    c
}

pub fn actual_ips(st: &LabState) -> HashMap<NsName, Vec<IpAddr>> {
    st.pod_ips
        .iter()
        .map(|(k, ip)| (k.clone(), vec![*ip]))
        .collect()
}

/// The namespace `lab exec` enters for a target: `<ns>/<pod>`, `node/<name>` or `external`.
pub fn exec_target(st: &LabState, target: &str) -> Result<String, LabError> {
    if target == "external" {
        return Ok(st.plan.external.ns.clone());
    }
    if let Some(node) = target.strip_prefix("node/") {
        return st.plan.node(node).map(|n| n.ns.clone()).ok_or_else(|| {
            LabError::Invalid(format!(
                "no node {node:?}; nodes: {}",
                st.plan
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        });
    }
    let (ns, name) = target.split_once('/').ok_or_else(|| {
        LabError::Invalid(format!(
            "{target:?}: expected <namespace>/<pod>, node/<name> or external"
        ))
    })?;
    st.plan
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .map(|p| p.netns.clone())
        .ok_or_else(|| LabError::Invalid(format!("no pod {target:?} in lab {}", st.plan.name)))
}
