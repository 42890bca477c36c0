//! The control plane, emulated: a whole [`Cluster`] computed from manifests alone, as a
//! cluster's own control plane would compute it. Used by `podnet check` and the lab; the
//! agent, on a cluster, reads what the real control plane decided and never needs this.
//!
//! Every error names the file, line and column, the object and the field path. Nothing is built
//! half-way: [`build`] returns either a whole [`Cluster`] or every error found.
//!
//! ```
//! # use podnet_model::{parse_documents, ConfigOverrides};
//! # use podnet_emulator::build;
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
//! assert!(cluster.config.service_cidr().contains(&svc.cluster_ips[0]));
//! ```

mod build;

pub use build::{build, build_with};
#[doc(no_inline)]
pub use podnet_model::Cluster;
