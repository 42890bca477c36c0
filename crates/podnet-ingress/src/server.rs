//! The edge proxy: hyper and rustls.
//!
//! - Clients: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge on plain HTTP); TLS by
//!   SNI from the Ingresses' Secrets, a generated certificate for other names. HTTP/1 is
//!   served by turns ([`h1`]): a keep-alive connection idle past a short grace holds no
//!   buffer.
//! - Backends: HTTP/1.1 to the pods' addresses from the EndpointSlices (as ingress-nginx, not
//!   through the ClusterIP), keep-alive pools, round robin over ready endpoints, one retry on
//!   another endpoint when the connection fails and the request is idempotent without a body.
//! - Answers of its own, each with a short body saying why: 308 to HTTPS for hosts with TLS,
//!   400 for a request the front refuses ([`front`]), 404 when no route matches, 502 when the
//!   backend fails, 503 when it has no ready endpoint, 504 when it does not answer in time.
//! - The configuration ([`EdgeConfig`]) is swapped whole ([`Edge::set`]): a request uses the
//!   version it started with, connections (clients' and pools') stay.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use crate::edge::{describe, EdgeConfig, Upstream};
use crate::metrics::Metrics;
use crate::routes::{Action, Backend, Route, Served, Timeouts, WeightedBackend};
use crate::upstream::Connector;

mod backend_tls;
mod body;
mod client_auth;
mod conns;
mod forward;
mod front;
mod h1;
mod log;
mod stream;
mod tls;

use crate::IngressError;
use body::*;
pub use body::{Body, CutOff, FromUpstream, Unread};
use conns::*;
pub use conns::{connection_budget, Busy, ConnSlot};
use front::*;
use log::*;
pub use tls::DEFAULT_CERT_NAME;
use tls::*;

/// What an HTTP/2 connection by prior knowledge starts with (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `Server` header of every response.
pub const SERVER: &str = "podnet";

/// How long no request starts before freed memory is given back ([`Edge::give_back`]).
const QUIET: Duration = Duration::from_secs(1);

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connecting to a backend (ingress-nginx's `proxy-connect-timeout`: 5 s).
    pub connect_timeout: Duration,
    /// A backend's response headers (ingress-nginx's `proxy-read-timeout`: 60 s).
    pub read_timeout: Duration,
    /// A client's request headers, from the first byte (slowloris).
    pub header_read_timeout: Duration,
    /// A client's request headers, in bytes: larger ones get 431.
    pub max_header_bytes: usize,
    /// The TLS handshake.
    pub handshake_timeout: Duration,
    /// A JSON line per request on stdout.
    pub access_log: bool,
    /// The certificate for names no Secret covers; None: one generated at start.
    pub default_certificate: Option<Arc<CertifiedKey>>,
    /// Client connections at once. Past it, a new connection closes the idlest one (no
    /// request in flight, idle the longest), as running out of descriptors must cost the idle
    /// and not new clients; with none idle, the new one is closed.
    pub max_connections: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            handshake_timeout: Duration::from_secs(10),
            access_log: true,
            default_certificate: None,
            max_connections: connection_budget(),
        }
    }
}

/// One version of the configuration, with its round-robin positions and a connection pool
/// per endpoint: an endpoint that leaves the configuration takes its pooled connections with
/// it (a pod's address may come back as another pod's).
#[derive(Debug, Default)]
struct Live {
    config: EdgeConfig,
    /// Each backend's endpoints, resolved for the hot path: one lookup per request.
    targets: HashMap<Backend, Target, fnv::FnvBuildHasher>,
    /// The HTTPS ports that validate their clients' certificates: their server side, or why
    /// rustls refused it (the port's handshakes are then refused).
    validating: HashMap<u16, Validating>,
}

/// An HTTPS port's server side when it validates clients.
#[derive(Debug)]
struct Validating {
    made_from: crate::edge::ClientValidation,
    config: Result<Arc<rustls::ServerConfig>, String>,
}

