//! The cluster model: what Kubernetes would compute from a set of manifests.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

pub use crate::selector::{selector_matches, Labels};

/// A namespaced object's key: `namespace/name`, the one typed key of every crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NsName {
    pub namespace: String,
    pub name: String,
}

impl NsName {
    pub fn new(namespace: &str, name: &str) -> Self {
        NsName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// Where a running pod is. The scheduler never moves a running pod, and its address stays:
/// given these, the emulator (`podnet_emulator::build_with`) places only the pods that are new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub node: String,
    /// The pod's addresses, one per family.
    pub ips: Vec<IpAddr>,
}

/// The running pods' placements, by pod.
pub type Placements = BTreeMap<NsName, Placement>;

/// A transport protocol as Kubernetes spells it (`TCP`, `UDP`, `SCTP`): the one protocol type of
/// every podnet crate.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The API's spelling: exactly `TCP`, `UDP` or `SCTP`.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// A field of a checked object: `None` is the API's default, TCP. The checks have already
    /// refused every other spelling, so one here is a bug.
    pub fn of_checked(field: Option<&str>) -> Protocol {
        let s = field.unwrap_or("TCP");
        Protocol::parse(s).unwrap_or_else(|| panic!("protocol {s:?} passed the checks"))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Lower case, as nftables, SRV names and iproute2 spell it.
    pub fn lower(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for NsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: Labels,
    /// False when the namespace was created because an object used it.
    pub declared: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own address (InternalIP), on the node network.
    #[serde(rename = "internalIP")]
    pub internal_ip: IpAddr,
    /// The node's IPv6 address (an IPv6 or dual-stack cluster's second InternalIP).
    #[serde(rename = "internalIPv6", skip_serializing_if = "Option::is_none")]
    pub internal_ipv6: Option<IpAddr>,
}

impl NodeInfo {
    /// The node's InternalIPs, its primary family's first (the family of its first podCIDR),
    /// as the kubelet reports them with `--node-ip=<primary>,<secondary>`.
    pub fn internal_ips(&self) -> Vec<IpAddr> {
        let v6_first = self.pod_cidrs.first().is_some_and(|c| c.addr().is_ipv6());
        let mut ips: Vec<IpAddr> = std::iter::once(self.internal_ip)
            .chain(self.internal_ipv6)
            .collect();
        if v6_first {
            ips.reverse();
        }
        ips
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPortInfo {
    pub container: String,
    pub name: Option<String>,
    pub container_port: i32,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerInfo {
    pub kind: String,
    pub name: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// None while the pod cannot be scheduled.
    #[serialize_always]
    pub node: Option<String>,
    /// Pod IPs; empty until scheduled. A list, for dual-stack.
    pub ips: Vec<IpAddr>,
    pub phase: String,
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    pub host_network: bool,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    pub containers: Vec<String>,
    pub ports: Vec<ContainerPortInfo>,
    pub owner: Option<OwnerInfo>,
    /// The full spec, for the parts later subsystems read (dnsPolicy, dnsConfig).
    #[serde(skip)]
    pub spec: std::sync::Arc<PodSpec>,
}

impl PodInfo {
    pub fn key(&self) -> NsName {
        NsName::new(&self.namespace, &self.name)
    }

    /// The pod as reached at its address of `family` (that address first): what a connection
    /// of that family judges it by (an ipBlock matches the address the connection uses).
    /// None when the pod has no such address.
    pub fn at(&self, family: IpFamily) -> Option<PodInfo> {
        let i = self.ips.iter().position(|ip| IpFamily::of(*ip) == family)?;
        let mut p = self.clone();
        p.ips.swap(0, i);
        Some(p)
    }

    /// The port a named targetPort resolves to in this pod (`FindPort`): the first container
    /// port with that name and protocol.
    pub fn find_port(&self, name: &str, protocol: Protocol) -> Option<i32> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.container_port)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
    /// NodePort and LoadBalancer Services get node ports.
    pub fn has_node_ports(&self) -> bool {
        matches!(self, ServiceType::NodePort | ServiceType::LoadBalancer)
    }
}

pub use podnet_objects::config::IpFamily;

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IpFamilyPolicy {
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

impl IpFamilyPolicy {
    pub const ALL: [IpFamilyPolicy; 3] = [
        IpFamilyPolicy::PreferDualStack,
        IpFamilyPolicy::RequireDualStack,
        IpFamilyPolicy::SingleStack,
    ];
    pub fn parse(s: &str) -> Option<IpFamilyPolicy> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            IpFamilyPolicy::SingleStack => "SingleStack",
            IpFamilyPolicy::PreferDualStack => "PreferDualStack",
            IpFamilyPolicy::RequireDualStack => "RequireDualStack",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for TargetPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(s) => write!(f, "{s}"),
        }
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortInfo {
    pub name: String,
    pub protocol: Protocol,
    pub port: i32,
    pub target_port: TargetPort,
    pub node_port: Option<i32>,
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPortInfo {
    pub name: String,
    pub port: i32,
    pub protocol: Protocol,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInfo {
    pub addresses: Vec<IpAddr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    /// The pod behind the endpoint (same namespace as the Service).
    pub pod: Option<String>,
}

/// An EndpointSlice: endpoints that share one set of ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSliceInfo {
    pub name: String,
    pub address_type: String,
    /// `endpointslice-controller.k8s.io`, `endpointslicemirroring-controller.k8s.io`, or the
    /// manager a user-supplied slice names.
    pub managed_by: String,
    pub ports: Vec<EndpointPortInfo>,
    pub endpoints: Vec<EndpointInfo>,
}

pub const MANAGED_BY_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// The label that ties an EndpointSlice to its Service (`discovery.k8s.io/v1`).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service an EndpointSlice belongs to, by its label; None for a slice of no Service.
pub fn slice_service(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Option<&String> {
    slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)
}
pub const MANAGED_BY_MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";

/// A Service as the model holds it. `Default`: a ClusterIP Service with nothing in it, traffic
/// policies `Cluster` (the API server's defaults), for building one field by field.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    pub labels: Labels,
    /// None for a Service without a selector (endpoints come from user EndpointSlices).
    #[serialize_always]
    pub selector: Option<Labels>,
    /// Empty for headless and ExternalName Services. A list, for dual-stack.
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ipFamilyPolicy` as the API server sets it; None for ExternalName Services.
    pub ip_family_policy: Option<IpFamilyPolicy>,
    /// `spec.ipFamilies`, the primary first (headless Services have them too); empty for
    /// ExternalName Services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<IpFamily>,
    pub headless: bool,
    pub external_name: Option<String>,
    pub ports: Vec<ServicePortInfo>,
    #[serde(rename = "externalIPs")]
    pub external_ips: Vec<IpAddr>,
    #[serde(rename = "loadBalancerIPs")]
    pub load_balancer_ips: Vec<IpAddr>,
    /// `sessionAffinity: ClientIP` timeout in seconds; None for no affinity.
    pub session_affinity_timeout: Option<i32>,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    pub health_check_node_port: Option<i32>,
    pub publish_not_ready_addresses: bool,
    pub endpoint_slices: Vec<EndpointSliceInfo>,
    /// Created by podnet itself (`default/kubernetes`), not by a manifest.
    #[serde(skip)]
    pub builtin: bool,
}

impl ServiceInfo {
    pub fn key(&self) -> NsName {
        NsName::new(&self.namespace, &self.name)
    }
    /// All endpoints of all slices.
    pub fn endpoints(&self) -> impl Iterator<Item = (&EndpointSliceInfo, &EndpointInfo)> {
        self.endpoint_slices
            .iter()
            .flat_map(|s| s.endpoints.iter().map(move |e| (s, e)))
    }
}

/// The model of a whole cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub config: ClusterConfig,
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    pub nodes: Vec<NodeInfo>,
    /// Sorted by namespace and name.
    pub pods: Vec<PodInfo>,
    /// Sorted by namespace and name.
    pub services: Vec<ServiceInfo>,
    /// Objects later subsystems read as they are.
    pub network_policies:
        Vec<crate::objects::Sourced<k8s_openapi::api::networking::v1::NetworkPolicy>>,
    pub ingresses: Vec<crate::objects::Sourced<k8s_openapi::api::networking::v1::Ingress>>,
    pub ingress_classes:
        Vec<crate::objects::Sourced<k8s_openapi::api::networking::v1::IngressClass>>,
    pub secrets: Vec<crate::objects::Sourced<k8s_openapi::api::core::v1::Secret>>,
    pub gateway_classes: Vec<crate::objects::Sourced<crate::gateway_api::GatewayClass>>,
    pub gateways: Vec<crate::objects::Sourced<crate::gateway_api::Gateway>>,
    pub http_routes: Vec<crate::objects::Sourced<crate::gateway_api::HTTPRoute>>,
    pub tls_routes: Vec<crate::objects::Sourced<crate::gateway_api::TLSRoute>>,
    pub grpc_routes: Vec<crate::objects::Sourced<crate::gateway_api::GRPCRoute>>,
    pub backend_tls_policies: Vec<crate::objects::Sourced<crate::gateway_api::BackendTLSPolicy>>,
    /// ConfigMaps: the CA certificates of BackendTLSPolicies (`ca.crt`).
    pub config_maps: Vec<crate::objects::Sourced<k8s_openapi::api::core::v1::ConfigMap>>,
    pub reference_grants: Vec<crate::objects::Sourced<crate::gateway_api::ReferenceGrant>>,
    pub listener_sets: Vec<crate::objects::Sourced<crate::gateway_api::ListenerSet>>,
    /// Sorted by name.
    pub cluster_network_policies:
        Vec<crate::objects::Sourced<crate::policy_api::ClusterNetworkPolicy>>,
    /// Warnings found while building.
    pub warnings: Vec<crate::diag::Diagnostic>,
    /// Inputs endpoints are recomputed from when pod IPs change.
    pub user_slices: Vec<(NsName, EndpointSliceInfo)>,
}

impl Cluster {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodInfo> {
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.pods[i])
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceInfo> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.services[i])
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Takes in the pod IPs the runtime really assigned (the CNI may differ from the plan) and
    /// recomputes every Service's endpoints from them.
    pub fn set_pod_ips(&mut self, actual: &HashMap<NsName, Vec<IpAddr>>) {
        for p in &mut self.pods {
            if let Some(ips) = actual.get(&p.key()) {
                p.ips = ips.clone();
            }
        }
        crate::endpoints::compute_all(self);
    }
}

/// A pod template and where pods made from it go.
#[derive(Debug, Clone)]
pub struct PodSource {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub spec: std::sync::Arc<PodSpec>,
    pub owner: Option<OwnerInfo>,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    pub phase: String,
    pub fixed_ip: Option<(IpAddr, crate::diag::Location)>,
}

impl PodSource {
    /// A pod made from a workload's template; `spec` is shared by all replicas.
    pub fn from_template(
        namespace: &str,
        name: String,
        t: &PodTemplateSpec,
        spec: std::sync::Arc<PodSpec>,
        owner: OwnerInfo,
    ) -> Self {
        let labels: Labels = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        PodSource {
            namespace: namespace.to_string(),
            name,
            labels,
            hostname: spec.hostname.clone(),
            subdomain: spec.subdomain.clone(),
            spec,
            owner: Some(owner),
            ready: true,
            terminating: false,
            phase: "Running".to_string(),
            fixed_ip: None,
        }
    }
}
