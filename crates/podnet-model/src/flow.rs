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

    /// The reason a logged packet's prefix names, and whether the prefix says the packet's
    /// destination was translated (a Service's address, before the proxy chose an endpoint:
    /// [`Reason::log_translated`]); None for a prefix that is not podnet's.
    pub fn from_prefix(prefix: &str) -> Option<(Reason, bool)> {
        let name = prefix.strip_prefix("podnet:")?;
        let (name, translated) = match name.strip_suffix(TRANSLATED) {
            Some(n) => (n, true),
            None => (name, false),
        };
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .map(|r| (r, translated))
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

    /// The rule that logs a packet for this reason when conntrack says its destination was
    /// translated (`ct status dnat`: sent to a Service, now to one of its endpoints), with a
    /// prefix that says so; to put before the rule with [`Reason::log_statement`]. This
    /// kernel cannot attach the connection's original tuple to a logged packet
    /// (`CONFIG_NETFILTER_NETLINK_GLUE_CT`); the prefix at least says a Service was used.
    pub fn log_translated(self) -> String {
        format!(
            "ct status dnat log prefix \"{}{TRANSLATED}\" group {GROUP} snaplen {SNAPLEN}",
            self.prefix()
        )
    }
}

/// The end of a prefix that says the packet's destination was translated.
pub const TRANSLATED: &str = "+dnat";

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
            assert_eq!(Reason::from_prefix(&r.prefix()), Some((r, false)));
            let t = format!("{}{TRANSLATED}", r.prefix());
            assert_eq!(Reason::from_prefix(&t), Some((r, true)));
            assert!(t.len() < 128);
        }
        assert_eq!(Reason::from_prefix("podnet:other"), None);
        assert_eq!(Reason::from_prefix("policy-ingress"), None);
        assert_eq!(Reason::from_prefix("podnet:policy-ingress+snat"), None);
        assert_eq!(Verdict::parse("dropped"), Some(Verdict::Dropped));
        assert_eq!(
            Reason::PolicyIngress.log_statement(),
            "log prefix \"podnet:policy-ingress\" group 28782 snaplen 128"
        );
    }
}
