//! The kinds podnet reads: one table for parsing manifests, the agent's watches, the lab's API
//! resources and `check`'s output. A kind's name is compared nowhere else.

use std::fmt;

/// A kind of object podnet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    Secret,
    ConfigMap,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    EndpointSlice,
    NetworkPolicy,
    Ingress,
    IngressClass,
    GatewayClass,
    Gateway,
    HTTPRoute,
    GRPCRoute,
    TLSRoute,
    BackendTLSPolicy,
    ReferenceGrant,
    ListenerSet,
    ClusterNetworkPolicy,
    /// podnet's own: the cluster's settings, in manifests only.
    ClusterConfig,
}

/// What the API says of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: Kind,
    /// As manifests and the API spell it: `Pod`.
    pub name: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// The resource's name in the API's paths: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

/// The Gateway API's group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// SIG Network's policy API group (`ClusterNetworkPolicy`).
pub const POLICY_GROUP: &str = "policy.networking.k8s.io";
/// podnet's own group (`ClusterConfig`).
pub const PODNET_GROUP: &str = "podnet.dev";

const fn k(
    kind: Kind,
    name: &'static str,
    group: &'static str,
    version: &'static str,
    (plural, singular): (&'static str, &'static str),
    namespaced: bool,
    short_names: &'static [&'static str],
) -> KindInfo {
    KindInfo {
        kind,
        name,
        group,
        version,
        plural,
        singular,
        namespaced,
        short_names,
    }
}

/// Every kind, in [`Kind`]'s order.
const TABLE: [KindInfo; 25] = [
    k(
        Kind::Namespace,
        "Namespace",
        "",
        "v1",
        ("namespaces", "namespace"),
        false,
        &["ns"],
    ),
    k(
        Kind::Node,
        "Node",
        "",
        "v1",
        ("nodes", "node"),
        false,
        &["no"],
    ),
    k(Kind::Pod, "Pod", "", "v1", ("pods", "pod"), true, &["po"]),
    k(
        Kind::Service,
        "Service",
        "",
        "v1",
        ("services", "service"),
        true,
        &["svc"],
    ),
    k(
        Kind::Endpoints,
        "Endpoints",
        "",
        "v1",
        ("endpoints", "endpoints"),
        true,
        &["ep"],
    ),
    k(
        Kind::Secret,
        "Secret",
        "",
        "v1",
        ("secrets", "secret"),
        true,
        &[],
    ),
    k(
        Kind::ConfigMap,
        "ConfigMap",
        "",
        "v1",
        ("configmaps", "configmap"),
        true,
        &["cm"],
    ),
    k(
        Kind::Deployment,
        "Deployment",
        "apps",
        "v1",
        ("deployments", "deployment"),
        true,
        &["deploy"],
    ),
    k(
        Kind::ReplicaSet,
        "ReplicaSet",
        "apps",
        "v1",
        ("replicasets", "replicaset"),
        true,
        &["rs"],
    ),
    k(
        Kind::StatefulSet,
        "StatefulSet",
        "apps",
        "v1",
        ("statefulsets", "statefulset"),
        true,
        &["sts"],
    ),
    k(
        Kind::DaemonSet,
        "DaemonSet",
        "apps",
        "v1",
        ("daemonsets", "daemonset"),
        true,
        &["ds"],
    ),
    k(
        Kind::EndpointSlice,
        "EndpointSlice",
        "discovery.k8s.io",
        "v1",
        ("endpointslices", "endpointslice"),
        true,
        &[],
    ),
    k(
        Kind::NetworkPolicy,
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        ("networkpolicies", "networkpolicy"),
        true,
        &["netpol"],
    ),
    k(
        Kind::Ingress,
        "Ingress",
        "networking.k8s.io",
        "v1",
        ("ingresses", "ingress"),
        true,
        &["ing"],
    ),
    k(
        Kind::IngressClass,
        "IngressClass",
        "networking.k8s.io",
        "v1",
        ("ingressclasses", "ingressclass"),
        false,
        &[],
    ),
    k(
        Kind::GatewayClass,
        "GatewayClass",
        GATEWAY_GROUP,
        "v1",
        ("gatewayclasses", "gatewayclass"),
        false,
        &["gc"],
    ),
    k(
        Kind::Gateway,
        "Gateway",
        GATEWAY_GROUP,
        "v1",
        ("gateways", "gateway"),
        true,
        &["gtw"],
    ),
    k(
        Kind::HTTPRoute,
        "HTTPRoute",
        GATEWAY_GROUP,
        "v1",
        ("httproutes", "httproute"),
        true,
        &[],
    ),
    k(
        Kind::GRPCRoute,
        "GRPCRoute",
        GATEWAY_GROUP,
        "v1",
        ("grpcroutes", "grpcroute"),
        true,
        &[],
    ),
    k(
        Kind::TLSRoute,
        "TLSRoute",
        GATEWAY_GROUP,
        "v1",
        ("tlsroutes", "tlsroute"),
        true,
        &[],
    ),
    k(
        Kind::BackendTLSPolicy,
        "BackendTLSPolicy",
        GATEWAY_GROUP,
        "v1",
        ("backendtlspolicies", "backendtlspolicy"),
        true,
        &["btlspolicy"],
    ),
    k(
        Kind::ReferenceGrant,
        "ReferenceGrant",
        GATEWAY_GROUP,
        "v1",
        ("referencegrants", "referencegrant"),
        true,
        &["refgrant"],
    ),
    k(
        Kind::ListenerSet,
        "ListenerSet",
        GATEWAY_GROUP,
        "v1",
        ("listenersets", "listenerset"),
        true,
        &[],
    ),
    k(
        Kind::ClusterNetworkPolicy,
        "ClusterNetworkPolicy",
        POLICY_GROUP,
        "v1alpha2",
        ("clusternetworkpolicies", "clusternetworkpolicy"),
        false,
        &["cnp"],
    ),
    k(
        Kind::ClusterConfig,
        "ClusterConfig",
        PODNET_GROUP,
        "v1alpha1",
        ("clusterconfigs", "clusterconfig"),
        false,
        &[],
    ),
];

