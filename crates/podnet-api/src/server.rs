//! The Kubernetes API's read side over HTTP/1.1: discovery (`/version`, `/api`, `/apis`, each
//! group version's resource list), list, get and watch, with the API server's query
//! parameters (`labelSelector`, `fieldSelector`, `resourceVersion`, `allowWatchBookmarks`,
//! `sendInitialEvents`, `timeoutSeconds`). Lists and objects are JSON; a client that asks for
//! a `Table` (kubectl does) gets one, with kubectl's columns. Every write is refused with the
//! API's own `Status` (405 MethodNotAllowed): this is a projection, not a control plane.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::resources::{self, Resource, RESOURCES};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Store};
use crate::table;

mod watching;
use watching::{tokio_stream, Watching};

type Body = BoxBody<Bytes, Infallible>;

/// How often a watch that allows them gets a bookmark.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// A watch's longest life when the client does not say (the API server picks 30 to 60 min).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may take to send a request's headers (or stay idle between requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The served objects, shared by every connection.
#[derive(Debug)]
pub struct Api {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    /// Faults on purpose ([`crate::faults`]).
    pub faults: crate::faults::Faults,
    /// Priority and fairness ([`crate::fairness`]).
    pub fairness: crate::fairness::Fairness,
    /// Pods' logs (the `log` subresource).
    pub logs: crate::logs::PodLogs,
}

impl Default for Api {
    fn default() -> Self {
        // Versions continue after any a client may hold from an earlier process.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Api {
            store: Mutex::new(Store::starting_at(base)),
            changed: watch::channel(0).0,
            faults: Default::default(),
            fairness: Default::default(),
            logs: Default::default(),
        }
    }
}

/// The connections of a listener: at most [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Slots {
    open: Mutex<(u64, std::collections::HashMap<u64, SlotState>)>,
}

struct SlotState {
    since: std::time::Instant,
    /// Whether a request came on it (then it is never the one that goes).
    asked: bool,
    evict: Arc<tokio::sync::Notify>,
}

/// A connection's place; given back when dropped.
struct Slot {
    id: u64,
    slots: Arc<Slots>,
    evict: Arc<tokio::sync::Notify>,
}

impl Slots {
    fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.len() >= MAX_CONNECTIONS {
            let oldest_silent =
                g.1.iter()
                    .filter(|(_, s)| !s.asked)
                    .min_by_key(|(_, s)| s.since)
                    .map(|(id, _)| *id);
            let gone = g.1.remove(&oldest_silent?)?;
            gone.evict.notify_one();
        }
        g.0 += 1;
        let id = g.0;
        let evict = Arc::new(tokio::sync::Notify::new());
        g.1.insert(
            id,
            SlotState {
                since: std::time::Instant::now(),
                asked: false,
                evict: evict.clone(),
            },
        );
        Some(Slot {
            id,
            slots: self.clone(),
            evict,
        })
    }
}

