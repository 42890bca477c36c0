//! The Ingress controller (podnet's edge proxy following the Kubernetes API), as the lab's
//! `podnet-ingress` pods and a cluster's Deployment run it (`podnet ingress watch`): it
//! serves the Ingresses of podnet's classes (IngressClass controller `podnet.dev/ingress`) and,
//! with a publish Service, writes that Service's addresses into their status, as
//! ingress-nginx's `--publish-service` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use podnet_ingress::edge::{self, EdgeConfig};
use podnet_ingress::server::{Edge, Settings};
use podnet_model::{Cluster, ConfigOverrides, NsName};
use podnet_watch::ProcessError;

/// What can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the edge proxy")]
    Edge(#[source] podnet_ingress::IngressError),
}

/// What the controller is asked.
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub settings: ConfigOverrides,
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// /healthz, /readyz and /metrics.
    pub admin: SocketAddr,
    /// Where to write what is served, each time it changes.
    pub served: Option<PathBuf>,
    /// The Service whose addresses go into the status of every Ingress served.
    pub publish: Option<NsName>,
    pub access_log: bool,
    pub threads: usize,
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
/// whose status says otherwise.
async fn publish_status(
    client: &kube::Client,
    cluster: &Cluster,
    publish: &NsName,
    config: &EdgeConfig,
) {
    use k8s_openapi::api::networking::v1::Ingress;
    let Some(want) =
        podnet_model::edge::published_addresses(cluster, &publish.namespace, &publish.name)
    else {
        return;
    };
    let want: Vec<String> = want.iter().map(ToString::to_string).collect();
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
        }
    }
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub fn run(c: Config) -> Result<(), ControllerError> {
    let rt = podnet_ingress::server::runtime(c.threads).map_err(ProcessError::Runtime)?;
    rt.block_on(async {
        tokio::select! {
            r = serve(c) => r,
            r = podnet_watch::terminated() => Ok(r?),
        }
    })
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
    ) -> Result<EdgeConfig, ControllerError> {
        let config = edge::config(cluster);
        warn_new(&self.warnings, &config);
        self.warnings = config.warnings.clone();
        edge.set(config.clone());
        record(c.served.as_deref(), &config)?;
        if let Some(p) = &c.publish {
            publish_status(client, cluster, p, &config).await;
        }
        Ok(config)
    }
}

async fn serve(c: Config) -> Result<(), ControllerError> {
    let edge = Edge::new(Settings {
        access_log: c.access_log,
        ..Settings::default()
    })
    .map_err(ControllerError::Edge)?;
    // Listen first: the health port answers while the watches list.
    let bind = podnet_watch::bind;
    let (lh, ls, la) = (
        bind(c.http).await?,
        bind(c.https).await?,
        bind(c.admin).await?,
    );
    tokio::spawn(edge.clone().serve_admin(la));
    eprintln!("listing and watching the Kubernetes API");
    let client = podnet_watch::client(c.kubeconfig.as_deref()).await?;
    let (mut model, mut watch) =
        podnet_watch::follow(&client, &c.settings, &podnet_model::api::EDGE_KINDS).await?;
    let mut served = Served {
        warnings: Vec::new(),
    };
    let config = served.follow(&edge, model.cluster(), &c, &client).await?;
    eprintln!(
        "serving {} routes of {} Ingresses on {} (HTTP) and {} (HTTPS)",
        config.table.routes().len(),
        config.ingresses.len(),
        c.http,
        c.https
    );
    tokio::spawn(edge.clone().serve_http(lh));
    tokio::spawn(edge.clone().serve_https(ls));
    loop {
        let round = podnet_watch::next_change(&mut watch, &mut model).await?;
        let start = Instant::now();
        let config = served.follow(&edge, model.cluster(), &c, &client).await?;
        eprintln!(
            "the API changed: {} routes served {:.1} ms after the event",
            config.table.routes().len(),
            round.oldest.unwrap_or(start).elapsed().as_secs_f64() * 1000.0
        );
    }
}
