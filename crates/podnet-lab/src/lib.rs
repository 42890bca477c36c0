//! The lab: a whole multi-node cluster network on one machine, in network namespaces, built
//! from the model. See [`plan`] for the topology.

pub mod net;
pub mod plan;
pub mod probe;
pub mod runtime;
pub mod serve;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podnet_model::{Cluster, NsName};
use serde::{Deserialize, Serialize};

use crate::plan::LabPlan;
use crate::runtime::{Op, Runtime};

pub const RUN_DIR: &str = "/run/podnet";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{cmd}: {msg}")]
    Command { cmd: String, msg: String },
    #[error("CNI {op} for pod {pod}: {msg}")]
    Cni {
        pod: String,
        op: String,
        msg: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("lab {0:?} is not up (no {1})")]
    NotUp(String, String),
    #[error("teardown left {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Teardown(Vec<String>),
}

/// What a running lab keeps in `/run/podnet/<lab>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub plan: LabPlan,
    /// The IPs the CNI plugin really assigned, by `namespace/name`.
    pub pod_ips: HashMap<String, IpAddr>,
    #[serde(default)]
    pub serve_pid: Option<i32>,
    /// What each node's service proxy holds (nftables elements), by node.
    #[serde(default)]
    pub proxy: std::collections::BTreeMap<String, podnet_proxy::nft::Elements>,
    /// LoadBalancer IPs and externalIPs the external client routes to the nodes.
    #[serde(default)]
    pub external_routes: Vec<IpAddr>,
    /// The health checks of `externalTrafficPolicy: Local` LoadBalancers, per node.
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    /// The cluster DNS zone the DNS pods serve.
    #[serde(default)]
    pub dns: Option<podnet_model::dns::StoredZone>,
}

/// A `healthCheckNodePort` on one node: 200 while the Service has ready endpoints on the node,
/// 503 otherwise (serving-but-terminating endpoints do not count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub node: String,
    pub port: u16,
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

impl LabState {
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<IpAddr> {
        self.pod_ips.get(&format!("{namespace}/{name}")).copied()
    }
}

pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(RUN_DIR).join(lab)
}

pub fn load_state(lab: &str) -> Result<LabState, LabError> {
    let path = lab_dir(lab).join("state.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|_| LabError::NotUp(lab.to_string(), path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| LabError::Io(format!("{}: {e}", path.display())))
}

fn save_state(lab: &str, st: &LabState) -> Result<(), LabError> {
    let path = lab_dir(lab).join("state.json");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(st).expect("serializes"))
        .map_err(|e| LabError::Io(e.to_string()))?;
    std::fs::rename(&tmp, &path).map_err(|e| LabError::Io(e.to_string()))
}

fn io<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> LabError + '_ {
    move |e| LabError::Io(format!("{what}: {e}"))
}

/// Whether anything of the lab exists: its state directory or any of its namespaces.
pub fn exists(lab: &str) -> bool {
    lab_dir(lab).exists() || !net::netns_list(&plan::prefix(lab)).is_empty()
}

/// Builds the lab. `exe` is the podnet binary: it serves as the CNI plugin (`podnet-cni`) and
/// runs the test servers (`lab serve`). On failure everything built so far is removed.
pub fn up(lab: &str, cluster: &Cluster, exe: &Path) -> Result<LabState, LabError> {
    plan::valid_lab_name(lab).map_err(LabError::Invalid)?;
    if let Ok(st) = load_state(lab) {
        let alive = st
            .serve_pid
            .is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
        if alive {
            return Err(LabError::Invalid(format!("lab {lab:?} is already up: change it with `podnet lab apply --name {lab}`, or remove it with `podnet lab down --name {lab}`")));
        }
    }
    if exists(lab) {
        // Leftovers of a crash: a lab whose servers are gone, or a half-built one.
        down(lab)?;
    }
    let result = build(lab, cluster, exe);
    if result.is_err() {
        let _ = down(lab);
    }
    result
}

