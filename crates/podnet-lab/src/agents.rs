//! The lab's nodes run by `podnet agent`, as on a real cluster: one agent per node namespace,
//! against the lab's Kubernetes API on the underlay. The lab's process keeps them running (it
//! starts each again when it exits, as the kubelet restarts a DaemonSet's pod); `lab up` and
//! `lab apply` wait until every agent programmed what the lab's own model says its node must
//! hold, so that the lab's answers and the agents' dataplanes are one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_model::{Cluster, ConfigOverrides};
use podnet_node::dataplane::NodeDataplane;

use crate::plan::{LabPlan, PodPlan, API_PORT, UPLINK};
use crate::{lab_dir, LabError, LabState};
use podnet_model::NsName;

/// Where the agents keep their state, logs, kubeconfig and the cluster's settings.
pub fn dir(lab: &str) -> PathBuf {
    lab_dir(lab).join("agents")
}

/// How long `lab up` and `lab apply` wait for the agents (and the DNS and Ingress controller
/// pods): a bound for when something is wrong, not a target; a 2-core machine running other
/// labs at the same time once took over 20 s to start a DNS pod's server.
pub const WAIT: Duration = Duration::from_secs(60);

/// Where each agent serves /healthz, /readyz and /metrics, inside its node's namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9641";

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.to_string();
    move |source| LabError::Io { what, source }
}

/// Where the lab keeps its system token (only root reads /run/podnet).
pub fn system_token_file(lab: &str) -> PathBuf {
    dir(lab).join("system.token")
}

/// The lab's system token, if it has one.
pub fn system_token(lab: &str) -> Option<String> {
    std::fs::read_to_string(system_token_file(lab))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// 32 random hex digits, from the kernel.
fn system_token_new() -> Result<String, LabError> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading /dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes what the agents start from: a kubeconfig for the API on the underlay, and the
/// cluster's settings (those the lab's model used).
pub fn prepare(lab: &str, plan: &LabPlan, cluster: &Cluster) -> Result<(), LabError> {
    let d = dir(lab);
    std::fs::create_dir_all(&d).map_err(io(d.display()))?;
    // The system token: the agents' and controllers' requests are the API's `system` priority
    // level, which no workload can starve (podnet_api::fairness).
    let token = system_token_new()?;
    let path = system_token_file(lab);
    std::fs::write(&path, &token).map_err(io(path.display()))?;
    let kubeconfig = podnet_api::kubeconfig_with_token(
        &format!("podnet-{lab}"),
        &std::net::SocketAddr::new(plan.api_client_ip(), API_PORT).to_string(),
        Some(&token),
    );
    let path = d.join("kubeconfig");
    std::fs::write(&path, kubeconfig).map_err(io(path.display()))?;
    let settings: ConfigOverrides = cluster.config.overrides();
    let path = d.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&settings).expect("JSON"))
        .map_err(io(path.display()))
}

/// The settings the lab was built with (what its agents run with): what `lab apply` builds
/// the changed manifests with, so that the cluster keeps its families and ranges.
pub fn saved_settings(lab: &str) -> Result<ConfigOverrides, LabError> {
    let path = dir(lab).join("config.json");
    let bytes = std::fs::read(&path).map_err(io(path.display()))?;
    serde_json::from_slice(&bytes).map_err(|source| LabError::Json {
        what: path.display().to_string(),
        source,
    })
}

/// Where a node's agent listens for its CNI plugin.
pub fn socket(lab: &str, node: &str) -> PathBuf {
    dir(lab).join(format!("{node}.sock"))
}

/// `podnet <subcommand>` against the lab's API, with the cluster's settings, as every process
/// that follows the API starts.
fn following(exe: &Path, lab: &str, subcommand: &[&str]) -> Command {
    let d = dir(lab);
    let mut cmd = Command::new(exe);
    cmd.args(subcommand)
        .arg("--kubeconfig")
        .arg(d.join("kubeconfig"))
        .arg("--config")
        .arg(d.join("config.json"));
    cmd
}

