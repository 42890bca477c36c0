//! What the edge proxy serves, from the cluster model: the route table, each backend's ready
//! endpoints, the certificates by host and the hosts redirected to HTTPS. Pure: computed
//! again whole on every change (a few hundred microseconds for a few hundred Ingresses) and
//! swapped in at once, so a request sees one version or the other, never a mix.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use podnet_model::{Cluster, NsName, Protocol};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::routes::{ours, table, Backend, BackendPort, HostMatch, RouteTable};

/// The annotation that turns the HTTP to HTTPS redirect off for an Ingress's hosts
/// (`"false"`); ingress-nginx's own name for it is honoured too, for Ingresses moved over.
pub const SSL_REDIRECT_ANNOTATIONS: [&str; 2] = [
    "podnet.dev/ssl-redirect",
    "nginx.ingress.kubernetes.io/ssl-redirect",
];

/// The Secret type of a TLS certificate and key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// A backend's endpoints, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Ready endpoints, in a stable order (round robin walks it).
    Ready(Vec<SocketAddr>),
    /// Nothing to send to (503), and why.
    Unavailable(String),
}

/// A certificate for some hosts, from a Secret.
#[derive(Debug, Clone)]
pub struct HostCert {
    pub host: HostMatch,
    pub secret: NsName,
    pub key: Arc<CertifiedKey>,
}

/// A Gateway's port: plain HTTP, HTTPS, or TLS streams, and its listeners' routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortConfig {
    /// HTTPS (false: plain HTTP, or TLS streams when `streams` is not empty).
    pub tls: bool,
    /// By hostname, the most specific first: a request is served by the first listener
    /// whose hostname matches its host, with that listener's routes only.
    pub listeners: Vec<ListenerRoutes>,
    /// The TLS listeners of the port (protocol TLS: TLSRoutes), the most specific hostname
    /// first. Not empty: the port serves TLS streams and no HTTP.
    pub streams: Vec<StreamListener>,
    /// HTTPS: how clients' certificates are validated (the Gateway's `spec.tls.frontend`);
    /// None: none is asked for.
    pub client_validation: Option<ClientValidation>,
}

/// Client certificate validation of an HTTPS port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientValidation {
    /// The CA certificates (DER) a client's certificate must chain to.
    pub ca: Vec<Vec<u8>>,
    /// `AllowInsecureFallback`: a certificate is asked for, but a connection that shows
    /// none, or one that does not verify, is served too. Else (`AllowValidOnly`) the
    /// handshake fails without a certificate that verifies.
    pub insecure_fallback: bool,
}

/// What a Gateway's port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Http,
    Https,
    /// TLS connections routed by their SNI name (TLSRoutes), passed through or terminated.
    Tls,
}

/// A TLS listener: its TLSRoutes, by SNI name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListener {
    /// `gateway-namespace/gateway-name/listener-name`, for messages.
    pub name: String,
    pub host: HostMatch,
    /// `Terminate`: the Gateway ends TLS and sends the plain bytes; else the connection's
    /// bytes go to the backend as they came (`Passthrough`).
    pub terminate: bool,
    /// One per route hostname, the most specific first (then the oldest route).
    pub routes: Vec<StreamRoute>,
}

/// A TLSRoute's hostname and its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRoute {
    /// `namespace/name` of the TLSRoute.
    pub route: String,
    pub host: HostMatch,
    /// With their weights; None: a reference that cannot be used (a connection whose share
    /// falls there is refused).
    pub backends: Vec<(Option<Backend>, u32)>,
}

impl StreamListener {
    /// The route for an SNI name (normalized), if any.
    pub fn route(&self, sni: &str) -> Option<&StreamRoute> {
        self.routes.iter().find(|r| r.host.matches(sni))
    }
}

/// One listener's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRoutes {
    /// `gateway-namespace/gateway-name/listener-name`, for messages.
    pub name: String,
    pub host: HostMatch,
    pub table: RouteTable,
}

impl ClientValidation {
    /// `validated against 2 CA certificates (AllowValidOnly)`.
    pub fn describe(&self) -> String {
        format!(
            "validated against {} CA certificate{} ({})",
            self.ca.len(),
            if self.ca.len() == 1 { "" } else { "s" },
            if self.insecure_fallback {
                "AllowInsecureFallback: served without one too"
            } else {
                "AllowValidOnly"
            }
        )
    }
}

