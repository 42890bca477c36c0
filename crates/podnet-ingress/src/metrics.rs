//! The proxy's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The status class: `2xx`, `3xx`, `4xx`, `5xx` (and `1xx` for upgrades).
    pub class: String,
    /// `http` or `https`.
    pub scheme: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `connect`, `timeout`, `no_endpoints`, `no_route`, `upstream`.
    pub reason: String,
}

/// Every metric of the proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<StatusLabels, Counter>,
    /// The requests' counters by status class (1xx to 5xx) and scheme (http, https), taken
    /// once: no label lookup per request.
    by_status: [[Counter; 2]; 5],
    pub duration: Histogram,
    pub errors: Family<ReasonLabels, Counter>,
    pub retries: Counter,
    /// Copies of requests for mirrors, by outcome: `sent`, `failed`, `over_budget`,
    /// `has_body`, `no_endpoints`.
    pub mirrors: Family<ReasonLabels, Counter>,
    /// TLS streams (TLSRoutes' connections), by outcome: `passthrough`, `terminate`,
    /// `no_sni`, `no_route`, `no_backend`, `bad_hello`, `hello_timeout`, `connect_failed`,
    /// `handshake_failed`, `backend_handshake_failed`, `closed`.
    pub streams: Family<ReasonLabels, Counter>,
    pub reloads: Counter,
    pub routes: Gauge,
    pub certificates: Gauge,
    pub connections: Gauge,
    /// HTTP/1 client connections between turns: waiting for their next request, holding no
    /// buffer (`server::h1`).
    pub waiting: Gauge,
    /// Times the allocator's free pages were given back, after requests stopped.
    pub memory_given_back: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("podnet_ingress");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        let duration = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "request_duration_seconds",
            "From the request's headers to the response's",
            duration.clone(),
        );
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register("errors", "Requests not proxied, by reason", errors.clone());
        let mirrors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mirrors",
            "Copies of requests for RequestMirror backends, by outcome",
            mirrors.clone(),
        );
        let streams = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "streams",
            "TLS connections of TLSRoutes, by outcome",
            streams.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "retries",
            "Requests sent again to another endpoint after a failed connection",
            retries.clone(),
        );
        let reloads = Counter::default();
        registry.register(
            "config_reloads",
            "Configurations swapped in",
            reloads.clone(),
        );
        let routes = Gauge::default();
        registry.register("routes", "Routes served", routes.clone());
        let certificates = Gauge::default();
        registry.register(
            "certificates",
            "Hosts served with a certificate from a Secret",
            certificates.clone(),
        );
        let connections = Gauge::default();
        let waiting = Gauge::default();
        registry.register(
            "connections_waiting",
            "HTTP/1 client connections waiting for their next request, holding no buffer",
            waiting.clone(),
        );
        registry.register(
            "connections",
            "Client connections open",
            connections.clone(),
        );
        let memory_given_back = Counter::default();
        registry.register(
            "memory_given_back",
            "Times the allocator's free pages were given back to the kernel, a second after requests stopped",
            memory_given_back.clone(),
        );
        let by_status = [1, 2, 3, 4, 5].map(|class| {
            ["http", "https"].map(|scheme| {
                requests
                    .get_or_create(&StatusLabels {
                        class: format!("{class}xx"),
                        scheme: scheme.into(),
                    })
                    .clone()
            })
        });
        Metrics {
            registry,
            by_status,
            requests,
            duration,
            errors,
            retries,
            mirrors,
            streams,
            reloads,
            routes,
            certificates,
            connections,
            waiting,
            memory_given_back,
        }
    }

    /// One request answered.
    pub fn request(&self, status: hyper::StatusCode, tls: bool) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_status[class][usize::from(tls)].inc();
    }

    pub fn stream(&self, outcome: &str) {
        self.streams
            .get_or_create(&ReasonLabels {
                reason: outcome.into(),
            })
            .inc();
    }

    pub fn mirror(&self, outcome: &str) {
        self.mirrors
            .get_or_create(&ReasonLabels {
                reason: outcome.into(),
            })
            .inc();
    }

    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
