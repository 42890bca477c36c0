//! A request's way to a backend, phase by phase: the listener and the route, a redirect or
//! a backend (weighted), its endpoints, the request to send, the attempts, the answer.

use super::*;

/// What a request is sent to: a backend and, when a route chose it, the route and the
/// weighted entry (their filters).
/// An answer of the proxy's own, given at the phase that decided it (boxed: an answer is
/// large, and the way on is the common case).
type Own = Box<Response<Body>>;

/// The client's side of a protocol switch: hyper's upgrade, or a connection served by turns
/// ([`h1`]), which joins the switched connections itself.
pub(super) enum ClientSwitch {
    Hyper(hyper::upgrade::OnUpgrade),
    ByTurns(Arc<h1::Turn>),
}

type Chosen<'a> = (&'a Backend, Option<(&'a Route, &'a WeightedBackend)>);

/// The head of the request to send and what to change in the answer's.
struct UpstreamHead<'a> {
    headers: HeaderMap,
    path_and_query: Option<hyper::http::uri::PathAndQuery>,
    response_edits: Option<&'a crate::routes::HeaderEdits>,
    /// The route's CORS headers for the request's origin.
    cors: Vec<(&'static str, String)>,
}

/// How the request is sent: the endpoints from `first` on, `attempts` of them, each within
/// `per_attempt`; an answer with one of `retry_codes` tried again after `backoff`.
struct Attempts<'a> {
    endpoints: &'a [Endpoint],
    first: usize,
    attempts: usize,
    per_attempt: Option<Duration>,
    retry_codes: &'a [u16],
    backoff: Duration,
    /// The route asked for retries (an HTTPRoute's `retry`): when every attempt failed to
    /// get an answer, the answer is 503, as the Gateway API's retry tests expect (Envoy's
    /// convention), not the 502 of a single failed attempt.
    route_retries: bool,
}

/// How many mirrored copies may be under way at once (each holds a connection to a mirror).
pub(super) const MIRRORS_UNDER_WAY: usize = 256;

/// How long a mirrored copy may take, its answer read whole.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries must not multiply a backend's load when it fails for everyone (Envoy's retry
/// budget): at most [`RetryBudget::MIN`] retries under way at once, or a fifth of the
/// requests under way if that is more. A retry over the budget is not made: the answer
/// is the last one.
#[derive(Debug, Default)]
pub(super) struct RetryBudget {
    requests: AtomicUsize,
    retrying: AtomicUsize,
}

impl RetryBudget {
    pub(super) const MIN: usize = 3;

    /// A request under way (until the guard goes).
    fn request(&self) -> BudgetGuard<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        BudgetGuard {
            counter: &self.requests,
        }
    }

    /// A retry, if the budget allows one now (until the guard goes).
    fn retry(&self) -> Option<BudgetGuard<'_>> {
        let limit = (self.requests.load(Ordering::Relaxed) / 5).max(Self::MIN);
        let mut now = self.retrying.load(Ordering::Relaxed);
        loop {
            if now >= limit {
                return None;
            }
            match self.retrying.compare_exchange_weak(
                now,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(BudgetGuard {
                        counter: &self.retrying,
                    })
                }
                Err(n) => now = n,
            }
        }
    }
}