impl PortConfig {
    /// What the port speaks.
    pub fn serves(&self) -> Serves {
        if !self.streams.is_empty() {
            Serves::Tls
        } else if self.tls {
            Serves::Https
        } else {
            Serves::Http
        }
    }

    /// The TLS listener of an SNI name (normalized): the first whose hostname matches.
    pub fn stream_listener(&self, sni: &str) -> Option<&StreamListener> {
        self.streams.iter().find(|l| l.host.matches(sni))
    }

    /// The routes of the listener a request for `host` goes to.
    pub fn listener(&self, host: &str) -> Option<&ListenerRoutes> {
        self.listener_normalized(&crate::routes::normalize_host(host))
    }

    /// [`PortConfig::listener`] for a host already normalized.
    pub fn listener_normalized(&self, name: &str) -> Option<&ListenerRoutes> {
        self.listeners.iter().find(|l| l.host.matches(name))
    }
}

/// Everything the edge proxy serves.
#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// The Ingresses' routes, served on every port when `ports` is empty.
    pub table: RouteTable,
    /// A Gateway's ports (the Ingress controller has none).
    pub ports: std::collections::BTreeMap<u16, PortConfig>,
    pub upstreams: HashMap<Backend, Upstream>,
    /// Exact hosts first, then wildcards: the first whose host matches the SNI name serves.
    pub certs: Vec<HostCert>,
    /// Hosts with TLS whose plain HTTP requests are redirected (308) to HTTPS.
    pub redirect: Vec<HostMatch>,
    /// The Ingresses served (for their status).
    pub ingresses: Vec<NsName>,
    /// What could not be used, each naming its object (missing or invalid Secrets, unknown
    /// Services or ports).
    pub warnings: Vec<String>,
    /// The backends spoken to in cleartext HTTP/2: their Service port's `appProtocol` is
    /// `kubernetes.io/h2c`.
    pub h2c: std::collections::HashSet<Backend>,
    /// The backends spoken to over TLS (a BackendTLSPolicy targets their Service port).
    pub backend_tls: HashMap<Backend, BackendTls>,
}

/// TLS from the proxy to a backend's endpoints, as a BackendTLSPolicy asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendTls {
    To {
        /// The policy, for messages.
        policy: NsName,
        /// The SNI name sent, and the name the certificate must hold (unless `names`).
        hostname: String,
        /// The CA certificates trusted (DER); None: the system's.
        ca: Option<Vec<Vec<u8>>>,
        /// `subjectAltNames` of type Hostname: the certificate must hold one of these (or
        /// of `uris`) instead of `hostname`.
        names: Vec<String>,
        /// `subjectAltNames` of type URI (`spiffe://...`): held as URI names.
        uris: Vec<String>,
        /// The client certificate and key (PEM) shown to a backend that asks for one: the
        /// Gateway's `spec.tls.backend.clientCertificateRef`.
        client: Option<(Vec<u8>, Vec<u8>)>,
    },
    /// The policy cannot be used (no valid CA certificate): requests to the backend are
    /// refused (503), never sent in plain text.
    Unusable { policy: NsName, why: String },
}

impl EdgeConfig {
    /// The certificate for an SNI name, if a Secret gave one.
    pub fn cert_for(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        let name = crate::routes::normalize_host(sni);
        self.certs
            .iter()
            .find(|c| c.host.matches(&name))
            .map(|c| &c.key)
    }

    /// Whether a plain HTTP request for this host is redirected to HTTPS.
    pub fn redirects(&self, host: &str) -> bool {
        let name = crate::routes::normalize_host(host);
        self.redirect.iter().any(|h| h.matches(&name))
    }
}

