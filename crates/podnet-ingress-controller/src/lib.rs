//! The Ingress controller (podnet's edge proxy following the Kubernetes API), as the lab's
//! `podnet-ingress` pods and a cluster's Deployment run it (`podnet ingress watch`): it
//! serves the Ingresses of podnet's classes (IngressClass controller `podnet.dev/ingress`) and,
//! with a publish Service, writes that Service's addresses into their status, as
//! ingress-nginx's `--publish-service` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use podnet_ingress::server::{Edge, Settings};
use podnet_model::{Cluster, ConfigOverrides, NsName};
use podnet_routes::edge::{self, EdgeConfig};
use podnet_watch::ProcessError;

/// What can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the edge proxy")]
    Edge(#[source] podnet_ingress::IngressError),
}

/// What every edge proxy that follows the API is asked (the Ingress controller, a Gateway's
/// proxy).
pub struct Proxy {
    pub kubeconfig: Option<PathBuf>,
    pub settings: ConfigOverrides,
    /// /healthz, /readyz and /metrics.
    pub admin: SocketAddr,
    /// Where to write what is served, each time it changes.
    pub served: Option<PathBuf>,
    pub access_log: bool,
    pub threads: usize,
}

impl Proxy {
    /// Runs `serve` on the proxy's runtime until it ends, or until SIGTERM or Ctrl-C.
    pub fn run<F>(&self, serve: F) -> Result<(), ControllerError>
    where
        F: std::future::Future<Output = Result<(), ControllerError>>,
    {
        let rt = podnet_ingress::server::runtime(self.threads).map_err(ProcessError::Runtime)?;
        rt.block_on(async {
            tokio::select! {
                r = serve => r,
                r = podnet_watch::terminated() => Ok(r?),
            }
        })
    }

    /// The proxy, with its admin port served (it answers while the watches list), and a
    /// client of the API.
    pub async fn start(&self) -> Result<(Arc<Edge>, kube::Client), ControllerError> {
        let edge = Edge::new(Settings {
            access_log: self.access_log,
            ..Settings::default()
        })
        .map_err(ControllerError::Edge)?;
        let admin = podnet_watch::bind(self.admin).await?;
        tokio::spawn(edge.clone().serve_admin(admin));
        let client = podnet_watch::client(self.kubeconfig.as_deref()).await?;
        Ok((edge, client))
    }
}

/// What the controller is asked.
pub struct Config {
    pub proxy: Proxy,
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// The Service whose addresses go into the status of every Ingress served.
    pub publish: Option<NsName>,
}

/// Writes the summary of what is served to `path`, atomically.
pub fn record(path: Option<&Path>, config: &EdgeConfig) -> Result<(), ProcessError> {
    podnet_watch::record(path, &config.summary())
}

/// Prints the warnings of `new` that `old` did not have.
pub fn warn_new(old: &[String], new: &EdgeConfig) {
    for w in new.warnings.iter().filter(|w| !old.contains(w)) {
        eprintln!("warning: {w}");
    }
}

/// Writes the publish Service's addresses into `status.loadBalancer` of every Ingress served
/// whose status says otherwise; false when a write failed (to be tried again).
async fn publish_status(
    client: &kube::Client,
    cluster: &Cluster,
    publish: &NsName,
    config: &EdgeConfig,
) -> bool {
    use k8s_openapi::api::networking::v1::Ingress;
    let Some(want) =
        podnet_model::edge::published_addresses(cluster, &publish.namespace, &publish.name)
    else {
        return true;
    };
    let want: Vec<String> = want.iter().map(ToString::to_string).collect();
    let mut written = true;
    for key in &config.ingresses {
        let Some(ing) = cluster.ingresses.iter().map(|i| &i.obj).find(|i| {
            i.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                && i.metadata.name.as_deref() == Some(key.name.as_str())
        }) else {
            continue;
        };
        let have: Vec<String> = ing
            .status
            .iter()
            .flat_map(|s| s.load_balancer.iter())
            .flat_map(|l| l.ingress.iter().flatten())
            .filter_map(|x| x.ip.clone())
            .collect();
        if have == want {
            continue;
        }
        let api: kube::Api<Ingress> = kube::Api::namespaced(client.clone(), &key.namespace);
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress":
            want.iter().map(|ip| serde_json::json!({"ip": ip})).collect::<Vec<_>>()}}});
        if let Err(e) = api
            .patch_status(
                &key.name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            eprintln!("Ingress {key}: writing its status: {e}");
            written = false;
        }
    }
    written
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub fn run(c: Config) -> Result<(), ControllerError> {
    c.proxy.run(serve(&c))
}

/// One pass of the controller's work after a change: the new configuration served, recorded
/// and published.
struct Served {
    warnings: Vec<String>,
}

impl Served {
    async fn follow(
        &mut self,
        edge: &Edge,
        cluster: &Cluster,
        c: &Config,
        client: &kube::Client,
    ) -> Result<(EdgeConfig, bool), ControllerError> {
        let config = edge::config(cluster);
        warn_new(&self.warnings, &config);
        self.warnings = config.warnings.clone();
        edge.set(config.clone());
        record(c.proxy.served.as_deref(), &config)?;
        let written = match &c.publish {
            Some(p) => publish_status(client, cluster, p, &config).await,
            None => true,
        };
        Ok((config, written))
    }
}

async fn serve(c: &Config) -> Result<(), ControllerError> {
    let (edge, client) = c.proxy.start().await?;
    let (lh, ls) = (
        podnet_watch::bind(c.http).await?,
        podnet_watch::bind(c.https).await?,
    );
    eprintln!("listing and watching the Kubernetes API");
    let kinds = &podnet_model::api::EDGE_KINDS;
    let (mut model, mut watch) = podnet_watch::follow(&client, &c.proxy.settings, kinds).await?;
    let mut served = Served {
        warnings: Vec::new(),
    };
    let (config, mut written) = served.follow(&edge, model.cluster(), c, &client).await?;
    eprintln!(
        "serving {} routes of {} Ingresses on {} (HTTP) and {} (HTTPS)",
        config.table.routes().len(),
        config.ingresses.len(),
        c.http,
        c.https
    );
    tokio::spawn(edge.clone().serve_http(lh));
    tokio::spawn(edge.clone().serve_https(ls));
    let mut retry = podnet_watch::Retry::new("status writes");
    loop {
        let round = retry.next_change(&mut watch, &mut model, written).await?;
        let start = Instant::now();
        let config;
        (config, written) = served.follow(&edge, model.cluster(), c, &client).await?;
        eprintln!(
            "the API changed: {} routes served {:.1} ms after the event",
            config.table.routes().len(),
            round
                .and_then(|r| r.oldest)
                .unwrap_or(start)
                .elapsed()
                .as_secs_f64()
                * 1000.0
        );
    }
}
