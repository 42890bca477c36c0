//! podnet's cluster model: what Kubernetes computes from a set of manifests.
//!
//! This crate does no I/O. It takes manifest text (YAML or JSON, multi-document, `kind: List`),
//! decodes it into typed Kubernetes objects (k8s-openapi), validates what the API server would,
//! and computes the cluster: namespaces, nodes with their podCIDRs, pods made from workloads and
//! placed on nodes with IPs, Services with ClusterIPs, NodePorts and LoadBalancer addresses, and
//! their endpoints as the EndpointSlice controller computes them.
//!
//! Every error names the file, line and column, the object and the field path. Nothing is built
//! half-way: [`build`] returns either a whole [`Cluster`] or every error found.
//!
//! ```
//! # use podnet_model::{parse_documents, build, ConfigOverrides};
//! let docs = parse_documents("app.yaml", r#"
//! apiVersion: v1
//! kind: Service
//! metadata: {name: my-service}
//! spec:
//!   selector: {app: my-app}
//!   ports: [{port: 80, targetPort: 8080}]
//! "#).unwrap();
//! let cluster = build(&docs, &ConfigOverrides::default()).unwrap();
//! let svc = cluster.service("default", "my-service").unwrap();
//! assert!(cluster.config.service_cidr.contains(&svc.cluster_ips[0]));
//! ```

pub mod api;
mod build;
mod checks;
pub mod config;
pub mod diag;
pub mod dns;
pub mod edge;
pub mod endpoints;
pub mod gateway;
pub mod gateway_api;
pub mod model;
pub mod names;
pub mod netpol;
pub mod objects;
pub mod plan;
pub mod resolv;
pub mod selector;
pub mod source;
pub mod validation;

pub use api::{ApiKey, ApiModel, Changed};
pub use build::{build, build_with};
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