/// A backend, ready to send to.
#[derive(Debug)]
enum Target {
    Ready {
        endpoints: Vec<Endpoint>,
        /// The round robin's position.
        next: AtomicUsize,
    },
    Unavailable(String),
}

/// An endpoint and its keep-alive pool.
#[derive(Debug)]
struct Endpoint {
    addr: SocketAddr,
    authority: hyper::http::uri::Authority,
    pool: Pool,
    /// Spoken to in HTTP/2 (its Service port's appProtocol `kubernetes.io/h2c`, or a
    /// GRPCRoute's backend): cleartext with prior knowledge, or over TLS by ALPN.
    h2c: bool,
    /// Spoken to over TLS (a BackendTLSPolicy).
    tls: Option<Arc<backend_tls::TlsTo>>,
}

/// A keep-alive pool of connections to one endpoint: plain, or TLS.
#[derive(Debug, Clone)]
enum Pool {
    Plain(Client<Connector, ToUpstream>),
    Tls(Client<hyper_rustls::HttpsConnector<Connector>, ToUpstream>),
}

impl Pool {
    fn request(&self, req: Request<ToUpstream>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Pool::Plain(c) => c.request(req),
            Pool::Tls(c) => c.request(req),
        }
    }
}

/// A client connection's addresses, and the name its TLS handshake asked for.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The SNI name of an HTTPS connection, normalized (a request whose host another
    /// listener of the port serves is misdirected: 421).
    pub sni: Option<Arc<str>>,
}

