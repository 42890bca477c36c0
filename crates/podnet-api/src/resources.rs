//! The resources the lab serves, as the API's discovery documents describe them.

/// One resource of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

impl Resource {
    /// `v1` or `group/version`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path prefix of the resource's group and version: `/api/v1` or `/apis/g/v`.
    pub fn base(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Every kind of this resource in a list: `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const fn r(
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        kind,
        group,
        version: "v1",
        plural,
        singular,
        namespaced,
        short_names,
    }
}

/// Everything the lab serves: the kinds it reads, with the addresses it computed.
pub const RESOURCES: &[Resource] = &[
    r("Namespace", "", "namespaces", "namespace", false, &["ns"]),
    r("Node", "", "nodes", "node", false, &["no"]),
    r("Pod", "", "pods", "pod", true, &["po"]),
    r("Service", "", "services", "service", true, &["svc"]),
    r("Secret", "", "secrets", "secret", true, &[]),
    r(
        "EndpointSlice",
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        true,
        &[],
    ),
    r(
        "NetworkPolicy",
        "networking.k8s.io",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
    ),
    r(
        "Ingress",
        "networking.k8s.io",
        "ingresses",
        "ingress",
        true,
        &["ing"],
    ),
    r(
        "IngressClass",
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        false,
        &[],
    ),
    r(
        "GatewayClass",
        "gateway.networking.k8s.io",
        "gatewayclasses",
        "gatewayclass",
        false,
        &["gc"],
    ),
    r(
        "Gateway",
        "gateway.networking.k8s.io",
        "gateways",
        "gateway",
        true,
        &["gtw"],
    ),
    r(
        "HTTPRoute",
        "gateway.networking.k8s.io",
        "httproutes",
        "httproute",
        true,
        &[],
    ),
    r(
        "ReferenceGrant",
        "gateway.networking.k8s.io",
        "referencegrants",
        "referencegrant",
        true,
        &["refgrant"],
    ),
];

/// The resource of a kind.
pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The resource at a group, version and plural name.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups other than the core one, in order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}
