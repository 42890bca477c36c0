//! One node's dataplane, shared by the lab and the cluster agent: a pure, typed
//! [`NodeDataplane`] computed from the model ([`dataplane`]), and [`apply`], which makes a node
//! hold it through the small [`Effects`] trait ([`effects::Linux`] for real,
//! [`effects::Recording`] in tests).
//!
//! ```text
//! manifests or API → model → NodeDataplane (per node) → apply → Effects (nftables, ip, conntrack, sysctl)
//! ```

pub mod apply;
pub mod dataplane;
pub mod effects;
pub mod live;
pub mod net;
pub mod netlink;
pub mod nft;
pub mod nlnft;
pub mod observe;
pub mod sctp;
pub mod sys;
pub mod verify;

use std::path::PathBuf;

pub use apply::{apply, apply_delta, restore, Applied, Held, Report};
pub use dataplane::{HealthCheck, NodeDataplane};
pub use effects::Effects;

/// Everything that can go wrong on a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("entering the network namespace {}", path.display())]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running {cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({}): {stderr}", status.map_or("killed".to_string(), |c| format!("exit {c}")))]
    Command {
        cmd: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("setting sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no link {name}")]
    NoLink { name: String },
    #[error("{what}")]
    Invalid {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{tool}'s output is not its JSON")]
    Output {
        tool: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} is not as podnet writes it")]
    Unreadable {
        what: String,
        #[source]
        source: observe::Unreadable,
    },
    #[error("{what} panicked")]
    Panicked { what: String },
    #[error("{} failures:\n  {}", .0.len(), .0.iter().map(|e| chain(e)).collect::<Vec<_>>().join("\n  "))]
    Many(Vec<NodeError>),
}

impl NodeError {
    /// Ok for no failure, the failure itself for one, [`NodeError::Many`] for more.
    pub fn all(mut failures: Vec<NodeError>) -> Result<(), NodeError> {
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(NodeError::Many(failures)),
        }
    }
}

pub use podnet_model::diag::chain;