/// The proxy.
pub struct Edge {
    live: Arc<ArcSwap<Live>>,
    configured: AtomicBool,
    connector: Connector,
    builder: auto::Builder<TokioExecutor>,
    /// HTTP/1 by turns ([`h1`]).
    h1: hyper::server::conn::http1::Builder,
    tls: Arc<rustls::ServerConfig>,
    /// For TLS streams it ends (TLSRoutes in mode Terminate): the same certificates, no
    /// ALPN (the bytes inside are not the proxy's to speak).
    tls_stream: Arc<rustls::ServerConfig>,
    settings: Settings,
    pub metrics: Metrics,
    log: AccessLog,
    ids: RequestIds,
    conns: Arc<std::sync::Mutex<Conns>>,
    /// The task that gives freed memory back once requests stop ([`Edge::give_back`]) runs.
    giving_back: AtomicBool,
    /// How many retries may be under way ([`forward::RetryBudget`]).
    retry_budget: forward::RetryBudget,
    /// How many mirrored copies may be under way ([`forward::MIRRORS_UNDER_WAY`]).
    mirrors: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// A proxy with an empty configuration (every request: 404).
    pub fn new(settings: Settings) -> Result<Arc<Edge>, IngressError> {
        let live = Arc::new(ArcSwap::from_pointee(Live::default()));
        let default = match &settings.default_certificate {
            Some(c) => c.clone(),
            None => default_certificate()?,
        };
        let resolver = Arc::new(Resolver {
            live: live.clone(),
            default,
        });
        let tls_stream =
            rustls::ServerConfig::builder_with_provider(Arc::new(crate::crypto_provider()))
                .with_safe_default_protocol_versions()
                .map_err(IngressError::Tls)?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
        let mut tls = tls_stream.clone();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(settings.max_header_bytes.max(8192))
            // A client may close its side once it has sent its request (`nc -N`, scripts):
            // it is still answered.
            .half_close(true)
            .keep_alive(true);
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(settings.max_header_bytes.max(8192))
            .half_close(true)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(250)
            // HTTP/2 rapid reset (CVE-2023-44487): streams a client opens and resets before
            // they are served count against it; past the limit it is sent GOAWAY.
            .max_pending_accept_reset_streams(Some(32))
            .max_local_error_reset_streams(Some(256))
            .max_header_list_size(settings.max_header_bytes as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Ok(Arc::new(Edge {
            live,
            configured: AtomicBool::new(false),
            connector: Connector(connector),
            builder,
            h1,
            tls: Arc::new(tls),
            tls_stream: Arc::new(tls_stream),
            log: AccessLog::new(settings.access_log),
            settings,
            metrics: Metrics::new(),
            ids: RequestIds::new(),
            conns: Default::default(),
            giving_back: AtomicBool::new(false),
            retry_budget: Default::default(),
            mirrors: Arc::new(tokio::sync::Semaphore::new(forward::MIRRORS_UNDER_WAY)),
        }))
    }

    /// Starts, once, the task that gives the allocator's free pages back to the kernel when
    /// requests stop for a second ([`QUIET`]) after some were served. Each request's turn
    /// takes hyper's 8 KiB buffers and frees them when its connection goes back to waiting;
    /// glibc keeps the pages they leave between connections that stay (about 1 KB per idle
    /// keep-alive connection), and without a trim it keeps them for good. Not while requests
    /// flow: a trim locks each arena in turn.
    fn give_back(self: &Arc<Self>) {
        if self.giving_back.swap(true, Ordering::Relaxed) {
            return;
        }
        let edge = Arc::downgrade(self);
        tokio::spawn(async move {
            let (mut seen, mut trimmed_at) = (0, 0);
            loop {
                tokio::time::sleep(QUIET).await;
                let Some(e) = edge.upgrade() else {
                    return;
                };
                let served = e.ids.counter.load(Ordering::Relaxed);
                drop(e);
                if served == seen && served != trimmed_at {
                    let t = std::time::Instant::now();
                    let gave = tokio::task::spawn_blocking(podnet_alloc::release_free_memory)
                        .await
                        .unwrap_or(false);
                    tracing::debug!(gave, took = ?t.elapsed(), "freed pages given back after requests stopped");
                    if let Some(e) = edge.upgrade() {
                        e.metrics.memory_given_back.inc();
                    }
                    trimmed_at = served;
                }
                seen = served;
            }
        });
    }

    /// Swaps in a new configuration: requests that started keep the old one.
    pub fn set(&self, config: EdgeConfig) {
        self.metrics.routes.set(config.table.routes().len() as i64);
        self.metrics.certificates.set(config.certs.len() as i64);
        let old = self.live.load();
        // The pools kept: by endpoint, protocol and TLS (a policy's change is a new pool).
        type PoolKey = (SocketAddr, bool, Option<crate::edge::BackendTls>);
        let mut pools: HashMap<PoolKey, (Pool, Option<Arc<backend_tls::TlsTo>>)> = old
            .targets
            .values()
            .filter_map(|t| match t {
                Target::Ready { endpoints, .. } => Some(endpoints),
                Target::Unavailable(_) => None,
            })
            .flatten()
            .map(|e| {
                let policy = e.tls.as_ref().map(|t| t.policy.clone());
                ((e.addr, e.h2c, policy), (e.pool.clone(), e.tls.clone()))
            })
            .collect();
        let targets = config
            .upstreams
            .iter()
            .map(|(b, u)| {
                let h2c = config.h2c.contains(b);
                let policy = config.backend_tls.get(b);
                // TLS as the backend's policy asks; a policy that cannot be used (or whose
                // certificates rustls refuses) makes the backend unavailable: never plain.
                // (The client side of a policy already in use is kept, not made again.)
                let kept = |p: &crate::edge::BackendTls| {
                    pools
                        .values()
                        .find_map(|(_, t)| t.clone().filter(|t| t.policy == *p))
                };
                let tls = match policy {
                    None => Ok(None),
                    Some(p) => match kept(p) {
                        Some(t) => Ok(Some(t)),
                        None => backend_tls::TlsTo::new(p).map(|t| Some(Arc::new(t))),
                    },
                };
                let t = match (u, tls) {
                    (_, Err(why)) => Target::Unavailable(why),
                    (Upstream::Unavailable(why), _) => Target::Unavailable(why.clone()),
                    (Upstream::Ready(eps), Ok(tls)) => Target::Ready {
                        endpoints: eps
                            .iter()
                            .filter_map(|ep| {
                                let (pool, tls) = pools
                                    .entry((*ep, h2c, policy.cloned()))
                                    .or_insert_with(|| {
                                        (self.new_pool(h2c, tls.as_deref()), tls.clone())
                                    })
                                    .clone();
                                Some(Endpoint {
                                    addr: *ep,
                                    authority: ep.to_string().parse().ok()?,
                                    pool,
                                    h2c,
                                    tls,
                                })
                            })
                            .collect(),
                        next: AtomicUsize::new(0),
                    },
                };
                (b.clone(), t)
            })
            .collect();
        // Ports that validate clients: their server side is kept while their validation
        // stays the same (its session tickets with it).
        let validating = config
            .ports
            .iter()
            .filter_map(|(port, p)| Some((*port, p.client_validation.as_ref()?)))
            .map(|(port, v)| {
                let config = match old.validating.get(&port) {
                    Some(o) if o.made_from == *v => o.config.clone(),
                    _ => client_auth::server_config(&self.tls, v),
                };
                if let Err(why) = &config {
                    tracing::warn!(port, %why, "client certificate validation cannot be served: the port refuses handshakes");
                }
                let made_from = v.clone();
                (port, Validating { made_from, config })
            })
            .collect();
        self.live.store(Arc::new(Live {
            config,
            targets,
            validating,
        }));
        self.metrics.reloads.inc();
        self.configured.store(true, Ordering::Release);
    }

    /// A pool for one endpoint: cleartext HTTP/2 (prior knowledge) when `h2c`, over TLS
    /// with `tls`, else HTTP/1.1 with keep-alive.
    fn new_pool(&self, h2c: bool, tls: Option<&backend_tls::TlsTo>) -> Pool {
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false);
        if h2c {
            b.http2_only(true);
        } else {
            b.pool_max_idle_per_host(1024);
        }
        match tls {
            Some(t) => {
                // The TLS connector hands its inner one `https://` addresses.
                let mut plain = self.connector.0.clone();
                plain.enforce_http(false);
                Pool::Tls(b.build(t.connector(Connector(plain), h2c)))
            }
            None => Pool::Plain(b.build(self.connector.clone())),
        }
    }

