//! The cluster DNS following the Kubernetes API (`podnet dns watch`, as the lab's kube-dns
//! pods and a cluster's Deployment behind the kube-dns Service run it): the zone of the
//! cluster the API describes ([`DnsZone::from_cluster`]), served by [`podnet_dns`] and
//! replaced whole at each change the watches bring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use podnet_dns::{ClusterDns, DnsError};
use podnet_model::dns::DnsZone;
use podnet_model::{ConfigOverrides, Kind};
use podnet_watch::ProcessError;

/// What can go wrong in the DNS server's watch.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the DNS server")]
    Dns(#[from] DnsError),
    #[error("binding {proto} {at}")]
    Bind {
        proto: &'static str,
        at: SocketAddr,
        #[source]
        source: std::io::Error,
    },
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
    /// Where to serve `/metrics` (and `/healthz`), if anywhere.
    pub metrics: Option<SocketAddr>,
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

/// Runs the server until SIGTERM or until it ends.
pub fn run(c: Config) -> Result<(), ControllerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ProcessError::Runtime)?;
    rt.block_on(async {
        tokio::select! {
            r = serve(c) => r,
            r = podnet_watch::terminated() => Ok(r?),
        }
    })
}

async fn serve(c: Config) -> Result<(), ControllerError> {
    eprintln!("listing and watching the Kubernetes API");
    let client = podnet_watch::client(c.kubeconfig.as_deref()).await?;
    let (mut model, mut watch) = podnet_watch::follow(&client, &c.settings, &ZONE_KINDS).await?;
    let zone = DnsZone::from_cluster(model.cluster());
    let records = zone.records.len();
    let dns = Arc::new(ClusterDns::new(zone, c.upstreams.clone())?);
    // The first lists' peak is over (a list's response, its objects, the first model): glibc
    // would keep its pages.
    podnet_alloc::release_free_memory();
    // "serving" (and the served zone's record, which the lab waits on) only once the sockets
    // are bound: a query sent on the word before the bind was lost (a test's first query
    // waited out its 5 s once, on a busy machine).
    let mut server = serve_on(&dns, c.listen).await?;
    eprintln!("serving {records} records on {} (UDP and TCP)", c.listen);
    if let Some(at) = c.metrics {
        let listener =
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| ControllerError::Bind {
                    proto: "TCP (metrics)",
                    at,
                    source,
                })?;
        tokio::spawn(serve_metrics(dns.clone(), listener));
    }
    // The zone served, written from the server's own copy (no second one kept).
    let record = || podnet_watch::record(c.served_zone.as_deref(), &dns.zone().model().stored());
    record()?;
    loop {
        tokio::select! {
            round = podnet_watch::next_change(&mut watch, &mut model) => {
                round?;
                let zone = DnsZone::from_cluster(model.cluster());
                let n = zone.records.len();
                match dns.set_zone(zone) {
                    Ok(()) => {
                        eprintln!("the API changed: {n} records");
                        record()?;
                    }
                    Err(e) => eprintln!("still serving the old zone: {e}"),
                }
            }
            r = &mut server => return ended(r),
        }
    }
}

/// Serves `/metrics` (the server's counters, Prometheus' text format) and `/healthz` on
/// `listener`.
pub async fn serve_metrics(dns: Arc<ClusterDns>, listener: tokio::net::TcpListener) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let dns = dns.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let dns = dns.clone();
                async move {
                    let (code, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, dns.metrics.render()),
                        "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(code)
                            .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
