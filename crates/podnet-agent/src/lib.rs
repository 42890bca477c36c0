//! `podnet agent`: the same node dataplane the lab programs, on a node of a real cluster (or of
//! a lab), driven by the Kubernetes API. Kubernetes is the control plane: the agent watches it
//! with kube-rs, turns what it sees into the model ([`translate`]) and makes its node hold the
//! node's dataplane through [`podnet_node`].

pub mod cni;
pub mod flows;
pub mod metrics;
pub mod run;
pub mod translate;

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the Kubernetes API")]
    Kube(#[source] kube::Error),
    #[error("the model of what the API holds")]
    Model(#[source] podnet_model::ModelError),
    #[error("node {0} is not in the API's Nodes")]
    NoSuchNode(String),
    #[error(transparent)]
    Node(#[from] podnet_node::NodeError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