/// The command line of a node's agent.
pub fn command(exe: &Path, lab: &str, node: &str) -> Command {
    let d = dir(lab);
    let mut cmd = following(exe, lab, &["agent", "--node", node]);
    cmd.arg("--state-dir")
        .arg(&d)
        .args(["--uplink", UPLINK, "--metrics-addr", METRICS_ADDR])
        .arg("--cni-socket")
        .arg(socket(lab, node))
        // The lab waits on what each node's kernel holds, read back after every change.
        .arg("--verify-changes");
    cmd
}

/// The command line of a cluster DNS pod's server: `podnet dns watch` against the lab's API,
/// as on a real cluster, recording the zone it serves for `lab up` and `lab apply` to wait on.
pub fn dns_command(exe: &Path, lab: &str, pod: &PodPlan) -> Command {
    let mut cmd = following(exe, lab, &["dns", "watch"]);
    // Both families on one socket per protocol.
    cmd.args(["--listen", "[::]:53"])
        .arg("--served-zone")
        .arg(served_zone_file(lab, pod));
    cmd
}

/// The command line of an Ingress controller pod's proxy: `podnet ingress watch` against the
/// lab's API, recording what it serves for `lab up` and `lab apply` to wait on.
pub fn ingress_command(exe: &Path, lab: &str, pod: &PodPlan) -> Command {
    let mut cmd = following(exe, lab, &["ingress", "watch"]);
    // Both families on one socket each: the proxy's Service may be dual-stack.
    cmd.args(["--http", "[::]:80", "--https", "[::]:443"])
        .args([
            "--admin",
            &format!("[::]:{}", podnet_model::edge::INGRESS_ADMIN_PORT),
        ])
        .arg("--served")
        .arg(served_ingress_file(lab, pod))
        // Its Service's addresses into the status of the Ingresses it serves, as a
        // cluster's (deploy/) does.
        .arg("--publish-service")
        .arg(format!(
            "{}/{}",
            podnet_model::edge::INGRESS_NAMESPACE,
            podnet_model::edge::INGRESS_SERVICE
        ));
    cmd
}

/// The file a node's agent writes once it programmed the node (and installed the CNI).
fn node_ready(lab: &str, node: &str) -> PathBuf {
    dir(lab).join(format!("{node}.ready"))
}

/// Where an Ingress controller pod records what it serves.
fn served_ingress_file(lab: &str, pod: &PodPlan) -> PathBuf {
    dir(lab).join(format!("ingress-{}-{}.json", pod.namespace, pod.name))
}

/// Keeps an Ingress controller pod's proxy running inside the pod's namespace, until stopped
/// (the pod goes). Its output (the access log, then what it says) goes to
/// `ingress-<namespace>-<pod>.log`.
pub fn supervise_ingress(exe: PathBuf, lab: &str, pod: &PodPlan, agents: bool) -> Supervised {
    let log = dir(lab).join(format!("ingress-{}-{}.log", pod.namespace, pod.name));
    let (lab, pod2) = (lab.to_string(), pod.clone());
    keep_running(
        format!("the Ingress controller of {}", pod.key()),
        pod.netns.clone(),
        log,
        agents.then(|| node_ready(&lab, &pod.node)),
        move || ingress_command(&exe, &lab, &pod2),
    )
}

/// The command line of a Gateway's proxy pod: `podnet gateway watch` against the lab's API,
/// writing its status there and recording what it serves for `lab up` and `lab apply` to wait
/// on.
pub fn gateway_command(exe: &Path, lab: &str, pod: &PodPlan, gateway: &NsName) -> Command {
    let mut cmd = following(exe, lab, &["gateway", "watch"]);
    cmd.arg("--gateway")
        .arg(gateway.to_string())
        // Its listeners on both families (one socket each).
        .args(["--address", "::"])
        .arg("--served")
        .arg(served_gateway_file(lab, pod))
        // The status of its Gateway and routes, through the API, as on a cluster.
        .arg("--write-status");
    cmd
}

