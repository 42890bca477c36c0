//! The processes of a lab: one process (`podnet lab serve`) holds every server of the lab,
//! each in a module of its own:
//! - [`agnhost`]: the test servers of the pods, like upstream's agnhost;
//! - [`dns`]: the cluster DNS pods;
//! - [`health`]: kube-proxy's health-check servers of every node.
//!
//! They share [`bind::bind_in`], which binds a socket inside a pod's or node's namespace.

pub mod agnhost;
pub mod bind;
pub mod dns;
pub mod grpcecho;
pub mod health;
pub mod http;
pub mod tcpecho;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use podnet_model::{NsName, Protocol};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::plan::PodPlan;
use crate::{LabError, LabState};

/// A pod's running servers.
enum PodServers {
    /// The cluster DNS server on all of the pod's ports.
    Dns(Vec<JoinHandle<()>>),
    /// The cluster DNS server as on a real cluster: `podnet dns watch`, a process in the pod's
    /// namespace reading the lab's API (a lab whose nodes run agents).
    DnsProcess(crate::agents::Supervised),
    /// The Ingress controller: `podnet ingress watch`, a process in the pod's namespace
    /// reading the lab's API.
    IngressProcess(crate::agents::Supervised),
    /// A test server per port.
    Test(BTreeMap<(u16, Protocol), JoinHandle<()>>),
}

/// The running servers.
struct Running {
    /// The runtime of the system components (cluster DNS, health checks): threads of their
    /// own, so that test-server traffic cannot starve them.
    system: tokio::runtime::Handle,
    /// The connections all test servers may hold at once.
    budget: Arc<Semaphore>,
    /// Per pod: its plan without the Service-targeted ports (a change there means a new pod)
    /// and its servers.
    pods: HashMap<NsName, (PodPlan, PodServers)>,
    health: health::HealthServers,
    dns: dns::Dns,
    /// The lab's Kubernetes API.
    api: Arc<podnet_api::server::Api>,
}

/// A pod as the servers see it: what makes it another pod if it changes.
fn identity(p: &PodPlan) -> PodPlan {
    PodPlan {
        service_ports: Vec::new(),
        ..p.clone()
    }
}

/// The ports a pod's test servers listen on: declared ones and those a Service targets.
fn test_ports(p: &PodPlan) -> BTreeSet<(u16, Protocol)> {
    p.ports
        .iter()
        .chain(&p.service_ports)
        .map(|x| (x.port, x.protocol))
        .collect()
}

impl Running {
    /// Brings the running servers in line with `st`: new pods get theirs, removed or changed
    /// pods lose theirs, a pod whose Service-targeted ports changed gains or loses just those,
    /// and the others are not touched. Servers that stop are awaited, so that their sockets
    /// are closed before anything binds the same port again.
    async fn reconcile(&mut self, st: &LabState) -> Result<(), LabError> {
        // The zone first, so that DNS pods started below serve the new one (when the lab
        // serves them itself; with agents, they read the API).
        if !st.agents {
            self.dns.load(st)?;
        }
        self.api.replace(st.api.clone());
        let want: HashMap<NsName, &PodPlan> = st
            .plan
            .pods
            .iter()
            .filter(|p| !p.ports.is_empty() || !p.service_ports.is_empty())
            // A pod's processes start once its CNI ADD returned (it has its address).
            .filter(|p| st.pod_ips.contains_key(&p.key()))
            .map(|p| (p.key(), p))
            .collect();
        self.stop_changed(&want).await;
        self.start_missing(st, want)?;
        let _system = self.system.enter();
        self.health.reconcile(st)
    }

    /// Stops the servers of pods that went or changed, and those of ports a pod no longer
    /// has; awaits them, and tells the keeper to stop holding their sockets.
    async fn stop_changed(&mut self, want: &HashMap<NsName, &PodPlan>) {
        let mut stopping = Vec::new();
        // Sockets closed for good: the keeper stops holding them.
        let mut closed: Vec<String> = Vec::new();
        let logs = self.api.logs.clone();
        self.pods.retain(|k, (id, servers)| {
            let same = want.get(k).is_some_and(|p| identity(p) == *id);
            match (same, servers) {
                (false, PodServers::Dns(tasks)) => {
                    closed.push(format!("{} ", id.netns));
                    stopping.append(tasks)
                }
                (false, PodServers::DnsProcess(p) | PodServers::IngressProcess(p)) => p.stop(),
                (false, PodServers::Test(tasks)) => {
                    closed.push(format!("{} ", id.netns));
                    if !want.contains_key(k) {
                        logs.forget(&k.namespace, &k.name);
                    }
                    stopping.extend(std::mem::take(tasks).into_values())
                }
                (
                    true,
                    PodServers::Dns(_) | PodServers::DnsProcess(_) | PodServers::IngressProcess(_),
                ) => {}
                (true, PodServers::Test(tasks)) => {
                    let ports = test_ports(want[k]);
                    let gone: Vec<_> = tasks
                        .keys()
                        .filter(|p| !ports.contains(p))
                        .copied()
                        .collect();
                    closed.extend(gone.iter().map(|at| bind::store_name(&id.netns, *at)));
                    stopping.extend(gone.iter().filter_map(|p| tasks.remove(p)));
                }
            }
            same
        });
        for t in &stopping {
            t.abort();
        }
        for t in stopping {
            let _ = t.await;
        }
        if let Some(store) = podnet_fdstore::client() {
            for name in &closed {
                // "<netns> ": every socket of a pod that went; else one socket.
                if name.ends_with(' ') {
                    store.forget_prefix(name);
                } else {
                    store.forget(name);
                }
            }
        }
    }

