//! The latest flows, bounded, and a feed of new ones for whoever follows them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::record::Flow;

/// How many flows are kept for a reader that asks for the latest (Hubble keeps 4,095 per
/// node by default).
pub const KEPT: usize = 4096;

/// The latest flows and the feed of new ones. Bounded both ways: the oldest flow goes when
/// a new one comes, and a follower that falls more than [`KEPT`] behind misses flows (it is
/// told how many).
pub struct Store {
    latest: Mutex<VecDeque<Arc<Flow>>>,
    feed: broadcast::Sender<Arc<Flow>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.latest.lock().map_or(0, |l| l.len());
        f.debug_struct("Store").field("kept", &n).finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store {
            latest: Mutex::new(VecDeque::with_capacity(KEPT)),
            feed: broadcast::channel(KEPT).0,
        }
    }
}

impl Store {
    pub fn push(&self, flow: Flow) {
        let flow = Arc::new(flow);
        {
            let mut l = self.latest.lock().expect("flows");
            if l.len() == KEPT {
                l.pop_front();
            }
            l.push_back(flow.clone());
        }
        // No follower: nothing to send to.
        let _ = self.feed.send(flow);
    }

    /// The latest flows, oldest first, and a feed of those that come after them.
    pub fn follow(&self) -> (Vec<Arc<Flow>>, broadcast::Receiver<Arc<Flow>>) {
        let l = self.latest.lock().expect("flows");
        // Subscribed under the lock: no flow falls between the two.
        (l.iter().cloned().collect(), self.feed.subscribe())
    }

    pub fn latest(&self) -> Vec<Arc<Flow>> {
        self.latest.lock().expect("flows").iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Peer;
    use crate::{Reason, Verdict};

    fn flow(i: usize) -> Flow {
        let peer = Peer {
            ip: "10.0.0.1".parse().unwrap(),
            port: i as u16,
            pod: None,
        };
        Flow {
            time: i.to_string(),
            node: "n".into(),
            verdict: Verdict::Dropped,
            reason: Reason::PolicyIngress,
            summary: String::new(),
            protocol: "TCP".into(),
            source: peer.clone(),
            destination: peer,
            service: None,
            policies: Vec::new(),
        }
    }

    #[test]
    fn bounded_and_followed_without_a_gap() {
        let s = Store::default();
        for i in 0..KEPT + 10 {
            s.push(flow(i));
        }
        let (latest, mut rx) = s.follow();
        assert_eq!(latest.len(), KEPT);
        assert_eq!(latest[0].time, "10");
        s.push(flow(99_999));
        assert_eq!(rx.try_recv().unwrap().time, "99999");
        assert!(rx.try_recv().is_err());
    }
}
