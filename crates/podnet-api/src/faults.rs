//! Faults of the lab's API, on purpose: what a real API server does to its clients now and
//! then (an apiserver restarts, a watch cache compacts, a load balancer drops connections), so
//! that the agents, DNS pods and edge proxies are seen to relist and converge through each.
//! Set through the lab's loopback listener only (`POST /podnet/faults`, `podnet lab fault`),
//! never through the one the pods and nodes reach.
//!
//! - `endWatches`: every watch under way ends now, mid-stream (the client resumes from the
//!   last version it saw);
//! - `expire=S`: for S seconds, a watch that resumes from a version is answered `410 Gone`
//!   ("too old resource version", as after a compaction): the client must list again;
//! - `delayMs=D&for=S`: for S seconds, every answer waits D ms first;
//! - `refuse=S`: every connection is cut now and, for S seconds, connections are closed as
//!   soon as they are accepted;
//! - `failWrites=S`: for S seconds, every write (a controller's status) is answered
//!   `500 InternalError`, as an API server whose storage times out; reads and watches go on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

/// What is in force, and until when.
#[derive(Debug, Default)]
struct State {
    expire_until: Option<Instant>,
    delay: Option<(Duration, Instant)>,
    refuse_until: Option<Instant>,
    fail_writes_until: Option<Instant>,
    watches_ended: u64,
}

/// The faults of one API.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    /// Bumped to end every watch under way.
    end: watch::Sender<u64>,
    /// Bumped to cut every connection.
    cut: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            state: Mutex::new(State::default()),
            end: watch::channel(0).0,
            cut: watch::channel(0).0,
        }
    }
}

/// Why a request for faults is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("{param}: {value:?} is not a number of seconds")]
    Seconds { param: String, value: String },
    #[error("delayMs: {0:?} is not a number")]
    Millis(String),
    #[error("unknown parameter {0:?} (endWatches, expire, delayMs with for, refuse, failWrites)")]
    Unknown(String),
    #[error("delayMs and for go together")]
    DelayWithoutFor,
}

/// One request for faults (the query of `POST /podnet/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSpec {
    pub end_watches: bool,
    pub expire: Option<Duration>,
    pub delay: Option<(Duration, Duration)>,
    pub refuse: Option<Duration>,
    pub fail_writes: Option<Duration>,
}

impl FaultSpec {
    /// From a query's pairs; an error names the parameter that is wrong.
    pub fn parse(pairs: &[(String, String)]) -> Result<FaultSpec, FaultSpecError> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let secs = |k: &str| -> Result<Option<Duration>, FaultSpecError> {
            get(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|_| FaultSpecError::Seconds {
                            param: k.to_string(),
                            value: v.to_string(),
                        })
                })
                .transpose()
        };
        for (k, _) in pairs {
            if ![
                "endWatches",
                "expire",
                "delayMs",
                "for",
                "refuse",
                "failWrites",
            ]
            .contains(&k.as_str())
            {
                return Err(FaultSpecError::Unknown(k.clone()));
            }
        }
        let delay = match (get("delayMs"), secs("for")?) {
            (None, None) => None,
            (Some(d), Some(f)) => Some((
                Duration::from_millis(
                    d.parse()
                        .map_err(|_| FaultSpecError::Millis(d.to_string()))?,
                ),
                f,
            )),
            _ => return Err(FaultSpecError::DelayWithoutFor),
        };
        Ok(FaultSpec {
            end_watches: matches!(get("endWatches"), Some("true" | "1")),
            expire: secs("expire")?,
            delay,
            refuse: secs("refuse")?,
            fail_writes: secs("failWrites")?,
        })
    }

    /// As a query string, for the client side.
    pub fn query(&self) -> String {
        let mut q = Vec::new();
        if self.end_watches {
            q.push("endWatches=true".to_string());
        }
        if let Some(e) = self.expire {
            q.push(format!("expire={}", e.as_secs()));
        }
        if let Some((d, f)) = self.delay {
            q.push(format!("delayMs={}&for={}", d.as_millis(), f.as_secs()));
        }
        if let Some(r) = self.refuse {
            q.push(format!("refuse={}", r.as_secs()));
        }
        if let Some(w) = self.fail_writes {
            q.push(format!("failWrites={}", w.as_secs()));
        }
        q.join("&")
    }
}