/// Where a Gateway's proxy pod records what it serves.
fn served_gateway_file(lab: &str, pod: &PodPlan) -> PathBuf {
    dir(lab).join(format!("gateway-{}-{}.json", pod.namespace, pod.name))
}

/// Keeps a Gateway's proxy running inside its pod's namespace, until stopped (the pod goes).
/// Its output goes to `gateway-<namespace>-<pod>.log`.
pub fn supervise_gateway(
    exe: PathBuf,
    lab: &str,
    pod: &PodPlan,
    gateway: &NsName,
    agents: bool,
) -> Supervised {
    let log = dir(lab).join(format!("gateway-{}-{}.log", pod.namespace, pod.name));
    let (lab, pod2, gw) = (lab.to_string(), pod.clone(), gateway.clone());
    keep_running(
        format!("the proxy of Gateway {gateway} in {}", pod.key()),
        pod.netns.clone(),
        log,
        agents.then(|| node_ready(&lab, &pod.node)),
        move || gateway_command(&exe, &lab, &pod2, &gw),
    )
}

/// Where a DNS pod's server records the zone it serves.
fn served_zone_file(lab: &str, pod: &PodPlan) -> PathBuf {
    dir(lab).join(format!("dns-{}-{}.zone.json", pod.namespace, pod.name))
}

/// Whether process `pid` is one of `lab`'s agents or DNS servers (its command line names the
/// lab's kubeconfig).
pub fn is_agent_of(pid: i32, lab: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let kubeconfig = dir(lab).join("kubeconfig");
    matches!(
        args.get(1),
        Some(&b"agent") | Some(&b"dns") | Some(&b"ingress") | Some(&b"gateway")
    ) && args.windows(2).any(|w| {
        w[0] == b"--kubeconfig" && Path::new(std::str::from_utf8(w[1]).unwrap_or("")) == kubeconfig
    })
}

/// A process the lab keeps running inside a namespace, until [`Supervised::stop`].
#[derive(Debug, Clone, Default)]
pub struct Supervised {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
}

