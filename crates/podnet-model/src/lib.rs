//! podnet's cluster model: what Kubernetes computes from its objects, and what each part of
//! podnet serves from it.
//!
//! This crate does no I/O. It holds the [`Cluster`] (namespaces, nodes, pods with their
//! addresses, Services with their endpoints) and the semantics computed from it: endpoints as
//! the EndpointSlice controller computes them ([`endpoints`]), DNS records ([`dns`],
//! [`resolv`]), NetworkPolicy ([`netpol`]), the Ingress and Gateway API as data ([`edge`],
//! [`gateway`]), and the agent's model kept from the API one object at a time ([`api`]).
//!
//! The objects it is computed from are `podnet-objects`' (re-exported here: [`source`],
//! [`objects`], [`diag`], [`config`] ...); a cluster computed from manifests alone, as the
//! control plane would (scheduling, allocators, workload controllers), is
//! `podnet-emulator`'s, used only by `podnet check` and the lab.

pub mod api;
pub mod cnp;
pub mod convert;
pub mod dns;
pub mod edge;
pub mod endpoints;
pub mod flow;
pub mod gateway;
pub mod model;
pub mod names;
pub mod netpol;
pub mod nftset;
pub mod plan;
pub mod resolv;

pub use podnet_objects::Kind;
pub use podnet_objects::{
    checks, config, diag, gateway_api, kind, objects, policy_api, selector, source, validation,
};

pub use api::{ApiKey, ApiModel, Changed};
pub use config::{ClusterConfig, ConfigOverrides, IpRange, PortRange};
pub use diag::{Diagnostic, Location, ModelError, ObjectRef, Severity};
pub use model::*;
pub use source::{parse_documents, SourceDoc};

/// Serde for maps with structured keys (`BTreeMap<NsName, _>`, ...): a list of `[key, value]`
/// pairs, since JSON object keys must be strings. Use as `#[serde(with = "podnet_model::pairs")]`.
pub mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
