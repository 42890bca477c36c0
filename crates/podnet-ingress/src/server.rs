//! The edge proxy: hyper and rustls.
//!
//! - Clients: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge on plain HTTP); TLS by
//!   SNI from the Ingresses' Secrets, a generated certificate for other names.
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
use http_body_util::{BodyExt as _, Either, Full};
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
use crate::routes::{Action, Backend, Route, Served, WeightedBackend};
use crate::upstream::Connector;
use crate::IngressError;

/// The bodies the proxy sends and forwards: a peer's, or one of its own (no box, no dynamic
/// dispatch per frame).
pub type Body = Either<FromUpstream, Full<Bytes>>;

/// What goes to a backend: the client's body (which the response's end can cut off), or a
/// fixed one.
type ToUpstream = Either<CutOff, Full<Bytes>>;

/// A request's body on its way to the backend, shared with the response's [`FromUpstream`]:
/// once the response has gone to the client whole, the rest of the request is not needed
/// (the backend answered without it), and the client's stream must end rather than wait for
/// someone to read it (RFC 9113 8.1: RST_STREAM NO_ERROR; h2 sends it when the body is
/// dropped after the response).
pub struct CutOff {
    body: Arc<Unread>,
}

/// The client's request body, as long as someone may still send it on; when the last holder
/// goes (the response sent whole, or a failed attempt's answer), what is left is read and
/// dropped ([`discard`]).
pub struct Unread(std::sync::Mutex<Option<Incoming>>);

impl Unread {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing of the body is left to send on.
    fn ended(&self) -> bool {
        self.lock().as_ref().is_none_or(|b| b.is_end_stream())
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(rest) = self.lock().take() {
            discard(rest);
        }
    }
}

/// A backend's response body; when it is dropped (sent whole, or abandoned), the request's
/// body still on its way to that backend is dropped too.
///
/// A success answered before the request's body was all sent (the backend did not need the
/// rest) ends only once the client has sent the rest, read here and dropped ([`Linger`]):
/// clients go on sending after a success and some read nothing until they are done (curl 7.88
/// then waits for flow-control credit it never reads: the stream hung; nginx 1.22 hangs it the
/// same way), and a reset, even RST_STREAM NO_ERROR as RFC 9113 8.1 allows, makes some of them
/// drop the answer they have (curl 7.88: "Stream error in the HTTP/2 framing layer", no
/// answer). Past [`DISCARD_BYTES`], [`DISCARD_FOR`] or [`LINGER_IDLE`] without a byte, the
/// answer ends and the stream is reset with NO_ERROR (h2 does so when the request's body is
/// dropped after a complete response). Any other answer ends at once: clients stop sending on
/// an error (curl: "HTTP error before end of send, stop sending"), and the rest is read and
/// dropped behind it ([`discard`]).
pub struct FromUpstream {
    body: Incoming,
    request: Option<Arc<Unread>>,
    /// The client connection is busy until this body ends.
    busy: Option<Busy>,
    /// Whether the answer's end waits for the request's body ([`FromUpstream`]).
    waits_for_request: bool,
    /// Sent without its length ([`FromUpstream::new`]).
    no_length: bool,
    linger: Option<Linger>,
}

/// The rest of a request's body, read and dropped before a success's end is sent.
struct Linger {
    rest: Incoming,
    read: usize,
    until: tokio::time::Instant,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl FromUpstream {
    /// The body of the answer `head` to a client speaking `client`. Over HTTP/2, an answer
    /// whose end waits for the request's rest goes without its `Content-Length`: a client that
    /// has counted the bytes it was told of stops reading (curl 7.88), and then never reads the
    /// flow-control credit it needs to send the rest (HTTP/2 frames a message by END_STREAM;
    /// the length is advisory, RFC 9113 8.1.1).
    fn new(
        body: Incoming,
        request: Arc<Unread>,
        head: &mut hyper::http::response::Parts,
        client: Version,
    ) -> FromUpstream {
        let mut b = FromUpstream {
            body,
            request: Some(request),
            busy: None,
            waits_for_request: head.status.is_success(),
            no_length: false,
            linger: None,
        };
        if !b.request_ended() && client == Version::HTTP_2 {
            head.headers.remove(header::CONTENT_LENGTH);
            b.no_length = true;
        }
        b
    }

    /// Whether nothing is left of the request's body to wait for.
    fn request_ended(&self) -> bool {
        !self.waits_for_request || self.request.as_ref().is_none_or(|r| r.ended())
    }

    /// Reads and drops the request's rest until it ends (Ready), or a bound is passed (Ready,
    /// the rest dropped: the stream is reset with NO_ERROR once the answer's end is sent).
    fn poll_linger(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(l) = self.linger.as_mut() else {
            return Poll::Ready(());
        };
        loop {
            match std::pin::Pin::new(&mut l.rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    l.read += f.data_ref().map_or(0, Bytes::len);
                    if l.read > DISCARD_BYTES {
                        break;
                    }
                    let next = (tokio::time::Instant::now() + LINGER_IDLE).min(l.until);
                    l.idle.as_mut().reset(next);
                }
                // The client's body ended (or its stream did): nothing to wait for.
                Poll::Ready(_) => break,
                Poll::Pending => {
                    if std::future::Future::poll(l.idle.as_mut(), cx).is_ready() {
                        break;
                    }
                    return Poll::Pending;
                }
            }
        }
        self.linger = None;
        Poll::Ready(())
    }
}

