//! Priority and fairness, as the API server's (API Priority and Fairness) for what the lab
//! needs: the nodes' agents and the cluster's controllers (the DNS, Ingress and Gateway pods)
//! are never starved by anyone else, and no one client takes the API from the others.
//!
//! - Requests carrying the lab's system token (`Authorization: Bearer`, from the agents' and
//!   controllers' kubeconfig) are the `system` level: always admitted.
//! - Every other request is in the `workload` level, in a flow per client address: at most
//!   [`FLOW_WATCHES`] watches and [`FLOW_REQUESTS`] other requests at once per flow, and
//!   [`WORKLOAD_WATCHES`] watches in all. Past that the answer is 429 Too Many Requests with
//!   `Retry-After` (as the API server's), and the connection is closed, freeing its slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hyper::body::{Body, Frame, SizeHint};

/// Watches at once per workload flow.
pub const FLOW_WATCHES: usize = 32;
/// Other requests at once per workload flow.
pub const FLOW_REQUESTS: usize = 16;
/// Watches at once of the whole workload level.
pub const WORKLOAD_WATCHES: usize = 256;

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    System,
    Workload(IpAddr),
}

#[derive(Debug, Default)]
struct Counts {
    /// (watches, other requests) per flow.
    flows: HashMap<IpAddr, (usize, usize)>,
    watches: usize,
}

/// The levels and their flows.
#[derive(Debug, Default)]
pub struct Fairness {
    token: Mutex<Option<String>>,
    counts: Arc<Mutex<Counts>>,
}

/// Why a workload's request gets no seat now (429, to be tried again later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("{client} holds {held} watches, the most one client may (the lab's API keeps room for the others)")]
    ClientWatches {
        client: std::net::IpAddr,
        held: usize,
    },
    #[error("clients hold {held} watches, the most the lab's API gives them all")]
    AllWatches { held: usize },
    #[error("{client} has {in_flight} requests in flight, the most one client may")]
    ClientRequests {
        client: std::net::IpAddr,
        in_flight: usize,
    },
}

/// A request's seat: given back when dropped (a watch's, when its stream ends).
#[derive(Debug)]
pub struct Seat {
    counts: Option<(Arc<Mutex<Counts>>, IpAddr, bool)>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some((counts, ip, watch)) = self.counts.take() {
            let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = c.flows.get_mut(&ip) {
                if watch {
                    f.0 = f.0.saturating_sub(1);
                } else {
                    f.1 = f.1.saturating_sub(1);
                }
                if *f == (0, 0) {
                    c.flows.remove(&ip);
                }
            }
            if watch {
                c.watches = c.watches.saturating_sub(1);
            }
        }
    }
}

impl Fairness {
    /// The token of the system level (None: every request is a workload's).
    pub fn set_system_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token.filter(|t| !t.is_empty());
    }

    /// The level of a request from `peer` with these headers.
    pub fn classify(&self, headers: &hyper::HeaderMap, peer: IpAddr) -> Class {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let bearer = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match (token.as_deref(), bearer) {
            (Some(t), Some(b)) if t == b => Class::System,
            _ => Class::Workload(peer),
        }
    }

    /// A seat for a request (a watch when `watch`), or why there is none now.
    pub fn admit(&self, class: Class, watch: bool) -> Result<Seat, Busy> {
        let Class::Workload(ip) = class else {
            return Ok(Seat { counts: None });
        };
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (w, r) = c.flows.get(&ip).copied().unwrap_or((0, 0));
        if watch && w >= FLOW_WATCHES {
            return Err(Busy::ClientWatches {
                client: ip,
                held: w,
            });
        }
        if watch && c.watches >= WORKLOAD_WATCHES {
            return Err(Busy::AllWatches { held: c.watches });
        }
        if !watch && r >= FLOW_REQUESTS {
            return Err(Busy::ClientRequests {
                client: ip,
                in_flight: r,
            });
        }
        let f = c.flows.entry(ip).or_default();
        if watch {
            f.0 += 1;
            c.watches += 1;
        } else {
            f.1 += 1;
        }
        Ok(Seat {
            counts: Some((self.counts.clone(), ip, watch)),
        })
    }
}

/// A response body that holds its request's seat until it ends.
pub struct Seated<B> {
    pub body: B,
    pub seat: Seat,
}

impl<B: Body + Unpin> Body for Seated<B> {
    type Data = B::Data;
    type Error = B::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_workload_flow_cannot_take_the_api_and_the_system_level_always_gets_in() {
        let f = Fairness::default();
        f.set_system_token(Some("s3cret".into()));
        let a: IpAddr = "10.244.1.9".parse().unwrap();
        let b: IpAddr = "10.244.2.9".parse().unwrap();
        let mut h = hyper::HeaderMap::new();
        assert_eq!(f.classify(&h, a), Class::Workload(a));
        h.insert(
            hyper::header::AUTHORIZATION,
            "Bearer wrong".parse().unwrap(),
        );
        assert_eq!(f.classify(&h, a), Class::Workload(a));
        h.insert(
            hyper::header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap(),
        );
        assert_eq!(f.classify(&h, a), Class::System);
        let held: Vec<Seat> = (0..FLOW_WATCHES)
            .map(|_| f.admit(Class::Workload(a), true).unwrap())
            .collect();
        let e = f.admit(Class::Workload(a), true).unwrap_err();
        assert_eq!(
            e,
            Busy::ClientWatches {
                client: a,
                held: FLOW_WATCHES
            }
        );
        assert!(e.to_string().contains("32 watches"), "{e}");
        // Others are not held back by a's watches; the system level never is.
        assert!(f.admit(Class::Workload(b), true).is_ok());
        assert!(f.admit(Class::Workload(a), false).is_ok());
        for _ in 0..1000 {
            assert!(f.admit(Class::System, true).is_ok());
        }
        // Seats come back.
        drop(held);
        assert!(f.admit(Class::Workload(a), true).is_ok());
        // The level's whole: 256 watches from many flows.
        let many: Vec<Seat> = (0..WORKLOAD_WATCHES)
            .map(|i| {
                let ip: IpAddr = format!("10.1.{}.{}", i / 200, i % 200 + 1).parse().unwrap();
                f.admit(Class::Workload(ip), true).unwrap()
            })
            .collect();
        let e = f
            .admit(Class::Workload("10.9.9.9".parse().unwrap()), true)
            .unwrap_err();
        assert!(matches!(e, Busy::AllWatches { .. }), "{e}");
        assert!(e
            .to_string()
            .contains("the most the lab's API gives them all"));
        drop(many);
    }
}