fn build(lab: &str, cluster: &Cluster, exe: &Path) -> Result<LabState, LabError> {
    let dir = lab_dir(lab);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io("creating the lab directory"))?;
    std::os::unix::fs::symlink(exe, bin.join("podnet-cni"))
        .map_err(io("linking the CNI plugin"))?;
    let plan = LabPlan::new(lab, cluster);

    // Namespaces first, then the wiring of each.
    let mut names = vec![plan.underlay_ns.clone(), plan.external.ns.clone()];
    names.extend(plan.nodes.iter().map(|n| n.ns.clone()));
    names.extend(
        plan.pods
            .iter()
            .filter(|p| !p.host_network)
            .map(|p| p.netns.clone()),
    );
    for n in &names {
        net::netns_add(n)?;
    }
    let node_resolv = node_resolv_conf_file();
    let node_files = [("resolv.conf", node_resolv.as_str())];
    for node in &plan.nodes {
        net::etc_write(&node.ns, &node_files)?;
    }
    net::etc_write(&plan.external.ns, &node_files)?;
    for p in plan.pods.iter().filter(|p| !p.host_network) {
        net::etc_write(&p.netns, &pod_etc(p))?;
    }
    net::ip_batch(&plan.underlay_ns, &plan.underlay_script())?;
    net::ip_batch(&plan.external.ns, &plan.external_script())?;
    for node in &plan.nodes {
        net::ip_batch(&node.ns, &plan.node_script(node))?;
        net::bridge_batch(&node.ns, &plan.node_fdb_script(node))?;
        net::sysctl(&node.ns, "net.ipv4.ip_forward", "1")?;
        let ndir = dir.join("nodes").join(&node.name);
        std::fs::create_dir_all(ndir.join("net.d")).map_err(io("creating net.d"))?;
        let list = runtime::conflist(node, &ndir.join("ipam"));
        std::fs::write(
            ndir.join("net.d").join(runtime::CONFLIST),
            serde_json::to_vec_pretty(&list).expect("serializes"),
        )
        .map_err(io("writing the conflist"))?;
    }

    // CNI ADD for every pod, a few at a time.
    let pods: Vec<_> = plan
        .pods
        .iter()
        .filter(|p| !p.host_network)
        .cloned()
        .collect();
    let mut pod_ips = HashMap::new();
    for p in plan.pods.iter().filter(|p| p.host_network) {
        if let Some(n) = plan.node(&p.node) {
            pod_ips.insert(format!("{}/{}", p.namespace, p.name), n.ip);
        }
    }
    let workers = 8.min(pods.len().max(1));
    let chunks: Vec<Vec<_>> = (0..workers)
        .map(|w| pods.iter().skip(w).step_by(workers).cloned().collect())
        .collect();
    let results: Vec<Result<Vec<(String, IpAddr)>, LabError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (plan, dir, bin) = (&plan, &dir, &bin);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for pod in chunk {
                        let node = plan.node(&pod.node).expect("pods are on planned nodes");
                        let rt = Runtime {
                            cni_path: bin.clone(),
                            conf_dir: dir.join("nodes").join(&node.name).join("net.d"),
                            node_ns: node.ns.clone(),
                        };
                        let res = rt.run(Op::Add, &pod, None)?;
                        let ip = runtime::result_ip(&res).ok_or_else(|| LabError::Cni {
                            pod: pod.name.clone(),
                            op: "ADD".into(),
                            msg: "the result has no IP".into(),
                        })?;
                        std::fs::write(
                            dir.join("nodes")
                                .join(&node.name)
                                .join(format!("{}.result.json", pod.container_id)),
                            res.to_string(),
                        )
                        .map_err(io("saving the ADD result"))?;
                        out.push((format!("{}/{}", pod.namespace, pod.name), ip));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    for r in results {
        pod_ips.extend(r?);
    }

    let mut state = LabState {
        plan,
        pod_ips,
        serve_pid: None,
        proxy: Default::default(),
        external_routes: Vec::new(),
        health_checks: Vec::new(),
        dns: None,
    };
    program_services(&mut state, cluster)?;
    save_state(lab, &state)?;
    state.serve_pid = Some(start_servers(lab, exe)?);
    save_state(lab, &state)?;
    Ok(state)
}