    /// The configuration served now.
    pub fn config(&self) -> EdgeConfig {
        self.live.load().config.clone()
    }

    /// Serves plain HTTP on `l` until the task is dropped.
    pub async fn serve_http(self: Arc<Self>, l: TcpListener) {
        self.give_back();
        loop {
            let (s, peer, local) = accept(&l).await;
            let Some(slot) = self.admit() else {
                continue;
            };
            let edge = self.clone();
            tokio::spawn(async move {
                // The header timeout runs from accept: telling HTTP/1 from HTTP/2 waits for
                // the first bytes, and a client that sends none would hold its descriptor for
                // ever (19,995 such connections once took every descriptor the proxy had).
                let mut first = [0u8; H2_PREFACE.len()];
                let n = match tokio::time::timeout(
                    edge.settings.header_read_timeout,
                    s.peek(&mut first),
                )
                .await
                {
                    Ok(Ok(n)) if n > 0 => n,
                    Ok(_) => return,
                    Err(_) => {
                        edge.metrics.error("header_timeout");
                        return;
                    }
                };
                let conn = Conn {
                    peer,
                    local,
                    tls: false,
                    sni: None,
                };
                // HTTP/2 by prior knowledge starts with its preface; anything else is HTTP/1,
                // served by turns. (What might still become the preface goes to hyper's
                // detection.)
                if first[..n] == H2_PREFACE[..n] {
                    edge.connection(TokioIo::new(s), conn, slot).await
                } else {
                    edge.connection_h1(s, conn, slot).await
                }
            });
        }
    }

