//! The flow log's vocabulary, shared by the tables that log (the policy table, the service
//! proxy) and the agent that reads the log (`podnet-flow`): the nfnetlink_log group, the
//! reasons a packet is logged for, each with its prefix and its nftables statement, and the
//! verdicts.

use serde::{Deserialize, Serialize};

/// The nfnetlink_log group the node's tables log to ("pn" in ASCII). Groups are per network
/// namespace: each node's agent reads its own.
pub const GROUP: u16 = 0x706e;

/// How much of each packet the kernel sends: the IP and transport headers (an IPv6 header is
/// 40 bytes, TCP's 20 to 60).
pub const SNAPLEN: u32 = 128;

/// What the tables did with the packet, as Hubble says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Forwarded,
    Dropped,
    Rejected,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Forwarded, Verdict::Dropped, Verdict::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
            Verdict::Rejected => "REJECTED",
        }
    }

    /// The spelling of [`Verdict::as_str`], any case.
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a packet was logged: each is one place in the node's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The destination pod is isolated for ingress and no policy selecting it allows the
    /// connection (the end of its ingress group's chain).
    PolicyIngress,
    /// The source pod is isolated for egress and no policy selecting it allows the connection.
    PolicyEgress,
    /// A local pod's address the policy table does not know yet (a pod created a moment ago):
    /// nothing in or out until it does.
    UnknownPod,
    /// A connection to a Service port with no endpoint (rejected: TCP reset, ICMP
    /// unreachable).
    NoEndpoints,
    /// A new connection the policy table let through (sampled).
    Allowed,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::PolicyIngress,
        Reason::PolicyEgress,
        Reason::UnknownPod,
        Reason::NoEndpoints,
        Reason::Allowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PolicyIngress => "policy-ingress",
            Reason::PolicyEgress => "policy-egress",
            Reason::UnknownPod => "unknown-pod",
            Reason::NoEndpoints => "no-endpoints",
            Reason::Allowed => "allowed",
        }
    }

    /// The prefix its log statement gives the kernel (at most 127 bytes).
    pub fn prefix(self) -> String {
        format!("podnet:{}", self.as_str())
    }

    /// The reason a logged packet's prefix names; None for a prefix that is not podnet's.
    pub fn from_prefix(prefix: &str) -> Option<Reason> {
        let name = prefix.strip_prefix("podnet:")?;
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn verdict(self) -> Verdict {
        match self {
            Reason::PolicyIngress | Reason::PolicyEgress | Reason::UnknownPod => Verdict::Dropped,
            Reason::NoEndpoints => Verdict::Rejected,
            Reason::Allowed => Verdict::Forwarded,
        }
    }

    /// The nftables statement that logs a packet for this reason, to put before the rule's
    /// verdict.
    pub fn log_statement(self) -> String {
        format!(
            "log prefix \"{}\" group {GROUP} snaplen {SNAPLEN}",
            self.prefix()
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_read_back_and_fit_the_kernel() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_prefix(&r.prefix()), Some(r));
            assert!(r.prefix().len() < 128);
        }
        assert_eq!(Reason::from_prefix("podnet:other"), None);
        assert_eq!(Reason::from_prefix("policy-ingress"), None);
        assert_eq!(Verdict::parse("dropped"), Some(Verdict::Dropped));
        assert_eq!(
            Reason::PolicyIngress.log_statement(),
            "log prefix \"podnet:policy-ingress\" group 28782 snaplen 128"
        );
    }
}
