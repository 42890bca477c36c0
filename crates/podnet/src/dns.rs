//! `podnet dns serve` (the zone of a set of manifests) and `podnet dns watch` (the zone of the
//! cluster the Kubernetes API describes, following it: [`podnet_dns_controller`]): the
//! cluster DNS server.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_model::dns::DnsZone;

use crate::{build_model, ClusterArgs, DnsCommand, DnsServerArgs, ManifestArgs};

/// The zone of the manifests (None when they have errors, which are printed). The model is
/// dropped once the zone is built, and the pages freed with it go back to the kernel: parsing
/// and the model take about ten times the zone's memory at their peak (100 MB for 10,000
/// Services, whose zone takes 9 MB), which glibc would otherwise keep.
fn zone_of(manifests: &ManifestArgs, cluster: &ClusterArgs) -> Result<Option<DnsZone>> {
    let zone = build_model(&manifests.files, cluster)?.map(|m| DnsZone::from_cluster(&m));
    podnet_alloc::release_free_memory();
    Ok(zone)
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

pub fn run(cmd: DnsCommand) -> Result<ExitCode> {
    #[cfg(feature = "dhat-heap")]
    let _heap = crate::heap_log();
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
            metrics_addr,
        } => {
            podnet_dns_controller::run(podnet_dns_controller::Config {
                settings: crate::agent::settings(api.config.as_deref(), &api.cluster)?,
                kubeconfig: api.kubeconfig,
                listen: server.listen,
                upstreams: upstreams_of(&server)?,
                served_zone,
                metrics: metrics_addr,
            })?;
            return Ok(ExitCode::SUCCESS);
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
        let mut server = podnet_dns_controller::serve_on(&dns, listen).await?;
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
                r = &mut server => { podnet_dns_controller::ended(r)?; break; }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
