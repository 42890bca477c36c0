//! The accept loop every HTTP server of the lab shares, hardened against abusive clients:
//! - a connection must send a request's headers within [`HEADER_READ_TIMEOUT`] (an idle
//!   keep-alive connection too), and lives at most [`CONNECTION_LIFETIME`];
//! - at most [`PER_LISTENER`] connections per listener, and for the test servers, one budget
//!   shared by all pods, so that no client can take the file descriptors of the process (the
//!   cluster DNS and the health checks run on a runtime of their own);
//! - an `accept` error (EMFILE, ENFILE, ENOBUFS …) backs off instead of spinning.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
pub const PER_LISTENER: usize = 512;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A handler's answer to one request, computed at once.
pub enum Reply {
    Now(Response<Full<Bytes>>),
    /// Sent after this long (upstream's echo server's `?delay=`).
    After(Duration, Response<Full<Bytes>>),
    /// No answer: the connection reset (TCP RST), as upstream's echo server does to fail a
    /// request without a status.
    Reset,
}

impl From<Response<Full<Bytes>>> for Reply {
    fn from(r: Response<Full<Bytes>>) -> Reply {
        Reply::Now(r)
    }
}

/// Answers one request.
pub type Handler = Arc<dyn Fn(&Request<Incoming>, SocketAddr) -> Reply + Send + Sync>;

/// The reset of a connection, on purpose.
#[derive(Debug, thiserror::Error)]
#[error("the connection was reset on purpose")]
pub struct Reset;

/// Serves `l` until the task is aborted. `budget`, if any, is shared with other listeners.
pub async fn serve(l: tokio::net::TcpListener, handler: Handler, budget: Option<Arc<Semaphore>>) {
    serve_as(l, handler, budget, false).await
}

/// [`serve`], speaking cleartext HTTP/2 (prior knowledge) as upstream's echo server does on
/// its h2c port: an HTTP/1 request is answered 400 "Expected h2c request".
pub async fn serve_h2c(
    l: tokio::net::TcpListener,
    handler: Handler,
    budget: Option<Arc<Semaphore>>,
) {
    let h2c: Handler = Arc::new(move |req, peer| {
        if req.version() == hyper::Version::HTTP_2 {
            handler(req, peer)
        } else {
            let mut r = Response::new(Full::new(Bytes::from_static(b"Expected h2c request\n")));
            *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
            Reply::Now(r)
        }
    });
    serve_as(l, h2c, budget, true).await
}

async fn serve_as(
    l: tokio::net::TcpListener,
    handler: Handler,
    budget: Option<Arc<Semaphore>>,
    h2c: bool,
) {
    let accepting = Accepting::new(l, budget);
    while let Some((stream, peer, held)) = accepting.next().await {
        let handler = handler.clone();
        // A second descriptor of the socket: a reset sets SO_LINGER 0 on it, so that the
        // socket's close sends RST.
        let socket = stream.as_fd().try_clone_to_owned().ok();
        tokio::spawn(async move {
            let _held = held;
            if h2c {
                connection_auto(TokioIo::new(stream), handler, peer, None).await;
            } else {
                connection(TokioIo::new(stream), handler, peer, &builder(), socket).await;
            }
        });
    }
}

/// A listener's connections within bounds: at most [`PER_LISTENER`] at once, and within the
/// budget shared by the test servers when there is one; an `accept` error backs off.
pub struct Accepting {
    l: tokio::net::TcpListener,
    mine: Arc<Semaphore>,
    budget: Option<Arc<Semaphore>>,
}

/// A connection's place in both bounds, held while it is served.
pub struct Held(
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    #[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>,
);

impl Accepting {
    pub fn new(l: tokio::net::TcpListener, budget: Option<Arc<Semaphore>>) -> Accepting {
        Accepting {
            l,
            mine: Arc::new(Semaphore::new(PER_LISTENER)),
            budget,
        }
    }

