//! `podnet dns serve` (the zone of a set of manifests) and `podnet dns watch` (the zone of the
//! cluster the Kubernetes API describes, following it): the cluster DNS server.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_model::dns::DnsZone;
use podnet_model::Kind;

use crate::{build_model, ClusterArgs, DnsCommand, DnsServerArgs, ManifestArgs};

/// Says which objects a round of watch events left out.
fn log_refused(round: &podnet_agent::watch::Round) {
    for (key, why) in &round.refused {
        eprintln!("left out {key}: {why}");
    }
}

/// `podnet dns watch`: the zone of the cluster the API describes, following its changes.
fn watch(
    kubeconfig: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    cluster: ClusterArgs,
    listen: std::net::SocketAddr,
    upstreams: Vec<std::net::SocketAddr>,
    served_zone: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    let overrides = crate::agent::overrides(config.as_deref(), &cluster)?;
    let record = move |zone: &podnet_model::dns::StoredZone| -> Result<()> {
        let Some(path) = &served_zone else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(zone)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        eprintln!("listing and watching the Kubernetes API");
        let client = crate::agent::client(kubeconfig.as_deref()).await?;
        let metrics = Arc::new(podnet_agent::metrics::Metrics::default());
        let mut model = podnet_model::ApiModel::new(&overrides)?;
        // What the zone is made of: no Node or NetworkPolicy.
        let mut api = podnet_agent::watch::ClusterWatch::start_kinds(
            &client,
            &[
                Kind::Namespace,
                Kind::Pod,
                Kind::Service,
                Kind::EndpointSlice,
            ],
            metrics,
        );
        let first = api
            .until_ready(&mut model)
            .await
            .context("the API's watches ended before their first list")?;
        log_refused(&first);
        let zone = DnsZone::from_cluster(model.cluster());
        eprintln!(
            "serving {} records on {listen} (UDP and TCP)",
            zone.records.len()
        );
        record(&zone.to_stored())?;
        let dns = Arc::new(podnet_dns::ClusterDns::new(zone, upstreams)?);
        let mut server = serve_on(&dns, listen).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                round = api.next(&mut model) => {
                    let round = round.context("the API's watches ended")?;
                    log_refused(&round);
                    if round.changed.is_empty() {
                        continue;
                    }
                    let zone = DnsZone::from_cluster(model.cluster());
                    let n = zone.records.len();
                    let stored = zone.to_stored();
                    match dns.set_zone(zone) {
                        Ok(()) => {
                            eprintln!("the API changed: {n} records");
                            record(&stored)?;
                        }
                        Err(e) => eprintln!("still serving the old zone: {e}"),
                    }
                }
                _ = term.recv() => break,
                r = &mut server => { r??; break; }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The zone of the manifests (None when they have errors, which are printed). The model is
/// dropped once the zone is built: the server keeps only the zone.
fn zone_of(manifests: &ManifestArgs, cluster: &ClusterArgs) -> Result<Option<DnsZone>> {
    Ok(build_model(&manifests.files, cluster)?.map(|m| DnsZone::from_cluster(&m)))
}

/// The upstreams given, and those of a resolv.conf (without this server's own address).
fn upstreams_of(args: &DnsServerArgs) -> Result<Vec<std::net::SocketAddr>> {
    let mut upstreams = args.upstreams.clone();
    let listen = args.listen;
    if let Some(path) = args.upstream_resolv_conf.as_deref() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (found, ours) = podnet_dns::upstreams_from_resolv_conf(&text, listen);
        for s in ours {
            eprintln!(
                "{}: leaving out nameserver {s}: it is this server (a forwarding loop)",
                path.display()
            );
        }
        if found.is_empty() {
            eprintln!("{}: no nameserver to forward to", path.display());
        }
        upstreams.extend(found);
    }
    Ok(upstreams)
}

/// Binds `listen` (UDP and TCP) and runs the server there, on a worker thread next to the I/O
/// driver (not on the caller's, which would have to be woken for every packet).
async fn serve_on(
    dns: &Arc<podnet_dns::ClusterDns>,
    listen: std::net::SocketAddr,
) -> Result<tokio::task::JoinHandle<Result<(), podnet_dns::DnsError>>> {
    let udp = tokio::net::UdpSocket::bind(listen)
        .await
        .with_context(|| format!("binding UDP {listen}"))?;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding TCP {listen}"))?;
    Ok(tokio::spawn(dns.clone().run(vec![udp], vec![tcp])))
}

pub fn run(cmd: DnsCommand) -> Result<ExitCode> {
    let (manifests, cluster, server, threads) = match cmd {
        DnsCommand::Serve {
            manifests,
            cluster,
            server,
            threads,
        } => (manifests, cluster, server, threads),
        DnsCommand::Watch {
            api,
            server,
            served_zone,
        } => {
            let upstreams = upstreams_of(&server)?;
            return watch(
                api.kubeconfig,
                api.config,
                api.cluster,
                server.listen,
                upstreams,
                served_zone,
            );
        }
    };
    let upstreams = upstreams_of(&server)?;
    let listen = server.listen;
    let Some(zone) = zone_of(&manifests, &cluster)? else {
        return Ok(ExitCode::FAILURE);
    };
    let records = zone.records.len();
    let dns = Arc::new(podnet_dns::ClusterDns::new(zone, upstreams)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut server = serve_on(&dns, listen).await?;
        eprintln!("serving {records} records on {listen} (UDP and TCP)");
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    match zone_of(&manifests, &cluster) {
                        Ok(Some(zone)) => {
                            let n = zone.records.len();
                            match dns.set_zone(zone) {
                                Ok(()) => eprintln!("reloaded: {n} records"),
                                Err(e) => eprintln!("reload failed, still serving the old zone: {e}"),
                            }
                        }
                        Ok(None) => eprintln!("reload failed, still serving the old zone"),
                        Err(e) => eprintln!("reload failed, still serving the old zone: {e:#}"),
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                r = &mut server => { r??; break; }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
