//! The Kubernetes API as podnet's processes follow it (the node agent, the cluster DNS, the
//! Ingress and Gateway controllers): one way to get a client, one way to read the cluster's
//! settings, and one [`ClusterWatch`] of the model's kinds keeping an
//! [`ApiModel`](podnet_model::ApiModel) current (kube-runtime's watcher does the listing,
//! relisting and backoff).

pub mod watch;

pub use watch::{ClusterWatch, Round};

use podnet_model::{ApiModel, ConfigOverrides, Kind};

use std::path::{Path, PathBuf};

/// What can go wrong in a process that follows the API: reaching it, reading the settings,
/// the watches, the model, its sockets and the files it records what it serves in.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
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
    #[error("the model of what the API holds")]
    Model(#[source] podnet_model::ModelError),
    #[error("binding {at}")]
    Bind {
        at: std::net::SocketAddr,
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
}

/// A client of the API: from `kubeconfig`, else `$KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ProcessError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ProcessError::Kubeconfig {
                    path: path.into(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|source| ProcessError::Kubeconfig {
                    path: path.into(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(ProcessError::NoConfig)?,
    };
    // kube's default is 30 s: a connection attempt lost early (a pod whose node had just
    // been programmed, in the lab) would then hold the watches back that long before the next
    // attempt. A TCP connection to the API takes far less; the watches retry with backoff.
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    kube::Client::try_from(config).map_err(ProcessError::Client)
}

/// The cluster's settings: the file (podnet's ClusterConfig fields as JSON), then `flags`
/// over it (each one given replaces the file's).
pub fn settings(
    file: Option<&Path>,
    flags: &podnet_model::ConfigOverrides,
) -> Result<podnet_model::ConfigOverrides, ProcessError> {
    let o: podnet_model::ConfigOverrides = match file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| ProcessError::Read {
                path: path.into(),
                source,
            })?;
            serde_json::from_slice(&bytes).map_err(|source| ProcessError::Settings {
                path: path.into(),
                source,
            })?
        }
        None => Default::default(),
    };
    Ok(o.over(flags))
}

/// Says which objects a round of watch events left out (on standard error: these are the
/// user's objects, and the user reads the process's log).
pub fn log_refused(round: &Round) {
    for (key, why) in &round.refused {
        eprintln!("left out {key}: {why}");
    }
}

/// The model of `kinds` kept from the API: the watches started and every kind listed once
/// (what was left out said).
pub async fn follow(
    client: &kube::Client,
    settings: &ConfigOverrides,
    kinds: &[Kind],
) -> Result<(ApiModel, ClusterWatch), ProcessError> {
    let mut model = ApiModel::new(settings).map_err(ProcessError::Model)?;
    let mut watch = ClusterWatch::start_kinds(client, kinds, Default::default());
    let first = watch
        .until_ready(&mut model)
        .await
        .ok_or(ProcessError::EndedBeforeListed)?;
    log_refused(&first);
    Ok((model, watch))
}

/// Waits for the next round of watch events that changed the model (what was left out said).
pub async fn next_change(
    watch: &mut ClusterWatch,
    model: &mut ApiModel,
) -> Result<Round, ProcessError> {
    loop {
        let round = watch.next(model).await.ok_or(ProcessError::Ended)?;
        log_refused(&round);
        if !round.changed.is_empty() {
            return Ok(round);
        }
    }
}

/// When to try a controller's failed writes again: after 0.5 s, then twice as long after each
/// failure up to 30 s, as controller-runtime requeues with backoff; a round whose writes all
/// succeeded starts over.
#[derive(Debug)]
pub struct Retry {
    /// What is tried again, for the line that says so ("status writes").
    what: &'static str,
    failures: u32,
}

impl Retry {
    pub fn new(what: &'static str) -> Retry {
        Retry { what, failures: 0 }
    }

    /// How long to wait for a change before trying again; None when nothing failed.
    pub fn after(&mut self, all_written: bool) -> Option<std::time::Duration> {
        if all_written {
            self.failures = 0;
            return None;
        }
        self.failures += 1;
        let d = std::time::Duration::from_millis(500) * 2u32.pow((self.failures - 1).min(6));
        Some(d.min(std::time::Duration::from_secs(30)))
    }

    /// [`next_change`]; or, when the last round's writes did not all succeed, None once the
    /// backoff has passed without a change (said on stderr): the controller tries its writes
    /// again then, whether or not the API changed.
    pub async fn next_change(
        &mut self,
        watch: &mut ClusterWatch,
        model: &mut ApiModel,
        all_written: bool,
    ) -> Result<Option<Round>, ProcessError> {
        let Some(after) = self.after(all_written) else {
            return next_change(watch, model).await.map(Some);
        };
        // `next_change` is cancel-safe: it waits only on the watches' channel.
        match tokio::time::timeout(after, next_change(watch, model)).await {
            Ok(round) => round.map(Some),
            Err(_) => {
                eprintln!("trying the failed {} again", self.what);
                Ok(None)
            }
        }
    }
}

/// A listening TCP socket on `at`.
pub async fn bind(at: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ProcessError> {
    tokio::net::TcpListener::bind(at)
        .await
        .map_err(|source| ProcessError::Bind { at, source })
}

/// Writes `what` as JSON to `path` atomically (a file beside it, renamed), when there is a
/// path: what a process serves, for whoever waits on it.
pub fn record(path: Option<&Path>, what: &impl serde::Serialize) -> Result<(), ProcessError> {
    let Some(path) = path else { return Ok(()) };
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(what).expect("what is recorded serializes");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ProcessError::Record {
            path: path.into(),
            source,
        })
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn terminated() -> Result<(), ProcessError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ProcessError::Runtime)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

#[cfg(test)]
mod retry_tests {
    use super::Retry;
    use std::time::Duration;

    #[test]
    fn failed_writes_are_tried_again_after_a_growing_wait_and_success_starts_over() {
        let mut r = Retry::new("writes");
        assert_eq!(r.after(true), None, "nothing failed: wait for a change");
        let waits: Vec<_> = (0..9).map(|_| r.after(false).unwrap()).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(r.after(true), None);
        assert_eq!(r.after(false), Some(Duration::from_millis(500)));
    }
}