/// The edge configuration of a cluster: every Ingress of podnet's classes.
pub fn config(cluster: &Cluster) -> EdgeConfig {
    let ingresses: Vec<Ingress> = cluster.ingresses.iter().map(|i| i.obj.clone()).collect();
    let classes: Vec<_> = cluster
        .ingress_classes
        .iter()
        .map(|c| c.obj.clone())
        .collect();
    let mut mine = ours(&ingresses, &classes);
    // One order whatever the input's: the first Secret for a host wins.
    mine.sort_by_key(|i| key_of(i));
    let table = table(&mine);
    let mut warnings = Vec::new();
    let upstreams = upstreams(cluster, table.backends(), &mut warnings);
    let (certs, redirect) = tls(cluster, &mine, &mut warnings);
    warnings.sort();
    warnings.dedup();
    let h2c = h2c(cluster, upstreams.keys());
    EdgeConfig {
        table,
        ports: Default::default(),
        upstreams,
        certs,
        redirect,
        ingresses: mine.iter().map(|i| key_of(i)).collect(),
        warnings,
        h2c,
        backend_tls: HashMap::new(),
    }
}

/// The `appProtocol` that asks for cleartext HTTP/2 (KEP-3726's standard name).
pub const H2C: &str = "kubernetes.io/h2c";

/// Those of `backends` whose Service port says [`H2C`].
pub fn h2c<'a>(
    cluster: &Cluster,
    backends: impl Iterator<Item = &'a Backend>,
) -> std::collections::HashSet<Backend> {
    backends
        .filter(|b| {
            cluster
                .service(&b.service.namespace, &b.service.name)
                .is_some_and(|s| {
                    s.ports.iter().any(|p| {
                        let this = match &b.port {
                            BackendPort::Number(n) => p.port == *n,
                            BackendPort::Name(n) => p.name == *n,
                        };
                        this && p.app_protocol.as_deref() == Some(H2C)
                    })
                })
        })
        .cloned()
        .collect()
}

/// The endpoints of each of these backends; a warning for each Service or port that does
/// not exist.
pub fn upstreams<'a>(
    cluster: &Cluster,
    backends: impl Iterator<Item = &'a Backend>,
    warnings: &mut Vec<String>,
) -> HashMap<Backend, Upstream> {
    let mut upstreams = HashMap::new();
    for b in backends {
        if !upstreams.contains_key(b) {
            upstreams.insert(b.clone(), upstream(cluster, b));
        }
    }
    for (b, u) in &upstreams {
        if let Upstream::Unavailable(why) = u {
            if why.starts_with("no Service") || why.contains("has no port") {
                warnings.push(format!("backend {}: {why}", describe(b)));
            }
        }
    }
    upstreams
}