/// Programs every node's service proxy from the model, with the pods' real IPs: the whole table
/// on a node's first time, only the changed elements after that, one nftables transaction per
/// node. Then routes LoadBalancer IPs and externalIPs from the external client to the nodes.
pub fn program_services(st: &mut LabState, cluster: &Cluster) -> Result<(), LabError> {
    use podnet_proxy::{nft, ProxyPlan};
    let mut c = cluster.clone();
    c.set_pod_ips(&actual_ips(st));
    // The DNS zone from the same endpoints; the DNS pods load it when the servers reload.
    st.dns = Some(podnet_model::dns::DnsZone::from_cluster(&c).to_stored());
    for node in &st.plan.nodes {
        let plan = ProxyPlan::new(&c, &node.name);
        let elements = nft::Elements::of(&plan);
        let script = match st.proxy.get(&node.name) {
            Some(old) => nft::diff(old, &elements),
            None => nft::full(&plan),
        };
        nft::apply(&net::netns_path(&node.ns), &script).map_err(LabError::Io)?;
        if let Some(old) = st.proxy.get(&node.name) {
            for (vip, port, ep) in nft::removed_udp_backends(old, &elements) {
                flush_udp_conntrack(&node.ns, vip.as_deref(), port, &ep);
            }
        }
        st.proxy.insert(node.name.clone(), elements);
    }
    st.health_checks = health_checks(&c, &st.plan);
    // Each external address is routed to the nodes that serve it: all of them, but for
    // `externalTrafficPolicy: Local` only those with a local endpoint (as MetalLB announces).
    let mut serving: std::collections::BTreeMap<IpAddr, Vec<IpAddr>> =
        std::collections::BTreeMap::new();
    for svc in &c.services {
        for ip in svc
            .load_balancer_ips
            .iter()
            .chain(&svc.external_ips)
            .filter(|ip| ip.is_ipv4())
        {
            serving.entry(*ip).or_default();
        }
    }
    for node in &st.plan.nodes {
        let plan = ProxyPlan::new(&c, &node.name);
        for (f, (_, d)) in &plan.frontends {
            if let (Some(list), podnet_proxy::Dispatch::Endpoints { .. }) =
                (serving.get_mut(&f.ip), d)
            {
                if !list.contains(&node.ip) {
                    list.push(node.ip);
                }
            }
        }
    }
    let all: Vec<IpAddr> = st.plan.nodes.iter().map(|n| n.ip).collect();
    let want: std::collections::BTreeSet<IpAddr> = serving.keys().copied().collect();
    let mut script = String::new();
    for ip in st.external_routes.iter().filter(|ip| !want.contains(ip)) {
        script += &format!("route del {ip}/32\n");
    }
    for (ip, nodes) in &serving {
        // With no endpoint anywhere, any node answers (it refuses the connection).
        let via = if nodes.is_empty() { &all } else { nodes };
        let hops: String = via.iter().map(|n| format!(" nexthop via {n}")).collect();
        script += &format!("route replace {ip}/32{hops}\n");
    }
    if !script.is_empty() {
        net::ip_batch(&st.plan.external.ns, &script)?;
    }
    st.external_routes = want.into_iter().collect();
    Ok(())
}

/// Deletes the conntrack entries of UDP flows to a frontend that were sent to a gone endpoint,
/// as kube-proxy does: without it, a client reusing its socket keeps going to the gone endpoint
/// until the entry times out. Finding none is fine.
fn flush_udp_conntrack(node_ns: &str, vip: Option<&str>, port: u16, endpoint: &str) {
    let mut args = vec![
        "conntrack".to_string(),
        "-D".into(),
        "-p".into(),
        "udp".into(),
    ];
    if let Some(v) = vip {
        args.extend(["--orig-dst".into(), v.to_string()]);
    }
    args.extend([
        "--orig-port-dst".into(),
        port.to_string(),
        "--reply-src".into(),
        endpoint.to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = net::output_in(node_ns, &refs);
}

/// The health checks every node serves, from the model.
fn health_checks(c: &Cluster, plan: &LabPlan) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    for svc in &c.services {
        let Some(port) = svc
            .health_check_node_port
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for node in &plan.nodes {
            let mut ready: Vec<&IpAddr> = svc
                .endpoints()
                .filter(|(_, e)| e.ready && e.node_name.as_deref() == Some(node.name.as_str()))
                .flat_map(|(_, e)| &e.addresses)
                .collect();
            ready.sort();
            ready.dedup();
            out.push(HealthCheck {
                node: node.name.clone(),
                port,
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                local_endpoints: ready.len(),
            });
        }
    }
    out
}

/// Starts `podnet lab serve` in the background and waits until every listener is bound.
fn start_servers(lab: &str, exe: &Path) -> Result<i32, LabError> {
    use std::os::unix::process::CommandExt;
    let log =
        std::fs::File::create(lab_dir(lab).join("serve.log")).map_err(io("creating serve.log"))?;
    let mut child = Command::new(exe)
        .args(["lab", "serve", "--name", lab])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io("starting the test servers"))?;
    let pid = child.id() as i32;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(io("waiting for the test servers"))?;
    if line.trim() != "ready" {
        let log = std::fs::read_to_string(lab_dir(lab).join("serve.log")).unwrap_or_default();
        return Err(LabError::Io(format!(
            "the test servers did not start: {log}"
        )));
    }
    Ok(pid)
}

