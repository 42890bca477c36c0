//! The agent's health and metrics: `/healthz` (the process serves), `/readyz` (the node holds
//! a dataplane computed from the API), and Prometheus `/metrics` (prometheus-client).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use podnet_node::dataplane::NodeDataplane;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("podnet_agent");
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
        Metrics {
            registry: Mutex::new(registry),
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
        self.services
            .set((d.proxy.services.len() + d.proxy.no_endpoints.len()) as i64);
        self.endpoints.set(d.proxy.backends.len() as i64);
        self.policy_groups.set(d.policy.groups.len() as i64);
    }

    pub fn failed(&self) {
        self.failures.inc();
    }

    pub fn watch_error(&self) {
        self.watch_errors.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry.lock().expect("registry lock"));
        s
    }
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)))
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
                            "not ready: the node holds no dataplane from the API yet\n".into(),
                        ),
                        "/metrics" => text(StatusCode::OK, metrics.render()),
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
