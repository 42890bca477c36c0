//! The resources the lab serves, as the API's discovery documents describe them.

use podnet_model::Kind;

/// One resource of the API: a kind, as `podnet_model::kind` describes it.
pub use podnet_model::kind::KindInfo as Resource;

/// Everything the lab serves: the kinds it reads, with the addresses it computed.
pub const RESOURCES: &[&Resource] = &[
    Kind::Namespace.info(),
    Kind::Node.info(),
    Kind::Pod.info(),
    Kind::Service.info(),
    Kind::Secret.info(),
    Kind::ConfigMap.info(),
    Kind::EndpointSlice.info(),
    Kind::NetworkPolicy.info(),
    Kind::Ingress.info(),
    Kind::IngressClass.info(),
    Kind::GatewayClass.info(),
    Kind::Gateway.info(),
    Kind::HTTPRoute.info(),
    Kind::GRPCRoute.info(),
    Kind::TLSRoute.info(),
    Kind::BackendTLSPolicy.info(),
    Kind::ReferenceGrant.info(),
    Kind::ListenerSet.info(),
    Kind::ClusterNetworkPolicy.info(),
];

/// The resource of a kind.
pub fn by_kind(kind: Kind) -> Option<&'static Resource> {
    RESOURCES.iter().copied().find(|r| r.kind == kind)
}

/// The resource at a group, version and plural name.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups other than the core one, each with its version, in order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