impl Supervised {
    /// It is not started again, and the one running is asked to end (SIGTERM).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Keeps a process running inside namespace `netns`: started (or, when one with the same
/// arguments runs already, taken back), and started again each time it exits (as the kubelet
/// restarts a pod's container). Its output goes to `log`.
fn keep_running(
    what: String,
    netns: String,
    log: PathBuf,
    after: Option<PathBuf>,
    command: impl Fn() -> Command + Send + Sync + 'static,
) -> Supervised {
    let s = Supervised::default();
    let me = s.clone();
    std::thread::spawn(move || {
        // One that a lab process before this one started, still running (that one was
        // killed): taken back, not started twice, as a kubelet that restarts finds its
        // containers running.
        let args: Vec<std::ffi::OsString> =
            command().get_args().map(|a| a.to_os_string()).collect();
        if let Some(pid) = running_with(&args) {
            me.pid.store(pid, Ordering::SeqCst);
            eprintln!("{what}: took back the running process {pid}");
            while !crate::exited(pid) && !me.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            me.pid.store(0, Ordering::SeqCst);
            if me.stop.load(Ordering::SeqCst) {
                return;
            }
            eprintln!("{what} ({pid}) exited; starting it again");
        }
        // As the kubelet starts no pod before its node's network is ready (the CNI
        // configuration the agent writes once it programmed the node).
        if let Some(ready) = &after {
            while !ready.exists() && !me.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        while !me.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let spawned = podnet_node::sys::in_netns(&podnet_node::sys::netns_path(&netns), || {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|source| podnet_node::NodeError::Io {
                        what: format!("opening {}", log.display()),
                        source,
                    })?;
                command()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(out)
                    .spawn()
                    .map_err(|source| podnet_node::NodeError::Spawn {
                        cmd: what.clone(),
                        source,
                    })
            });
            match spawned {
                Ok(mut child) => {
                    me.pid.store(child.id() as i32, Ordering::SeqCst);
                    if me.stop.load(Ordering::SeqCst) {
                        let _ = child.kill();
                    }
                    let status = child.wait();
                    me.pid.store(0, Ordering::SeqCst);
                    if !me.stop.load(Ordering::SeqCst) {
                        eprintln!("{what} exited ({status:?}); starting it again");
                    }
                }
                Err(e) => eprintln!("{what}: {}", podnet_node::chain(&e)),
            }
            // Not in a tight loop when it cannot start.
            if started.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    s
}

/// A running process whose arguments after the program are exactly `args` (each names the
/// lab's own files, so it is this lab's).
fn running_with(args: &[std::ffi::OsString]) -> Option<i32> {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let have: Vec<&[u8]> = cmdline.split(|b| *b == 0).skip(1).collect();
            let have = have.strip_suffix(&[&b""[..]]).unwrap_or(&have);
            have.len() == args.len()
                && have.iter().zip(args).all(|(h, a)| *h == a.as_bytes())
                && !crate::exited(*pid)
        })
}

/// Keeps a node's agent running inside the node's namespace, for as long as the lab's process
/// runs. Its output goes to `<node>.log`.
pub fn supervise(exe: PathBuf, lab: String, node: String, netns: String) {
    let log = dir(&lab).join(format!("{node}.log"));
    keep_running(
        format!("the agent of {node}"),
        netns,
        log,
        None,
        move || command(&exe, &lab, &node),
    );
}

/// Keeps a cluster DNS pod's server running inside the pod's namespace, until stopped (the
/// pod goes). Its output goes to `dns-<namespace>-<pod>.log`.
pub fn supervise_dns(exe: PathBuf, lab: &str, pod: &PodPlan, agents: bool) -> Supervised {
    let log = dir(lab).join(format!("dns-{}-{}.log", pod.namespace, pod.name));
    let (lab, pod2) = (lab.to_string(), pod.clone());
    keep_running(
        format!("the DNS server of {}", pod.key()),
        pod.netns.clone(),
        log,
        agents.then(|| node_ready(&lab, &pod.node)),
        move || dns_command(&exe, &lab, &pod2),
    )
}

/// What a pod's server recorded it serves (None: nothing readable yet).
fn served(file: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

/// The running pods of a kind of server (`want` says what each is to serve, None: not one of
/// them) that have not recorded serving it yet, each as `<what>-<namespace>-<pod>` (their
/// log's name).
fn pending(
    st: &LabState,
    what: &str,
    file: impl Fn(&PodPlan) -> PathBuf,
    want: impl Fn(&PodPlan) -> Option<Option<serde_json::Value>>,
) -> Vec<String> {
    st.plan
        .pods
        .iter()
        .filter(|p| st.pod_ips.contains_key(&p.key()))
        .filter_map(|p| Some((p, want(p)?)))
        .filter(|(p, want)| served(&file(p)) != *want)
        .map(|(p, _)| format!("{what}-{}-{}", p.namespace, p.name))
        .collect()
}

/// The Ingress controller pods that do not serve yet what the lab computed (when it has
/// them), the Gateways' proxy pods, and (`dns`) the cluster DNS pods.
fn servers_pending(lab: &str, st: &LabState, dns: bool) -> Vec<String> {
    let ingress = |p: &PodPlan| p.ingress_controller.then(|| st.ingress.clone());
    let gateway = |p: &PodPlan| Some(st.gateways.get(&p.gateway.as_ref()?.to_string()).cloned());
    let zone = st
        .dns
        .as_ref()
        .map(|z| serde_json::to_value(z).expect("JSON"));
    let dns_pod = |p: &PodPlan| (dns && p.dns_server).then(|| zone.clone());
    // A kind of server the lab does not have (None wanted) is not waited for.
    let mut out = pending(
        st,
        "ingress",
        |p| served_ingress_file(lab, p),
        |p| ingress(p).filter(Option::is_some),
    );
    out.extend(pending(
        st,
        "gateway",
        |p| served_gateway_file(lab, p),
        gateway,
    ));
    out.extend(pending(
        st,
        "dns",
        |p| served_zone_file(lab, p),
        |p| dns_pod(p).filter(Option::is_some),
    ));
    out
}

/// What a node's agent last verified its kernel to hold (read back and found, or repaired,
/// equal to it).
fn verified(lab: &str, node: &str) -> Option<NodeDataplane> {
    let path = podnet_agent::run::verified_file(&dir(lab), node);
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Waits until every node's kernel holds what the lab expects of it (each agent reads its
/// kernel back after a change and reports what it found: never its own record alone); then
/// records what each node holds in the state.
/// Writes what the lab expects each node to hold beside each agent's record, for whoever
/// compares them (after any apply, applied or rolled back).
pub fn record_expected(lab: &str, st: &LabState) -> Result<(), LabError> {
    for (n, d) in &st.expected {
        let path = dir(lab).join(format!("{n}.expected.json"));
        std::fs::write(&path, serde_json::to_vec(d).expect("JSON")).map_err(io(path.display()))?;
    }
    Ok(())
}

pub fn wait(lab: &str, st: &mut LabState) -> Result<(), LabError> {
    let start = Instant::now();
    record_expected(lab, st)?;
    let mut pending: Vec<String> = st.expected.keys().cloned().collect();
    // The status the controllers write, read from the API once the rest is served.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("a runtime for the lab's API client"))?;
    let client = if st.statuses.is_empty() {
        None
    } else {
        let _rt = rt.enter();
        Some(crate::statuses::client(lab)?)
    };
    loop {
        pending.retain(|n| verified(lab, n).as_ref() != st.expected.get(n));
        // And the cluster DNS pods: serving the zone the lab computed.
        // (Without agents, the lab's process serves DNS itself, and has loaded the zone.)
        let mut dns = servers_pending(lab, st, st.agents);
        // Last, the status the controllers write: read from the API (four lists), so not at
        // the pace of the files above.
        let read_api = pending.is_empty() && dns.is_empty() && client.is_some();
        if let (true, Some(c)) = (read_api, &client) {
            match rt.block_on(crate::statuses::pending(c, &st.statuses)) {
                Ok(s) => dns.extend(s.into_iter().map(|k| format!("status of {k}"))),
                Err(e) => dns.push(format!("status (the lab's API: {e})")),
            }
        }
        if pending.is_empty() && dns.is_empty() {
            break;
        }
        pending.append(&mut dns);
        if start.elapsed() > WAIT {
            // What each said last: the lab may be removed with its logs.
            let logs: Vec<String> = pending
                .iter()
                .map(|n| {
                    let log = std::fs::read_to_string(dir(lab).join(format!("{n}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(4).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("{n}: {}", tail.join(" | "))
                })
                .collect();
            // Where a pod's connections to the API go: the pods that did not serve.
            let diagnosis: String = st
                .plan
                .pods
                .iter()
                .filter(|p| {
                    let names = [
                        format!("dns-{}-{}", p.namespace, p.name),
                        format!("ingress-{}-{}", p.namespace, p.name),
                        format!("gateway-{}-{}", p.namespace, p.name),
                    ];
                    names.iter().any(|n| pending.contains(n))
                })
                .map(|p| crate::diag::pod(st, p))
                .collect();
            return Err(LabError::Servers(format!(
                "the agents of {} did not program their nodes (or DNS servers their zone, Ingress controllers and Gateways' proxies their routes, controllers the status in the API) within {}s; they said:\n{}\n{diagnosis}",
                pending.join(", "),
                WAIT.as_secs(),
                logs.join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(if read_api { 25 } else { 5 }));
    }
    for n in st.expected.keys() {
        let held = podnet_agent::run::held_file(&dir(lab), n);
        if let Some(h) = std::fs::read(&held)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            st.nodes.insert(n.clone(), h);
        }
    }
    Ok(())
}
