//! The backends' keep-alive connections: hyper's HTTP/1 client (`client::conn::http1`) in a
//! pool of the proxy's own, one per endpoint.
//!
//! A backend connection has no task of its own: the request that uses it drives it (its
//! head in [`send`], its answer's body in [`super::FromUpstream`], which gives it back to
//! the pool once the answer and the request are whole). hyper-util's pooled client, used
//! before, cost each request the pool's lock and a channel to the connection's own task and
//! back: two task wake-ups per request that nginx does not have. What is left per request is
//! taking the connection from its endpoint's pool and putting it back (an uncontended lock on
//! the endpoint's idle list, held for a push or a pop), and hyper's own oneshot between the
//! request and its answer, inside the one task.
//!
//! An idle connection is driven by no one: a backend that closes it is seen when it is next
//! taken (its connection ends when polled, and the next one is taken), and by the sweep
//! ([`Pool::sweep`]) that closes those the backend has closed and those idle past
//! [`IDLE_TIMEOUT`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http1 as client;

use super::*;
use crate::upstream::Io;

/// How long a backend connection may wait in its pool (hyper-util's pool's, as used before:
/// 60 s; nginx's upstream `keepalive_timeout`: 60 s).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint; more are closed when given back.
pub(super) const MAX_IDLE: usize = 1024;
/// How often the pools are swept.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// One backend connection: hyper's handle to send on, and the connection's state, driven by
/// whoever holds it.
pub(super) struct BackendConn {
    send: client::SendRequest<ToUpstream>,
    conn: Pin<Box<client::Connection<Io, ToUpstream>>>,
    /// The connection has ended (its future returned): it is never polled again.
    ended: bool,
}

impl BackendConn {
    /// Drives the connection (reads, writes, the request's body); true once it has ended.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            if let Poll::Ready(r) = self.conn.as_mut().poll(cx) {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "a backend connection ended");
                }
                self.ended = true;
            }
        }
        self.ended
    }

    /// Whether the connection can take a request now (driving it once to know).
    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        !self.drive(cx) && matches!(self.send.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

/// An endpoint's idle connections, the most recently used last.
#[derive(Default)]
pub(super) struct Pool {
    idle: std::sync::Mutex<Vec<(BackendConn, Instant)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &lock(&self.idle).len())
            .finish()
    }
}

impl Pool {
    /// The most recently used idle connection that can take a request; those that cannot
    /// (the backend closed them) are closed on the way.
    fn take(&self, cx: &mut Context<'_>) -> Option<BackendConn> {
        loop {
            let (mut c, since) = lock(&self.idle).pop()?;
            if since.elapsed() < IDLE_TIMEOUT && c.ready_now(cx) {
                return Some(c);
            }
        }
    }

    /// Gives a connection back, when it can serve again and there is room.
    pub(super) fn put(&self, c: BackendConn) {
        if c.ended || c.send.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push((c, Instant::now()));
        }
    }

    /// Closes the idle connections that the backend has closed or that have waited past
    /// [`IDLE_TIMEOUT`].
    pub(super) fn sweep(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut idle = lock(&self.idle);
        idle.retain_mut(|(c, since)| since.elapsed() < IDLE_TIMEOUT && !c.drive(&mut cx));
    }

    /// Idle connections now.
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// A backend connection lent to a request until its answer is whole: driven by the answer's
/// body, given back to its pool when the answer and the request are whole, closed otherwise.
pub(super) struct Lease {
    pub(super) conn: BackendConn,
    pub(super) pool: Arc<Pool>,
}

/// Why a request found no answer from a backend.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connecting: timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

impl SendError {
    pub(super) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_) | SendError::ConnectTimeout(_))
    }

    pub(super) fn timed_out(&self) -> bool {
        match self {
            SendError::ConnectTimeout(_) => true,
            SendError::Connect(e) => e.kind() == std::io::ErrorKind::TimedOut,
            SendError::Http(e) => is_timeout(e),
        }
    }
}

/// A new TCP connection to `addr`, without Nagle's delay.
async fn stream(addr: SocketAddr, timeout: Duration) -> Result<tokio::net::TcpStream, SendError> {
    let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::ConnectTimeout(timeout))?
        .map_err(SendError::Connect)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A new connection to `addr`.
pub(super) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<BackendConn, SendError> {
    let (send, conn) = client::Builder::new()
        .handshake(Io::new(stream(addr, timeout).await?))
        .await
        .map_err(SendError::Http)?;
    Ok(BackendConn {
        send,
        conn: Box::pin(conn),
        ended: false,
    })
}

/// A connection for one request: an idle one of `pool`, or a new one (`fresh`: always new).
pub(super) async fn checkout(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    fresh: bool,
    timeout: Duration,
) -> Result<BackendConn, SendError> {
    if !fresh {
        if let Some(c) = std::future::poll_fn(|cx| Poll::Ready(pool.take(cx))).await {
            return Ok(c);
        }
    }
    let mut c = connect(addr, timeout).await?;
    // A new connection is ready once driven (hyper's handshake does no I/O for HTTP/1).
    std::future::poll_fn(|cx| {
        if c.drive(cx) {
            return Poll::Ready(Err(()));
        }
        c.send.poll_ready(cx).map_err(|_| ())
    })
    .await
    .map_err(|()| {
        SendError::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the new connection ended before its first request",
        ))
    })?;
    Ok(c)
}

/// Sends `req` over `c` and drives the connection until the answer's head has come (the
/// caller bounds the wait).
pub(super) async fn send(
    c: &mut BackendConn,
    req: Request<ToUpstream>,
) -> Result<Response<Incoming>, SendError> {
    let mut answer = std::pin::pin!(c.send.send_request(req));
    std::future::poll_fn(|cx| {
        // The connection first: it writes the request and reads the answer's head, which
        // the oneshot behind `answer` then holds.
        c.drive(cx);
        answer.as_mut().poll(cx)
    })
    .await
    .map_err(SendError::Http)
}

/// Sends a request that asks to switch protocols over a new connection of its own, driven by
/// a task of its own that hands the connection over when the backend switches (hyper's
/// upgrades); it never goes back to a pool.
pub(super) async fn send_upgrade(
    addr: SocketAddr,
    timeout: Duration,
    req: Request<ToUpstream>,
) -> Result<Response<Incoming>, SendError> {
    let (mut send, conn) = client::Builder::new()
        .handshake(Io::new(stream(addr, timeout).await?))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a backend connection asked to switch protocols ended");
        }
    });
    send.send_request(req).await.map_err(SendError::Http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sweep_closes_the_idle_connections_the_backend_closed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = l.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let mut open = Vec::new();
            for _ in 0..2 {
                open.push(l.accept().await.unwrap().0);
            }
            open
        });
        let pool = Arc::new(Pool::default());
        pool.put(connect(at, Duration::from_secs(1)).await.unwrap());
        pool.put(connect(at, Duration::from_secs(1)).await.unwrap());
        let mut open = accepted.await.unwrap();
        pool.sweep();
        assert_eq!(pool.idle(), 2, "both open");
        // The backend closes one: the sweep closes it too, and keeps the other.
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!(pool.idle(), 1, "the closed one swept");
        drop(open);
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!(pool.idle(), 0);
    }
}
