//! `podnet lab observe`: the flows of every node of a lab, from each node's agent (its
//! `/flows`, on the agent's metrics address inside the node's namespace), as `hubble observe`
//! shows a cluster's.

use std::net::TcpStream;
use std::time::Duration;

use podnet_flow::client::{Agent, Event};
use podnet_flow::Filter;

use crate::agents::METRICS_ADDR;
use crate::{load_state, LabError};

/// Every node's agent, reached at its metrics address from inside the node's namespace (the
/// socket is made there, and read from here), by node name.
pub fn agents(st: &crate::LabState) -> Vec<Agent> {
    let mut agents = Vec::new();
    for n in &st.plan.nodes {
        let path = podnet_node::sys::netns_path(&n.ns);
        let connect = move || {
            podnet_node::sys::in_netns(&path, || {
                Ok(TcpStream::connect_timeout(
                    &METRICS_ADDR.parse().expect("an address"),
                    Duration::from_secs(2),
                ))
            })
            .map_err(std::io::Error::other)?
        };
        agents.push(Agent::new(n.name.clone(), connect));
    }
    agents
}

/// The flows every node of the lab `lab` holds that `filter` takes, oldest first; with
/// `follow`, then each new one as it comes (an agent that goes away is followed again when it
/// is back: [`Event`]), until `each` says stop (false).
pub fn observe(
    lab: &str,
    filter: &Filter,
    follow: bool,
    each: impl FnMut(Event) -> bool,
) -> Result<(), LabError> {
    let agents = agents(&load_state(lab)?);
    podnet_flow::client::observe(agents, filter, follow, each)
        .map_err(|e| LabError::Invalid(podnet_node::chain(&e)))
}