impl Slot {
    fn asked(&self) {
        let mut g = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = g.1.get_mut(&self.id) {
            s.asked = true;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        g.1.remove(&self.id);
    }
}

fn now() -> String {
    let secs = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Api {
    pub fn new() -> Arc<Api> {
        Arc::new(Api::default())
    }

    /// Replaces the served objects; watchers see the changes. Returns how many there were.
    pub fn replace(&self, objects: Vec<Value>) -> usize {
        let (n, rv) = {
            let mut s = self.store.lock().expect("store lock");
            let n = s.replace(objects, &now()).len();
            (n, s.rv())
        };
        if n > 0 {
            self.changed.send_replace(rv);
        }
        n
    }

    /// A controller's write of an object's status: `status` computes the new status from
    /// the object as served now (or refuses); watchers see the change.
    pub fn write_status(
        &self,
        key: &crate::store::Key,
        status: impl FnOnce(&Value) -> Result<Value, crate::write::Refused>,
    ) -> Result<Value, crate::write::Written> {
        use crate::write::Written;
        let (served, rv) = {
            let mut s = self.store.lock().expect("store lock");
            let current = s
                .get(key)
                .ok_or(Written::Store(crate::store::StatusError::NotFound))?;
            let new = status(&current).map_err(Written::Refused)?;
            let before = s.rv();
            let served = s.write_status(key, new).map_err(Written::Store)?;
            (served, (s.rv() != before).then(|| s.rv()))
        };
        if let Some(rv) = rv {
            self.changed.send_replace(rv);
        }
        Ok(served.as_ref().clone())
    }

    /// The latest resource version.
    pub fn rv(&self) -> u64 {
        self.store.lock().expect("store lock").rv()
    }

    /// Serves connections from `listener` until the task is dropped. Hardened against
    /// abusive clients: at most [`MAX_CONNECTIONS`] at once (past them, the connection that
    /// has waited longest without a request is closed for the new one; with none such, the
    /// new one is), each must send a request's headers within [`HEADER_READ_TIMEOUT`] (an
    /// idle keep-alive connection too), requests are admitted by priority and fairness
    /// ([`crate::fairness`]); an `accept` error backs off instead of spinning.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        self.serve_as(listener, false).await
    }

    /// [`Api::serve`], with `POST /podnet/faults` (and `GET`) on this listener too: the lab's
    /// loopback one, never the one its pods and nodes reach.
    pub async fn serve_with_control(self: Arc<Self>, listener: tokio::net::TcpListener) {
        self.serve_as(listener, true).await
    }

    async fn serve_as(self: Arc<Self>, listener: tokio::net::TcpListener, control: bool) {
        let slots = Arc::new(Slots::default());
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.faults.refusing() && !control {
                drop(stream);
                continue;
            }
            // Past the slots, the connection that has waited longest without sending a
            // request goes (a flood of silent connections cannot shut the others out); with
            // none such, the new one.
            let Some(slot) = slots.take() else {
                drop(stream);
                continue;
            };
            let api = self.clone();
            let mut cuts = self.faults.cuts();
            tokio::spawn(async move {
                let slot = Arc::new(slot);
                let evicted = slot.evict.clone();
                let asked = slot.clone();
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    asked.asked();
                    async move {
                        if control && req.uri().path() == "/podnet/faults" {
                            return Ok::<_, Infallible>(api.control(req));
                        }
                        Ok::<_, Infallible>(api.admitted(req, peer.ip()).await)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A fault on purpose cuts every connection (but the control listener's).
                tokio::select! {
                    _ = conn => {}
                    _ = cuts.changed(), if !control => {}
                    _ = evicted.notified() => {}
                }
            });
        }
    }

    /// A request admitted by its priority level and flow ([`crate::fairness`]) and answered,
    /// holding its seat until its answer ends; or 429 Too Many Requests, and the connection
    /// closed.
    async fn admitted(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: std::net::IpAddr,
    ) -> Response<Body> {
        let class = self.fairness.classify(req.headers(), peer);
        let watch = req
            .uri()
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
            })
            .unwrap_or(false);
        match self.fairness.admit(class, watch) {
            Err(why) => {
                let mut r = status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    &format!("too many requests, please try again later: {why}"),
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("1"),
                );
                r.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
                r
            }
            Ok(seat) => self
                .handle(req)
                .await
                .map(|body| crate::fairness::Seated { body, seat }.boxed()),
        }
    }

    /// `POST /podnet/faults?...` puts faults in force; either method says what is in force.
    fn control(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::POST {
            let pairs: Vec<(String, String)> = req
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            match crate::faults::FaultSpec::parse(&pairs) {
                Ok(spec) => self.faults.inject(&spec),
                Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
            }
        }
        ok(self.faults.describe())
    }

    /// A controller's write of an object's status (unless writes fail on purpose).
    async fn write_status_of(
        &self,
        req: Request<Incoming>,
        r: &'static crate::resources::Resource,
        key: crate::store::Key,
    ) -> Response<Body> {
        if self.faults.failing_writes() {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "Internal error occurred: the lab's API fails writes on purpose (failWrites)",
            );
        }
        match crate::write::status(self, req, r, key).await {
            Ok(o) => ok(o),
            Err(e) => status(e.code, e.reason, &e.message),
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if let Some(d) = self.faults.delay() {
            tokio::time::sleep(d).await;
        }
        let accept = header_text(req.headers(), hyper::header::ACCEPT);
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let path = req.uri().path().trim_end_matches('/').to_string();
        let route = route(&path);
        if let Route::Object {
            r,
            namespace,
            name,
            status: true,
        } = &route
        {
            if req.method() == Method::PATCH || req.method() == Method::PUT {
                let key = crate::store::Key {
                    kind: r.kind,
                    namespace: namespace.clone().unwrap_or_default(),
                    name: name.clone(),
                };
                return self.write_status_of(req, r, key).await;
            }
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource (this lab's API serves its model and takes only the status controllers write: change the lab with `podnet lab apply`)",
            );
        }
        match route {
            Route::Version => ok(json!({
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.0-podnet",
                "platform": "linux/amd64",
            })),
            Route::OpenApi => ok(crate::openapi::discovery()),
            Route::OpenApiDoc(gv) => match crate::openapi::document(&gv) {
                Some(d) => ok(d),
                None => not_found_path(&path),
            },
            Route::Core => ok(json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [],
            })),
            Route::Groups => ok(groups()),
            Route::GroupVersion(g, v) => match resource_list(&g, &v) {
                Some(l) => ok(l),
                None => not_found_path(&path),
            },
            Route::Collection { r, namespace } => {
                let q = Query::of(&query);
                let field = match FieldSelector::parse(&q.get("fieldSelector"), r.kind) {
                    Ok(f) => f,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                };
                let label = match LabelSelector::parse(&q.get("labelSelector")) {
                    Ok(l) => l,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                };
                let filter = Filter {
                    r,
                    namespace,
                    label,
                    field,
                };
                let as_table = table::wanted(&accept);
                if q.flag("watch") {
                    self.watch(filter, &q, as_table)
                } else {
                    self.list(&filter, as_table, &q)
                }
            }
            Route::Object {
                r, namespace, name, ..
            } => {
                let key = crate::store::Key {
                    kind: r.kind,
                    namespace: namespace.clone().unwrap_or_default(),
                    name: name.clone(),
                };
                let got = self.store.lock().expect("store lock").get(&key);
                match got {
                    Some(o) if table::wanted(&accept) => {
                        let rv = o["metadata"]["resourceVersion"].as_str().unwrap_or("0");
                        ok(table::table(
                            r,
                            &[o.as_ref().clone()],
                            rv,
                            &Query::of(&query).get("includeObject"),
                            true,
                        ))
                    }
                    Some(o) => ok(o.as_ref().clone()),
                    None => status_with(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{} \"{name}\" not found", r.plural),
                        json!({"name": name, "kind": r.plural, "group": r.group}),
                    ),
                }
            }
            Route::PodLog { namespace, name } => {
                let r = resources::by_path("", "v1", "pods").expect("pods are served");
                let key = crate::store::Key {
                    kind: r.kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                };
                if self.store.lock().expect("store lock").get(&key).is_none() {
                    return status_with(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("pods \"{name}\" not found"),
                        json!({"name": name, "kind": "pods"}),
                    );
                }
                let tail = Query::of(&query).get("tailLines").parse::<usize>().ok();
                Response::builder()
                    .status(StatusCode::OK)
                    .header(hyper::header::CONTENT_TYPE, "text/plain")
                    .body(Full::new(Bytes::from(self.logs.read(&namespace, &name, tail))).boxed())
                    .expect("a response")
            }
            Route::Unknown => not_found_path(&path),
        }
    }

    fn list(&self, f: &Filter, as_table: bool, q: &Query) -> Response<Body> {
        // As the API server (and this API's watch) answers a resource version that is not one.
        let rv_param = q.get("resourceVersion");
        if !rv_param.is_empty() && rv_param.parse::<u64>().is_err() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("invalid resource version {rv_param:?}"),
            );
        }
        let (items, rv) = {
            let s = self.store.lock().expect("store lock");
            let items: Vec<Value> = s
                .list(f.r, f.namespace.as_deref())
                .into_iter()
                .filter(|o| f.matches(o))
                .map(|o| o.as_ref().clone())
                .collect();
            (items, s.rv())
        };
        if as_table {
            return ok(table::table(
                f.r,
                &items,
                &rv.to_string(),
                &q.get("includeObject"),
                true,
            ));
        }
        ok(json!({
            "kind": f.r.list_kind(),
            "apiVersion": f.r.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }))
    }

    fn watch(self: Arc<Self>, f: Filter, q: &Query, as_table: bool) -> Response<Body> {
        let rv_param = q.get("resourceVersion");
        let initial = q.flag("sendInitialEvents") || rv_param.is_empty() || rv_param == "0";
        let from: u64 = if initial {
            0
        } else {
            match rv_param.parse() {
                Ok(v) => v,
                Err(_) => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("invalid resource version {rv_param:?}"),
                    )
                }
            }
        };
        let timeout = q
            .get("timeoutSeconds")
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .unwrap_or(WATCH_TIMEOUT);
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        let w = Watching {
            f,
            as_table,
            include: q.get("includeObject"),
            initial,
            initial_end: q.flag("sendInitialEvents"),
            from,
            bookmarks: q.flag("allowWatchBookmarks"),
            deadline: tokio::time::Instant::now() + timeout,
            changed: self.changed.subscribe(),
            ends: self.faults.ends(),
            // A fault on purpose: the version the watch resumes from is "compacted".
            expired: !initial && self.faults.expiring(),
            tx,
            first: true,
        };
        tokio::spawn(w.run(self));
        let body = StreamBody::new(tokio_stream(rx));
        Response::builder()
            .status(StatusCode::OK)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("Cache-Control", "no-cache, private")
            .body(BodyExt::boxed(body))
            .expect("a response")
    }
}