    /// Starts the servers the pods of `want` lack.
    fn start_missing(
        &mut self,
        st: &LabState,
        want: HashMap<NsName, &PodPlan>,
    ) -> Result<(), LabError> {
        for (k, p) in want {
            match self.pods.get_mut(&k) {
                Some((_, PodServers::Test(tasks))) => {
                    let missing: Vec<_> = test_ports(p)
                        .into_iter()
                        .filter(|x| !tasks.contains_key(x))
                        .collect();
                    tasks.extend(agnhost::start(p, &missing, &self.budget, &self.api.logs)?);
                }
                Some((
                    _,
                    PodServers::Dns(_) | PodServers::DnsProcess(_) | PodServers::IngressProcess(_),
                )) => {}
                None if p.ingress_controller || p.gateway.is_some() => {
                    let exe = std::env::current_exe().map_err(|source| LabError::Io {
                        what: "the podnet binary".into(),
                        source,
                    })?;
                    let s = match &p.gateway {
                        Some(g) => {
                            crate::agents::supervise_gateway(exe, &st.plan.name, p, g, st.agents)
                        }
                        None => crate::agents::supervise_ingress(exe, &st.plan.name, p, st.agents),
                    };
                    self.pods
                        .insert(k, (identity(p), PodServers::IngressProcess(s)));
                }
                None if st.agents && p.dns_server => {
                    let exe = std::env::current_exe().map_err(|source| LabError::Io {
                        what: "the podnet binary".into(),
                        source,
                    })?;
                    let s = crate::agents::supervise_dns(exe, &st.plan.name, p, true);
                    self.pods
                        .insert(k, (identity(p), PodServers::DnsProcess(s)));
                }
                None => {
                    let dns = {
                        let _system = self.system.enter();
                        self.dns.start(p)?
                    };
                    let servers = match dns {
                        Some(t) => PodServers::Dns(t),
                        None => {
                            let ports: Vec<_> = test_ports(p).into_iter().collect();
                            PodServers::Test(
                                agnhost::start(p, &ports, &self.budget, &self.api.logs)?
                                    .into_iter()
                                    .collect(),
                            )
                        }
                    };
                    self.pods.insert(k, (identity(p), servers));
                }
            }
        }
        Ok(())
    }
}

/// Runs the servers of a lab until killed. Prints `ready` on stdout once every socket is bound.
/// On SIGHUP it re-reads the lab's state and reconciles, then writes its pid and the number of
/// reloads to `serve.gen` (once at start too: a server started again by the keeper has read
/// the latest state, whether or not a signal meant for the one before reached it).
pub fn run(lab: &str) -> Result<(), LabError> {
    // Recorded before anything is served: the keeper may have started this one again, and
    // `lab apply` signals whichever runs.
    let limit = raise_fd_limit();
    // The sockets a server before this one bound, held by the keeper meanwhile.
    let handed = podnet_fdstore::init().map_err(|source| LabError::Io {
        what: "the keeper's socket store".into(),
        source,
    })?;
    if handed > 0 {
        eprintln!("took back {handed} sockets from the keeper");
    }
    let runtime = |name: &str, workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|source| LabError::Io {
                what: format!("the {name} runtime"),
                source,
            })
    };
    let system = runtime("podnet-system", 1)?;
    let rt = runtime("podnet-tests", 2)?;
    // The handler is in place before anyone can signal this process (its pid is not
    // recorded yet), and before the state is read: a SIGHUP from here on is a reload.
    let mut hup = {
        let _rt = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(
            |source| LabError::Io {
                what: "waiting for SIGHUP".into(),
                source,
            },
        )?
    };
    let pid_file = crate::lab_dir(lab).join("serve.pid");
    std::fs::write(&pid_file, std::process::id().to_string()).map_err(|source| LabError::Io {
        what: format!("writing {}", pid_file.display()),
        source,
    })?;
    // Half of what is left after a reserve goes to the test servers' connections.
    let budget = (limit.saturating_sub(1024) / 2).clamp(64, 32_768) as usize;
    eprintln!("file descriptors: {limit}; test-server connections: at most {budget}");
    let mut running = Running {
        system: system.handle().clone(),
        budget: Arc::new(Semaphore::new(budget)),
        pods: HashMap::new(),
        health: Default::default(),
        dns: Default::default(),
        api: podnet_api::server::Api::new(),
    };
    let st = crate::load_state(lab)?;
    running
        .api
        .fairness
        .set_system_token(crate::agents::system_token(lab));
    // The API holds the lab's objects before the agents, started next, first list them.
    running.api.replace(st.api.clone());
    serve_api(lab, &st, &system, running.api.clone())?;
    rt.block_on(async move {
        running.reconcile(&st).await?;
        // What the keeper held for pods that are gone is gone too.
        if let Some(store) = podnet_fdstore::client() {
            store.forget_untaken();
        }
        let gen_file = crate::lab_dir(lab).join("serve.gen");
        let pid = std::process::id();
        let _ = std::fs::write(&gen_file, format!("{pid} 0"));
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let mut generation = 0u64;
        while hup.recv().await.is_some() {
            generation += 1;
            let start = std::time::Instant::now();
            let reloaded = match crate::load_state(lab) {
                Ok(st) => running.reconcile(&st).await,
                Err(e) => Err(e),
            };
            match reloaded {
                Ok(()) => {
                    eprintln!(
                        "reload {generation}: done in {:.1} ms",
                        start.elapsed().as_secs_f64() * 1e3
                    );
                    let _ = std::fs::write(&gen_file, format!("{pid} {generation}"));
                }
                Err(e) => eprintln!("reload {generation}: {}", podnet_node::chain(&e)),
            }
        }
        Ok(())
    })
}

