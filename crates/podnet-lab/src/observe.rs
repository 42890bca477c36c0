//! `podnet lab observe`: the flows of every node of a lab, from each node's agent (its
//! `/flows`, on the agent's metrics address inside the node's namespace), as `hubble observe`
//! shows a cluster's.

use std::net::TcpStream;
use std::time::Duration;

use podnet_flow::record::Flow;
use podnet_flow::Filter;

use crate::agents::METRICS_ADDR;
use crate::{load_state, LabError};

/// A connection to every node's agent (its metrics address, reached from inside the node's
/// namespace), by node name.
pub fn agents(st: &crate::LabState) -> Result<Vec<(String, TcpStream)>, LabError> {
    let mut agents = Vec::new();
    for n in &st.plan.nodes {
        // The socket is made in the node's namespace; it is read from here.
        let path = podnet_node::sys::netns_path(&n.ns);
        let stream = podnet_node::sys::in_netns(&path, || {
            Ok(TcpStream::connect_timeout(
                &METRICS_ADDR.parse().expect("an address"),
                Duration::from_secs(2),
            ))
        })?
        .map_err(|source| LabError::Io {
            what: format!("{}: reaching the agent at {METRICS_ADDR}", n.name),
            source,
        })?;
        agents.push((n.name.clone(), stream));
    }
    Ok(agents)
}

/// The flows every node of the lab `lab` holds that `filter` takes, oldest first; with
/// `follow`, then each new one as it comes, until `each` says stop (false) or an agent's
/// connection ends.
pub fn observe(
    lab: &str,
    filter: &Filter,
    follow: bool,
    each: impl FnMut(Flow) -> bool,
) -> Result<(), LabError> {
    let agents = agents(&load_state(lab)?)?;
    podnet_flow::client::observe(agents, filter, follow, each)
        .map_err(|e| LabError::Invalid(podnet_node::chain(&e)))
}
