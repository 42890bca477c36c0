//! The bodies the proxy forwards: the client's request body, never dropped unread, and the
//! backend's answer, which ends once the client's upload has (within bounds).

use super::*;

/// The bodies the proxy sends and forwards: a peer's, or one of its own (no box, no dynamic
/// dispatch per frame).
pub type Body = Either<FromUpstream, Full<Bytes>>;

/// What goes to a backend: the client's body (which the response's end can cut off), or a
/// fixed one.
pub(super) type ToUpstream = Either<CutOff, Full<Bytes>>;

/// A request's body on its way to the backend, shared with the response's [`FromUpstream`]:
/// once the response has gone to the client whole, the rest of the request is not sent on
/// (the backend answered without it) but read and dropped ([`Linger`]).
pub struct CutOff {
    pub(super) body: Arc<Unread>,
}

/// The client's request body, as long as someone may still send it on; when the last holder
/// goes (the response sent whole, or a failed attempt's answer), what is left is read and
/// dropped ([`discard`]).
pub struct Unread(pub(super) std::sync::Mutex<Option<Incoming>>);

impl Unread {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing of the body is left to send on.
    pub(super) fn ended(&self) -> bool {
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
    pub(super) body: Incoming,
    pub(super) request: Option<Arc<Unread>>,
    /// The client connection is busy until this body ends.
    pub(super) busy: Option<Busy>,
    /// Whether the answer's end waits for the request's body ([`FromUpstream`]).
    pub(super) waits_for_request: bool,
    /// Sent without its length ([`FromUpstream::new`]).
    pub(super) no_length: bool,
    pub(super) linger: Option<Linger>,
}

/// The rest of a request's body, read and dropped within bounds: before a success's end is
/// sent (with [`LINGER_IDLE`] between bytes), or behind any other answer ([`discard`]).
pub(super) struct Linger {
    rest: Incoming,
    read: usize,
    until: tokio::time::Instant,
    /// Whether the wait between bytes is bounded too ([`LINGER_IDLE`]).
    idle_bound: bool,
    /// The next deadline: the next byte's, or the whole wait's.
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Linger {
    pub(super) fn new(rest: Incoming, idle_bound: bool) -> Linger {
        let until = tokio::time::Instant::now() + DISCARD_FOR;
        Linger {
            rest,
            read: 0,
            until,
            idle_bound,
            deadline: Box::pin(tokio::time::sleep_until(if idle_bound {
                Linger::next(until)
            } else {
                until
            })),
        }
    }

    /// When the next byte must have come.
    fn next(until: tokio::time::Instant) -> tokio::time::Instant {
        (tokio::time::Instant::now() + LINGER_IDLE).min(until)
    }

    /// Reads and drops until the body ends (Ready), or a bound is passed (Ready: the rest is
    /// dropped with it, and the stream reset with NO_ERROR once the answer's end is sent).
    pub(super) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::task::Poll;
        loop {
            match std::pin::Pin::new(&mut self.rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    self.read += f.data_ref().map_or(0, Bytes::len);
                    if self.read >= DISCARD_BYTES {
                        return Poll::Ready(());
                    }
                    if self.idle_bound {
                        let next = Linger::next(self.until);
                        self.deadline.as_mut().reset(next);
                    }
                }
                // The client's body ended (or its stream did): nothing to wait for.
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return std::future::Future::poll(self.deadline.as_mut(), cx),
            }
        }
    }
}

impl FromUpstream {
    /// The body of the answer `head` to a client speaking `client`. Over HTTP/2, an answer
    /// whose end waits for the request's rest goes without its `Content-Length`: a client that
    /// has counted the bytes it was told of stops reading (curl 7.88), and then never reads the
    /// flow-control credit it needs to send the rest (HTTP/2 frames a message by END_STREAM;
    /// the length is advisory, RFC 9113 8.1.1).
    pub(super) fn new(
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
    pub(super) fn request_ended(&self) -> bool {
        !self.waits_for_request || self.request.as_ref().is_none_or(|r| r.ended())
    }
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
pub(super) fn discard(rest: Incoming) {
    if rest.is_end_stream() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let mut linger = Linger::new(rest, false);
        rt.spawn(std::future::poll_fn(move |cx| linger.poll(cx)));
    }
}

/// How much of a request's body, unread by a backend that has answered, is read and dropped
/// for the client's upload to end cleanly, and for how long at most.
pub(super) const DISCARD_BYTES: usize = 256 << 20;
pub(super) const DISCARD_FOR: Duration = Duration::from_secs(30);
/// How long a success's end waits for the next byte of the request's rest (nginx's
/// `lingering_timeout`).
pub(super) const LINGER_IDLE: Duration = Duration::from_secs(5);

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
            me.linger = Some(Linger::new(rest, true));
        }
        let linger = me.linger.as_mut().expect("lingering");
        std::task::ready!(linger.poll(cx));
        me.linger = None;
        Poll::Ready(None)
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
        self.body.ended()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body
            .lock()
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}
