//! The DNS server's counters, for Prometheus (`podnet dns watch --metrics-addr`): queries by
//! protocol and response code, answers from the cache, queries sent upstream and those that
//! failed there. Each counter is made once; a query costs an atomic increment, no label
//! lookup.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    /// `udp` or `tcp`.
    protocol: &'static str,
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, `FORMERR`, `NOTIMP` or `other`.
    rcode: &'static str,
}

const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// The protocol a query came over.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Udp,
    Tcp,
}

pub struct Metrics {
    registry: Registry,
    /// By protocol, then by response code ([`RCODES`]).
    queries: [[Counter; 7]; 2],
    cache_hits: Counter,
    forwarded: Counter,
    forward_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("podnet_dns");
        let family = Family::<QueryLabels, Counter>::default();
        registry.register(
            "queries",
            "Queries answered, by protocol and response code",
            family.clone(),
        );
        let of = |protocol| {
            RCODES.map(|rcode| {
                family
                    .get_or_create(&QueryLabels { protocol, rcode })
                    .clone()
            })
        };
        let queries = [of("udp"), of("tcp")];
        let (cache_hits, forwarded, forward_failures) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "cache_hits",
            "UDP queries answered from the answer cache",
            cache_hits.clone(),
        );
        registry.register(
            "forwarded",
            "Queries for names outside the cluster's zone, sent to the upstreams",
            forwarded.clone(),
        );
        registry.register(
            "forward_failures",
            "Queries the upstreams did not answer (answered SERVFAIL)",
            forward_failures.clone(),
        );
        Metrics {
            registry,
            queries,
            cache_hits,
            forwarded,
            forward_failures,
        }
    }
}

impl Metrics {
    /// A response sent: counted by its response code (the low four bits of its fourth byte).
    pub fn answered(&self, protocol: Protocol, response: &[u8]) {
        let code = response.get(3).map_or(6, |b| usize::from(b & 0x0f).min(6));
        self.queries[protocol as usize][code].inc();
    }

    /// A response sent with this response code (0-5, other above).
    pub fn answered_code(&self, protocol: Protocol, code: u16) {
        self.queries[protocol as usize][usize::from(code).min(6)].inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    pub fn forwarded(&self, failed: bool) {
        self.forwarded.inc();
        if failed {
            self.forward_failures.inc();
        }
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_by_response_code() {
        let m = Metrics::default();
        // NXDOMAIN: rcode 3.
        m.answered(Protocol::Udp, &[0, 1, 0x81, 0x83]);
        m.answered(Protocol::Tcp, &[0, 1, 0x81, 0x80]);
        m.answered_code(Protocol::Udp, 2);
        m.cache_hit();
        m.forwarded(true);
        let text = m.render();
        for line in [
            "podnet_dns_queries_total{protocol=\"udp\",rcode=\"NXDOMAIN\"} 1",
            "podnet_dns_queries_total{protocol=\"tcp\",rcode=\"NOERROR\"} 1",
            "podnet_dns_queries_total{protocol=\"udp\",rcode=\"SERVFAIL\"} 1",
            "podnet_dns_cache_hits_total 1",
            "podnet_dns_forwarded_total 1",
            "podnet_dns_forward_failures_total 1",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }
}