/// The client connections, each with its state: which can go first when there are too many.
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, ConnState>,
}

struct ConnState {
    in_flight: usize,
    /// Since when nothing is in flight (accept time for a connection that never asked).
    idle_since: Instant,
    close: Arc<tokio::sync::Notify>,
}

/// A client connection's place in [`Conns`]; the connection leaves it when dropped.
pub struct ConnSlot {
    id: u64,
    conns: Arc<std::sync::Mutex<Conns>>,
    close: Arc<tokio::sync::Notify>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        lock(&self.conns).open.remove(&self.id);
    }
}

impl ConnSlot {
    /// A request in flight on this connection, until dropped.
    fn busy(&self) -> Busy {
        if let Some(c) = lock(&self.conns).open.get_mut(&self.id) {
            c.in_flight += 1;
        }
        Busy {
            id: self.id,
            conns: self.conns.clone(),
        }
    }
}

/// One request in flight (its response's body included).
pub struct Busy {
    id: u64,
    conns: Arc<std::sync::Mutex<Conns>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.conns).open.get_mut(&self.id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = Instant::now();
            }
        }
    }
}

/// The client connections this process can hold: each may need a backend connection too, and
/// some descriptors are kept for everything else (half of the soft limit, less 128).
pub fn connection_budget() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    (soft / 2).saturating_sub(128).max(64)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for FromUpstream {
    fn drop(&mut self) {
        // The response has gone: the rest of the request is not sent on, whoever holds it.
        if let Some(rest) = self.request.as_ref().and_then(|r| r.lock().take()) {
            discard(rest);
        }
    }
}

/// Reads the rest of a request's body and drops it, as nginx does, so that the client's
/// upload ends cleanly (a reset, even NO_ERROR, makes some clients drop the response they
/// already have: curl 7.88 says "stream error" and shows none); within bounds, past which the
/// stream is reset.
fn discard(mut rest: Incoming) {
    if rest.is_end_stream() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + DISCARD_FOR;
            let mut read = 0usize;
            while read < DISCARD_BYTES {
                match tokio::time::timeout_at(deadline, rest.frame()).await {
                    Ok(Some(Ok(f))) => read += f.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
        });
    }
}

/// How much of a request's body, unread by a backend that has answered, is read and dropped
/// for the client's upload to end cleanly, and for how long at most.
const DISCARD_BYTES: usize = 256 << 20;
const DISCARD_FOR: Duration = Duration::from_secs(30);
/// How long a success's end waits for the next byte of the request's rest (nginx's
/// `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(5);

impl hyper::body::Body for FromUpstream {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        use std::task::Poll;
        let me = self.get_mut();
        if me.linger.is_none() {
            if !me.body.is_end_stream() {
                match std::pin::Pin::new(&mut me.body).poll_frame(cx) {
                    Poll::Ready(None) => {}
                    other => return other,
                }
            }
            // The answer is whole: a success waits for the request's rest.
            if me.request_ended() {
                return Poll::Ready(None);
            }
            let Some(rest) = me.request.as_ref().and_then(|r| r.lock().take()) else {
                return Poll::Ready(None);
            };
            let until = tokio::time::Instant::now() + DISCARD_FOR;
            me.linger = Some(Linger {
                rest,
                read: 0,
                until,
                idle: Box::pin(tokio::time::sleep_until(
                    (tokio::time::Instant::now() + LINGER_IDLE).min(until),
                )),
            });
        }
        me.poll_linger(cx).map(|()| None)
    }
    fn is_end_stream(&self) -> bool {
        self.linger.is_none() && self.body.is_end_stream() && self.request_ended()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        let hint = self.body.size_hint();
        if self.no_length {
            // Not exact, or hyper's HTTP/2 server writes the length back.
            let mut h = hyper::body::SizeHint::new();
            h.set_lower(hint.lower());
            return h;
        }
        hint
    }
}

