//! Flow events: what happened to a connection, as the node's own tables saw it.
//!
//! The points that matter carry an nftables `log group` statement (nfnetlink_log), each with
//! a prefix that names why ([`Reason::prefix`]): a connection dropped by policy on the
//! destination's side or the source's, a local pod the policy table does not know yet, a
//! connection to a Service with no endpoints (rejected), and, sampled, new connections the
//! policy table let through. The kernel sends each such packet's headers (at most
//! [`SNAPLEN`] bytes, and the connection's original tuple from conntrack) to the group's
//! socket, per network namespace ([`reader`]). [`packet`] decodes them; [`record`] tells
//! each as a flow record (the pods at both ends, the Service used, the policies that
//! selected the isolated end) from the model, as `podnet explain` does; [`store`] keeps the
//! latest and hands new ones to whoever follows.
//!
//! Like Hubble's flows: a verdict (FORWARDED, DROPPED, REJECTED) and a reason, per packet
//! logged. The kernel logs the first packet of a connection only (the tables log `ct state
//! new` packets; an established connection's packets are accepted before any rule that logs).

pub mod client;
pub mod packet;
pub mod reader;
pub mod record;
pub mod store;

pub use podnet_model::flow::{Reason, Verdict, GROUP, SNAPLEN};

/// What can go wrong reading flow events.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("nfnetlink_log: {what}")]
    Socket {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nfnetlink_log: the kernel refused {what}: {}", errno_text(.code))]
    Refused { what: String, code: i32 },
    #[error("nfnetlink_log: a message that does not decode: {0}")]
    Decode(String),
    /// The socket's buffer overflowed: the kernel dropped messages (how many it does not say).
    #[error("nfnetlink_log: the socket's buffer overflowed; events were lost")]
    Overrun,
}

/// Which flows a reader wants: by verdict, and by a pod at either end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these (all when empty).
    pub verdicts: Vec<Verdict>,
    /// `namespace/name` of a pod at either end.
    pub pod: Option<String>,
    /// Only flows after this time (a follower that connects again after losing its agent
    /// asks for what came after the last one it had).
    pub since: Option<jiff::Timestamp>,
}

impl Filter {
    pub fn matches(&self, f: &record::Flow) -> bool {
        (self.verdicts.is_empty() || self.verdicts.contains(&f.verdict))
            && self
                .pod
                .as_deref()
                .is_none_or(|p| f.source.is_pod(p) || f.destination.is_pod(p))
            && self
                .since
                .is_none_or(|since| f.at().is_some_and(|t| t > since))
    }

    /// The filter from a URL's query (`verdict=DROPPED&verdict=REJECTED&pod=ns/name&since=
    /// 2026-12-07T13:00:00.5Z`); an unknown verdict or a time that does not read is an error
    /// naming it.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (k, v) in pairs {
            match k {
                "verdict" => f
                    .verdicts
                    .push(Verdict::parse(v).ok_or_else(|| format!("verdict={v}: not a verdict"))?),
                "pod" => f.pod = Some(v.to_string()),
                "since" => {
                    f.since = Some(
                        v.parse()
                            .map_err(|_| format!("since={v}: not an RFC 3339 time"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(f)
    }
}

/// An error and its causes, on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The system's words for a netlink error code (negative, as the kernel sends it).
fn errno_text(code: &i32) -> String {
    std::io::Error::from_raw_os_error(code.saturating_abs()).to_string()
}
