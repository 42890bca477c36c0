//! The agent's health and metrics: `/healthz` (the process serves), `/readyz` (the node holds
//! a dataplane computed from the API, and is not known to differ from it), Prometheus
//! `/metrics` (prometheus-client), `/verify` (POST: verify the node now), and `/flows` (the
//! node's flow log as JSON lines, followed with `?follow=true`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Request, Response, StatusCode};
use podnet_node::dataplane::NodeDataplane;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    sync_seconds: Histogram,
    syncs: Counter,
    failures: Counter,
    watch_errors: Counter,
    services: Gauge,
    endpoints: Gauge,
    policy_groups: Gauge,
    verify_seconds: Histogram,
    stale_reads: Counter,
    replayed_writes: Counter,
    cni_wait_seconds: Histogram,
    cni_gave_up: Counter,
    drift: Family<Vec<(String, String)>, Counter>,
    flows_told: Family<Vec<(String, String)>, Counter>,
    flows_lost: Counter,
    flow_log_up: Gauge,
    /// The latest flows, and the feed of new ones (`/flows`).
    pub flows: podnet_flow::store::Store,
    ready: AtomicBool,
    /// Known to differ from what it must hold (a verify pass found drift it could not repair).
    differs: AtomicBool,
    /// Asks the agent's loop for a verify pass now.
    pub verify_now: tokio::sync::Notify,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let verify_seconds = Histogram::new(exponential_buckets(0.001, 1.6, 20));
        let drift = Family::<Vec<(String, String)>, Counter>::default();
        root.register(
            "podnet_dataplane_drift",
            "Differences found between what the node holds and what it must (each repaired), by table",
            drift.clone(),
        );
        let registry = root.sub_registry_with_prefix("podnet_agent");
        let sync_seconds = Histogram::new(exponential_buckets(0.00025, 1.5, 28));
        let (syncs, failures, watch_errors) =
            (Counter::default(), Counter::default(), Counter::default());
        let (services, endpoints, policy_groups) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "sync_duration_seconds",
            "From a watch event received to the node programmed (the round's first event)",
            sync_seconds.clone(),
        );
        registry.register("syncs", "Dataplane syncs without a failure", syncs.clone());
        registry.register(
            "sync_failures",
            "Syncs that failed (the model could not be built, or the kernel refused a change)",
            failures.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the API watches (each is retried)",
            watch_errors.clone(),
        );
        registry.register(
            "programmed_services",
            "Service ports programmed in the proxy",
            services.clone(),
        );
        registry.register(
            "programmed_endpoints",
            "Backends programmed in the proxy",
            endpoints.clone(),
        );
        registry.register(
            "programmed_policy_groups",
            "NetworkPolicy groups (pods judged alike) programmed on this node",
            policy_groups.clone(),
        );
        let stale_reads = Counter::default();
        registry.register(
            "verify_stale_reads",
            "Kernel reads of a verify pass (done beside the loop) that a change of the node overtook, read again",
            stale_reads.clone(),
        );
        let replayed_writes = Counter::default();
        registry.register(
            "verify_replayed_writes",
            "Changes of the proxy's elements made during a verify pass's kernel read (beside the loop), replayed onto the read",
            replayed_writes.clone(),
        );
        registry.register(
            "verify_duration_seconds",
            "A verify pass: the kernel read back, compared and repaired",
            verify_seconds.clone(),
        );
        let cni_wait_seconds = Histogram::new(exponential_buckets(0.0005, 1.6, 24));
        let cni_gave_up = Counter::default();
        registry.register(
            "cni_add_wait_seconds",
            "A CNI ADD's wait: from the plugin's request to the node read back holding the pod",
            cni_wait_seconds.clone(),
        );
        registry.register(
            "cni_add_gave_up",
            "CNI ADDs answered with what was missing when their wait was over",
            cni_gave_up.clone(),
        );
        let flows_told = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "flows",
            "Flow events read from the node's flow log, by verdict and reason",
            flows_told.clone(),
        );
        let flows_lost = Counter::default();
        registry.register(
            "flows_lost",
            "Flow events lost: the queue to the agent's loop was full, or the kernel's socket buffer overflowed (counted once per overflow)",
            flows_lost.clone(),
        );
        let flow_log_up = Gauge::default();
        registry.register(
            "flow_log_up",
            "1 while the node's flow log (nfnetlink_log) is read",
            flow_log_up.clone(),
        );
        Metrics {
            registry: Mutex::new(root),
            flows_told,
            flows_lost,
            flow_log_up,
            flows: Default::default(),
            cni_wait_seconds,
            cni_gave_up,
            verify_seconds,
            stale_reads,
            replayed_writes,
            drift,
            differs: AtomicBool::new(false),
            verify_now: tokio::sync::Notify::new(),
            sync_seconds,
            syncs,
            failures,
            watch_errors,
            services,
            endpoints,
            policy_groups,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn synced(&self, took: Duration, d: &NodeDataplane) {
        self.sync_seconds.observe(took.as_secs_f64());
        self.syncs.inc();
        self.holds(d);
    }

    /// What the node holds now: its Service ports, backends and policy groups.
    pub fn holds(&self, d: &NodeDataplane) {
        self.services
            .set((d.proxy.services.len() + d.proxy.no_endpoints.len()) as i64);
        self.endpoints.set(d.proxy.backends.len() as i64);
        self.policy_groups.set(d.policy.groups.len() as i64);
    }

    /// A verify pass: how long it took, what drifted (by table), and whether the node still
    /// differs afterwards.
    pub fn verified(&self, took: Duration, drift: &[podnet_node::verify::Drift], differs: bool) {
        self.verify_seconds.observe(took.as_secs_f64());
        for d in drift {
            self.drift
                .get_or_create(&vec![("table".to_string(), d.table.to_string())])
                .inc();
        }
        self.differs.store(differs, Ordering::Relaxed);
    }

    /// A flow told: counted by verdict and reason, kept, and sent to those who follow.
    pub fn flow(&self, f: podnet_flow::record::Flow) {
        self.flows_told
            .get_or_create(&vec![
                ("verdict".to_string(), f.verdict.to_string()),
                ("reason".to_string(), f.reason.to_string()),
            ])
            .inc();
        self.flows.push(f);
    }

    /// Flows told so far with this verdict and reason.
    pub fn flows_told(&self, verdict: &str, reason: &str) -> u64 {
        self.flows_told
            .get_or_create(&vec![
                ("verdict".to_string(), verdict.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .get()
    }

    pub fn flows_lost(&self, n: u64) {
        self.flows_lost.inc_by(n);
    }

    pub fn flow_log_up(&self, up: bool) {
        self.flow_log_up.set(i64::from(up));
    }

    /// A verify pass's kernel read that a change overtook.
    pub fn stale_read(&self) {
        self.stale_reads.inc();
    }

    /// Kernel reads that a change overtook, so far.
    pub fn stale_reads(&self) -> u64 {
        self.stale_reads.get()
    }

    /// Changes made during a kernel read, replayed onto it.
    pub fn replayed(&self, writes: usize) {
        self.replayed_writes.inc_by(writes as u64);
    }

    /// Changes replayed onto kernel reads, so far.
    pub fn replayed_writes(&self) -> u64 {
        self.replayed_writes.get()
    }

    /// How many differences were found in `table` so far.
    pub fn drift_count(&self, table: &str) -> u64 {
        self.drift
            .get_or_create(&vec![("table".to_string(), table.to_string())])
            .get()
    }

    /// A CNI ADD returns: its pod is programmed; it asked at `since`.
    pub fn cni_waited(&self, since: std::time::Instant) {
        self.cni_wait_seconds.observe(since.elapsed().as_secs_f64());
    }

    pub fn cni_gave_up(&self) {
        self.cni_gave_up.inc();
    }

    pub fn failed(&self) {
        self.failures.inc();
    }

    /// The counter of the API watches' errors, for [`podnet_watch::ClusterWatch`] to count.
    pub fn watch_errors(&self) -> Counter {
        self.watch_errors.clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.differs.load(Ordering::Relaxed)
    }

    fn why_not_ready(&self) -> &'static str {
        if !self.ready.load(Ordering::Relaxed) {
            "not ready: the node holds no dataplane from the API yet\n"
        } else {
            "not ready: the node differs from what it must hold, and the repair failed (see the log)\n"
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry.lock().expect("registry lock"));
        s
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn text(code: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a response")
}

/// A flow as a line of JSON.
fn line(f: &podnet_flow::record::Flow) -> Bytes {
    let mut v = serde_json::to_vec(f).expect("a flow is JSON");
    v.push(b'\n');
    Bytes::from(v)
}

/// `/flows`: the latest flows as JSON lines, oldest first; with `follow=true`, then each new
/// one as it comes (the response does not end while the client stays). Filters: `verdict=`
/// (repeated: any of them), `pod=namespace/name` (at either end).
fn flows(metrics: &Metrics, query: Option<&str>) -> Response<Body> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let filter = match podnet_flow::Filter::from_query(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        Ok(f) => f,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    let follow = pairs
        .iter()
        .any(|(k, v)| k == "follow" && matches!(v.as_str(), "true" | "1" | ""));
    let ok = Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/jsonl");
    if !follow {
        let mut body = Vec::new();
        for f in metrics.flows.latest().iter().filter(|f| filter.matches(f)) {
            body.extend_from_slice(&line(f));
        }
        return ok
            .body(Full::new(Bytes::from(body)).boxed())
            .expect("a response");
    }
    let (latest, rx) = metrics.flows.follow();
    let first: Vec<Bytes> = latest
        .iter()
        .filter(|f| filter.matches(f))
        .map(|f| line(f))
        .collect();
    let first = futures_util::stream::iter(first);
    let next = futures_util::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(f) if filter.matches(&f) => return Some((line(&f), (rx, filter))),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let frames = first
        .chain(next)
        .map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b)));
    ok.body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("a response")
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener`.
pub async fn serve(metrics: Arc<Metrics>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    Ok::<_, Infallible>(match req.uri().path() {
                        "/healthz" => text(StatusCode::OK, "ok\n".into()),
                        "/readyz" if metrics.ready() => text(StatusCode::OK, "ok\n".into()),
                        "/readyz" => text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            metrics.why_not_ready().into(),
                        ),
                        "/verify" if req.method() == hyper::Method::POST => {
                            metrics.verify_now.notify_one();
                            text(StatusCode::ACCEPTED, "a verify pass is under way\n".into())
                        }
                        "/metrics" => text(StatusCode::OK, metrics.render()),
                        "/flows" => flows(&metrics, req.uri().query()),
                        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