impl hyper::body::Body for CutOff {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let mut held = self.body.lock();
        match held.as_mut() {
            Some(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            // Not the end of the body: the backend must not take what it got for all of it.
            None => std::task::Poll::Ready(Some(Err(
                "the response went to the client whole; the rest of the request is not sent".into(),
            ))),
        }
    }
    fn is_end_stream(&self) -> bool {
        self.body.lock().as_ref().is_none_or(|b| b.is_end_stream())
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body
            .lock()
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

/// The `Server` header of every response.
pub const SERVER: &str = "podnet";

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
}

type Pool = Client<Connector, ToUpstream>;

/// The certificate for a TLS handshake: by SNI from the live configuration, else the default.
#[derive(Debug)]
struct Resolver {
    live: Arc<ArcSwap<Live>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let live = self.live.load();
        hello
            .server_name()
            .and_then(|n| live.config.cert_for(n).cloned())
            .or_else(|| Some(self.default.clone()))
    }
}

/// A client connection's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// The proxy.
pub struct Edge {
    live: Arc<ArcSwap<Live>>,
    configured: AtomicBool,
    connector: Connector,
    builder: auto::Builder<TokioExecutor>,
    tls: Arc<rustls::ServerConfig>,
    settings: Settings,
    pub metrics: Metrics,
    log: AccessLog,
    ids: RequestIds,
    conns: Arc<std::sync::Mutex<Conns>>,
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
        let mut tls =
            rustls::ServerConfig::builder_with_provider(Arc::new(crate::crypto_provider()))
                .with_safe_default_protocol_versions()
                .map_err(IngressError::Tls)?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Resolver {
                    live: live.clone(),
                    default,
                }));
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
            tls: Arc::new(tls),
            log: AccessLog::new(settings.access_log),
            settings,
            metrics: Metrics::new(),
            ids: RequestIds::new(),
            conns: Default::default(),
        }))
    }

    /// Swaps in a new configuration: requests that started keep the old one.
    pub fn set(&self, config: EdgeConfig) {
        self.metrics.routes.set(config.table.routes().len() as i64);
        self.metrics.certificates.set(config.certs.len() as i64);
        let old = self.live.load();
        let mut pools: HashMap<SocketAddr, Pool> = old
            .targets
            .values()
            .filter_map(|t| match t {
                Target::Ready { endpoints, .. } => Some(endpoints),
                Target::Unavailable(_) => None,
            })
            .flatten()
            .map(|e| (e.addr, e.pool.clone()))
            .collect();
        let targets = config
            .upstreams
            .iter()
            .map(|(b, u)| {
                let t = match u {
                    Upstream::Unavailable(why) => Target::Unavailable(why.clone()),
                    Upstream::Ready(eps) => Target::Ready {
                        endpoints: eps
                            .iter()
                            .filter_map(|ep| {
                                Some(Endpoint {
                                    addr: *ep,
                                    authority: ep.to_string().parse().ok()?,
                                    pool: pools.entry(*ep).or_insert_with(|| self.pool()).clone(),
                                })
                            })
                            .collect(),
                        next: AtomicUsize::new(0),
                    },
                };
                (b.clone(), t)
            })
            .collect();
        self.live.store(Arc::new(Live { config, targets }));
        self.metrics.reloads.inc();
        self.configured.store(true, Ordering::Release);
    }

    /// A keep-alive pool for one endpoint.
    fn pool(&self) -> Pool {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(self.connector.clone())
    }

    /// The configuration served now.
    pub fn config(&self) -> EdgeConfig {
        self.live.load().config.clone()
    }

    /// Serves plain HTTP on `l` until the task is dropped.
    pub async fn serve_http(self: Arc<Self>, l: TcpListener) {
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
                let mut first = [0u8; 1];
                match tokio::time::timeout(edge.settings.header_read_timeout, s.peek(&mut first))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return,
                    Err(_) => {
                        edge.metrics.error("header_timeout");
                        return;
                    }
                }
                let conn = Conn {
                    peer,
                    local,
                    tls: false,
                };
                edge.connection(TokioIo::new(s), conn, slot).await
            });
        }
    }

    /// Serves HTTPS on `l` until the task is dropped.
    pub async fn serve_https(self: Arc<Self>, l: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        loop {
            let (s, peer, local) = accept(&l).await;
            let Some(slot) = self.admit() else {
                continue;
            };
            let edge = self.clone();
            let acceptor = acceptor.clone();
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
                };
                edge.connection(TokioIo::new(tls), conn, slot).await
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

    /// Serves one client connection (HTTP/1.1 or HTTP/2).
    pub async fn connection<I>(self: Arc<Self>, io: I, conn: Conn, slot: ConnSlot)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        self.metrics.connections.inc();
        let edge = self.clone();
        let slot = Arc::new(slot);
        let close = slot.close.clone();
        let svc = service_fn(move |req| {
            let edge = edge.clone();
            let busy = slot.busy();
            async move {
                let resp = edge.handle(req, conn).await;
                // Busy until the response's body has gone (a backend's, streamed).
                Ok::<_, Infallible>(resp.map(|b| match b {
                    Either::Left(mut up) => {
                        up.busy = Some(busy);
                        Either::Left(up)
                    }
                    full => full,
                }))
            }
        });
        tokio::select! {
            _ = self.builder.serve_connection_with_upgrades(io, svc) => {}
            _ = close.notified() => self.metrics.error("idle_closed_for_a_new_client"),
        }
        self.metrics.connections.dec();
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
        let (mut resp, upstream, host) = match front(req.version(), req.headers(), req.uri()) {
            Ok(host) => {
                let (resp, upstream) = self.route(req, &host, conn, &id).await;
                (resp, upstream, host)
            }
            Err(why) => {
                self.metrics.error("bad_request");
                let mut r = plain(StatusCode::BAD_REQUEST, &why);
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
        resp
    }

    /// Where a request goes, and its answer.
    async fn route(
        &self,
        mut req: Request<Arc<Unread>>,
        host: &str,
        conn: Conn,
        id: &HeaderValue,
    ) -> (Response<Body>, Option<SocketAddr>) {
        let live = self.live.load_full();
        if !conn.tls && !live.config.redirect.is_empty() && live.config.redirects(host) {
            let name = crate::routes::normalize_host(host);
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut r = plain(
                StatusCode::PERMANENT_REDIRECT,
                "this host is served over HTTPS",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("https://{name}{pq}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return (r, None);
        }
        // The host normalized once, for the listener and the routes.
        let name = crate::routes::normalize_host(host);
        let table = if live.config.ports.is_empty() {
            Some(&live.config.table)
        } else {
            live.config
                .ports
                .get(&conn.local.port())
                .and_then(|p| p.listener_normalized(&name))
                .map(|l| &l.table)
        };
        let pq_owned = req.uri().path_and_query().cloned();
        let pq_in = pq_owned.as_ref().map(|p| p.as_str()).unwrap_or("/");
        let served = table
            .and_then(|t| t.serve_normalized(&name, pq_in, req.method().as_str(), req.headers()));
        let mut edits: Option<(&Route, &WeightedBackend)> = None;
        let backend = match served {
            Some(Served::Route(r)) => match &r.action {
                Action::Redirect {
                    redirect,
                    response_headers,
                } => {
                    let location = redirect_location(redirect, &r.path, conn, host, pq_in);
                    let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
                    let mut resp = plain(status, "redirected");
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    response_headers.apply(resp.headers_mut());
                    return (resp, None);
                }
                Action::Forward { backends, .. } => match pick(backends) {
                    Some(wb) => match &wb.backend {
                        Some(b) => {
                            edits = Some((r, wb));
                            b
                        }
                        None => {
                            self.metrics.error("invalid_backend");
                            return (
                                plain(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "the route's backend reference cannot be used",
                                ),
                                None,
                            );
                        }
                    },
                    None => {
                        self.metrics.error("no_backend");
                        return (
                            plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the route has no backend",
                            ),
                            None,
                        );
                    }
                },
            },
            Some(Served::Default(b, _)) => b,
            None => {
                self.metrics.error("no_route");
                return (
                    plain(
                        StatusCode::NOT_FOUND,
                        &format!("no route for {name} {}", req.uri().path()),
                    ),
                    None,
                );
            }
        };
        let (endpoints, first) = match live.targets.get(backend) {
            Some(Target::Ready { endpoints, next }) if !endpoints.is_empty() => {
                (endpoints, next.fetch_add(1, Ordering::Relaxed))
            }
            Some(Target::Ready { .. }) => {
                self.metrics.error("no_endpoints");
                let why = format!("backend {} has no endpoint", describe(backend));
                return (plain(StatusCode::SERVICE_UNAVAILABLE, &why), None);
            }
            Some(Target::Unavailable(why)) => {
                self.metrics.error("no_endpoints");
                return (plain(StatusCode::SERVICE_UNAVAILABLE, why), None);
            }
            None => {
                self.metrics.error("no_endpoints");
                let why = format!("backend {} is not resolved", describe(backend));
                return (plain(StatusCode::SERVICE_UNAVAILABLE, &why), None);
            }
        };
        let upgrade = wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        // As nginx's `proxy_next_upstream error timeout` (its default): a request that can be
        // sent again is, once, to the next endpoint (the same one when it is alone, over a new
        // connection) when connecting fails or times out, or sending or reading the response's
        // head fails. (The read timeout itself is not retried: it has already waited long.)
        let attempts = if idempotent && body.ended() && !upgrade {
            2
        } else {
            1
        };
        let mut fwd = forwarded(parts.headers, host, conn, id, upgrade);
        let mut pq = parts.uri.path_and_query().cloned();
        let mut response_edits = None;
        if let Some((r, wb)) = edits {
            if let Action::Forward {
                request_headers,
                response_headers,
                rewrite,
                ..
            } = &r.action
            {
                request_headers.apply(&mut fwd);
                wb.request_headers.apply(&mut fwd);
                if !response_headers.is_empty() {
                    response_edits = Some(response_headers);
                }
                if let Some(rw) = rewrite {
                    if let Some(h) = rw
                        .hostname
                        .as_deref()
                        .and_then(|h| HeaderValue::from_str(h).ok())
                    {
                        fwd.insert(header::HOST, h);
                    }
                    if let Some(m) = &rw.path {
                        let (p, q) = match pq_in.split_once('?') {
                            Some((p, q)) => (p, Some(q)),
                            None => (pq_in, None),
                        };
                        let new = m.apply(&r.path, p);
                        let new = match q {
                            Some(q) => format!("{new}?{q}"),
                            None => new,
                        };
                        pq = new.parse().ok().or(pq);
                    }
                }
            }
        }
        let mut headers = Some(fwd);
        let request_body = body;
        let mut body = Some(Either::Left(CutOff {
            body: request_body.clone(),
        }));
        for attempt in 0..attempts {
            let target = &endpoints[(first + attempt) % endpoints.len()];
            let ep = target.addr;
            let mut up = Request::new(
                body.take()
                    .unwrap_or_else(|| Either::Right(Full::new(Bytes::new()))),
            );
            *up.method_mut() = parts.method.clone();
            *up.version_mut() = Version::HTTP_11;
            let mut uri = hyper::http::uri::Parts::default();
            uri.scheme = Some(hyper::http::uri::Scheme::HTTP);
            uri.authority = Some(target.authority.clone());
            uri.path_and_query = pq.clone().or_else(|| Some("/".parse().expect("a path")));
            *up.uri_mut() = match hyper::Uri::from_parts(uri) {
                Ok(u) => u,
                Err(_) => {
                    return (
                        plain(StatusCode::BAD_REQUEST, "a path that cannot be forwarded"),
                        None,
                    )
                }
            };
            // The last attempt takes the headers; an earlier one, a copy.
            *up.headers_mut() = if attempt + 1 < attempts {
                headers.clone().unwrap_or_default()
            } else {
                headers.take().unwrap_or_default()
            };
            // A retry goes over a new connection: the pool's others may be as stale.
            let pool = if attempt == 0 {
                target.pool.clone()
            } else {
                self.pool()
            };
            let sent = tokio::time::timeout(self.settings.read_timeout, pool.request(up));
            match sent.await {
                Err(_) => {
                    self.metrics.error("timeout");
                    tracing::warn!(upstream = %ep, timeout = ?self.settings.read_timeout, "the backend did not answer in time");
                    return (
                        plain(
                            StatusCode::GATEWAY_TIMEOUT,
                            &format!(
                                "{ep} did not answer within {:?}",
                                self.settings.read_timeout
                            ),
                        ),
                        Some(ep),
                    );
                }
                Ok(Err(e)) if attempt + 1 < attempts && (e.is_connect() || !is_timeout(&e)) => {
                    tracing::warn!(upstream = %ep, error = %cause(&e), "retrying on the next endpoint");
                    self.metrics.retries.inc();
                    continue;
                }
                Ok(Err(e)) => {
                    let timed_out = is_timeout(&e);
                    tracing::warn!(upstream = %ep, error = %cause(&e), "the backend failed");
                    self.metrics
                        .error(if timed_out { "timeout" } else { "upstream" });
                    let (status, what) = match (e.is_connect(), timed_out) {
                        (true, true) => (StatusCode::GATEWAY_TIMEOUT, "connecting to"),
                        (true, false) => (StatusCode::BAD_GATEWAY, "could not connect to"),
                        _ => (StatusCode::BAD_GATEWAY, "no valid response from"),
                    };
                    return (
                        plain(status, &format!("{what} {ep}: {}", cause(&e))),
                        Some(ep),
                    );
                }
                Ok(Ok(mut resp)) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        let Some(client_upgrade) = client_upgrade else {
                            return (
                                plain(
                                    StatusCode::BAD_GATEWAY,
                                    "the backend switched protocols unasked",
                                ),
                                Some(ep),
                            );
                        };
                        let backend_upgrade = hyper::upgrade::on(&mut resp);
                        tokio::spawn(async move {
                            if let (Ok(c), Ok(b)) = tokio::join!(client_upgrade, backend_upgrade) {
                                let _ = tokio::io::copy_bidirectional(
                                    &mut TokioIo::new(c),
                                    &mut TokioIo::new(b),
                                )
                                .await;
                            }
                        });
                        let (p, _) = resp.into_parts();
                        return (Response::from_parts(p, empty()), Some(ep));
                    }
                    let (mut p, b) = resp.into_parts();
                    strip_hop_by_hop(&mut p.headers);
                    if let Some(e) = response_edits {
                        e.apply(&mut p.headers);
                    }
                    let b = FromUpstream::new(b, request_body, &mut p, parts.version);
                    return (Response::from_parts(p, Either::Left(b)), Some(ep));
                }
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// One of a route's backends, by weight (None: no backend, or only weight 0).
fn pick(backends: &[WeightedBackend]) -> Option<&WeightedBackend> {
    if let [one] = backends {
        return (one.weight > 0).then_some(one);
    }
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut x = fastrand::u64(..total);
    for b in backends {
        let w = u64::from(b.weight);
        if x < w {
            return Some(b);
        }
        x -= w;
    }
    None
}

/// Where a RequestRedirect sends a request (the Gateway API's rules: an unset scheme,
/// hostname or path is the request's own; an unset port is the scheme's well-known port when
/// the scheme is set, else the listener's; a well-known port is left out).
fn redirect_location(
    r: &crate::routes::Redirect,
    matched: &crate::routes::PathMatch,
    conn: Conn,
    host: &str,
    path_and_query: &str,
) -> String {
    let scheme = r
        .scheme
        .clone()
        .unwrap_or_else(|| if conn.tls { "https" } else { "http" }.to_string());
    let hostname = r
        .hostname
        .clone()
        .unwrap_or_else(|| crate::routes::normalize_host(host));
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => Some(conn.local.port()),
    }
    .filter(|p| !((scheme == "http" && *p == 80) || (scheme == "https" && *p == 443)));
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = r
        .path
        .as_ref()
        .map_or_else(|| path.to_string(), |m| m.apply(matched, path));
    let mut out = format!("{scheme}://{hostname}");
    if let Some(p) = port {
        out.push_str(&format!(":{p}"));
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The next connection of a listener, without Nagle's delay, with its peer's and its own
/// address; a failing `accept` (out of descriptors, say) is tried again 10 ms later.
async fn accept(l: &TcpListener) -> (tokio::net::TcpStream, SocketAddr, SocketAddr) {
    loop {
        match l.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                let local = s.local_addr().unwrap_or(peer);
                return (s, peer, local);
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

/// The request front: what every request must pass before it is routed, and the host it is
/// for. Refused (400, and the connection closed):
/// - request smuggling: `Transfer-Encoding` with `Content-Length`, or more than one
///   `Content-Length` (RFC 9112 6.3: a message a proxy must not forward);
/// - no host (HTTP/1.1 without `Host`), more than one `Host`, or a host that is not a valid
///   authority (RFC 9110 7.2: a server must answer 400).
pub fn front(version: Version, headers: &HeaderMap, uri: &hyper::Uri) -> Result<String, String> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err("more than one Content-Length".into());
    }
    if lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    if hosts.len() > 1 {
        return Err("more than one Host".into());
    }
    let host = match (uri.authority(), hosts.first()) {
        (Some(a), _) if version == Version::HTTP_2 => a.as_str().to_string(),
        (_, Some(h)) => h
            .to_str()
            .map_err(|_| "a Host that is not text".to_string())?
            .to_string(),
        (Some(a), None) => a.as_str().to_string(),
        (None, None) if version == Version::HTTP_10 => String::new(),
        (None, None) => return Err("no Host".into()),
    };
    if !host.is_empty() && !valid_authority(&host) {
        return Err("an invalid Host".into());
    }
    Ok(host)
}

/// `host[:port]`: a DNS name or an IP literal, and a port of digits.
fn valid_authority(h: &str) -> bool {
    if h.contains('@') {
        return false;
    }
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => ("x", Some(p)),
            None if after.is_empty() => ("x", None),
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with('.')
        && !name.contains("..")
}

/// An HTTP/1.1 request that asks to switch protocols (WebSocket and others).
fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Hop-by-hop headers (RFC 9110 7.6.1), and those the `Connection` header names.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(h)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// The headers sent to the backend: the client's without hop-by-hop ones (but the upgrade's),
/// `Host` as the client gave it, and the `X-Forwarded-*` set.
fn forwarded(
    mut h: HeaderMap,
    host: &str,
    conn: Conn,
    id: &HeaderValue,
    upgrade: bool,
) -> HeaderMap {
    let upgrade_to = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut h);
    if upgrade {
        if let Some(u) = upgrade_to {
            h.insert(header::UPGRADE, u);
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert(header::HOST, v);
    }
    let ip = conn.peer.ip().to_string();
    let xff = match h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
    {
        prior if prior.is_empty() => ip.clone(),
        prior => format!("{}, {ip}", prior.join(", ")),
    };
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut h, "x-forwarded-for", &xff);
    set(&mut h, "x-real-ip", &ip);
    set(
        &mut h,
        "x-forwarded-proto",
        if conn.tls { "https" } else { "http" },
    );
    set(&mut h, "x-forwarded-host", host);
    set(&mut h, "x-forwarded-port", &conn.local.port().to_string());
    h.insert(HeaderName::from_static("x-request-id"), id.clone());
    h
}

/// The client's `X-Request-ID`, when it is a sane one.
fn request_id(h: &HeaderMap) -> Option<HeaderValue> {
    let v = h.get("x-request-id")?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic())).then(|| v.clone())
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

/// A generated certificate for names no Secret covers (ingress-nginx has one too).
/// Its subject and only name: `CN=podnet-ingress-default`.
fn default_certificate() -> Result<Arc<CertifiedKey>, IngressError> {
    let (cert, key) = default_certificate_pem()?;
    crate::edge::certified_key_pem(cert.as_bytes(), key.as_bytes())
        .map_err(IngressError::DefaultKey)
}

/// The default certificate and its key, PEM.
fn default_certificate_pem() -> Result<(String, String), IngressError> {
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_NAME.to_string()])
        .map_err(IngressError::DefaultCert)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(IngressError::DefaultCert)?;
    let cert = params
        .self_signed(&key)
        .map_err(IngressError::DefaultCert)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The default certificate's name (ingress-nginx's is "Kubernetes Ingress Controller Fake
/// Certificate").
pub const DEFAULT_CERT_NAME: &str = "podnet-ingress-default";

/// Request IDs: 32 hex digits, from a counter hashed with this process's random keys.
struct RequestIds {
    counter: AtomicU64,
    keys: (RandomState, RandomState),
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            counter: AtomicU64::new(0),
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 32];
        for (i, word) in [self.keys.0.hash_one(n), self.keys.1.hash_one(n)]
            .into_iter()
            .enumerate()
        {
            for j in 0..16 {
                out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
            }
        }
        HeaderValue::from_bytes(&out).expect("hex digits")
    }
}

