//! `podnet`: Kubernetes networking in Rust.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use podnet_model::config::{CidrList, ClusterFamily};
use podnet_model::{ConfigOverrides, IpRange, PortRange};

/// With `--features dhat-heap`, every allocation is counted (the agent logs its live heap).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

mod agent;
mod dns;
mod explain;
mod flows;
mod gateway;
mod ingress;
mod lab;
mod load;
mod output;

#[derive(Parser)]
#[command(
    name = "podnet",
    version,
    about = "Kubernetes networking: pod network, Services, DNS, NetworkPolicy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the cluster plan from manifests (no root needed): nodes, pods, Services, endpoints.
    Check(CheckArgs),
    /// Say whether the policies allow a connection, and which layer and rule decided: the
    /// ClusterNetworkPolicies' Admin tier, NetworkPolicy, the Baseline tier (no root needed).
    Explain(ExplainArgs),
    /// A whole cluster network on this machine, in network namespaces (needs root).
    #[command(subcommand)]
    Lab(LabCommand),
    /// The cluster DNS server.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// The Ingress controller: podnet's HTTP(S) edge proxy.
    #[command(subcommand)]
    Ingress(IngressCommand),
    /// Gateway API: one Gateway's proxy (podnet's HTTP(S) edge proxy).
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// The node agent: watch the Kubernetes API and make this node hold its dataplane (needs
    /// root).
    Agent(AgentArgs),
    /// A cluster's flows, from every node's agent (its /flows on the metrics port): drops by
    /// policy, refusals for want of endpoints, sampled allowed connections, with who and why,
    /// as `hubble observe` shows them.
    Observe(ObserveArgs),
}

/// Which flows to print, and how (`observe`, `lab observe`).
#[derive(Args)]
struct FlowArgs {
    /// Print the flows held, then each new one as it comes, until interrupted.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only flows from or to this pod (namespace/name).
    #[arg(long)]
    pod: Option<String>,
    /// Only flows with this verdict: FORWARDED, DROPPED or REJECTED (repeatable).
    #[arg(long)]
    verdict: Vec<String>,
    /// table, or json (one flow per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Args)]
struct ObserveArgs {
    /// A kubeconfig; without one, $KUBECONFIG, ~/.kube/config, or the in-cluster service
    /// account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The agents' metrics port (the DaemonSet's --metrics-addr).
    #[arg(long, default_value_t = 9641)]
    port: u16,
    #[command(flatten)]
    flows: FlowArgs,
}

#[derive(Args)]
struct AgentArgs {
    /// This node's name, as the API knows it (in a DaemonSet: from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// A kubeconfig; without one, $KUBECONFIG, ~/.kube/config, or the in-cluster service
    /// account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The node's link to the other nodes (the VXLAN device's underlay).
    #[arg(long, default_value = "eth0")]
    uplink: String,
    /// The network namespace to program (a path); the agent's own by default.
    #[arg(long, default_value = "/proc/self/ns/net")]
    netns: PathBuf,
    /// Where the agent records what the node holds (read back on restart).
    #[arg(long, default_value = "/var/lib/podnet")]
    state_dir: PathBuf,
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, default_value = "127.0.0.1:9641")]
    metrics_addr: std::net::SocketAddr,
    /// The cluster's settings as JSON (the fields of podnet's ClusterConfig); flags override
    /// them.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Install podnet's CNI configuration here once the node is programmed (a real node:
    /// /etc/cni/net.d). Without it, the runtime's configuration is left alone (the lab writes
    /// its own).
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugin keeps its address reservations.
    #[arg(long, default_value = "/var/lib/podnet/ipam")]
    cni_ipam_dir: PathBuf,
    /// How often the node is verified: what the kernel holds read back (nftables as JSON,
    /// routes, neighbours, FDB, the device, settings), compared with what the node must hold,
    /// and any difference repaired and counted (podnet_dataplane_drift_total). Also at start,
    /// after a failed change and on POST /verify.
    #[arg(long, default_value = "30s", value_parser = humantime_secs)]
    verify_every: std::time::Duration,
    /// Verify after every change as well, once events quieten for 100 ms (the lab's nodes do).
    #[arg(long)]
    verify_changes: bool,
    /// The Unix socket on which the CNI plugin asks the agent to program a new pod (its ADD
    /// returns once the node holds the pod's NetworkPolicy entries); the installed conflist
    /// names it. Default: <state-dir>/<node>.sock.
    #[arg(long)]
    cni_socket: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Where a DNS server listens and where it forwards names outside the cluster.