impl KindInfo {
    /// `v1` or `group/version`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The API's path prefix of the kind's group and version: `/api/v1` or `/apis/g/v`.
    pub fn base(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// A list of the kind's objects: `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.name)
    }
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 25] = {
        let mut all = [Kind::Namespace; 25];
        let mut i = 0;
        while i < 25 {
            all[i] = TABLE[i].kind;
            i += 1;
        }
        all
    };

    pub const fn info(self) -> &'static KindInfo {
        &TABLE[self as usize]
    }

    /// Whether the model takes objects of the kind from the API (the workload controllers'
    /// kinds and Endpoints it computes from manifests only; ClusterConfig is podnet's own).
    pub const fn read_from_api(self) -> bool {
        !matches!(
            self,
            Kind::Endpoints
                | Kind::Deployment
                | Kind::ReplicaSet
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::ClusterConfig
        )
    }

    /// Whether a controller writes the kind's status through the API's `status` subresource
    /// (the Ingress controller an Ingress's, the Gateway controller those of the Gateway API's
    /// kinds): the only writes the lab's API takes, and what it keeps when the lab changes.
    pub const fn status_by_controllers(self) -> bool {
        matches!(
            self,
            Kind::Ingress
                | Kind::GatewayClass
                | Kind::Gateway
                | Kind::HTTPRoute
                | Kind::GRPCRoute
                | Kind::TLSRoute
                | Kind::BackendTLSPolicy
                | Kind::ListenerSet
        )
    }

    /// As manifests and the API spell it: `Pod`.
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The kind named `name` (exactly as the API spells it).
    pub fn parse(name: &str) -> Option<Kind> {
        TABLE.iter().find(|i| i.name == name).map(|i| i.kind)
    }

    pub fn group(self) -> &'static str {
        self.info().group
    }

    pub fn version(self) -> &'static str {
        self.info().version
    }

    /// `v1` or `group/version`, as in `apiVersion`.
    pub fn api_version(self) -> String {
        self.info().api_version()
    }

    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    pub fn namespaced(self) -> bool {
        self.info().namespaced
    }

    /// Whether the kind is a custom resource (its CustomResourceDefinition may be missing
    /// from a cluster): the Gateway API's, ClusterNetworkPolicy, podnet's own.
    pub fn is_custom(self) -> bool {
        matches!(
            self.info().group,
            GATEWAY_GROUP | POLICY_GROUP | PODNET_GROUP
        )
    }

    /// Whether the kind is the Gateway API's.
    pub fn is_gateway_api(self) -> bool {
        self.info().group == GATEWAY_GROUP
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its name: `"Pod"`.
impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = crate::config::BadValue;
    fn from_str(s: &str) -> Result<Kind, Self::Err> {
        Kind::parse(s).ok_or_else(|| crate::config::BadValue {
            value: s.to_string(),
            expected: "a kind podnet reads",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order_and_every_name_parses_back() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
            assert_eq!(k.info().kind, *k);
        }
        assert_eq!(Kind::parse("pod"), None);
        assert_eq!(Kind::Pod.api_version(), "v1");
        assert_eq!(
            Kind::HTTPRoute.api_version(),
            "gateway.networking.k8s.io/v1"
        );
    }
}