    /// Serves HTTPS on `l` until the task is dropped.
    pub async fn serve_https(self: Arc<Self>, l: TcpListener) {
        self.give_back();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        loop {
            let (s, peer, local) = accept(&l).await;
            let Some(slot) = self.admit() else {
                continue;
            };
            let edge = self.clone();
            // The port's own server side when it validates clients' certificates.
            let acceptor = match edge.live.load().validating.get(&local.port()) {
                None => acceptor.clone(),
                Some(Validating { config: Ok(c), .. }) => {
                    tokio_rustls::TlsAcceptor::from(c.clone())
                }
                Some(Validating { config: Err(_), .. }) => {
                    edge.metrics.error("tls_handshake");
                    continue;
                }
            };
            tokio::spawn(async move {
                let hs = tokio::time::timeout(edge.settings.handshake_timeout, acceptor.accept(s));
                let Ok(Ok(tls)) = hs.await else {
                    edge.metrics.error("tls_handshake");
                    return;
                };
                let conn = Conn {
                    peer,
                    local,
                    tls: true,
                    sni: tls
                        .get_ref()
                        .1
                        .server_name()
                        .map(|n| crate::routes::normalize_host(n).into()),
                };
                // HTTP/2 when ALPN chose it, else HTTP/1 by turns.
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    edge.connection(TokioIo::new(tls), conn, slot).await
                } else {
                    edge.connection_h1(tls, conn, slot).await
                }
            });
        }
    }

    /// Serves `/healthz`, `/readyz` (ready once configured) and `/metrics` on `l`.
    pub async fn serve_admin(self: Arc<Self>, l: TcpListener) {
        loop {
            let (s, _, _) = accept(&l).await;
            let edge = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let edge = edge.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                            "/readyz" if edge.configured.load(Ordering::Acquire) => {
                                (StatusCode::OK, "ok\n".to_string())
                            }
                            "/readyz" => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "not configured yet\n".to_string(),
                            ),
                            "/metrics" => (StatusCode::OK, edge.metrics.encode()),
                            _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .expect("a valid response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    }

    /// Serves one client connection (HTTP/1.1 or HTTP/2, told apart by hyper), whole.
    pub async fn connection<I>(self: Arc<Self>, io: I, conn: Conn, slot: ConnSlot)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let edge = self.clone();
        let slot = Arc::new(slot);
        let s = slot.clone();
        let svc = service_fn(move |req| edge.clone().serve(req, conn.clone(), s.busy()));
        // Boxed: only the connections that use it hold its room.
        let serving = Box::pin(self.builder.serve_connection_with_upgrades(io, svc));
        self.until_closed(&slot, async move {
            let _ = serving.await;
        })
        .await
    }

    /// Serves one HTTP/1 client connection by turns ([`h1`]): while it waits for its next
    /// request, it holds no buffer.
    pub async fn connection_h1<I: h1::ClientIo>(
        self: Arc<Self>,
        io: I,
        conn: Conn,
        slot: ConnSlot,
    ) {
        let slot = Arc::new(slot);
        // Pinned here, not moved into `until_closed`: the connection's task, which every idle
        // connection keeps, holds it once.
        let serving = std::pin::pin!(self.serve_h1(io, conn, &slot));
        self.until_closed(&slot, serving).await
    }

    /// Runs a client connection until it ends or is closed for a new client, counted.
    async fn until_closed(&self, slot: &ConnSlot, serving: impl std::future::Future<Output = ()>) {
        self.metrics.connections.inc();
        tokio::select! {
            _ = serving => {}
            _ = slot.close.notified() => self.metrics.error("idle_closed_for_a_new_client"),
        }
        self.metrics.connections.dec();
    }

    /// One request of a client connection, whose connection is busy until the answer's body
    /// has gone (a backend's, streamed).
    async fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Conn,
        busy: Busy,
    ) -> Result<Response<Body>, Infallible> {
        let resp = self.handle(req, conn).await;
        Ok(resp.map(|b| match b {
            Either::Left(mut up) => {
                up.busy = Some(busy);
                Either::Left(up)
            }
            full => full,
        }))
    }

    /// A place for a new client connection: past [`Settings::max_connections`], the idlest
    /// connection (nothing in flight, idle the longest) is closed for it; with none idle, None
    /// (the new one is closed).
    pub fn admit(&self) -> Option<ConnSlot> {
        let mut c = lock(&self.conns);
        if c.open.len() >= self.settings.max_connections.max(1) {
            let idlest = c
                .open
                .iter()
                .filter(|(_, s)| s.in_flight == 0)
                .min_by_key(|(_, s)| s.idle_since)
                .map(|(id, _)| *id);
            match idlest {
                Some(id) => {
                    if let Some(s) = c.open.remove(&id) {
                        s.close.notify_one();
                    }
                }
                None => {
                    self.metrics.error("too_many_connections");
                    return None;
                }
            }
        }
        c.next += 1;
        let id = c.next;
        let close = Arc::new(tokio::sync::Notify::new());
        c.open.insert(
            id,
            ConnState {
                in_flight: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        Some(ConnSlot {
            id,
            conns: self.conns.clone(),
            close,
        })
    }

    /// One request, start to end: answered, counted and logged.
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let start = Instant::now();
        // The request's body, from here on, is never dropped unread: an answer of the proxy's
        // own, given before the body is all sent, ends with the rest read and dropped behind
        // it ([`discard`]), not with a reset that some clients take for a lost answer.
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, Arc::new(Unread(std::sync::Mutex::new(Some(body)))));
        let id = request_id(req.headers()).unwrap_or_else(|| self.ids.next());
        // What the access log says of the request, kept only when there is one.
        let logged = self
            .log
            .on
            .then(|| (req.method().clone(), req.uri().clone(), req.version()));
        // A gRPC call's body, kept to read its rest before an answer of the proxy's own.
        let grpc = is_grpc(req.headers()).then(|| req.body().clone());
        let (mut resp, upstream, host) = match front(req.version(), req.headers(), req.uri()) {
            Ok(host) => {
                let (resp, upstream) = self.route(req, &host, &conn, &id).await;
                (resp, upstream, host)
            }
            Err(why) => {
                self.metrics.error("bad_request");
                let mut r = plain(StatusCode::BAD_REQUEST, &why.to_string());
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                (r, None, String::new())
            }
        };
        resp.headers_mut()
            .insert(header::SERVER, HeaderValue::from_static(SERVER));
        let took = start.elapsed();
        self.metrics.duration.observe(took.as_secs_f64());
        self.metrics.request(resp.status(), conn.tls);
        if let Some((method, uri, version)) = logged {
            let line = serde_json::json!({
                "time": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
                "remote": conn.peer.ip().to_string(),
                "host": host,
                "method": method.as_str(),
                "uri": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                "proto": format!("{version:?}"),
                "tls": conn.tls,
                "status": resp.status().as_u16(),
                "duration_ms": took.as_secs_f64() * 1000.0,
                "upstream": upstream.map(|u| u.to_string()),
                "request_id": id.to_str().unwrap_or(""),
            });
            self.log.write(&line.to_string());
        }
        // (Counted and logged with the HTTP status it stands for.)
        if let Some(body) = grpc {
            if let Some(answer) = grpc_answer(&resp) {
                // A Trailers-Only answer is a success (HTTP 200): as for any success given
                // before the request's body was all sent, the rest is read first (within
                // bounds), else clients wait to send it and the stream hangs (curl does).
                let rest = body.lock().take();
                if let Some(rest) = rest {
                    let mut linger = body::Linger::new(rest, true);
                    std::future::poll_fn(|cx| linger.poll(cx)).await;
                }
                resp = answer;
                resp.headers_mut()
                    .insert(header::SERVER, HeaderValue::from_static(SERVER));
            }
        }
        resp
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, `+proto` and the
/// like).
fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
}

