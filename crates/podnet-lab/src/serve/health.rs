//! kube-proxy's service health servers: one per `healthCheckNodePort` on every node, 200 while
//! the node has local endpoints, 503 otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Response;
use podnet_model::Protocol;
use podnet_node::HealthCheck;
use tokio::task::JoinHandle;

use super::bind::{bind_in, Bound};
use super::http;
use crate::{LabError, LabState};

/// A health check's current answer, shared with its server task.
type SharedCheck = Arc<Mutex<HealthCheck>>;

/// The running health servers, by (node, port).
#[derive(Default)]
pub struct HealthServers {
    running: HashMap<(String, u16), (SharedCheck, JoinHandle<()>)>,
}

impl HealthServers {
    /// Brings the servers in line with `st`: new checks get a server, gone ones lose theirs, and
    /// the others get their counts updated in place.
    pub fn reconcile(&mut self, st: &LabState) -> Result<(), LabError> {
        let checks: HashMap<(String, u16), &HealthCheck> = st
            .health_checks
            .iter()
            .map(|h| ((h.node.clone(), h.port), h))
            .collect();
        self.running.retain(|k, (_, task)| {
            let keep = checks.contains_key(k);
            if !keep {
                task.abort();
                // Closed for good: the keeper no longer holds it (a held listener would
                // still complete connections, as if the check answered).
                if let (Some(store), Some(node)) = (podnet_fdstore::client(), st.plan.node(&k.0)) {
                    store.forget(&super::bind::store_name(&node.ns, (k.1, Protocol::Tcp)));
                }
            }
            keep
        });
        for (k, h) in checks {
            if let Some((shared, _)) = self.running.get(&k) {
                *shared.lock().expect("not poisoned") = h.clone();
                continue;
            }
            let Some(node) = st.plan.node(&h.node) else {
                continue;
            };
            let who = format!("{} health check on {}", h.service, h.node);
            let shared = Arc::new(Mutex::new(h.clone()));
            for (_, b) in bind_in(&node.ns, &who, &[(h.port, Protocol::Tcp)])? {
                if let Bound::Tcp(l) = b {
                    let check = shared.clone();
                    let handler: http::Handler = Arc::new(move |_, _| answer(&check).into());
                    let task = tokio::spawn(http::serve(l, handler, None));
                    self.running.insert(k.clone(), (shared.clone(), task));
                }
            }
        }
        Ok(())
    }
}

/// kube-proxy's service health server: 200 with local endpoints, 503 without.
fn answer(check: &SharedCheck) -> Response<Full<Bytes>> {
    let h = check.lock().expect("not poisoned").clone();
    let body = serde_json::json!({"service": {"namespace": h.service.namespace, "name": h.service.name}, "localEndpoints": h.local_endpoints, "serviceProxyHealthy": true}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    if h.local_endpoints == 0 {
        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    }
    r
}
