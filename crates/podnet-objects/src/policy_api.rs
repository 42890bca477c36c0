//! SIG Network's cluster-scoped policy API (`policy.networking.k8s.io/v1alpha2`,
//! network-policy-api v0.2.0): ClusterNetworkPolicy, the cluster administrator's tiers above
//! (`Admin`) and below (`Baseline`) NetworkPolicy.
//!
//! Written here as serde types, field for field from `apis/v1alpha2/clusternetworkpolicy_types.go`
//! of kubernetes-sigs/network-policy-api (the experimental channel, a superset of the standard
//! one), for the reasons [`crate::gateway_api`] gives. The enums (tier, action) decode
//! strictly: a value the CRD's enum does not list is an error at its line. A peer or protocol
//! that sets no field is kept as it is: an object from an API server with a newer CRD may carry
//! a field this version does not know, and the API says to fail closed then (the model does).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "policy.networking.k8s.io";
/// The apiVersion of ClusterNetworkPolicy.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";

/// A cluster-wide network policy, in the Admin tier (above NetworkPolicy) or the Baseline
/// tier (below it).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicy {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ClusterNetworkPolicySpec,
    pub status: Option<ClusterNetworkPolicyStatus>,
}

impl ClusterNetworkPolicy {
    pub const KIND: &'static str = "ClusterNetworkPolicy";

    /// Its name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` or `Baseline` (required: the CRD has no default).
    pub tier: Option<Tier>,
    /// 0..=1000; lower is evaluated first within the tier.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

/// The tiers a ClusterNetworkPolicy can be in: the Admin tier is evaluated before
/// NetworkPolicy, the Baseline tier after it (for pods no NetworkPolicy selects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Admin,
    Baseline,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Allowed; nothing further in this direction is consulted (an egress Accept does not
    /// bypass the destination's ingress rules).
    Accept,
    /// Dropped; nothing further is consulted.
    Deny,
    /// The rest of this tier is skipped: the next tier decides.
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pods a policy applies to: exactly one field (host-network pods are never subjects).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// Every pod of the namespaces this selects.
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

/// Pods by their namespace's labels and their own (AND); an empty selector takes in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Up to 100 characters; for people reading and for the flow log.
    pub name: Option<String>,
    pub action: Option<Action>,
    #[serde(default)]
    pub from: Vec<IngressPeer>,
    pub protocols: Option<Vec<ProtocolMatch>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    pub name: Option<String>,
    pub action: Option<Action>,
    #[serde(default)]
    pub to: Vec<EgressPeer>,
    pub protocols: Option<Vec<ProtocolMatch>>,
}

/// A source of ingress traffic: exactly one field.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressPeer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

/// A destination of egress traffic: exactly one field.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressPeer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    /// Experimental: the nodes' `status.addresses` (how host-network pods are reached).
    pub nodes: Option<LabelSelector>,
    /// CIDRs (up to 25), matching every destination address inside them, pods' too.
    pub networks: Option<Vec<String>>,
    /// Experimental, Accept rules only: DNS names (exact, or `*.` and one or more labels).
    pub domain_names: Option<Vec<String>>,
}

/// One protocol match: exactly one field.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMatch {
    pub tcp: Option<ProtocolPort>,
    pub udp: Option<ProtocolPort>,
    pub sctp: Option<ProtocolPort>,
    /// The destination pod's container port of that name (its protocol and number).
    pub destination_named_port: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolPort {
    /// None: every port of the protocol.
    pub destination_port: Option<Port>,
}

/// A port number or a range: exactly one.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub number: Option<i32>,
    pub range: Option<PortRange>,
}

/// Inclusive; `start < end`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    pub start: i32,
    pub end: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl IngressPeer {
    /// How many of its fields are set (the CRD wants exactly one).
    pub fn fields(&self) -> usize {
        usize::from(self.namespaces.is_some()) + usize::from(self.pods.is_some())
    }
}

impl EgressPeer {
    /// How many of its fields are set (the CRD wants exactly one).
    pub fn fields(&self) -> usize {
        usize::from(self.namespaces.is_some())
            + usize::from(self.pods.is_some())
            + usize::from(self.nodes.is_some())
            + usize::from(self.networks.is_some())
            + usize::from(self.domain_names.is_some())
    }
}

impl ProtocolMatch {
    /// How many of its fields are set (the CRD wants exactly one).
    pub fn fields(&self) -> usize {
        usize::from(self.tcp.is_some())
            + usize::from(self.udp.is_some())
            + usize::from(self.sctp.is_some())
            + usize::from(self.destination_named_port.is_some())
    }
}
