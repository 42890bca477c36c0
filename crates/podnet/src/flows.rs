//! Printing flows (`podnet observe`, `podnet lab observe`), and `podnet observe` itself: the
//! cluster's Nodes from the API, each node's agent asked for its flows at the node's address.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use podnet_flow::client::{Agent, Event};
use podnet_flow::record::Flow;
use podnet_flow::{Filter, Verdict};

use crate::{ObserveArgs, OutputFormat};

/// The filter of `--pod` and `--verdict`.
pub fn filter(pod: Option<String>, verdicts: &[String]) -> Result<Filter> {
    let mut f = Filter {
        pod,
        ..Default::default()
    };
    for v in verdicts {
        f.verdicts.push(
            Verdict::parse(v)
                .with_context(|| format!("--verdict {v:?}: FORWARDED, DROPPED or REJECTED"))?,
        );
    }
    Ok(f)
}

/// Prints flows as they come: a table (its header first), or JSON lines; an agent gone or
/// back is said on stderr. `read` calls the printer with each event; a closed pipe (`| head`)
/// stops it.
pub fn print(
    output: OutputFormat,
    read: impl FnOnce(&mut dyn FnMut(Event) -> bool) -> Result<()>,
) -> Result<ExitCode> {
    if matches!(output, OutputFormat::Yaml) {
        bail!("-o yaml: flows print as a table, or as JSON lines (-o json)");
    }
    let json = matches!(output, OutputFormat::Json);
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(out, "{}", header())?;
    }
    read(&mut |e: Event| {
        let f = match e {
            Event::Flow(f) => f,
            Event::Gone { agent, why } => {
                eprintln!("{agent}: {why}; following it again once it answers");
                return true;
            }
            Event::Back { agent } => {
                eprintln!(
                    "{agent}: followed again (flows of the time it was away were not recorded)"
                );
                return true;
            }
        };
        let line = if json {
            serde_json::to_string(&f).expect("a flow is JSON")
        } else {
            row(&f)
        };
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn header() -> String {
    format!(
        "{:<30} {:<8} {:<32}    {:<32} {:<5} {:<9} WHY",
        "TIME", "NODE", "SOURCE", "DESTINATION", "PROTO", "VERDICT"
    )
}

/// A flow as a line of the table.
fn row(f: &Flow) -> String {
    let to = match &f.service {
        Some(s) => format!("{} (svc {}/{})", f.destination.shown(), s.namespace, s.name),
        None => f.destination.shown(),
    };
    format!(
        "{:<30} {:<8} {:<32} -> {:<32} {:<5} {:<9} {}",
        f.time,
        f.node,
        f.source.shown(),
        to,
        f.protocol,
        f.verdict,
        f.summary
    )
}

/// A Node's address for its agent: its InternalIP, else its first address.
fn address(n: &Node) -> Option<IpAddr> {
    let addrs = n.status.as_ref()?.addresses.as_ref()?;
    addrs
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .or_else(|| addrs.first())
        .and_then(|a| a.address.parse().ok())
}

/// `podnet observe`.
pub fn observe_cluster(a: ObserveArgs) -> Result<ExitCode> {
    let f = a.flows;
    let filter = filter(f.pod, &f.verdict)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime")?;
    let nodes: Vec<Node> = rt.block_on(async {
        let client = podnet_watch::client(a.kubeconfig.as_deref()).await?;
        let api: kube::Api<Node> = kube::Api::all(client);
        let list = api
            .list(&Default::default())
            .await
            .context("listing the cluster's Nodes")?;
        anyhow::Ok(list.items)
    })?;
    if nodes.is_empty() {
        bail!("the cluster has no Nodes");
    }
    let mut agents = Vec::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let ip = address(n).with_context(|| format!("Node {name} has no address"))?;
        let at = SocketAddr::new(ip, a.port);
        agents.push(Agent::new(format!("{name} ({at})"), move || {
            TcpStream::connect_timeout(&at, Duration::from_secs(3))
        }));
    }
    print(f.output, |each| {
        podnet_flow::client::observe(agents, &filter, f.follow, each)?;
        Ok(())
    })
}
