//! `podnet agent`: the node agent, against the cluster's Kubernetes API.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_agent::metrics::Metrics;
use podnet_agent::run::AgentConfig;

use crate::AgentArgs;

/// The cluster's settings: the file, then the flags over it.
pub fn settings(
    config: Option<&std::path::Path>,
    cluster: &crate::ClusterArgs,
) -> Result<podnet_model::ConfigOverrides> {
    Ok(podnet_watch::settings(config, &cluster.overrides())?)
}

pub fn run(args: AgentArgs) -> Result<ExitCode> {
    // Before any thread allocates: the first lists are decoded on the runtime's workers, and
    // in arenas of their own their peak stays resident around the objects the watches keep
    // (at 10,000 Services: 100 MB of RSS with 21 MB live, bench/RESULTS.md).
    podnet_alloc::one_arena();
    #[cfg(feature = "dhat-heap")]
    let _heap = crate::heap_log();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("the agent's runtime")?;
    rt.block_on(async {
        let metrics = Arc::new(Metrics::default());
        let listener = tokio::net::TcpListener::bind(args.metrics_addr)
            .await
            .with_context(|| format!("listening on {}", args.metrics_addr))?;
        tokio::spawn(podnet_agent::metrics::serve(metrics.clone(), listener));
        let client = podnet_watch::client(args.kubeconfig.as_deref()).await?;
        let mut overrides = settings(args.config.as_deref(), &args.cluster)?;
        // `routing: auto` compares the other nodes' addresses with the node network: unless
        // the settings give it, the networks of the uplink's own addresses, as the kernel
        // holds them.
        let uplink_nets = podnet_node::netlink::networks(&args.netns, &args.uplink)
            .map_err(|e| anyhow::anyhow!(podnet_node::chain(&e)))
            .with_context(|| format!("reading the addresses of the uplink {}", args.uplink))?;
        let (v4, v6) = uplink_networks(&uplink_nets);
        if overrides.node_network.is_none() {
            overrides.node_network = v4;
        }
        if overrides.node_network_ipv6.is_none() {
            overrides.node_network_ipv6 = v6;
        }
        tracing::info!(
            routing = %overrides.routing.unwrap_or_default(),
            node_network = ?overrides.node_network,
            node_network_ipv6 = ?overrides.node_network_ipv6,
            "between nodes"
        );
        let cfg = AgentConfig {
            node: args.node.clone(),
            overrides,
            uplink: args.uplink.clone(),
            netns: args.netns.clone(),
            state_dir: args.state_dir.clone(),
            cni: args
                .cni_conf_dir
                .clone()
                .map(|conf_dir| podnet_agent::run::CniInstall {
                    conf_dir,
                    ipam_dir: args.cni_ipam_dir.clone(),
                }),
            verify_every: args.verify_every,
            verify_changes: args.verify_changes,
            cni_socket: args
                .cni_socket
                .clone()
                .unwrap_or_else(|| args.state_dir.join(format!("{}.sock", args.node))),
        };
        podnet_agent::run::run(client, cfg, metrics)
            .await
            .map_err(|e| anyhow::anyhow!(podnet_node::chain(&e)))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The uplink's first IPv4 and first IPv6 network.
fn uplink_networks(nets: &[ipnet::IpNet]) -> (Option<ipnet::IpNet>, Option<ipnet::IpNet>) {
    (
        nets.iter().find(|n| n.addr().is_ipv4()).copied(),
        nets.iter().find(|n| n.addr().is_ipv6()).copied(),
    )
}