/// What `apply` changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

/// Applies new manifests to a running lab: pods that are new are created, pods that are gone
/// are deleted (CNI DEL, then their namespace), and pods that did not change are not touched.
/// The order keeps traffic flowing: new pods first, then the service proxy (which stops sending
/// to the pods that leave), then the pods that leave. Nodes cannot change live.
pub fn apply(lab: &str, cluster: &Cluster) -> Result<ApplyReport, LabError> {
    let mut st = load_state(lab)?;
    let mut next = LabPlan::new(lab, cluster);
    let same_nodes = next.nodes.len() == st.plan.nodes.len()
        && next
            .nodes
            .iter()
            .zip(&st.plan.nodes)
            .all(|(a, b)| a.name == b.name && a.ip == b.ip && a.pod_cidr == b.pod_cidr);
    if !same_nodes {
        return Err(LabError::Invalid(
            "the nodes changed; nodes cannot change in a running lab: lab down, then lab up".into(),
        ));
    }
    let key = |p: &plan::PodPlan| format!("{}/{}", p.namespace, p.name);
    // A pod is the same when everything but the planned IP is.
    let same = |a: &plan::PodPlan, b: &plan::PodPlan| {
        plan::PodPlan {
            planned_ip: None,
            ..a.clone()
        } == plan::PodPlan {
            planned_ip: None,
            ..b.clone()
        }
    };
    let old: HashMap<String, plan::PodPlan> =
        st.plan.pods.iter().map(|p| (key(p), p.clone())).collect();
    let new: HashMap<String, plan::PodPlan> =
        next.pods.iter().map(|p| (key(p), p.clone())).collect();
    let mut removed: Vec<plan::PodPlan> = old
        .values()
        .filter(|p| new.get(&key(p)).is_none_or(|n| !same(p, n)))
        .cloned()
        .collect();
    removed.sort_by_key(|p| key(p));
    let mut added: Vec<plan::PodPlan> = new
        .values()
        .filter(|p| old.get(&key(p)).is_none_or(|o| !same(o, p)))
        .cloned()
        .collect();
    added.sort_by_key(|p| key(p));
    let mut report = ApplyReport::default();
    let dir = lab_dir(lab);
    let bin = dir.join("bin");
    let nodes = st.plan.nodes.clone();
    let runtime_for = |p: &plan::PodPlan| {
        let node = nodes
            .iter()
            .find(|n| n.name == p.node)
            .expect("pods are on planned nodes");
        Runtime {
            cni_path: bin.clone(),
            conf_dir: dir.join("nodes").join(&node.name).join("net.d"),
            node_ns: node.ns.clone(),
        }
    };
    let result_file = |p: &plan::PodPlan| {
        dir.join("nodes")
            .join(&p.node)
            .join(format!("{}.result.json", p.container_id))
    };

    // 1. New pods. A pod that changed is replaced: it leaves below and comes back here, so its
    //    old namespace and address go first.
    for p in removed.iter().filter(|p| new.contains_key(&key(p))) {
        remove_pod(p, &runtime_for(p), &result_file(p))?;
        st.pod_ips.remove(&key(p));
    }
    for mut p in added.clone() {
        if p.host_network {
            if let Some(n) = st.plan.node(&p.node) {
                st.pod_ips.insert(key(&p), n.ip);
            }
        } else {
            // The planned address, unless a pod that stays already has it.
            if p.planned_ip
                .is_some_and(|ip| st.pod_ips.values().any(|v| *v == ip))
            {
                p.planned_ip = None;
            }
            net::netns_add(&p.netns)?;
            net::etc_write(&p.netns, &pod_etc(&p))?;
            let res = runtime_for(&p).run(Op::Add, &p, None)?;
            let ip = runtime::result_ip(&res).ok_or_else(|| LabError::Cni {
                pod: key(&p),
                op: "ADD".into(),
                msg: "the result has no IP".into(),
            })?;
            std::fs::write(result_file(&p), res.to_string())
                .map_err(io("saving the ADD result"))?;
            st.pod_ips.insert(key(&p), ip);
        }
        report.added.push(key(&p));
    }
    // 2. The proxy, without the pods that leave.
    let leaving: Vec<String> = removed
        .iter()
        .filter(|p| !new.contains_key(&key(p)))
        .map(key)
        .collect();
    for p in next.pods.iter_mut() {
        p.planned_ip = st.pod_ips.get(&key(p)).copied();
    }
    st.plan = next;
    let mut serving = st.clone();
    serving.pod_ips.retain(|k, _| !leaving.contains(k));
    program_services(&mut serving, cluster)?;
    st.proxy = serving.proxy;
    st.external_routes = serving.external_routes;
    st.health_checks = serving.health_checks;
    st.dns = serving.dns;
    // 3. The pods that leave.
    for p in removed.iter().filter(|p| !new.contains_key(&key(p))) {
        remove_pod(p, &runtime_for(p), &result_file(p))?;
        st.pod_ips.remove(&key(p));
    }
    report.removed = removed.iter().map(key).collect();
    report.unchanged = st.plan.pods.len() - report.added.len();
    save_state(lab, &st)?;
    reload_servers(lab, st.serve_pid)?;
    Ok(report)
}

