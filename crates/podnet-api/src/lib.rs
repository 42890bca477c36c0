//! A lab's objects through the Kubernetes API.
//!
//! Kubernetes is podnet's control plane; a lab has none, so it serves a projection of its
//! model through the API's own protocol, for `kubectl`, the agents on its nodes and its
//! controllers, and takes the status those controllers write, as on a cluster:
//! - [`project`]: the model as API objects (k8s-openapi types, so the JSON is the API's own);
//! - [`store`]: those objects with resource versions, and the history of their changes;
//! - [`server`]: discovery, list, get and watch over HTTP (resourceVersion, label and field
//!   selectors, bookmarks);
//! - [`write`]: the status controllers write (`PATCH` and `PUT` of `.../status` of Ingresses
//!   and the Gateway API's kinds); every other write is refused with the API's own `Status`;
//! - [`faults`]: faults on purpose (watches ended, 410 Gone, delays, refused connections).

pub mod fairness;
pub mod faults;
pub mod logs;
pub mod openapi;
pub mod project;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod write;

/// A kubeconfig for the API at `server` (`host:port`, plain HTTP), cluster, user and context
/// all called `name`.
pub fn kubeconfig(name: &str, server: &str) -> String {
    kubeconfig_with_token(name, server, None)
}

/// [`kubeconfig`], whose user presents `token` (the lab's system token: its agents and
/// controllers are the API's `system` priority level, [`fairness`]).
pub fn kubeconfig_with_token(name: &str, server: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: http://{server}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\ncurrent-context: {name}\nusers:\n- name: {name}\n  user:{user}\n"
    )
}

/// What can go wrong serving the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
