//! The Kubernetes API as podnet's processes follow it (the node agent, the cluster DNS, the
//! Ingress and Gateway controllers): one way to get a client, one way to read the cluster's
//! settings, and one [`ClusterWatch`] of the model's kinds keeping an
//! [`ApiModel`](podnet_model::ApiModel) current (kube-runtime's watcher does the listing,
//! relisting and backoff).

pub mod watch;

pub use watch::{ClusterWatch, Round};

use std::path::{Path, PathBuf};

/// What can go wrong in reaching the API or reading the settings.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("reading {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kubeconfig {}", .path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig given, none in $KUBECONFIG or ~/.kube, and not in a cluster")]
    NoConfig(#[source] kube::config::InferConfigError),
    #[error("the Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("{}: the cluster's settings", .path.display())]
    Settings {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the API's watches ended before their first list")]
    EndedBeforeListed,
    #[error("the API's watches ended")]
    Ended,
}

/// A client of the API: from `kubeconfig`, else `$KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, WatchError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                WatchError::Kubeconfig {
                    path: path.into(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|source| WatchError::Kubeconfig {
                    path: path.into(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(WatchError::NoConfig)?,
    };
    // kube's default is 30 s: a connection attempt lost early (a pod whose node had just
    // been programmed, in the lab) would then hold the watches back that long before the next
    // attempt. A TCP connection to the API takes far less; the watches retry with backoff.
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    kube::Client::try_from(config).map_err(WatchError::Client)
}

/// The cluster's settings: the file (podnet's ClusterConfig fields as JSON), then `flags`
/// over it (each one given replaces the file's).
pub fn settings(
    file: Option<&Path>,
    flags: &podnet_model::ConfigOverrides,
) -> Result<podnet_model::ConfigOverrides, WatchError> {
    let mut o: podnet_model::ConfigOverrides = match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| WatchError::Read {
                path: path.into(),
                source,
            })?;
            serde_json::from_slice(&bytes).map_err(|source| WatchError::Settings {
                path: path.into(),
                source,
            })?
        }
        None => Default::default(),
    };
    macro_rules! over {
        ($($f:ident),*) => { $(if flags.$f.is_some() { o.$f = flags.$f.clone(); })* };
    }
    over!(
        nodes,
        pod_cidr,
        node_cidr_mask_size,
        service_cidr,
        dns_ip,
        node_port_range,
        cluster_domain,
        node_network,
        load_balancer_pool
    );
    Ok(o)
}

/// Says which objects a round of watch events left out (on standard error: these are the
/// user's objects, and the user reads the process's log).
pub fn log_refused(round: &Round) {
    for (key, why) in &round.refused {
        eprintln!("left out {key}: {why}");
    }
}
