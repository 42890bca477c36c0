//! HTTP/1 client connections that hold no buffer while they wait for their next request.
//!
//! hyper keeps a connection's read and write buffers (8 KiB each at first) and its state for
//! as long as the connection lives: about 17 KB for each idle keep-alive connection, where
//! nginx and HAProxy hold next to nothing. So a connection is served by turns: a turn is a
//! hyper HTTP/1 connection (`server::conn::http1`) over the client's socket, made when bytes
//! arrive, and ended when its requests are answered and the client has sent nothing more;
//! between turns the connection waits for its socket to become readable, holding no buffer
//! (the socket, the task and a few words).
//!
//! A turn ends without hyper closing anything: once a request without a body has been
//! answered and the answer flushed, and the client has sent nothing for [`GRACE`] (a busy
//! connection keeps its turn: making hyper's state anew for each request cost 5% of the
//! requests per second at 16 and 256 connections), a read that would wait is reported to
//! hyper as the end of the input, which hyper takes, at an idle point of a keep-alive
//! connection, for the client's close; `without_shutdown` then gives the socket back, with
//! the bytes hyper had read ahead (a pipelined request), which the next turn reads first. The
//! answer was written as on a keep-alive connection: nothing tells the client. A request with
//! a body keeps its turn going (hyper may still read its rest), until a request without one.
//!
//! Protocol switches (WebSocket) are done by hand here: hyper hands the socket back after
//! the 101, and the turn joins it to the backend's switched connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::*;

/// How long an answered connection keeps its turn for the client's next request.
pub(super) const GRACE: Duration = Duration::from_millis(100);

