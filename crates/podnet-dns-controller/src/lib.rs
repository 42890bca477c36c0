//! The cluster DNS following the Kubernetes API (`podnet dns watch`, as the lab's kube-dns
//! pods and a cluster's Deployment behind the kube-dns Service run it): the zone of the
//! cluster the API describes ([`DnsZone::from_cluster`]), served by [`podnet_dns`] and
//! replaced whole at each change the watches bring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use podnet_dns::{ClusterDns, DnsError};
use podnet_model::dns::{DnsZone, StoredZone};
use podnet_model::{ConfigOverrides, Kind};
use podnet_watch::{ClusterWatch, WatchError};

/// What can go wrong in the DNS server's watch.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("the model of what the API holds")]
    Model(#[source] podnet_model::ModelError),
    #[error("the DNS server")]
    Dns(#[from] DnsError),
    #[error("binding {proto} {at}")]
    Bind {
        proto: &'static str,
        at: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", .path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime")]
    Runtime(#[source] std::io::Error),
    #[error("the DNS server's task")]
    Task(#[source] tokio::task::JoinError),
}

/// What the DNS server's watch is asked.
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub settings: ConfigOverrides,
    /// UDP and TCP.
    pub listen: SocketAddr,
    /// Where names outside the cluster domain go.
    pub upstreams: Vec<SocketAddr>,
    /// Where to write the zone served (as `podnet check --dns -o json` prints a zone), each
    /// time it changes.
    pub served_zone: Option<PathBuf>,
}

/// What the zone is made of: no Node or NetworkPolicy.
pub const ZONE_KINDS: [Kind; 4] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
];

/// The server's task: what it ended with.
pub type Served = tokio::task::JoinHandle<Result<(), DnsError>>;

/// Binds `listen` (UDP and TCP) and runs the server there, on a worker thread next to the I/O
/// driver (not on the caller's, which would have to be woken for every packet).
pub async fn serve_on(
    dns: &Arc<ClusterDns>,
    listen: SocketAddr,
) -> Result<Served, ControllerError> {
    let bind = |proto, source| ControllerError::Bind {
        proto,
        at: listen,
        source,
    };
    let udp = tokio::net::UdpSocket::bind(listen)
        .await
        .map_err(|e| bind("UDP", e))?;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| bind("TCP", e))?;
    Ok(tokio::spawn(dns.clone().run(vec![udp], vec![tcp])))
}

/// What the server has been told to serve: the ended task's error, if any.
pub fn ended(
    r: Result<Result<(), DnsError>, tokio::task::JoinError>,
) -> Result<(), ControllerError> {
    Ok(r.map_err(ControllerError::Task)??)
}

fn record(path: Option<&PathBuf>, zone: &StoredZone) -> Result<(), ControllerError> {
    let Some(path) = path else { return Ok(()) };
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(zone).expect("a zone serializes");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ControllerError::Record {
            path: path.clone(),
            source,
        })
}

/// Runs the server until SIGTERM or until it ends.
pub fn run(c: Config) -> Result<(), ControllerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ControllerError::Runtime)?;
    rt.block_on(serve(c))
}

async fn serve(c: Config) -> Result<(), ControllerError> {
    eprintln!("listing and watching the Kubernetes API");
    let client = podnet_watch::client(c.kubeconfig.as_deref()).await?;
    let mut model = podnet_model::ApiModel::new(&c.settings).map_err(ControllerError::Model)?;
    let mut api = ClusterWatch::start_kinds(&client, &ZONE_KINDS, Default::default());
    let first = api
        .until_ready(&mut model)
        .await
        .ok_or(WatchError::EndedBeforeListed)?;
    podnet_watch::log_refused(&first);
    let zone = DnsZone::from_cluster(model.cluster());
    eprintln!(
        "serving {} records on {} (UDP and TCP)",
        zone.records.len(),
        c.listen
    );
    record(c.served_zone.as_ref(), &zone.to_stored())?;
    let dns = Arc::new(ClusterDns::new(zone, c.upstreams.clone())?);
    let mut server = serve_on(&dns, c.listen).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ControllerError::Runtime)?;
    loop {
        tokio::select! {
            round = api.next(&mut model) => {
                let round = round.ok_or(WatchError::Ended)?;
                podnet_watch::log_refused(&round);
                if round.changed.is_empty() {
                    continue;
                }
                let zone = DnsZone::from_cluster(model.cluster());
                let n = zone.records.len();
                let stored = zone.to_stored();
                match dns.set_zone(zone) {
                    Ok(()) => {
                        eprintln!("the API changed: {n} records");
                        record(c.served_zone.as_ref(), &stored)?;
                    }
                    Err(e) => eprintln!("still serving the old zone: {e}"),
                }
            }
            _ = term.recv() => return Ok(()),
            r = &mut server => return ended(r),
        }
    }
}
