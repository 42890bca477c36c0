//! The accept loop every HTTP server of the lab shares, hardened against abusive clients:
//! - a connection must send a request's headers within [`HEADER_READ_TIMEOUT`] (an idle
//!   keep-alive connection too), and lives at most [`CONNECTION_LIFETIME`];
//! - at most [`PER_LISTENER`] connections per listener, and for the test servers, one budget
//!   shared by all pods, so that no client can take the file descriptors of the process (the
//!   cluster DNS and the health checks run on a runtime of their own);
//! - an `accept` error (EMFILE, ENFILE, ENOBUFS …) backs off instead of spinning.

use std::convert::Infallible;
use std::net::SocketAddr;
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

/// Answers one request; the lab's handlers compute their answer at once.
pub type Handler =
    Arc<dyn Fn(&Request<Incoming>, SocketAddr) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `l` until the task is aborted. `budget`, if any, is shared with other listeners.
pub async fn serve(l: tokio::net::TcpListener, handler: Handler, budget: Option<Arc<Semaphore>>) {
    let mine = Arc::new(Semaphore::new(PER_LISTENER));
    loop {
        let Ok(local) = mine.clone().acquire_owned().await else {
            return;
        };
        let shared = match &budget {
            Some(b) => match b.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => return,
            },
            None => None,
        };
        let (stream, peer) = match l.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // An IPv4 client of a socket that serves both families is `::ffff:a.b.c.d`: shown as
        // the IPv4 address it is.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permits = (local, shared);
            let _ = connection(TokioIo::new(stream), handler, peer, &builder()).await;
        });
    }
}

/// How every connection is served: the header read timeout on tokio's timer.
pub fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b
}

/// Serves one connection with `handler` until it ends or outlives [`CONNECTION_LIFETIME`].
pub async fn connection<I>(
    io: I,
    handler: Handler,
    peer: SocketAddr,
    builder: &hyper::server::conn::http1::Builder,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let r = handler(&req, peer);
        async move { Ok::<_, Infallible>(r) }
    });
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, builder.serve_connection(io, svc)).await;
}