fn key_of(i: &Ingress) -> NsName {
    NsName::new(
        i.metadata.namespace.as_deref().unwrap_or("default"),
        i.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// `ns/name:port`, for messages.
pub fn describe(b: &Backend) -> String {
    match &b.port {
        BackendPort::Number(n) => format!("{}:{n}", b.service),
        BackendPort::Name(n) => format!("{}:{n}", b.service),
    }
}

/// A backend's ready endpoints: the pods' addresses from the Service's EndpointSlices, with
/// the port the slice gives for the Service port (as ingress-nginx, which sends to the pods
/// directly, not through the ClusterIP).
pub fn upstream(cluster: &Cluster, b: &Backend) -> Upstream {
    let Some(svc) = cluster.service(&b.service.namespace, &b.service.name) else {
        return Upstream::Unavailable(format!("no Service {}", b.service));
    };
    let port = svc.ports.iter().find(|p| {
        p.protocol == Protocol::Tcp
            && match &b.port {
                BackendPort::Number(n) => p.port == *n,
                BackendPort::Name(n) => &p.name == n,
            }
    });
    let Some(port) = port else {
        return Upstream::Unavailable(format!(
            "Service {} has no port {}",
            b.service,
            match &b.port {
                BackendPort::Number(n) => n.to_string(),
                BackendPort::Name(n) => n.clone(),
            }
        ));
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for (slice, e) in svc.endpoints() {
        if !(e.ready || svc.publish_not_ready_addresses) {
            continue;
        }
        let Some(sp) = slice
            .ports
            .iter()
            .find(|sp| sp.name == port.name && sp.protocol == Protocol::Tcp)
        else {
            continue;
        };
        let Ok(p) = u16::try_from(sp.port) else {
            continue;
        };
        out.extend(
            e.addresses
                .iter()
                .map(|ip: &IpAddr| SocketAddr::new(*ip, p)),
        );
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        Upstream::Unavailable(format!(
            "Service {} has no ready endpoint for port {}",
            b.service, port.port
        ))
    } else {
        Upstream::Ready(out)
    }
}

/// The certificates of the Ingresses' `tls` entries, and the hosts redirected to HTTPS.
fn tls(
    cluster: &Cluster,
    ingresses: &[&Ingress],
    warnings: &mut Vec<String>,
) -> (Vec<HostCert>, Vec<HostMatch>) {
    let mut certs: Vec<HostCert> = Vec::new();
    let mut redirect = Vec::new();
    let mut loaded: HashMap<NsName, Option<Arc<CertifiedKey>>> = HashMap::new();
    for ing in ingresses {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let no_redirect = ing.metadata.annotations.as_ref().is_some_and(|a| {
            SSL_REDIRECT_ANNOTATIONS
                .iter()
                .any(|k| a.get(*k).is_some_and(|v| v == "false"))
        });
        let Some(spec) = &ing.spec else { continue };
        for t in spec.tls.iter().flatten() {
            // An entry without hosts covers the Ingress's own hosts.
            let hosts: Vec<HostMatch> = match t.hosts.as_deref() {
                Some(h) if !h.is_empty() => h.iter().map(|h| HostMatch::of(Some(h))).collect(),
                _ => spec
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| HostMatch::of(r.host.as_deref()))
                    .filter(|h| *h != HostMatch::Any)
                    .collect(),
            };
            if !no_redirect {
                redirect.extend(hosts.iter().cloned());
            }
            let Some(name) = t.secret_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let secret = NsName::new(ns, name);
            let key = loaded
                .entry(secret.clone())
                .or_insert_with(|| match certified_key(cluster, &secret) {
                    Ok(k) => Some(k),
                    Err(why) => {
                        warnings.push(format!(
                            "Ingress {}: TLS Secret {secret}: {why}; its hosts are served with the default certificate",
                            key_of(ing)
                        ));
                        None
                    }
                })
                .clone();
            if let Some(key) = key {
                for h in hosts {
                    if !certs.iter().any(|c| c.host == h) {
                        certs.push(HostCert {
                            host: h,
                            secret: secret.clone(),
                            key: key.clone(),
                        });
                    }
                }
            }
        }
    }
    // Exact names before wildcards (longer suffixes first).
    certs.sort_by_key(|c| std::cmp::Reverse(c.host.specificity()));
    redirect.sort();
    redirect.dedup();
    (certs, redirect)
}

/// Why a TLS Secret's certificate cannot be served (its hosts get the default certificate;
/// a Gateway's listener says `InvalidCertificateRef`).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not found")]
    NoSecret,
    #[error("type {0}, not {TLS_SECRET_TYPE}")]
    NotTls(String),
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{field}: {source}")]
    Pem {
        field: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls.crt: no certificate")]
    NoCertificate,
    #[error("the certificate and the key: {0}")]
    Mismatch(#[source] rustls::Error),
}

/// A `kubernetes.io/tls` Secret's certificate chain and key, checked to belong together.
pub fn certified_key(cluster: &Cluster, secret: &NsName) -> Result<Arc<CertifiedKey>, CertError> {
    let (crt, key) = tls_secret_pem(cluster, secret)?;
    certified_key_pem(&crt, &key)
}

/// A `kubernetes.io/tls` Secret's `tls.crt` and `tls.key` (PEM), as they are.
pub fn tls_secret_pem(cluster: &Cluster, secret: &NsName) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let s = cluster
        .secrets
        .iter()
        .map(|s| &s.obj)
        .find(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == secret.namespace
                && s.metadata.name.as_deref() == Some(secret.name.as_str())
        })
        .ok_or(CertError::NoSecret)?;
    if let Some(t) = s.type_.as_deref() {
        if t != TLS_SECRET_TYPE {
            return Err(CertError::NotTls(t.to_string()));
        }
    }
    let field = |k: &str| -> Option<Vec<u8>> {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|v| v.as_bytes().to_vec())
            })
    };
    let crt = field("tls.crt").ok_or(CertError::Missing("tls.crt"))?;
    let key = field("tls.key").ok_or(CertError::Missing("tls.key"))?;
    Ok((crt, key))
}

