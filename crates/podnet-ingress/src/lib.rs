//! podnet's HTTP edge: Ingress v1 (and, next, Gateway API HTTPRoute) served by one proxy.
//!
//! - [`routes`]: the route table, pure: a route is hostnames, a path match and backends,
//!   whatever object it came from;
//! - [`edge`]: what the proxy serves, computed from the cluster model (routes, each backend's
//!   ready endpoints, certificates by host, hosts redirected to HTTPS), pure;
//! - [`server`]: the proxy (hyper, rustls): HTTP/1.1 and HTTP/2 to clients, HTTP/1.1 with
//!   keep-alive pools to the pods, its configuration swapped whole on every change;
//! - [`upstream`]: the connections to the pods, whose answer is read even after a failed write.

pub mod edge;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod upstream;

/// The one crypto provider of the workspace (kube's rustls uses ring too).
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// What fails when the proxy starts.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    #[error("generating the default certificate: {0}")]
    DefaultCert(#[source] rcgen::Error),
    #[error("the default certificate: {0}")]
    DefaultKey(String),
}
