//! TLS streams (TLSRoutes): a connection is routed by the SNI name of its ClientHello, read
//! without answering it; then either its bytes go to the backend as they came
//! (`Passthrough`: the backend ends TLS) or the proxy ends TLS with the listener's
//! certificate and sends the plain bytes (`Terminate`).
//!
//! - The ClientHello may come in many packets: bytes are read until rustls's [`Acceptor`]
//!   has a whole one, at most [`MAX_HELLO`] bytes and within the handshake timeout.
//! - A connection that cannot be routed (no SNI name, no route for it, a backend reference
//!   that cannot be used, no ready endpoint, an endpoint that does not answer) is closed
//!   before any byte is answered: the client's handshake ends with EOF. Each outcome is
//!   counted in `podnet_ingress_streams_total{reason}`.
//! - Endpoints are the pods' addresses, round robin, as for HTTP.

use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::*;
use crate::edge::{Serves, StreamListener};

/// The most a ClientHello may take before it is refused (TLS's record limit is 16 KiB per
/// record; a hello of several records with post-quantum key shares stays well below this).
pub const MAX_HELLO: usize = 64 * 1024;

/// A ClientHello read whole: the bytes as they came, and the SNI name if it has one.
struct Hello {
    bytes: Vec<u8>,
    sni: Option<String>,
}

/// Why a ClientHello could not be read.
enum HelloError {
    /// The client closed or reset first.
    Closed,
    /// Not a TLS ClientHello, or too long.
    Bad,
}

/// Reads a ClientHello whole without answering it.
async fn read_hello(s: &mut TcpStream) -> Result<Hello, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut bytes: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::io::AsyncReadExt::read(s, &mut chunk)
            .await
            .map_err(|_| HelloError::Closed)?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() > MAX_HELLO {
            return Err(HelloError::Bad);
        }
        let mut fed = &chunk[..n];
        while !fed.is_empty() {
            acceptor.read_tls(&mut fed).map_err(|_| HelloError::Bad)?;
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(String::from);
                return Ok(Hello { bytes, sni });
            }
            Err(_) => return Err(HelloError::Bad),
        }
    }
}

/// A stream that gives `head` first, then the stream's own bytes: the ClientHello read to
/// route a connection, handed to the TLS acceptor that ends it.
struct Replayed {
    head: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Replayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Edge {
    /// Serves the TLS listeners of `port` (TLSRoutes) on `l` until the task is dropped.
    pub async fn serve_tls(self: Arc<Self>, l: TcpListener, port: u16) {
        loop {
            let (s, _peer, _local) = accept(&l).await;
            let Some(slot) = self.admit() else {
                continue;
            };
            let edge = self.clone();
            tokio::spawn(async move {
                // A stream is in flight for its whole life: never closed as idle.
                let _busy = slot.busy();
                let outcome = edge.stream(s, port).await;
                edge.metrics.stream(outcome);
            });
        }
    }

    /// One TLS stream, whole; its outcome.
    async fn stream(&self, mut s: TcpStream, port: u16) -> &'static str {
        let hello = tokio::time::timeout(self.settings.handshake_timeout, read_hello(&mut s)).await;
        let hello = match hello {
            Ok(Ok(h)) => h,
            Ok(Err(HelloError::Closed)) => return "closed",
            Ok(Err(HelloError::Bad)) => return "bad_hello",
            Err(_) => return "hello_timeout",
        };
        let Some(sni) = hello.sni.as_deref() else {
            return "no_sni";
        };
        let sni = crate::routes::normalize_host(sni);
        let live = self.live.load_full();
        let Some(listener) = live
            .config
            .ports
            .get(&port)
            .filter(|p| p.serves() == Serves::Tls)
            .and_then(|p| p.stream_listener(&sni))
        else {
            return "no_route";
        };
        let Some((addr, backend_tls)) = stream_endpoint(&live, listener, &sni) else {
            return "no_backend";
        };
        let terminate = listener.terminate;
        drop(live);
        let up = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr));
        let Ok(Ok(mut up)) = up.await else {
            return "connect_failed";
        };
        let _ = up.set_nodelay(true);
        if terminate {
            let acceptor = tokio_rustls::TlsAcceptor::from(self.tls_stream.clone());
            let replayed = Replayed {
                head: hello.bytes,
                at: 0,
                inner: s,
            };
            let hs =
                tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(replayed));
            let Ok(Ok(mut tls)) = hs.await else {
                return "handshake_failed";
            };
            // TLS again to the backend when a BackendTLSPolicy asks.
            if let Some(to) = backend_tls {
                let (connector, name) = to.stream_connector();
                let hs = tokio::time::timeout(
                    self.settings.handshake_timeout,
                    connector.connect(name, up),
                );
                let Ok(Ok(mut up)) = hs.await else {
                    return "backend_handshake_failed";
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                return "terminate";
            }
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            "terminate"
        } else {
            if up.write_all(&hello.bytes).await.is_err() {
                return "connect_failed";
            }
            let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            "passthrough"
        }
    }
}

/// The endpoint a stream for `sni` goes to: its route's backend by weight, that backend's
/// endpoints round robin (None: no route, a reference that cannot be used, no endpoint); with
/// the TLS its BackendTLSPolicy asks (used when the proxy ends the client's TLS).
fn stream_endpoint(
    live: &Live,
    listener: &StreamListener,
    sni: &str,
) -> Option<(SocketAddr, Option<Arc<super::backend_tls::TlsTo>>)> {
    let route = listener.route(sni)?;
    let total: u64 = route.backends.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut x = fastrand::u64(..total);
    let mut chosen = None;
    for (b, w) in &route.backends {
        let w = u64::from(*w);
        if x < w {
            chosen = Some(b);
            break;
        }
        x -= w;
    }
    let backend = chosen?.as_ref()?;
    match live.targets.get(backend)? {
        Target::Ready { endpoints, next } if !endpoints.is_empty() => {
            let e = &endpoints[next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
            Some((e.addr, e.tls.clone()))
        }
        _ => None,
    }
}