/// Which objects a list or watch is about.
struct Filter {
    r: &'static Resource,
    namespace: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.label.matches(o) && self.field.matches(o)
    }

    /// A change as this watch sees it: an object that leaves the selection is deleted for
    /// it, one that enters is added.
    fn event(&self, e: &Event) -> Option<Value> {
        if e.key.kind != self.r.kind
            || self
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != e.key.namespace)
        {
            return None;
        }
        let now = self.matches(&e.object);
        let before = e.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match e.kind {
            EventType::Added if now => EventType::Added,
            EventType::Deleted if before => EventType::Deleted,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            _ => return None,
        };
        Some(json!({"type": kind.as_str(), "object": e.object.as_ref()}))
    }
}

/// The query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(q: &[(String, String)]) -> Query {
        Query(q.to_vec())
    }

    fn get(&self, k: &str) -> String {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k).as_str(), "true" | "1")
    }
}

enum Route {
    Version,
    OpenApi,
    OpenApiDoc(String),
    Core,
    Groups,
    GroupVersion(String, String),
    Collection {
        r: &'static Resource,
        namespace: Option<String>,
    },
    Object {
        r: &'static Resource,
        namespace: Option<String>,
        name: String,
        /// Its `status` subresource.
        status: bool,
    },
    /// A pod's `log` subresource.
    PodLog {
        namespace: String,
        name: String,
    },
    Unknown,
}

fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["version"] => return Route::Version,
        ["openapi", "v3"] => return Route::OpenApi,
        ["openapi", "v3", gv @ ..] => return Route::OpenApiDoc(gv.join("/")),
        ["api"] => return Route::Core,
        ["apis"] => return Route::Groups,
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Unknown,
    };
    let res = |plural: &str| resources::by_path(group, version, plural);
    match rest {
        [] => Route::GroupVersion(group.into(), version.into()),
        [plural] => {
            res(plural).map_or(Route::Unknown, |r| Route::Collection { r, namespace: None })
        }
        ["namespaces", ns, plural, rest @ ..] if res(plural).is_some_and(|r| r.namespaced) => {
            let r = res(plural).expect("checked");
            match rest {
                [] => Route::Collection {
                    r,
                    namespace: Some((*ns).into()),
                },
                [name] => Route::Object {
                    r,
                    namespace: Some((*ns).into()),
                    name: (*name).into(),
                    status: false,
                },
                [name, "status"] => Route::Object {
                    r,
                    namespace: Some((*ns).into()),
                    name: (*name).into(),
                    status: true,
                },
                [name, "log"] if r.kind == podnet_model::Kind::Pod => Route::PodLog {
                    namespace: (*ns).into(),
                    name: (*name).into(),
                },
                _ => Route::Unknown,
            }
        }
        [plural, name, sub @ ..] if sub.is_empty() || sub == ["status"] => match res(plural) {
            Some(r) if !r.namespaced => Route::Object {
                r,
                namespace: None,
                name: (*name).into(),
                status: !sub.is_empty(),
            },
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let list: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let main = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "list", "watch"],
                "shortNames": r.short_names,
            });
            std::iter::once(main).chain(crate::write::discovery(r))
        })
        .collect();
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).expect("JSON"))).boxed())
        .expect("a response")
}

fn ok(v: Value) -> Response<Body> {
    json_response(StatusCode::OK, &v)
}

fn status_value(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if !details.is_null() {
        v["details"] = details;
    }
    v
}

fn status_with(code: StatusCode, reason: &str, message: &str, details: Value) -> Response<Body> {
    json_response(code, &status_value(code.as_u16(), reason, message, details))
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    status_with(code, reason, message, Value::Null)
}

fn not_found_path(path: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
    )
}

/// A header's value as text; empty when absent or not text.
pub(crate) fn header_text(h: &hyper::HeaderMap, name: hyper::header::HeaderName) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