#[derive(Args)]
struct DnsServerArgs {
    /// Address to listen on, UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: std::net::SocketAddr,
    /// Where names outside the cluster domain go (repeatable). Without one they are REFUSED.
    #[arg(long = "upstream", value_name = "IP:PORT")]
    upstreams: Vec<std::net::SocketAddr>,
    /// Also forward to the nameservers of this resolv.conf (port 53), as CoreDNS's
    /// `forward . /etc/resolv.conf` does; this server's own address is left out.
    #[arg(long = "upstream-resolv-conf", value_name = "FILE")]
    upstream_resolv_conf: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Serve the cluster zone computed from manifests (UDP and TCP), as the lab's kube-dns pods
    /// do. SIGHUP reloads the manifests.
    Serve {
        #[command(flatten)]
        manifests: ManifestArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        server: DnsServerArgs,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Serve the zone of the cluster the Kubernetes API describes, following its changes (the
    /// cluster DNS as a Deployment behind the kube-dns Service).
    Watch {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        server: DnsServerArgs,
        /// Write the zone served (as `podnet check --dns -o json` prints a zone) to this file
        /// each time it changes, for whoever waits on it.
        #[arg(long, value_name = "FILE")]
        served_zone: Option<PathBuf>,
        /// Serve /metrics (queries by protocol and response code, cache hits, queries sent
        /// upstream) and /healthz here.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum IngressCommand {
    /// Serve the Ingresses of podnet's classes (IngressClass controller `podnet.dev/ingress`)
    /// of the cluster the Kubernetes API describes, following its changes: the Ingress
    /// controller, as the Deployment `podnet-system/podnet-ingress` runs it.
    Watch {
        #[command(flatten)]
        api: ApiArgs,
        /// Plain HTTP.
        #[arg(long, default_value = "0.0.0.0:80")]
        http: std::net::SocketAddr,
        /// HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
        #[arg(long, default_value = "0.0.0.0:443")]
        https: std::net::SocketAddr,
        /// /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:10254")]
        admin: std::net::SocketAddr,
        /// Write what is served (routes, endpoints, certificates' hosts) as JSON to this file
        /// each time it changes, for whoever waits on it.
        #[arg(long, value_name = "FILE")]
        served: Option<PathBuf>,
        /// Write this Service's addresses (NAMESPACE/NAME: its load-balancer addresses, else
        /// its external IPs) into the status of every Ingress served, as ingress-nginx does.
        /// Without it, statuses are left alone (the lab's API computes them itself).
        #[arg(long, value_name = "NAMESPACE/NAME")]
        publish_service: Option<String>,
        /// No JSON access log on stdout.
        #[arg(long)]
        no_access_log: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

/// Where the Kubernetes API is, and the cluster's settings.
#[derive(Args)]
struct ApiArgs {
    /// A kubeconfig; without one, $KUBECONFIG, ~/.kube/config, or the in-cluster service
    /// account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The cluster's settings as JSON (podnet's ClusterConfig fields); flags override them.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Serve one Gateway of podnet's class (GatewayClass controller `podnet.dev/gateway`) of
    /// the cluster the Kubernetes API describes, following its changes: the Gateway's proxy,
    /// as its Deployment in `podnet-system` runs it. Listens on each listener's port.
    Watch(GatewayWatch),
    /// Give each Gateway of podnet's class its proxy on a cluster: a Deployment running
    /// `podnet gateway watch` for it and a LoadBalancer Service, in podnet-system (server-side
    /// applied; those of Gateways that went are deleted), following the API.
    Provision {
        #[command(flatten)]
        api: ApiArgs,
        /// The image of the Gateways' proxies.
        #[arg(long, default_value = "podnet:latest")]
        image: String,
    },
}

#[derive(Args)]
struct GatewayWatch {
    #[command(flatten)]
    api: ApiArgs,
    /// The Gateway: NAMESPACE/NAME.
    #[arg(long)]
    gateway: String,
    /// The address the listeners' ports are opened on.
    #[arg(long, default_value = "0.0.0.0")]
    address: std::net::IpAddr,
    /// /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:10255")]
    admin: std::net::SocketAddr,
    /// Write what is served (ports, listeners, routes, endpoints) as JSON to this file
    /// each time it changes, for whoever waits on it.
    #[arg(long, value_name = "FILE")]
    served: Option<PathBuf>,
    /// Write the status of the Gateway and of the HTTPRoutes attached to it
    /// (their entries for this Gateway) to the API (as podnet's proxies do, in the lab too).
    /// Without it, statuses are left alone (another controller writes them).
    #[arg(long)]
    write_status: bool,
    /// No JSON access log on stdout.
    #[arg(long)]
    no_access_log: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Args)]
struct LabName {
    /// The lab's name: its namespaces are podnet-<name>.*, its state /run/podnet/<name>.
    #[arg(long = "name", default_value = "lab")]
    name: String,
}

/// A lab and the manifests it is built from.
#[derive(Args)]
struct LabInput {
    #[command(flatten)]
    lab: LabName,
    /// (`lab up`) Program the nodes from the lab process instead of running `podnet agent` on
    /// every node against the lab's Kubernetes API (the default, as on a real cluster).
    #[arg(long)]
    no_agents: bool,
    #[command(flatten)]
    manifests: ManifestArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build the lab from manifests: underlay, nodes, VXLAN overlay, pods through the CNI
    /// plugin, test servers on every containerPort, and an `external` client.
    Up(LabInput),
    /// Apply changed manifests to a running lab: pods are added, removed and rescaled; what did
    /// not change is not touched.
    Apply(LabInput),
    /// Remove everything of the lab (idempotent; also cleans up after a crash).
    Down {
        #[command(flatten)]
        lab: LabName,
    },
    /// Nodes and pods with their IPs and readiness.
    Status {
        #[command(flatten)]
        lab: LabName,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Print the path of a kubeconfig for the lab's Kubernetes API (read-only: kubectl get,
    /// kubectl get --watch).
    Kubeconfig {
        #[command(flatten)]
        lab: LabName,
    },
    /// Run a host command inside <namespace>/<pod>, node/<name> or external.
    Exec {
        #[command(flatten)]
        lab: LabName,
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The flows of every node: connections dropped by policy, refused for want of
    /// endpoints, dropped for an unknown pod (and sampled allowed ones), with the pods, the
    /// Service and the policies that decided, as `hubble observe` shows them.
    Observe {
        #[command(flatten)]
        lab: LabName,
        #[command(flatten)]
        flows: FlowArgs,
    },
    /// Serve the map of the lab in the browser (on a loopback port): nodes and pods,
    /// Services, Ingresses and Gateways, the NetworkPolicy matrix with why, and the flows
    /// drawn as they happen. Runs until interrupted.
    Ui {
        #[command(flatten)]
        lab: LabName,
        /// Where to serve it (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:9650")]
        listen: std::net::SocketAddr,
    },
    /// Connectivity from every pod to every pod on a port, as a `.`/`X` matrix.
    Probe {
        #[command(flatten)]
        lab: LabName,
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        #[arg(long, default_value = "TCP")]
        protocol: String,
        /// Over which family: IPv4 or IPv6 (each pod at its address of that family). Default:
        /// the cluster's primary family.
        #[arg(long)]
        family: Option<String>,
        /// Per-connection timeout in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Faults of the lab's Kubernetes API, on purpose, to see the agents, DNS pods and edge
    /// proxies relist and converge: end every watch now, answer resuming watches 410 Gone,
    /// delay every answer, or close every connection, for a while. Without a flag: what is in
    /// force.
    Fault {
        #[command(flatten)]
        lab: LabName,
        /// End every watch under way now (clients resume from the last version they saw).
        #[arg(long)]
        end_watches: bool,
        /// For this many seconds, answer watches that resume from a version 410 Gone (too old
        /// resource version): clients must list again.
        #[arg(long, value_name = "SECONDS")]
        expire: Option<u64>,
        /// Delay every answer by this many milliseconds (with --for).
        #[arg(long, value_name = "MS", requires = "for_secs")]
        delay_ms: Option<u64>,
        /// How long the delay lasts, in seconds.
        #[arg(long = "for", value_name = "SECONDS", requires = "delay_ms")]
        for_secs: Option<u64>,
        /// For this many seconds, close every connection as it is accepted.
        #[arg(long, value_name = "SECONDS")]
        refuse: Option<u64>,
        /// For this many seconds, answer every write (controllers' status) 500 InternalError;
        /// reads and watches go on.
        #[arg(long, value_name = "SECONDS")]
        fail_writes: Option<u64>,
    },
    /// Keep the lab's server running (started by `lab up`).
    #[command(hide = true)]
    Keep {
        #[command(flatten)]
        lab: LabName,
    },
    /// Run the lab's test servers (started by `lab up`).
    #[command(hide = true)]
    Serve {
        #[command(flatten)]
        lab: LabName,
    },
}

#[derive(Args)]
struct ManifestArgs {
    /// Manifest files, directories (recursive: .yaml, .yml, .json) or - for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

/// Cluster settings; each overrides the ClusterConfig document, which overrides the defaults.
#[derive(Args, Default)]
struct ClusterArgs {
    /// Number of nodes (when the manifests give no Node objects). Default 3.
    #[arg(long)]
    nodes: Option<u32>,
    /// The cluster's IP families: ipv4, ipv6 or dual (IPv4 primary). Default ipv4, or the
    /// families of the CIDRs given.
    #[arg(long)]
    ip_family: Option<ClusterFamily>,
    /// Cluster pod CIDRs, one per family, the primary first. Default 10.244.0.0/16 (IPv6:
    /// fd00:10:244::/56).
    #[arg(long)]
    pod_cidr: Option<CidrList>,
    /// Prefix length of each node's IPv4 podCIDR. Default 24.
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    /// Prefix length of each node's IPv6 podCIDR. Default 64.
    #[arg(long)]
    node_cidr_mask_size_ipv6: Option<u8>,
    /// Service CIDRs, one per family, the primary first. Default 10.96.0.0/16 (IPv6:
    /// fd00:10:96::/112).
    #[arg(long)]
    service_cidr: Option<CidrList>,
    /// Cluster DNS address. Default: the 10th address of the service CIDR.
    #[arg(long)]
    dns_ip: Option<std::net::IpAddr>,
    /// NodePort range. Default 30000-32767.
    #[arg(long)]
    node_port_range: Option<PortRange>,
    /// Cluster domain. Default cluster.local.
    #[arg(long)]
    cluster_domain: Option<String>,
    /// LoadBalancer address pool: CIDRs or FIRST-LAST ranges, comma separated.
    #[arg(long, value_delimiter = ',')]
    lb_pool: Option<Vec<IpRange>>,
    /// How pod traffic crosses between nodes: native (routed through the nodes' addresses,
    /// unencapsulated: every node on one L2 segment), vxlan (the overlay), or auto (per pair
    /// of nodes: native where both nodes' addresses are on the node network, VXLAN
    /// elsewhere). Default auto.
    #[arg(long)]
    routing: Option<podnet_model::config::Routing>,
    /// The percentage of new connections let through that the flow log records as
    /// FORWARDED (0 to 100, in steps of 0.01). Default 0: drops and rejections only.
    #[arg(long, value_name = "PERCENT")]
    flow_sample: Option<f64>,
}

impl ClusterArgs {
    fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            nodes: self.nodes,
            ip_family: self.ip_family,
            pod_cidr: self.pod_cidr.clone(),
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_cidr_mask_size_ipv6: self.node_cidr_mask_size_ipv6,
            service_cidr: self.service_cidr.clone(),
            dns_ip: self.dns_ip,
            node_port_range: self.node_port_range,
            cluster_domain: self.cluster_domain.clone(),
            node_network: None,
            node_network_ipv6: None,
            load_balancer_pool: self.lb_pool.clone(),
            routing: self.routing,
            flow_sample: self.flow_sample,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    manifests: ManifestArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: OutputFormat,
    /// Print what this node's service proxy programs (its nftables elements) instead of the plan.
    #[arg(long, value_name = "NODE", conflicts_with = "dns")]
    proxy: Option<String>,
    /// Print the cluster DNS zone (every record the DNS server answers) instead of the plan.
    #[arg(long)]
    dns: bool,
    /// Print which pods may connect to which under the NetworkPolicies, instead of the plan:
    /// a row per source, a column per destination, `.` allowed, `X` denied.
    #[arg(long, conflicts_with_all = ["dns", "proxy"])]
    reach: bool,
    /// Write the map of the cluster to this file as one self-contained page (nodes and pods,
    /// Services and endpoints, Ingresses and Gateways with their routes, the NetworkPolicy
    /// matrix with why each cell is allowed or denied), instead of printing the plan.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dns", "proxy", "reach"])]
    html: Option<PathBuf>,
    /// With --reach: the destination port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// With --reach: TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    protocol: String,
    /// With --reach: only the pods of this namespace.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// With --reach: over IPv4 or IPv6 (each pod at its address of that family; an ipBlock of
    /// the other family takes in none of those connections). Default: each pod's primary
    /// address.
    #[arg(long)]
    family: Option<String>,
}

#[derive(Args)]
struct ExplainArgs {
    #[command(flatten)]
    manifests: ManifestArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The source: a pod (`namespace/name`) or an IP address.
    from: String,
    /// The destination and port: `namespace/pod:PORT`, a Service (`namespace/service:PORT`,
    /// judged on each of its endpoints), or `IP:PORT`; `/UDP` or `/SCTP` may follow.
    to: String,
    /// Over IPv4 or IPv6: each pod at its address of that family. Default: the family of an
    /// address given as FROM or TO, else each pod's primary address.
    #[arg(long)]
    family: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: OutputFormat,
}

fn main() -> ExitCode {
    // Installed (or linked) as `podnet-cni`, this binary is the CNI plugin.
    if std::env::args_os().next().is_some_and(|a| {
        std::path::Path::new(&a)
            .file_name()
            .is_some_and(|f| f == "podnet-cni")
    }) {
        return podnet_cni::plugin::main();
    }
    let cli = Cli::parse();
    // Logs (the agent's and the watchers' own, and kube-rs's warnings) go to stderr, as lines.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .try_init();
    let result = match cli.command {
        Command::Check(a) => check(a),
        Command::Explain(a) => explain::run(a),
        Command::Lab(l) => lab::run(l),
        Command::Dns(d) => dns::run(d),
        Command::Ingress(i) => ingress::run(i),
        Command::Gateway(g) => gateway::run(g),
        Command::Agent(a) => agent::run(a),
        Command::Observe(a) => flows::observe_cluster(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads and builds the model, printing every diagnostic. None when there were errors.
fn build_model(files: &[PathBuf], cluster: &ClusterArgs) -> Result<Option<podnet_model::Cluster>> {
    build_model_around(
        files,
        &cluster.overrides(),
        &podnet_model::Placements::new(),
    )
}

/// The model, with the pods that already run kept where they are.
fn build_model_around(
    files: &[PathBuf],
    settings: &ConfigOverrides,
    running: &podnet_model::Placements,
) -> Result<Option<podnet_model::Cluster>> {
    let (docs, syntax_errors) = load::load(files)?;
    let built = podnet_emulator::build_with(&docs, settings, running);
    let mut diags = syntax_errors.clone();
    let model = match built {
        Ok(c) => {
            diags.extend(c.warnings.iter().cloned());
            Some(c)
        }
        Err(e) => {
            diags.extend(e.diagnostics().iter().cloned());
            None
        }
    };
    for d in &diags {
        eprintln!("{d}");
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        eprintln!("{errors} error(s); nothing was planned");
        return Ok(None);
    }
    Ok(model)
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let Some(cluster) = build_model(&a.manifests.files, &a.cluster)? else {
        return Ok(ExitCode::FAILURE);
    };
    if let Some(node) = &a.proxy {
        if cluster.node(node).is_none() {
            anyhow::bail!(
                "no node {node:?}; nodes: {}",
                cluster
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let plan = podnet_proxy::ProxyPlan::new(&cluster, node);
        let listing = podnet_proxy::nft::Elements::of(&plan).listing();
        output::emit(a.output, &listing, || output::proxy_table(&plan))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &a.html {
        let title = a
            .manifests
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let page = podnet_ui::page(&podnet_ui::View::of(&cluster), &title, None);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if a.reach {
        let protocol = podnet_model::Protocol::parse(&a.protocol.to_uppercase())
            .ok_or_else(|| anyhow::anyhow!("--protocol {:?}: TCP, UDP or SCTP", a.protocol))?;
        let family = match a.family.as_deref() {
            None => None,
            Some(f) => Some(
                podnet_model::IpFamily::parse(f)
                    .ok_or_else(|| anyhow::anyhow!("--family {f:?}: IPv4 or IPv6"))?,
            ),
        };
        let reach = podnet_model::netpol::Reach::over(
            &cluster,
            a.port,
            protocol,
            a.namespace.as_deref(),
            family,
        );
        output::emit(a.output, &reach.cells(), || reach.render())?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.dns {
        let zone = podnet_model::dns::DnsZone::from_cluster(&cluster);
        output::emit(a.output, &zone, || zone.to_text())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut plan = serde_json::to_value(cluster.plan())?;
    let mut text = String::new();
    if !cluster.ingresses.is_empty() {
        // And the Ingresses: their status (the controller's address) and what the
        // controller serves.
        let edge = podnet_routes::edge::config(&cluster);
        let ingresses = podnet_routes::edge::with_status(&cluster);
        plan["ingresses"] = serde_json::to_value(&ingresses)?;
        plan["ingressRoutes"] = edge.summary();
        text += &output::ingress_tables(&ingresses, &edge);
    }
    if !cluster.gateways.is_empty()
        || !cluster.http_routes.is_empty()
        || !cluster.tls_routes.is_empty()
        || !cluster.grpc_routes.is_empty()
    {
        // And the Gateway API's objects with their status (each Gateway's address), and what
        // each Gateway's proxy serves.
        let g = podnet_gateway::compute(&cluster);
        plan["gatewayClasses"] = serde_json::to_value(&g.classes)?;
        plan["gateways"] = serde_json::to_value(&g.gateways)?;
        plan["httpRoutes"] = serde_json::to_value(&g.routes)?;
        plan["tlsRoutes"] = serde_json::to_value(&g.tls_routes)?;
        plan["listenerSets"] = serde_json::to_value(&g.listener_sets)?;
        plan["grpcRoutes"] = serde_json::to_value(&g.grpc_routes)?;
        plan["backendTLSPolicies"] = serde_json::to_value(&g.backend_tls_policies)?;
        plan["gatewayRoutes"] = g
            .configs
            .iter()
            .map(|(k, c)| (k.to_string(), c.summary()))
            .collect::<serde_json::Map<_, _>>()
            .into();
        text += &output::gateway_tables(&g);
    }
    output::emit(a.output, &plan, || output::tables(&cluster) + &text)?;
    Ok(ExitCode::SUCCESS)
}

/// A duration as `30s`, `500ms`, `2m` or a number of seconds.
fn humantime_secs(s: &str) -> anyhow::Result<std::time::Duration> {
    let bad = || anyhow::anyhow!("{s:?} is not a duration (30s, 500ms, 2m)");
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// Counts the heap (`--features dhat-heap`) and logs it every second beside the RSS (the agent
/// and the DNS server).
#[cfg(feature = "dhat-heap")]
pub(crate) fn heap_log() -> dhat::Profiler {
    let p = dhat::Profiler::builder().testing().build();
    std::thread::spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let s = dhat::HeapStats::get();
        let rss = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
            .unwrap_or_default();
        eprintln!(
            "heap: live {:.1} MB, peak {:.1} MB, {} blocks; RSS {rss} kB",
            s.curr_bytes as f64 / 1048576.0,
            s.max_bytes as f64 / 1048576.0,
            s.curr_blocks
        );
    });
    p
}