/// A certificate chain and key in PEM, checked to belong together.
pub fn certified_key_pem(crt: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let pem = |field| move |source| CertError::Pem { field, source };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(pem("tls.crt"))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(pem("tls.key"))?;
    let provider = crate::crypto_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider).map_err(CertError::Mismatch)?;
    Ok(Arc::new(ck))
}

impl EdgeConfig {
    /// What is served, as plain data (routes in precedence order, each backend's endpoints,
    /// the certificates' hosts and Secrets, the redirected hosts): equal summaries serve
    /// alike. Written by `podnet ingress watch --served`, for whoever waits for a change to be
    /// served (the lab), and printed by `podnet check`.
    pub fn summary(&self) -> serde_json::Value {
        let host = |h: &HostMatch| h.to_string();
        let routes: Vec<String> = self.table.routes().iter().map(route_line).collect();
        let mut upstreams: Vec<(String, serde_json::Value)> = self
            .upstreams
            .iter()
            .map(|(b, u)| {
                (
                    describe(b),
                    match u {
                        Upstream::Ready(e) => {
                            serde_json::json!(e.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                        }
                        Upstream::Unavailable(why) => serde_json::json!(why),
                    },
                )
            })
            .collect();
        upstreams.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = serde_json::json!({
            "routes": routes,
            "default": self.table.default_backend().map(describe),
            "upstreams": upstreams.into_iter().collect::<serde_json::Map<_, _>>(),
            "certificates": self.certs.iter().map(|c| format!("{} {}", host(&c.host), c.secret)).collect::<Vec<_>>(),
            "redirect": self.redirect.iter().map(host).collect::<Vec<_>>(),
        });
        if !self.ports.is_empty() {
            out["ports"] = self
                .ports
                .iter()
                .map(|(port, p)| {
                    (
                        port.to_string(),
                        serde_json::json!({
                            "tls": p.tls,
                            "listeners": p.listeners.iter().map(|l| serde_json::json!({
                                "name": l.name,
                                "host": l.host.to_string(),
                                "routes": l.table.routes().iter().map(route_line).collect::<Vec<_>>(),
                            })).collect::<Vec<_>>(),
                            "clientCertificates": p.client_validation.as_ref().map(ClientValidation::describe),
                            "streams": p.streams.iter().map(|l| serde_json::json!({
                                "name": l.name,
                                "host": l.host.to_string(),
                                "mode": if l.terminate { "Terminate" } else { "Passthrough" },
                                "routes": l.routes.iter().map(|r| stream_line(r, l.terminate)).collect::<Vec<_>>(),
                            })).collect::<Vec<_>>(),
                        }),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        out
    }
}

/// A TLSRoute's hostname as the proxy serves it: `SNI abc.example.com → passthrough to
/// ns/svc:443`, its backends with their weights when there are several.
pub fn stream_line(r: &StreamRoute, terminate: bool) -> String {
    let to: Vec<String> = r
        .backends
        .iter()
        .map(|(b, w)| {
            let b = b
                .as_ref()
                .map_or("(unusable reference)".to_string(), describe);
            if r.backends.len() > 1 {
                format!("{b} (weight {w})")
            } else {
                b
            }
        })
        .collect();
    format!(
        "SNI {} → {} to {}",
        r.host,
        if terminate {
            "TLS ended, plain"
        } else {
            "passthrough"
        },
        to.join(", ")
    )
}

/// The Ingresses, those of podnet's classes with the controller's addresses in
/// `status.loadBalancer` (as the controller publishes them on a cluster).
pub fn with_status(c: &Cluster) -> Vec<k8s_openapi::api::networking::v1::Ingress> {
    use k8s_openapi::api::networking::v1::{
        IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
    };
    let all: Vec<_> = c.ingresses.iter().map(|i| i.obj.clone()).collect();
    let classes: Vec<_> = c.ingress_classes.iter().map(|i| i.obj.clone()).collect();
    let ours: Vec<(Option<String>, Option<String>)> = ours(&all, &classes)
        .iter()
        .map(|i| (i.metadata.namespace.clone(), i.metadata.name.clone()))
        .collect();
    let addresses = podnet_model::edge::controller_addresses(c);
    all.iter()
        .map(|i| {
            let mut i = i.clone();
            let key = (i.metadata.namespace.clone(), i.metadata.name.clone());
            if ours.contains(&key) && !addresses.is_empty() {
                i.status = Some(IngressStatus {
                    load_balancer: Some(IngressLoadBalancerStatus {
                        ingress: Some(
                            addresses
                                .iter()
                                .map(|ip| IngressLoadBalancerIngress {
                                    ip: Some(ip.to_string()),
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                    }),
                });
            }
            i
        })
        .collect()
}

/// One route as a line: `host path [conditions] -> what it does`.
pub fn route_line(r: &crate::routes::Route) -> String {
    use crate::routes::{Action, PathMatch};
    let path = match &r.path {
        PathMatch::Exact(p) => format!("= {p}"),
        PathMatch::Prefix(p) => format!("{p}/*"),
    };
    let mut when = String::new();
    if let Some(m) = &r.when.method {
        when.push_str(&format!(" method={m}"));
    }
    for (k, v) in &r.when.headers {
        when.push_str(&format!(" header:{k}={v}"));
    }
    for (k, v) in &r.when.query {
        when.push_str(&format!(" query:{k}={v}"));
    }
    let to = match &r.action {
        Action::Forward {
            backends,
            request_headers,
            response_headers,
            rewrite,
            timeouts,
            retry,
            cors,
            mirrors,
        } => {
            let mut to = if backends.is_empty() {
                "500 (no backend)".to_string()
            } else if backends.len() == 1 && backends[0].weight == 1 {
                match &backends[0].backend {
                    Some(b) => describe(b),
                    None => "500 (invalid backend)".to_string(),
                }
            } else {
                backends
                    .iter()
                    .map(|b| {
                        let name = b.backend.as_ref().map_or("500".to_string(), describe);
                        format!("{name}*{}", b.weight)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if !request_headers.is_empty() || backends.iter().any(|b| !b.request_headers.is_empty())
            {
                to.push_str(" +request-headers");
            }
            for b in backends {
                let name = b.backend.as_ref().map_or("500".to_string(), describe);
                if let Some(r) = &b.redirect {
                    to.push_str(&format!(" ({name}: redirect {})", r.status));
                }
                if b.rewrite.is_some() {
                    to.push_str(&format!(" ({name}: +rewrite)"));
                }
            }
            if !response_headers.is_empty() {
                to.push_str(" +response-headers");
            }
            if let Some(rw) = rewrite {
                if let Some(h) = &rw.hostname {
                    to.push_str(&format!(" +host={h}"));
                }
                if let Some(p) = &rw.path {
                    to.push_str(&format!(" +path={}", modifier(p)));
                }
            }
            if let Some(t) = timeouts.request {
                to.push_str(&format!(" +timeout={t:?}"));
            }
            if let Some(t) = timeouts.backend_request {
                to.push_str(&format!(" +backend-timeout={t:?}"));
            }
            if let Some(r) = retry {
                let codes: Vec<String> = r.codes.iter().map(u16::to_string).collect();
                to.push_str(&format!(" +retry={}x[{}]", r.attempts, codes.join(",")));
            }
            if let Some(c) = cors {
                to.push_str(&format!(" +cors={}", c.allow_origins.join(",")));
            }
            for m in mirrors {
                let name = m.backend.as_ref().map_or("(invalid)".to_string(), describe);
                if m.per_million == 1_000_000 {
                    to.push_str(&format!(" +mirror={name}"));
                } else {
                    let pct = f64::from(m.per_million) / 10_000.0;
                    to.push_str(&format!(" +mirror={name}@{pct}%"));
                }
            }
            to
        }
        Action::Redirect { redirect: r, .. } => {
            let mut to = format!("redirect {}", r.status);
            if let Some(s) = &r.scheme {
                to.push_str(&format!(" scheme={s}"));
            }
            if let Some(h) = &r.hostname {
                to.push_str(&format!(" host={h}"));
            }
            if let Some(p) = r.port {
                to.push_str(&format!(" port={p}"));
            }
            if let Some(p) = &r.path {
                to.push_str(&format!(" path={}", modifier(p)));
            }
            to
        }
    };
    format!("{} {path}{when} -> {to}", r.host)
}

fn modifier(p: &crate::routes::PathModifier) -> String {
    match p {
        crate::routes::PathModifier::Full(p) => p.clone(),
        crate::routes::PathModifier::Prefix(p) => format!("{p}/*"),
    }
}
