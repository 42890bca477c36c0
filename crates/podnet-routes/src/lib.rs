//! What podnet's edge proxy serves, as data: no server, no I/O.
//!
//! - [`routes`]: the route table: a route is hostnames, a path match, conditions (method,
//!   headers, query), filters and weighted backends, whatever object it came from (Ingress or
//!   HTTPRoute); [`routes::RouteTable::serve_request`] answers what serves a request;
//! - [`edge`]: the whole configuration of one proxy computed from the cluster model (listeners
//!   and their routes, each backend's ready endpoints, certificates by host, hosts redirected to
//!   HTTPS).
//!
//! The proxy itself (hyper, the connections, the request phases) is `podnet-ingress`; the
//! Gateway API's semantics (attachment, status) build these tables in `podnet-gateway`.

pub mod edge;
pub mod routes;

/// The one crypto provider of the workspace (kube's rustls uses ring too): the certificates'
/// keys are checked with it here, and the proxy serves TLS with it.
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