pub(super) struct BudgetGuard<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Edge {
    /// Where a request goes, and its answer: phase by phase, each of which may answer itself.
    pub(super) async fn route(
        &self,
        mut req: Request<Arc<Unread>>,
        host: &str,
        conn: &Conn,
        id: &HeaderValue,
    ) -> (Response<Body>, Option<SocketAddr>) {
        let live = self.live.load_full();
        if let Some(r) = https_redirect(&live, &req, host, conn) {
            return (r, None);
        }
        let pq_owned = req.uri().path_and_query().cloned();
        let pq_in = pq_owned.as_ref().map(|p| p.as_str()).unwrap_or("/");
        let (backend, edits) = match self.choose(&live, &req, host, conn, pq_in) {
            Ok(chosen) => chosen,
            Err(r) => return (*r, None),
        };
        let (timeouts, retry) = match edits.map(|(r, _)| &r.action) {
            Some(Action::Forward {
                timeouts, retry, ..
            }) => (*timeouts, retry.as_ref()),
            _ => (Timeouts::default(), None),
        };
        let (endpoints, first) = match self.endpoints_of(&live, backend) {
            Ok(e) => e,
            Err(r) => return (*r, None),
        };
        let upgrade = wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| match req.extensions_mut().remove::<h1::ByTurns>() {
            Some(t) => ClientSwitch::ByTurns(t.0),
            None => ClientSwitch::Hyper(hyper::upgrade::on(&mut req)),
        });
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
        // A route's retries (any method: the route asks for them) are made only for a
        // request with nothing left of its body to send: it can be sent again whole.
        let resendable = body.ended() && !upgrade;
        let attempts = match retry {
            Some(rt) if resendable => 1 + rt.attempts as usize,
            Some(_) => 1,
            None if idempotent && resendable => 2,
            None => 1,
        };
        // Each attempt: the route's bound, none when the route's request bound covers it
        // (or `0s` asks for none), else the proxy's own.
        let per_attempt = match (timeouts.backend_request, timeouts.request) {
            (Some(d), _) if d.is_zero() => None,
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(self.settings.read_timeout),
        };
        let cors = match edits.map(|(r, _)| &r.action) {
            Some(Action::Forward {
                cors: Some(cors), ..
            }) => parts
                .headers
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .map(|o| cors.simple(o))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let fwd = forwarded(parts.headers, host, conn, id, upgrade);
        let mut head = upstream_head(fwd, parts.uri.path_and_query().cloned(), edits, pq_in);
        head.cors = cors;
        if let Some(Action::Forward { mirrors, .. }) = edits.map(|(r, _)| &r.action) {
            if !mirrors.is_empty() && !upgrade {
                self.mirror(&live, mirrors, &parts.method, &head, body.ended());
            }
        }
        let plan = Attempts {
            endpoints,
            first,
            attempts,
            per_attempt,
            retry_codes: retry.map_or(&[], |r| r.codes.as_slice()),
            backoff: retry.map_or(Duration::ZERO, |r| r.backoff),
            route_retries: retry.is_some() && attempts > 1,
        };
        let _request = self.retry_budget.request();
        let sent = self.send(
            &plan,
            &parts.method,
            parts.version,
            head,
            body,
            client_upgrade,
        );
        let Some(limit) = timeouts.request else {
            return sent.await;
        };
        match tokio::time::timeout(limit, sent).await {
            Ok(answer) => answer,
            Err(_) => {
                self.metrics.error("timeout");
                (
                    plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("the route's request timeout ({limit:?}) passed"),
                    ),
                    None,
                )
            }
        }
    }

    /// Copies of the request (as it goes to the backend: its filters applied) for the
    /// route's mirrors, each sent on a task of its own: the client's request neither waits
    /// for them nor sees their answers (dropped), and a mirror that hangs or resets harms
    /// only its copy (bounded by [`MIRROR_TIMEOUT`]). At most [`MIRRORS_UNDER_WAY`] copies
    /// are under way; more are not sent. A request with a body to stream is not copied (the
    /// body goes to the backend once).
    fn mirror(
        &self,
        live: &Live,
        mirrors: &[crate::routes::Mirror],
        method: &Method,
        head: &UpstreamHead<'_>,
        bodiless: bool,
    ) {
        for m in mirrors {
            if m.per_million < 1_000_000 && fastrand::u32(..1_000_000) >= m.per_million {
                continue;
            }
            let Some(backend) = &m.backend else { continue };
            if !bodiless {
                self.metrics.mirror("has_body");
                continue;
            }
            let Ok(permit) = self.mirrors.clone().try_acquire_owned() else {
                self.metrics.mirror("over_budget");
                continue;
            };
            let target = match live.targets.get(backend) {
                Some(Target::Ready { endpoints, next }) if !endpoints.is_empty() => {
                    &endpoints[next.fetch_add(1, Ordering::Relaxed) % endpoints.len()]
                }
                _ => {
                    self.metrics.mirror("no_endpoints");
                    continue;
                }
            };
            let empty = Either::Right(Full::new(Bytes::new()));
            let Some(mut up) = request_to(target, method, head.path_and_query.clone(), empty)
            else {
                continue;
            };
            *up.headers_mut() = head.headers.clone();
            let pool = target.pool.clone();
            let metrics = self.metrics.mirrors.clone();
            let ep = target.addr;
            tokio::spawn(async move {
                let _permit = permit;
                let outcome = match tokio::time::timeout(MIRROR_TIMEOUT, pool.request(up)).await {
                    Ok(Ok(resp)) => {
                        // Read to its end, so that the connection goes back to the pool.
                        let _ = tokio::time::timeout(
                            MIRROR_TIMEOUT,
                            http_body_util::BodyExt::collect(resp.into_body()),
                        )
                        .await;
                        "sent"
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(mirror = %ep, error = %cause(&e), "a mirrored copy failed");
                        "failed"
                    }
                    Err(_) => "failed",
                };
                metrics
                    .get_or_create(&crate::metrics::ReasonLabels {
                        reason: outcome.into(),
                    })
                    .inc();
            });
        }
    }

    /// The listener of the connection's port, its route for the request, and the backend: a
    /// redirect or a missing route or backend is answered here.
    fn choose<'a, B>(
        &self,
        live: &'a Live,
        req: &Request<B>,
        host: &str,
        conn: &Conn,
        pq_in: &str,
    ) -> Result<Chosen<'a>, Own> {
        // The host normalized once, for the listener and the routes.
        let name = crate::routes::normalize_host(host);
        let table = if live.config.ports.is_empty() {
            Some(&live.config.table)
        } else {
            let port = live.config.ports.get(&conn.local.port());
            let listener = port.and_then(|p| p.listener_normalized(&name));
            // An HTTPS request whose host another listener of the port serves than the one
            // its connection's SNI name chose (a client reusing a connection for another
            // name): misdirected, 421, so that it opens one for that name.
            if let (Some(p), Some(sni)) = (port, conn.sni.as_deref()) {
                let by_sni = p.listener_normalized(sni);
                let same = match (by_sni, listener) {
                    (Some(a), Some(b)) => std::ptr::eq(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if p.tls && !same {
                    self.metrics.error("misdirected");
                    return Err(Box::new(plain(
                        StatusCode::MISDIRECTED_REQUEST,
                        &format!("{name} is not served on a connection made for {sni}"),
                    )));
                }
            }
            listener.map(|l| &l.table)
        };
        let served = table
            .and_then(|t| t.serve_normalized(&name, pq_in, req.method().as_str(), req.headers()));
        match served {
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
                    Err(Box::new(resp))
                }
                // A CORS preflight is the gateway's to answer.
                Action::Forward {
                    cors: Some(cors),
                    response_headers,
                    ..
                } if is_preflight(req) => {
                    let h = req.headers();
                    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let mut resp = plain(StatusCode::NO_CONTENT, "");
                    *resp.body_mut() = empty();
                    resp.headers_mut().remove(header::CONTENT_TYPE);
                    let allowed = cors.preflight(
                        text("origin"),
                        text("access-control-request-method"),
                        text("access-control-request-headers"),
                    );
                    for (n, v) in allowed.into_iter().flatten() {
                        if let Ok(v) = HeaderValue::from_str(&v) {
                            resp.headers_mut().append(n, v);
                        }
                    }
                    response_headers.apply(resp.headers_mut());
                    Err(Box::new(resp))
                }
                Action::Forward {
                    backends,
                    response_headers,
                    ..
                } => match pick(backends) {
                    // A backendRef's own redirect.
                    Some(WeightedBackend {
                        redirect: Some(redirect),
                        ..
                    }) => {
                        let location = redirect_location(redirect, &r.path, conn, host, pq_in);
                        let status =
                            StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
                        let mut resp = plain(status, "redirected");
                        if let Ok(v) = HeaderValue::from_str(&location) {
                            resp.headers_mut().insert(header::LOCATION, v);
                        }
                        response_headers.apply(resp.headers_mut());
                        Err(Box::new(resp))
                    }
                    Some(wb) => match &wb.backend {
                        Some(b) => Ok((b, Some((r, wb)))),
                        None => {
                            self.metrics.error("invalid_backend");
                            Err(Box::new(plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the route's backend reference cannot be used",
                            )))
                        }
                    },
                    None => {
                        self.metrics.error("no_backend");
                        Err(Box::new(plain(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the route has no backend",
                        )))
                    }
                },
            },
            Some(Served::Default(b, _)) => Ok((b, None)),
            None => {
                self.metrics.error("no_route");
                Err(Box::new(plain(
                    StatusCode::NOT_FOUND,
                    &format!("no route for {name} {}", req.uri().path()),
                )))
            }
        }
    }

    /// The backend's ready endpoints and where the round robin starts; 503 without any.
    fn endpoints_of<'a>(
        &self,
        live: &'a Live,
        backend: &Backend,
    ) -> Result<(&'a [Endpoint], usize), Own> {
        match live.targets.get(backend) {
            Some(Target::Ready { endpoints, next }) if !endpoints.is_empty() => {
                Ok((endpoints, next.fetch_add(1, Ordering::Relaxed)))
            }
            Some(Target::Ready { .. }) => {
                self.metrics.error("no_endpoints");
                let why = format!("backend {} has no endpoint", describe(backend));
                Err(Box::new(plain(StatusCode::SERVICE_UNAVAILABLE, &why)))
            }
            Some(Target::Unavailable(why)) => {
                self.metrics.error("no_endpoints");
                Err(Box::new(plain(StatusCode::SERVICE_UNAVAILABLE, why)))
            }
            None => {
                self.metrics.error("no_endpoints");
                let why = format!("backend {} is not resolved", describe(backend));
                Err(Box::new(plain(StatusCode::SERVICE_UNAVAILABLE, &why)))
            }
        }
    }

    /// The attempts: each to the next endpoint, the first over the pool, a retry over a new
    /// connection; a timeout or a failure answered 504 or 502, the backend's answer forwarded.
    async fn send(
        &self,
        plan: &Attempts<'_>,
        method: &Method,
        client: Version,
        head: UpstreamHead<'_>,
        request_body: Arc<Unread>,
        client_upgrade: Option<ClientSwitch>,
    ) -> (Response<Body>, Option<SocketAddr>) {
        let UpstreamHead {
            headers,
            path_and_query: pq,
            response_edits,
            cors,
        } = head;
        let mut headers = Some(headers);
        let mut body = Some(Either::Left(CutOff {
            body: request_body.clone(),
        }));
        let attempts = plan.attempts;
        for attempt in 0..attempts {
            let target = &plan.endpoints[(plan.first + attempt) % plan.endpoints.len()];
            let ep = target.addr;
            let sent = body
                .take()
                .unwrap_or_else(|| Either::Right(Full::new(Bytes::new())));
            let Some(mut up) = request_to(target, method, pq.clone(), sent) else {
                return (
                    plain(StatusCode::BAD_REQUEST, "a path that cannot be forwarded"),
                    None,
                );
            };
            // The last attempt takes the headers; an earlier one, a copy.
            *up.headers_mut() = if attempt + 1 < attempts {
                headers.clone().unwrap_or_default()
            } else {
                headers.take().unwrap_or_default()
            };
            // A retry goes over a new connection (of the same protocol and TLS): the pool's
            // others may be as stale.
            let pool = if attempt == 0 {
                target.pool.clone()
            } else {
                self.new_pool(target.h2c, target.tls.as_deref())
            };
            let sent = pool.request(up);
            let sent = match plan.per_attempt {
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| limit),
                None => Ok(sent.await),
            };
            let more = attempt + 1 < attempts;
            match sent {
                Err(limit) => {
                    // A route that asks for retries has an attempt that outlived its
                    // `backendRequest` bound made again (HTTPRouteRetryBackendTimeout); the
                    // request's own bound still ends them all.
                    if more && plan.route_retries {
                        if let Some(_retrying) = self.retry_budget.retry() {
                            tracing::warn!(upstream = %ep, timeout = ?limit, "the backend did not answer in time: retrying");
                            self.metrics.retries.inc();
                            tokio::time::sleep(plan.backoff).await;
                            continue;
                        }
                    }
                    self.metrics.error("timeout");
                    tracing::warn!(upstream = %ep, timeout = ?limit, "the backend did not answer in time");
                    return (
                        plain(
                            StatusCode::GATEWAY_TIMEOUT,
                            &format!("{ep} did not answer within {limit:?}"),
                        ),
                        Some(ep),
                    );
                }
                Ok(Err(e)) if more && (e.is_connect() || !is_timeout(&e)) => {
                    let Some(_retrying) = self.retry_budget.retry() else {
                        return (self.failed(ep, &e), Some(ep));
                    };
                    tracing::warn!(upstream = %ep, error = %cause(&e), "retrying on the next endpoint");
                    self.metrics.retries.inc();
                    tokio::time::sleep(plan.backoff).await;
                    continue;
                }
                Ok(Err(e)) if plan.route_retries && attempt > 0 => {
                    let mut r = self.failed(ep, &e);
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    tracing::warn!(upstream = %ep, attempts = attempt + 1, "every attempt failed");
                    return (r, Some(ep));
                }
                Ok(Err(e)) => return (self.failed(ep, &e), Some(ep)),
                Ok(Ok(resp)) => {
                    // One of the route's retry codes, attempts left and the budget allowing:
                    // sent again; else this is the answer.
                    let again = more && plan.retry_codes.contains(&resp.status().as_u16());
                    if let Some(_retrying) = again.then(|| self.retry_budget.retry()).flatten() {
                        tracing::debug!(upstream = %ep, status = %resp.status(), "retrying on the next endpoint");
                        self.metrics.retries.inc();
                        drop(resp);
                        tokio::time::sleep(plan.backoff).await;
                        continue;
                    }
                    let answer = answer(
                        resp,
                        client_upgrade,
                        response_edits,
                        &cors,
                        request_body,
                        client,
                    );
                    return (answer, Some(ep));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The proxy's answer to a failed attempt: 504 when connecting timed out, else 502.
    fn failed(&self, ep: SocketAddr, e: &hyper_util::client::legacy::Error) -> Response<Body> {
        let timed_out = is_timeout(e);
        tracing::warn!(upstream = %ep, error = %cause(e), "the backend failed");
        self.metrics
            .error(if timed_out { "timeout" } else { "upstream" });
        let (status, what) = match (e.is_connect(), timed_out) {
            (true, true) => (StatusCode::GATEWAY_TIMEOUT, "connecting to"),
            (true, false) => (StatusCode::BAD_GATEWAY, "could not connect to"),
            _ => (StatusCode::BAD_GATEWAY, "no valid response from"),
        };
        plain(status, &format!("{what} {ep}: {}", cause(e)))
    }
}

/// A request for the endpoint `target` (an attempt, or a mirror's copy): the method, HTTP/2
/// for an h2c endpoint (else HTTP/1.1), the endpoint's address as authority, the path; None
/// for a path that cannot be made a URI. The caller puts the headers.
fn request_to(
    target: &Endpoint,
    method: &Method,
    pq: Option<hyper::http::uri::PathAndQuery>,
    body: ToUpstream,
) -> Option<Request<ToUpstream>> {
    let mut up = Request::new(body);
    *up.method_mut() = method.clone();
    *up.version_mut() = if target.h2c {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let mut uri = hyper::http::uri::Parts::default();
    uri.scheme = Some(if target.tls.is_some() {
        hyper::http::uri::Scheme::HTTPS
    } else {
        hyper::http::uri::Scheme::HTTP
    });
    uri.authority = Some(target.authority.clone());
    uri.path_and_query = pq.or_else(|| Some("/".parse().expect("a path")));
    *up.uri_mut() = hyper::Uri::from_parts(uri).ok()?;
    Some(up)
}

/// A CORS preflight: OPTIONS with an Origin and the method it asks for.
fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A host served over HTTPS, asked over plain HTTP: 308 to the same path over HTTPS.
fn https_redirect<B>(
    live: &Live,
    req: &Request<B>,
    host: &str,
    conn: &Conn,
) -> Option<Response<Body>> {
    if conn.tls || live.config.redirect.is_empty() || !live.config.redirects(host) {
        return None;
    }
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
    Some(r)
}

/// The request's head for the backend: the forwarded headers with the route's and the
/// backend's header filters, the host and path rewritten as the route says.
fn upstream_head<'a>(
    mut fwd: HeaderMap,
    mut pq: Option<hyper::http::uri::PathAndQuery>,
    edits: Option<(&'a Route, &'a WeightedBackend)>,
    pq_in: &str,
) -> UpstreamHead<'a> {
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
            // The backendRef's own rewrite, else the rule's.
            if let Some(rw) = wb.rewrite.as_ref().or(rewrite.as_ref()) {
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
    UpstreamHead {
        headers: fwd,
        path_and_query: pq,
        response_edits,
        cors: Vec::new(),
    }
}

/// The backend's answer as the client gets it: a protocol switch joined to the client's, or
/// the answer without its hop-by-hop headers, with the route's response header filters.
fn answer(
    mut resp: Response<Incoming>,
    client_upgrade: Option<ClientSwitch>,
    response_edits: Option<&crate::routes::HeaderEdits>,
    cors: &[(&'static str, String)],
    request_body: Arc<Unread>,
    client: Version,
) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return plain(
                StatusCode::BAD_GATEWAY,
                "the backend switched protocols unasked",
            );
        };
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        match client_upgrade {
            ClientSwitch::Hyper(client_upgrade) => {
                tokio::spawn(async move {
                    if let (Ok(c), Ok(b)) = tokio::join!(client_upgrade, backend_upgrade) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(c),
                            &mut TokioIo::new(b),
                        )
                        .await;
                    }
                });
            }
            // Joined by the connection's turn once hyper gives its socket back.
            ClientSwitch::ByTurns(turn) => turn.switched(backend_upgrade),
        }
        let (p, _) = resp.into_parts();
        return Response::from_parts(p, empty());
    }
    let (mut p, b) = resp.into_parts();
    strip_hop_by_hop(&mut p.headers);
    if let Some(e) = response_edits {
        e.apply(&mut p.headers);
    }
    // The gateway's CORS headers replace the backend's own.
    for (n, _) in cors
        .iter()
        .filter(|(n, _)| n.starts_with("access-control-"))
    {
        p.headers.remove(*n);
    }
    for (n, v) in cors {
        if let Ok(v) = HeaderValue::from_str(v) {
            p.headers.append(*n, v);
        }
    }
    let b = FromUpstream::new(b, request_body, &mut p, client);
    Response::from_parts(p, Either::Left(b))
}

/// One of a route's backends, by weight (None: no backend, or only weight 0).
pub(super) fn pick(backends: &[WeightedBackend]) -> Option<&WeightedBackend> {
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
pub(super) fn redirect_location(
    r: &crate::routes::Redirect,
    matched: &crate::routes::PathMatch,
    conn: &Conn,
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