/// A client's socket that can be waited on without a buffer.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once there are bytes to read (or the end, or an error): nothing is read.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ClientIo for tokio::net::TcpStream {
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_mut();
        // Plaintext rustls has already decrypted (a record that held more than one request)
        // is there to read now.
        match tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {
                tcp.poll_read_ready(cx)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// What a turn's service tells its socket, and a protocol switch to finish by hand.
#[derive(Default)]
pub(super) struct Turn {
    /// The last request had no body: once it is answered, the turn may end.
    may_end: AtomicBool,
    /// The turn ended on a read reported as the end of the input (not the client's).
    ended_here: AtomicBool,
    /// The backend's side of a protocol switch answered 101 in this turn.
    switch: Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

/// Marks a request served over a connection served by turns: a protocol switch is finished
/// by hand ([`Turn::switched`]).
#[derive(Clone)]
pub(super) struct ByTurns(pub(super) Arc<Turn>);

impl Turn {
    /// A request of this turn: whether the turn may end once it is answered.
    pub(super) fn request(&self, has_body: bool) {
        self.may_end.store(!has_body, Ordering::Release);
    }

    /// The backend switched protocols: the client's side is joined to it when hyper gives
    /// the socket back.
    pub(super) fn switched(&self, backend: hyper::upgrade::OnUpgrade) {
        *lock(&self.switch) = Some(backend);
    }
}

/// The client's socket as one turn sees it: the bytes read ahead by the turn before first,
/// then the socket; a read that would wait after an answered request is the turn's end.
struct TurnIo<I> {
    io: I,
    ahead: Bytes,
    turn: Arc<Turn>,
    /// The end of the grace ([`GRACE`]), armed while the answered connection waits; the
    /// connection's one timer, handed from turn to turn.
    grace: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    /// Written to since the last completed flush.
    dirty: bool,
    /// A read that waits for the flush.
    reader: Option<Waker>,
}

impl<I: ClientIo> AsyncRead for TurnIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if !me.ahead.is_empty() {
            let n = me.ahead.len().min(buf.remaining());
            buf.put_slice(&me.ahead.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        match Pin::new(&mut me.io).poll_read(cx, buf) {
            Poll::Pending if me.turn.may_end.load(Ordering::Acquire) => {
                if !me.armed {
                    me.armed = true;
                    me.grace.as_mut().reset(tokio::time::Instant::now() + GRACE);
                }
                if std::future::Future::poll(me.grace.as_mut(), cx).is_pending() {
                    return Poll::Pending;
                }
                if me.dirty {
                    // The answer is not all out: the turn ends after the flush. (hyper goes
                    // idle after a flush when the answer ends last; when the request's
                    // body ends last it may not, but such a request keeps its turn.)
                    me.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                me.turn.ended_here.store(true, Ordering::Release);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                // The client sent more: the start of its next request, which may come in
                // pieces (the header timeout bounds it, not the grace); the next wait after
                // its answer has a grace of its own.
                me.armed = false;
                me.turn.may_end.store(false, Ordering::Release);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<I: ClientIo> AsyncWrite for TurnIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.dirty = true;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.dirty = true;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            self.dirty = false;
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Edge {
    /// Serves one HTTP/1 client connection by turns, until the client closes it, an error,
    /// or the idle timeout (the header timeout, as hyper's keep-alive connections have it).
    pub(super) async fn serve_h1<I: ClientIo>(
        self: &Arc<Self>,
        io: I,
        conn: Conn,
        slot: &Arc<ConnSlot>,
    ) {
        let turn = Arc::new(Turn::default());
        let mut io = io;
        let mut ahead = Bytes::new();
        let mut grace = Box::pin(tokio::time::sleep(GRACE));
        loop {
            if ahead.is_empty() {
                let idle = std::future::poll_fn(|cx| io.poll_idle(cx));
                let waiting = Waiting::new(&self.metrics.waiting);
                let waited = tokio::time::timeout(self.settings.header_read_timeout, idle).await;
                drop(waiting);
                if !matches!(waited, Ok(Ok(()))) {
                    return;
                }
            }
            turn.may_end.store(false, Ordering::Release);
            turn.ended_here.store(false, Ordering::Release);
            let turn_io = TurnIo {
                io,
                ahead,
                turn: turn.clone(),
                grace,
                armed: false,
                dirty: false,
                reader: None,
            };
            let edge = self.clone();
            let slot = slot.clone();
            let t = turn.clone();
            let conn = conn.clone();
            let svc = service_fn(move |mut req: Request<Incoming>| {
                t.request(!req.body().is_end_stream());
                // Only a request that asks to switch protocols needs it (an extension costs
                // each request a map).
                if wants_upgrade(&req) {
                    req.extensions_mut().insert(ByTurns(t.clone()));
                }
                edge.clone().serve(req, conn.clone(), slot.busy())
            });
            // Boxed: the connection's task holds only a pointer to it while it waits.
            let served = Box::pin(
                self.h1
                    .serve_connection(TokioIo::new(turn_io), svc)
                    .without_shutdown(),
            )
            .await;
            let Ok(parts) = served else { return };
            // Taken apart before the next wait, so that the task does not keep hyper's parts.
            let TurnIo {
                io: back,
                grace: timer,
                ..
            } = parts.io.into_inner();
            // What hyper read ahead, copied out: its buffer (8 KiB and more), empty or not,
            // would otherwise stay with the waiting connection.
            let read_buf = Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            drop(parts.service);
            let switch = lock(&turn.switch).take();
            if let Some(backend) = switch {
                let client = Rewind {
                    io: back,
                    ahead: read_buf,
                };
                Box::pin(splice(client, backend)).await;
                return;
            }
            if !turn.ended_here.load(Ordering::Acquire) {
                // hyper's own end (the client's, or `Connection: close`): the socket is shut
                // as hyper would have (over TLS, with its close_notify), then closed.
                let mut back = back;
                let _ = tokio::time::timeout(
                    self.settings.handshake_timeout,
                    tokio::io::AsyncWriteExt::shutdown(&mut back),
                )
                .await;
                return;
            }
            io = back;
            grace = timer;
            ahead = read_buf;
        }
    }
}

/// A connection counted as waiting, until dropped (the wait may be cut short by the
/// connection's close).
struct Waiting<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Waiting<'a> {
    fn new(g: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Waiting(g)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A socket with bytes read ahead of it, read first.
struct Rewind<I> {
    io: I,
    ahead: Bytes,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            let chunk = self.ahead.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The client's side of a protocol switch joined to the backend's, until either ends.
async fn splice<C: AsyncRead + AsyncWrite + Unpin>(
    mut client: C,
    backend: hyper::upgrade::OnUpgrade,
) {
    match backend.await {
        Ok(b) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(b)).await;
        }
        Err(e) => tracing::debug!(error = %e, "the backend's switched connection was lost"),
    }
}
