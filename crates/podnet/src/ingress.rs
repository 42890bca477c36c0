//! `podnet ingress watch`: the Ingress controller (podnet's edge proxy) following the
//! Kubernetes API, as the lab's `podnet-ingress` pods and a cluster's Deployment run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use podnet_ingress::edge::{self, EdgeConfig};
use podnet_ingress::server::{Edge, Settings};

use crate::IngressCommand;

/// Writes the summary of what is served, atomically, when asked to.
pub(crate) fn record(served: &Option<PathBuf>, config: &EdgeConfig) -> Result<()> {
    let Some(path) = served else { return Ok(()) };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&config.summary())?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn warn_new(old: &[String], new: &EdgeConfig) {
    for w in new.warnings.iter().filter(|w| !old.contains(w)) {
        eprintln!("warning: {w}");
    }
}

pub fn run(cmd: IngressCommand) -> Result<ExitCode> {
    let IngressCommand::Watch {
        api,
        http,
        https,
        admin,
        served,
        publish_service,
        no_access_log,
        threads,
    } = cmd;
    let publish = publish_service
        .map(|s| match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                Ok(podnet_model::NsName::new(ns, name))
            }
            _ => anyhow::bail!("--publish-service {s:?}: NAMESPACE/NAME"),
        })
        .transpose()?;
    watch(Watch {
        api,
        listen: [http, https, admin],
        served,
        publish,
        access_log: !no_access_log,
        threads,
    })
}

/// What `podnet ingress watch` was asked.
struct Watch {
    api: crate::ApiArgs,
    /// HTTP, HTTPS, admin.
    listen: [std::net::SocketAddr; 3],
    served: Option<PathBuf>,
    publish: Option<podnet_model::NsName>,
    access_log: bool,
    threads: usize,
}

/// Writes the publish Service's addresses into `status.loadBalancer` of every Ingress served
/// whose status says otherwise, as ingress-nginx's `--publish-service` does.
async fn publish_status(
    client: &kube::Client,
    cluster: &podnet_model::Cluster,
    publish: &podnet_model::NsName,
    config: &EdgeConfig,
) {
    use k8s_openapi::api::networking::v1::Ingress;
    let Some(svc) = cluster.service(&publish.namespace, &publish.name) else {
        return;
    };
    let want: Vec<String> = if svc.load_balancer_ips.is_empty() {
        &svc.external_ips
    } else {
        &svc.load_balancer_ips
    }
    .iter()
    .map(|ip| ip.to_string())
    .collect();
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

fn watch(w: Watch) -> Result<ExitCode> {
    let Watch {
        api,
        listen: [http, https, admin],
        served,
        publish,
        access_log,
        threads,
    } = w;
    let overrides = crate::agent::overrides(api.config.as_deref(), &api.cluster)?;
    let rt = podnet_ingress::server::runtime(threads)?;
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
        eprintln!("listing and watching the Kubernetes API");
        let client = crate::agent::client(api.kubeconfig.as_deref()).await?;
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
        if let Some(p) = &publish {
            publish_status(&client, model.cluster(), p, &config).await;
        }
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
                    if let Some(p) = &publish {
                        publish_status(&client, model.cluster(), p, &config).await;
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
