//! podnet's HTTP edge, as pure data: which backend serves a request.
//!
//! Ingress v1 rules (and, next, Gateway API HTTPRoutes) become one [`routes::RouteTable`]: a
//! route is hostnames, a path match and backends, whatever object it came from. The server
//! (hyper and rustls) asks the table and proxies; the table does no I/O.

pub mod routes;