fn live(until: Option<Instant>) -> bool {
    until.is_some_and(|u| Instant::now() < u)
}

impl Faults {
    /// Puts faults in force (each replaces its kind's earlier one).
    pub fn inject(&self, spec: &FaultSpec) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("faults lock");
        if let Some(e) = spec.expire {
            s.expire_until = Some(now + e);
        }
        if let Some((d, f)) = spec.delay {
            s.delay = Some((d, now + f));
        }
        if let Some(r) = spec.refuse {
            s.refuse_until = Some(now + r);
            self.cut.send_modify(|n| *n += 1);
        }
        if let Some(w) = spec.fail_writes {
            s.fail_writes_until = Some(now + w);
        }
        if spec.end_watches {
            s.watches_ended += 1;
            let n = s.watches_ended;
            drop(s);
            self.end.send_replace(n);
        }
    }

    /// Whether connections are closed as they come.
    pub fn refusing(&self) -> bool {
        live(self.state.lock().expect("faults lock").refuse_until)
    }

    /// Whether writes are answered 500.
    pub fn failing_writes(&self) -> bool {
        live(self.state.lock().expect("faults lock").fail_writes_until)
    }

    /// Whether a watch resuming from a version is answered 410 Gone.
    pub fn expiring(&self) -> bool {
        live(self.state.lock().expect("faults lock").expire_until)
    }

    /// How long each answer waits first.
    pub fn delay(&self) -> Option<Duration> {
        let s = self.state.lock().expect("faults lock");
        s.delay.filter(|(_, u)| Instant::now() < *u).map(|(d, _)| d)
    }

    /// Changes when every connection must be cut.
    pub fn cuts(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }

    /// Changes when every watch under way must end.
    pub fn ends(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    /// What is in force, as JSON (seconds left).
    pub fn describe(&self) -> Value {
        let s = self.state.lock().expect("faults lock");
        let left = |u: Option<Instant>| {
            u.and_then(|u| u.checked_duration_since(Instant::now()))
                .map(|d| d.as_secs_f64())
        };
        json!({
            "expireSecondsLeft": left(s.expire_until),
            "delayMs": s.delay.filter(|(_, u)| Instant::now() < *u).map(|(d, _)| d.as_millis() as u64),
            "delaySecondsLeft": left(s.delay.map(|(_, u)| u)),
            "refuseSecondsLeft": left(s.refuse_until),
            "failWritesSecondsLeft": left(s.fail_writes_until),
            "watchesEnded": s.watches_ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn specs_parse_and_print_back() {
        let s = FaultSpec::parse(&pairs(
            "endWatches=true&expire=10&delayMs=300&for=5&refuse=2",
        ))
        .unwrap();
        assert!(s.end_watches);
        assert_eq!(s.expire, Some(Duration::from_secs(10)));
        assert_eq!(
            s.delay,
            Some((Duration::from_millis(300), Duration::from_secs(5)))
        );
        assert_eq!(FaultSpec::parse(&pairs(&s.query())).unwrap(), s);
        assert_eq!(
            FaultSpec::parse(&pairs("delayMs=3")),
            Err(FaultSpecError::DelayWithoutFor)
        );
        assert!(FaultSpec::parse(&pairs("refuse=x"))
            .unwrap_err()
            .to_string()
            .contains("refuse"));
        assert_eq!(
            FaultSpec::parse(&pairs("boom=1")),
            Err(FaultSpecError::Unknown("boom".into()))
        );
    }

    #[test]
    fn faults_last_as_long_as_asked() {
        let f = Faults::default();
        let ends = f.ends();
        f.inject(&FaultSpec {
            end_watches: true,
            expire: Some(Duration::from_secs(60)),
            refuse: Some(Duration::from_millis(0)),
            ..Default::default()
        });
        assert!(ends.has_changed().unwrap());
        assert!(f.expiring());
        assert!(!f.refusing());
        assert_eq!(f.delay(), None);
    }
}