/// A pod's files for `/etc/netns/<ns>/`.
fn pod_etc(p: &plan::PodPlan) -> [(&'static str, &str); 2] {
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
fn remove_pod(p: &plan::PodPlan, rt: &Runtime, result_file: &Path) -> Result<(), LabError> {
    if p.host_network {
        return Ok(());
    }
    let prev: Option<serde_json::Value> = std::fs::read_to_string(result_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    rt.run(Op::Del, p, prev.as_ref())?;
    let _ = std::fs::remove_file(result_file);
    net::netns_del(&p.netns)
}

fn reload_servers(lab: &str, pid: Option<i32>) -> Result<(), LabError> {
    use nix::sys::signal::{kill, Signal};
    let Some(pid) = pid else {
        return Err(LabError::Io("the test servers are not running".into()));
    };
    let gen_file = lab_dir(lab).join("serve.gen");
    let before = std::fs::read_to_string(&gen_file).unwrap_or_default();
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| LabError::Io(format!("signalling the test servers: {e}")))?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(&gen_file).unwrap_or_default() != before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(LabError::Io(
        "the test servers did not reload in 10 s (see serve.log)".into(),
    ))
}

/// Removes everything of the lab: its server process, its namespaces (the pods' interfaces and
/// routes go with them) and its state. Idempotent; reports every failure, not just the first.
pub fn down(lab: &str) -> Result<(), LabError> {
    plan::valid_lab_name(lab).map_err(LabError::Invalid)?;
    let mut problems = Vec::new();
    if let Ok(st) = load_state(lab) {
        if let Some(pid) = st.serve_pid {
            stop_process(pid);
        }
    } else if let Ok(pid) = std::fs::read_to_string(lab_dir(lab).join("serve.pid")) {
        if let Ok(pid) = pid.trim().parse() {
            stop_process(pid);
        }
    }
    for ns in net::netns_list(&plan::prefix(lab)) {
        if let Err(e) = net::netns_del(&ns) {
            problems.push(e.to_string());
        }
    }
    for ns in net::etc_list(&plan::prefix(lab)) {
        if let Err(e) = net::etc_remove(&ns) {
            problems.push(e.to_string());
        }
    }
    if let Err(e) = std::fs::remove_dir_all(lab_dir(lab)) {
        if e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("{}: {e}", lab_dir(lab).display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Teardown(problems))
    }
}

fn stop_process(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid);
    // Only our own server: check its command line first.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("serve") {
        return;
    }
    let _ = kill(p, Signal::SIGTERM);
    let start = Instant::now();
    while kill(p, None).is_ok() && start.elapsed() < Duration::from_secs(2) {
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
    let alive = st
        .serve_pid
        .is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
    let nodes = st
        .plan
        .nodes
        .iter()
        .map(|n| NodeStatus {
            name: n.name.clone(),
            ip: n.ip,
            pod_cidr: n.pod_cidr,
            ready: Path::new(&net::netns_path(&n.ns)).exists(),
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
            ready: p.ready && alive && Path::new(&net::netns_path(&p.netns)).exists(),
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
pub fn actual_ips(st: &LabState) -> HashMap<NsName, Vec<IpAddr>> {
    st.pod_ips
        .iter()
        .filter_map(|(k, ip)| {
            let (ns, name) = k.split_once('/')?;
            Some((NsName::new(ns, name), vec![*ip]))
        })
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