    /// The next connection, once it has its place (its peer an IPv4 address when it is one,
    /// on a socket of both families); None when a bound is closed.
    pub async fn next(&self) -> Option<(tokio::net::TcpStream, SocketAddr, Held)> {
        let local = self.mine.clone().acquire_owned().await.ok()?;
        let shared = match &self.budget {
            Some(b) => Some(b.clone().acquire_owned().await.ok()?),
            None => None,
        };
        loop {
            match self.l.accept().await {
                Ok((stream, peer)) => {
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    return Some((stream, peer, Held(local, shared)));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            }
        }
    }
}

/// What a TLS connection's handshake settled, as upstream's echo server reports it (its
/// echo's `tls`): in each request's extensions.
#[derive(Debug, Clone)]
pub struct TlsInfo(pub serde_json::Value);

/// [`serve`] over TLS with `tls` (HTTP/1.1, or HTTP/2 when ALPN chose it): each request
/// carries its connection's [`TlsInfo`].
pub async fn serve_https(
    l: tokio::net::TcpListener,
    handler: Handler,
    tls: Arc<rustls::ServerConfig>,
    budget: Option<Arc<Semaphore>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accepting = Accepting::new(l, budget);
    while let Some((stream, peer, held)) = accepting.next().await {
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _held = held;
            let hs = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
            let Ok(Ok(t)) = hs.await else { return };
            let info = TlsInfo(tls_info(t.get_ref().1));
            connection_auto(TokioIo::new(t), handler, peer, Some(info)).await;
        });
    }
}

/// A TLS server connection's state as upstream's echo server writes it.
fn tls_info(c: &rustls::ServerConnection) -> serde_json::Value {
    let mut v = serde_json::json!({
        "version": match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        },
        "serverName": c.server_name().unwrap_or_default(),
        "cipherSuite": c
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
    });
    if let Some(p) = c.alpn_protocol() {
        v["negotiatedProtocol"] = String::from_utf8_lossy(p).into_owned().into();
    }
    // The client's certificates, as PEM (upstream's echo server: `peerCertificates`).
    if let Some(certs) = c.peer_certificates().filter(|c| !c.is_empty()) {
        v["peerCertificates"] = certs
            .iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.to_vec())))
            .collect::<Vec<_>>()
            .into();
    }
    v
}

/// How every connection is served: the header read timeout on tokio's timer.
pub fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b
}

/// Serves one connection, HTTP/1 or HTTP/2 by its first bytes, with `handler` until it ends or
/// outlives [`CONNECTION_LIFETIME`].
async fn connection_auto<I>(io: I, handler: Handler, peer: SocketAddr, tls: Option<TlsInfo>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(t) = &tls {
            req.extensions_mut().insert(t.clone());
        }
        let r = handler(&req, peer);
        reply(r, Arc::new(None))
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, b.serve_connection(io, svc)).await;
}

/// Serves one connection with `handler` until it ends or outlives [`CONNECTION_LIFETIME`].
/// `socket`, another descriptor of the connection's socket, is what a [`Reply::Reset`]
/// resets (without one, the connection is closed).
pub async fn connection<I>(
    io: I,
    handler: Handler,
    peer: SocketAddr,
    builder: &hyper::server::conn::http1::Builder,
    socket: Option<OwnedFd>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let socket = Arc::new(socket);
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let r = match websocket_echo(&mut req) {
            Some(switched) => Reply::Now(switched),
            None => handler(&req, peer),
        };
        reply(r, socket.clone())
    });
    let _ = tokio::time::timeout(
        CONNECTION_LIFETIME,
        builder.serve_connection(io, svc).with_upgrades(),
    )
    .await;
}

/// A handler's reply as hyper's service gives it: at once, after its delay, or the connection
/// reset (SO_LINGER 0 on `socket`, another descriptor of it, when there is one).
async fn reply(r: Reply, socket: Arc<Option<OwnedFd>>) -> Result<Response<Full<Bytes>>, Reset> {
    match r {
        Reply::Now(r) => Ok(r),
        Reply::After(d, r) => {
            tokio::time::sleep(d).await;
            Ok(r)
        }
        Reply::Reset => {
            if let Some(s) = socket.as_ref() {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            Err(Reset)
        }
    }
}

/// Upstream's echo server's `/ws`: a WebSocket upgrade there is switched (101) and every text
/// and binary message sent back unchanged, until the client closes or
/// [`CONNECTION_LIFETIME`] passes. None for any other request.
fn websocket_echo(req: &mut Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    use futures_util::{SinkExt, StreamExt};
    let h = req.headers();
    let upgrade = h
        .get(hyper::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if req.uri().path() != "/ws" || !upgrade {
        return None;
    }
    let key = h.get(hyper::header::SEC_WEBSOCKET_KEY)?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let echo = async {
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(CONNECTION_LIFETIME, echo).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    hs.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        hs.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Some(r)
}
