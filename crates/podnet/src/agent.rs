//! `podnet agent`: the node agent, against the cluster's Kubernetes API.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use podnet_agent::metrics::Metrics;
use podnet_agent::run::AgentConfig;

use crate::AgentArgs;

pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig given, none in $KUBECONFIG or ~/.kube, and not in a cluster")?,
    };
    // kube's default is 30 s: a connection attempt lost early (a pod whose node had just
    // been programmed, in the lab) would then hold the watches back that long before the next
    // attempt. A TCP connection to the API takes far less; the watches retry with backoff.
    let mut config = config;
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    kube::Client::try_from(config).context("the Kubernetes client")
}

/// The settings file, then the flags over it.
pub fn overrides(
    config: Option<&std::path::Path>,
    cluster: &crate::ClusterArgs,
) -> Result<podnet_model::ConfigOverrides> {
    let mut o: podnet_model::ConfigOverrides = match config {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: the cluster's settings", path.display()))?,
        None => Default::default(),
    };
    let flags = cluster.overrides();
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

pub fn run(args: AgentArgs) -> Result<ExitCode> {
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
        let client = client(args.kubeconfig.as_deref()).await?;
        let cfg = AgentConfig {
            node: args.node.clone(),
            overrides: overrides(args.config.as_deref(), &args.cluster)?,
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
