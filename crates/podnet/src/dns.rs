//! `podnet dns serve`: the cluster DNS server for a set of manifests.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_model::dns::DnsZone;

use crate::{build_model, ClusterArgs, DnsCommand, ManifestArgs};

/// The zone of the manifests (None when they have errors, which are printed). The model is
/// dropped once the zone is built: the server keeps only the zone.
fn zone_of(manifests: &ManifestArgs, cluster: &ClusterArgs) -> Result<Option<DnsZone>> {
    Ok(build_model(&manifests.files, cluster)?.map(|m| DnsZone::from_cluster(&m)))
}

pub fn run(cmd: DnsCommand) -> Result<ExitCode> {
    let DnsCommand::Serve {
        manifests,
        cluster,
        listen,
        mut upstreams,
        upstream_resolv_conf,
        threads,
    } = cmd;
    if let Some(path) = upstream_resolv_conf {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
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
        let udp = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding UDP {listen}"))?;
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding TCP {listen}"))?;
        // On a worker thread, next to the I/O driver: not on this thread, which would have to be
        // woken for every packet.
        let mut server = tokio::spawn(dns.clone().run(vec![udp], vec![tcp]));
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