/// The file that holds the address of the lab's Kubernetes API on the host's loopback.
pub fn api_addr_file(lab: &str) -> std::path::PathBuf {
    crate::lab_dir(lab).join("api.addr")
}

/// Serves the lab's Kubernetes API on a loopback port of the host (a listening socket, nothing
/// else; its address goes to [`api_addr_file`]) and on the underlay, on the system runtime;
/// then starts the nodes' agents, when the lab has them.
fn serve_api(
    lab: &str,
    st: &LabState,
    system: &tokio::runtime::Runtime,
    api: Arc<podnet_api::server::Api>,
) -> Result<(), LabError> {
    // Taken back from the keeper when this server was started again: the same port, so a
    // kubeconfig written before still works.
    let listener = podnet_fdstore::held("api loopback", || {
        std::net::TcpListener::bind("127.0.0.1:0")
    })
    .and_then(|l| {
        l.set_nonblocking(true)?;
        let _rt = system.enter();
        tokio::net::TcpListener::from_std(l)
    })
    .map_err(|source| LabError::Io {
        what: "binding the lab's API on 127.0.0.1".into(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| LabError::Io {
        what: "the lab's API address".into(),
        source,
    })?;
    let file = api_addr_file(lab);
    std::fs::write(&file, addr.to_string()).map_err(|source| LabError::Io {
        what: format!("writing {}", file.display()),
        source,
    })?;
    eprintln!("the lab's Kubernetes API: http://{addr}");
    system.spawn(api.clone().serve_with_control(listener));
    // And on the underlay, from the API's own namespace, for the nodes' agents: on both of
    // its addresses where it has an IPv6 one (one socket for both families).
    let at = match st.plan.api.ip6 {
        Some(_) => std::net::SocketAddr::new(
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            crate::plan::API_PORT,
        ),
        None => std::net::SocketAddr::new(st.plan.api.ip, crate::plan::API_PORT),
    };
    let underlay =
        podnet_node::sys::in_netns(&podnet_node::sys::netns_path(&st.plan.api.ns), || {
            podnet_fdstore::held("api underlay", || std::net::TcpListener::bind(at)).map_err(
                |source| podnet_node::NodeError::Io {
                    what: format!("binding the lab's API on {at}"),
                    source,
                },
            )
        })?;
    underlay
        .set_nonblocking(true)
        .map_err(|source| LabError::Io {
            what: "the lab's API socket".into(),
            source,
        })?;
    let _guard = system.enter();
    let underlay = tokio::net::TcpListener::from_std(underlay).map_err(|source| LabError::Io {
        what: "the lab's API socket".into(),
        source,
    })?;
    eprintln!("the lab's Kubernetes API for the nodes: http://{at}");
    system.spawn(api.serve(underlay));
    // The Gateway API's class controller, beside the API as a cluster's runs beside its
    // control plane: the status of podnet's GatewayClasses, written through the API. (The
    // lab makes each Gateway's proxy itself, as its emulated control plane's part.)
    let client = {
        let _rt = system.enter();
        crate::statuses::client(lab)?
    };
    let settings = podnet_watch::settings(
        Some(&crate::agents::dir(lab).join("config.json")),
        &Default::default(),
    )
    .map_err(|e| LabError::Servers(format!("the cluster's settings: {e}")))?;
    system.spawn(async move {
        loop {
            match podnet_gateway_controller::provision::follow(client.clone(), &settings, None)
                .await
            {
                Ok(()) => eprintln!("the GatewayClass controller ended; starting it again"),
                Err(e) => eprintln!(
                    "the GatewayClass controller: {}; starting it again",
                    podnet_model::diag::chain(&e)
                ),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    if st.agents {
        let exe = std::env::current_exe().map_err(|source| LabError::Io {
            what: "the podnet binary".into(),
            source,
        })?;
        for n in &st.plan.nodes {
            crate::agents::supervise(exe.clone(), lab.to_string(), n.name.clone(), n.ns.clone());
        }
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard one; returns the limit in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}
