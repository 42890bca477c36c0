//! podnet's HTTP edge: Ingress v1 (and, next, Gateway API HTTPRoute) served by one proxy.
//!
//! What it serves ([`routes`], [`edge`]) is pure data from the crate `podnet-routes`,
//! re-exported here for the server's modules and its tests.
//!
//! - [`server`]: the proxy (hyper, rustls): HTTP/1.1 and HTTP/2 to clients, HTTP/1.1 with
//!   keep-alive pools to the pods, its configuration swapped whole on every change;
//! - [`upstream`]: the connections to the pods, whose answer is read even after a failed write.

pub mod metrics;
pub mod server;
pub mod upstream;

pub use podnet_routes::{crypto_provider, edge, routes};

/// What fails when the proxy starts.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    #[error("generating the default certificate: {0}")]
    DefaultCert(#[source] rcgen::Error),
    #[error("the default certificate")]
    DefaultKey(#[source] podnet_routes::edge::CertError),
}
