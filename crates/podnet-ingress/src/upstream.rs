//! Connections to the backends: a failed write stops the writing, not the reading.
//!
//! A backend may answer before it has read the whole request (an upload it refuses, or one it
//! does not need) and close its connection; with the request's body still unread in its socket,
//! its kernel sends a reset, and the proxy's next write fails (`ECONNRESET`, then `EPIPE`).
//! hyper's client gives up the whole connection at a failed write, answer or not, so the proxy
//! answered 502 where the backend had answered (issue 21, item 5). nginx reads the answer after
//! a failed write; so does this: the connection's writes stay pending once one has failed, and
//! the reading goes on, to the backend's answer (still readable after the reset: Linux keeps
//! what it received) or to the read error that says there is none.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// [`HttpConnector`], its connections wrapped in [`Io`].
#[derive(Debug, Clone)]
pub struct Connector(pub HttpConnector);

type Connecting = Pin<Box<dyn Future<Output = Result<Io, ConnectError>> + Send>>;
type ConnectError = <HttpConnector as tower_service::Service<Uri>>::Error;

impl tower_service::Service<Uri> for Connector {
    type Response = Io;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            connecting.await.map(|io| Io {
                inner: io,
                write_failed: None,
            })
        })
    }
}

/// A backend connection whose writes, once one has failed for the peer's reset or close,
/// stay pending (never succeed: nothing more is sent), while its reads go on.
#[derive(Debug)]
pub struct Io {
    inner: TokioIo<TcpStream>,
    write_failed: Option<io::ErrorKind>,
}

impl Io {
    /// Whether the peer is gone for writing (its reset or close), so that its answer, if any,
    /// is still to be read.
    fn peer_stopped_reading(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        )
    }

    /// A write's outcome: the first failure for the peer's reset is kept and the write left
    /// pending; the read side (woken by the same reset) ends the exchange.
    fn written<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(Err(e)) if Self::peer_stopped_reading(&e) => {
                tracing::debug!(error = %e, "the backend stopped reading; reading its answer");
                self.write_failed = Some(e.kind());
                Poll::Pending
            }
            other => other,
        }
    }
}

impl Read for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed.is_some() {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.write_failed.is_some() {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed.is_some() {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for Io {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