/// An answer to a gRPC call: the backend's as it is, but one of the proxy's own (an HTTP
/// error without gRPC's content type: no route, no endpoint, a failed or late backend) as
/// gRPC's Trailers-Only answer, HTTP 200 with `grpc-status` mapped from the HTTP status as
/// gRPC's HTTP-to-gRPC table does (404 UNIMPLEMENTED; 429, 502, 503, 504 UNAVAILABLE; 400
/// INTERNAL; 401 UNAUTHENTICATED; 403 PERMISSION_DENIED; others UNKNOWN) and the reason as
/// `grpc-message`.
fn grpc_answer(resp: &Response<Body>) -> Option<Response<Body>> {
    let status = resp.status();
    if status == StatusCode::OK || is_grpc(resp.headers()) {
        return None;
    }
    let code = match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    };
    // grpc-message: percent-encoded outside printable ASCII (and '%').
    let message: String = format!("{status}")
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
    Some(r)
}

/// The next connection of a listener, without Nagle's delay, with its peer's and its own
/// address (IPv4 ones as such, on a listener of both families); a failing `accept` (out of
/// descriptors, say) is tried again 10 ms later.
async fn accept(l: &TcpListener) -> (tokio::net::TcpStream, SocketAddr, SocketAddr) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                let local = s.local_addr().unwrap_or(peer);
                // A listener of both families sees an IPv4 client as `::ffff:a.b.c.d`: it is
                // the IPv4 address it is (X-Forwarded-For, X-Real-IP, the access log).
                let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
                return (s, canonical(peer), canonical(local));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The proxy's runtime: one worker is a single-threaded runtime (as one nginx worker is one
