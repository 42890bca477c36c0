//! `podnet ingress watch`: the Ingress controller (podnet's edge proxy) following the
//! Kubernetes API, as the lab's `podnet-ingress` pods and a cluster's Deployment run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use podnet_ingress::edge::{self, EdgeConfig};
use podnet_ingress::server::{Edge, Settings};

use crate::{ClusterArgs, IngressCommand};

/// Writes the summary of what is served, atomically, when asked to.
fn record(served: &Option<PathBuf>, config: &EdgeConfig) -> Result<()> {
    let Some(path) = served else { return Ok(()) };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&config.summary())?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn warn_new(old: &[String], new: &EdgeConfig) {
    for w in new.warnings.iter().filter(|w| !old.contains(w)) {
        eprintln!("warning: {w}");
    }
}

pub fn run(cmd: IngressCommand) -> Result<ExitCode> {
    let IngressCommand::Watch {
        kubeconfig,
        config,
        cluster,
        http,
        https,
        admin,
        served,
        no_access_log,
        threads,
    } = cmd;
    watch(
        kubeconfig,
        config,
        cluster,
        [http, https, admin],
        served,
        !no_access_log,
        threads,
    )
}

fn watch(
    kubeconfig: Option<PathBuf>,
    config: Option<PathBuf>,
    cluster: ClusterArgs,
    [http, https, admin]: [std::net::SocketAddr; 3],
    served: Option<PathBuf>,
    access_log: bool,
    threads: usize,
) -> Result<ExitCode> {
    let overrides = crate::agent::overrides(config.as_deref(), &cluster)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let edge = Edge::new(Settings {
            access_log,
            ..Settings::default()
        })?;
        // Listen first: the health port answers while the watches list.
        let bind = |at| async move {
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding {at}"))
        };
        let (lh, ls, la) = (bind(http).await?, bind(https).await?, bind(admin).await?);
        tokio::spawn(edge.clone().serve_admin(la));
        let client = crate::agent::client(kubeconfig.as_deref()).await?;
        let metrics = Arc::new(podnet_agent::metrics::Metrics::default());
        let mut model = podnet_model::ApiModel::new(&overrides)?;
        let mut api = podnet_agent::watch::ClusterWatch::start_kinds(
            &client,
            &podnet_agent::watch::EDGE_KINDS,
            metrics,
        );
        let first = api
            .until_ready(&mut model)
            .await
            .context("the API's watches ended before their first list")?;
        for (key, why) in &first.refused {
            eprintln!("left out {key}: {why}");
        }
        let config = edge::config(model.cluster());
        warn_new(&[], &config);
        let mut warnings = config.warnings.clone();
        eprintln!(
            "serving {} routes of {} Ingresses on {http} (HTTP) and {https} (HTTPS)",
            config.table.routes().len(),
            config.ingresses.len()
        );
        record(&served, &config)?;
        edge.set(config);
        tokio::spawn(edge.clone().serve_http(lh));
        tokio::spawn(edge.clone().serve_https(ls));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                round = api.next(&mut model) => {
                    let round = round.context("the API's watches ended")?;
                    for (key, why) in &round.refused {
                        eprintln!("left out {key}: {why}");
                    }
                    if round.changed.is_empty() {
                        continue;
                    }
                    let start = Instant::now();
                    let config = edge::config(model.cluster());
                    warn_new(&warnings, &config);
                    warnings = config.warnings.clone();
                    let routes = config.table.routes().len();
                    edge.set(config.clone());
                    eprintln!(
                        "the API changed: {routes} routes served {:.1} ms after the event",
                        round.oldest.unwrap_or(start).elapsed().as_secs_f64() * 1000.0
                    );
                    record(&served, &config)?;
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