/// JSON lines on stdout, buffered: written when 64 KiB gather or every 200 ms.
struct AccessLog {
    on: bool,
    buf: Arc<Mutex<Vec<u8>>>,
}

impl AccessLog {
    fn new(on: bool) -> AccessLog {
        let buf = Arc::new(Mutex::new(Vec::new()));
        if on {
            let weak = Arc::downgrade(&buf);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let Some(buf) = weak.upgrade() else { return };
                        flush(&buf);
                    }
                });
            }
        }
        AccessLog { on, buf }
    }

    fn write(&self, line: &str) {
        let full = {
            let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            b.extend_from_slice(line.as_bytes());
            b.push(b'\n');
            b.len() >= 64 * 1024
        };
        if full {
            flush(&self.buf);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        flush(&self.buf);
    }
}

fn flush(buf: &Mutex<Vec<u8>>) {
    let out = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
    if !out.is_empty() {
        let _ = std::io::stdout().lock().write_all(&out);
    }
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
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_front_refuses_smuggling_and_bad_hosts() {
        let uri: hyper::Uri = "/".parse().unwrap();
        let v = Version::HTTP_11;
        let ok = |h: &[(&str, &str)]| front(v, &headers(h), &uri);
        assert_eq!(ok(&[("host", "a.example.com")]).unwrap(), "a.example.com");
        assert_eq!(
            ok(&[("host", "a.example.com:8080")]).unwrap(),
            "a.example.com:8080"
        );
        assert_eq!(ok(&[("host", "[::1]:80")]).unwrap(), "[::1]:80");
        assert!(ok(&[]).is_err(), "HTTP/1.1 without Host");
        assert!(ok(&[("host", "a"), ("host", "b")]).is_err());
        assert!(ok(&[("host", "a b")]).is_err());
        assert!(ok(&[("host", "a/b")]).is_err());
        assert!(ok(&[("host", "user@a")]).is_err());
        assert!(ok(&[("host", "a:http")]).is_err());
        assert!(ok(&[("host", "[zz]")]).is_err());
        assert!(ok(&[
            ("host", "a"),
            ("content-length", "1"),
            ("content-length", "1")
        ])
        .is_err());
        assert!(ok(&[
            ("host", "a"),
            ("content-length", "1"),
            ("transfer-encoding", "chunked")
        ])
        .is_err());
        assert!(ok(&[("host", "a"), ("transfer-encoding", "chunked")]).is_ok());
        assert!(front(Version::HTTP_10, &HeaderMap::new(), &uri).is_ok());
    }

    #[test]
    fn forwarded_headers_append_and_set() {
        let conn = Conn {
            peer: "192.0.2.7:5555".parse().unwrap(),
            local: "10.96.0.20:443".parse().unwrap(),
            tls: true,
        };
        let h = forwarded(
            headers(&[
                ("host", "x.example.com"),
                ("x-forwarded-for", "203.0.113.1"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
                ("keep-alive", "timeout=5"),
            ]),
            "x.example.com",
            conn,
            &HeaderValue::from_static("abc"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "x.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-request-id"], "abc");
        assert!(!h.contains_key("x-drop") && !h.contains_key("keep-alive"));
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn requests_in_memory_get_the_proxys_answers() {
        let out = String::from_utf8(serve_bytes(
            b"GET /x HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
        ))
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("server: podnet"), "{out}");
        let out = String::from_utf8(serve_bytes(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")).unwrap();
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        let out = String::from_utf8(serve_bytes(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")).unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    proptest::proptest! {
        /// Any bytes: an answer or a closed connection, never a panic; a 400 or a 431 from
        /// the front closes the connection.
        #[test]
        fn no_input_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                           path in "[ -~]{0,40}", host in "[ -~]{0,40}") {
            let _ = serve_bytes(&raw);
            let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let out = serve_bytes(req.as_bytes());
            let text = String::from_utf8_lossy(&out);
            proptest::prop_assert!(out.is_empty() || text.starts_with("HTTP/1.1 "), "{}", text);
        }

        /// The front's host is always a valid authority, or empty (an empty `Host` is allowed
        /// for a request without an authority, RFC 9112 3.2).
        #[test]
        fn the_fronts_host_is_sane(host in "\\PC{0,30}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&host) {
                h.insert(header::HOST, v);
                if let Ok(got) = front(Version::HTTP_11, &h, &"/".parse().unwrap()) {
                    proptest::prop_assert!(got.is_empty() || valid_authority(&got));
                    proptest::prop_assert!(got.is_ascii());
                }
            }
        }
    }

    #[test]
    fn request_ids_differ() {
        let ids = RequestIds::new();
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}

#[cfg(test)]
mod default_cert_tests {
    /// Issue 21, item 10: the default certificate's subject was rcgen's own ("CN=rcgen self
    /// signed cert"); the documentation says `CN=podnet-ingress-default`.
    #[test]
    fn the_default_certificate_is_cn_podnet_ingress_default() {
        let (pem, _) = super::default_certificate_pem().unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        // The subject's CN attribute: OID 2.5.4.3, then a UTF8String of the name.
        let name = super::DEFAULT_CERT_NAME.as_bytes();
        let mut cn = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, name.len() as u8];
        cn.extend_from_slice(name);
        assert!(
            der.windows(cn.len()).any(|w| w == cn.as_slice()),
            "no CN={}",
            super::DEFAULT_CERT_NAME
        );
        assert!(
            !der.windows(5).any(|w| w == b"rcgen"),
            "rcgen's default subject"
        );
    }
}