/// event loop: no cross-thread wake-ups), more are a multi-threaded one.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn empty() -> Body {
    Either::Right(Full::new(Bytes::new()))
}

/// A short plain-text answer of the proxy's own.
fn plain(status: StatusCode, why: &str) -> Response<Body> {
    let text = format!(
        "{} {}: {why}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Either::Right(Full::new(Bytes::from(text))))
        .expect("a valid response")
}

/// The innermost cause of a client error, for the answer's body.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        last = c.to_string();
        cur = c.source();
    }
    last
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// Serves one client connection whose client sends `input` and then closes its side, through
/// a proxy with one route (`/`) to a backend without endpoints (503): the request front, hyper's
/// parsers and the routing, in memory. Returns what the proxy wrote back. For fuzzing and tests.
pub fn serve_bytes(input: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let edge = Edge::new(Settings {
            access_log: false,
            header_read_timeout: Duration::from_secs(1),
            ..Settings::default()
        })
        .expect("a proxy");
        let backend = Backend {
            service: podnet_model::NsName::new("default", "s"),
            port: crate::routes::BackendPort::Number(80),
        };
        let mut upstreams = HashMap::new();
        upstreams.insert(
            backend.clone(),
            Upstream::Unavailable("no endpoints".into()),
        );
        edge.set(EdgeConfig {
            table: crate::routes::RouteTable::new(
                vec![crate::routes::Route {
                    host: crate::routes::HostMatch::Exact("a.example.com".into()),
                    path: crate::routes::PathMatch::Prefix(String::new()),
                    when: Default::default(),
                    action: Action::to(backend),
                    created: None,
                    source: crate::routes::Source {
                        kind: "Ingress",
                        object: podnet_model::NsName::new("default", "i"),
                        rule: 0,
                        path: 0,
                    },
                }],
                vec![],
            ),
            upstreams,
            ..EdgeConfig::default()
        });
        let conn = Conn {
            peer: ([192, 0, 2, 1], 40000).into(),
            local: ([10, 96, 0, 20], 80).into(),
            tls: false,
            sni: None,
        };
        let slot = edge.admit().expect("room for one connection");
        exchange(input, |server| {
            edge.connection(TokioIo::new(server), conn, slot)
        })
        .await
    })
}

/// One in-memory connection: `serve` is given the server's end, the client sends `input`,
/// closes its side and reads until the server closes (or 5 s pass). Returns what it read.
/// The harness of this crate's and the lab's `serve_bytes` (fuzzing and tests).
pub async fn exchange<F: std::future::Future>(
    input: &[u8],
    serve: impl FnOnce(tokio::io::DuplexStream) -> F,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(1 << 16);
    let serving = serve(server);
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = async move {
        let _ = wr.write_all(input).await;
        let _ = wr.shutdown().await;
    };
    let reader = async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let timeout = Duration::from_secs(5);
    let (_, _, out) = tokio::join!(tokio::time::timeout(timeout, serving), writer, reader);
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod default_cert_tests;
