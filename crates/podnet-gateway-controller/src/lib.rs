//! podnet's Gateway API controller. [`run`] is one Gateway's proxy (podnet's edge proxy)
//! following the Kubernetes API, as the lab's Gateway pods and a cluster's per-Gateway
//! Deployments run it (`podnet gateway watch`): it listens on each port of the Gateway's
//! listeners (opened and closed as the listeners change) and, when asked, writes the status of
//! the Gateway, its class and its routes' entries for it ([`status`]). [`provision`] gives each
//! Gateway of podnet's class its proxy (`podnet gateway provision`).

pub mod provision;
pub mod status;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use podnet_ingress::server::Edge;
use podnet_ingress_controller::{record, warn_new};
use podnet_model::NsName;
use podnet_routes::edge::{EdgeConfig, Serves};

pub use podnet_ingress_controller::{ControllerError, Proxy};

/// What one Gateway's proxy is asked.
pub struct Config {
    pub proxy: Proxy,
    /// The Gateway served.
    pub gateway: NsName,
    /// The address its listeners' ports are opened on.
    pub address: IpAddr,
    /// Whether to write the status of the Gateway and of its routes' entries for it.
    pub write_status: bool,
}

/// The listening sockets: one task per port, HTTP, HTTPS or TLS streams.
#[derive(Default)]
struct Ports {
    open: BTreeMap<u16, (Serves, tokio::task::JoinHandle<()>)>,
}

impl Ports {
    /// Opens the ports the configuration has and closes the others.
    async fn follow(&mut self, edge: &Arc<Edge>, config: &EdgeConfig, ip: IpAddr) {
        let stale: Vec<u16> = self
            .open
            .iter()
            .filter(|(p, (serves, _))| config.ports.get(p).is_none_or(|c| c.serves() != *serves))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            if let Some((_, task)) = self.open.remove(&p) {
                task.abort();
                eprintln!("closed port {p}");
            }
        }
        for (port, c) in &config.ports {
            if self.open.contains_key(port) {
                continue;
            }
            let at = SocketAddr::new(ip, *port);
            match tokio::net::TcpListener::bind(at).await {
                Ok(l) => {
                    let serves = c.serves();
                    let task = match serves {
                        Serves::Https => tokio::spawn(edge.clone().serve_https(l)),
                        Serves::Http => tokio::spawn(edge.clone().serve_http(l)),
                        Serves::Tls => tokio::spawn(edge.clone().serve_tls(l, *port)),
                    };
                    eprintln!("listening on {at} ({serves:?})");
                    self.open.insert(*port, (serves, task));
                }
                Err(e) => eprintln!("warning: binding {at}: {e}"),
            }
        }
    }
}

/// Runs one Gateway's proxy until SIGTERM or Ctrl-C.
pub fn run(c: Config) -> Result<(), ControllerError> {
    c.proxy.run(serve(&c))
}

/// Serves what the model says of the Gateway now: its configuration, its ports, its record
/// and (when asked) its status; with whether every status write succeeded.
async fn follow(
    c: &Config,
    edge: &Arc<Edge>,
    ports: &mut Ports,
    warnings: &mut Vec<String>,
    cluster: &podnet_model::Cluster,
    client: &kube::Client,
) -> Result<(EdgeConfig, bool), ControllerError> {
    let computed = podnet_gateway::compute_one(cluster, &c.gateway);
    let config = computed
        .configs
        .get(&c.gateway)
        .cloned()
        .unwrap_or_default();
    if !computed.configs.contains_key(&c.gateway) {
        eprintln!(
            "Gateway {} is not one of podnet's (yet): serving nothing",
            c.gateway
        );
    }
    warn_new(warnings, &config);
    *warnings = config.warnings.clone();
    edge.set(config.clone());
    ports.follow(edge, &config, c.address).await;
    record(c.proxy.served.as_deref(), &config)?;
    let written = !c.write_status || status::write(client, cluster, &computed, &c.gateway).await;
    Ok((config, written))
}

async fn serve(c: &Config) -> Result<(), ControllerError> {
    let (edge, client) = c.proxy.start().await?;
    eprintln!(
        "listing and watching the Kubernetes API for Gateway {}",
        c.gateway
    );
    let kinds = &podnet_model::api::GATEWAY_KINDS;
    let (mut model, mut watch) = podnet_watch::follow(&client, &c.proxy.settings, kinds).await?;
    let mut ports = Ports::default();
    let mut warnings: Vec<String> = Vec::new();
    let mut oldest = None;
    let mut retry = podnet_watch::Retry::new("status writes");
    loop {
        let start = Instant::now();
        let (config, written) = follow(
            c,
            &edge,
            &mut ports,
            &mut warnings,
            model.cluster(),
            &client,
        )
        .await?;
        let routes: usize = config
            .ports
            .values()
            .flat_map(|p| &p.listeners)
            .map(|l| l.table.routes().len())
            .sum();
        eprintln!(
            "serving {routes} routes on {} ports, {:.1} ms after the event",
            config.ports.len(),
            oldest.unwrap_or(start).elapsed().as_secs_f64() * 1000.0
        );
        oldest = retry
            .next_change(&mut watch, &mut model, written)
            .await?
            .and_then(|round| round.oldest);
    }
}
