//! Kubernetes objects as podnet reads them, before any cluster is computed from them.
//!
//! - [`source`]: manifest text (YAML or JSON, multi-document, `kind: List`) parsed into
//!   documents that remember where each field is;
//! - [`kind`]: the kinds podnet reads, with their group, version, resource name and scope,
//!   in one table;
//! - [`objects`]: the typed objects ([`Object`], k8s-openapi's types and podnet's own Gateway
//!   API types in [`gateway_api`]);
//! - [`checks`] and [`validation`]: what the API server refuses, each error at its file, line
//!   and field ([`diag`]);
//! - [`config`]: the cluster's settings (podnet's `ClusterConfig` kind and the flags);
//! - [`selector`]: label selectors.
//!
//! No I/O. The cluster model (`podnet-model`) and the control-plane emulator
//! (`podnet-emulator`) are built on these.

pub mod checks;
pub mod config;
pub mod diag;
pub mod gateway_api;
pub mod kind;
pub mod objects;
pub mod policy_api;
pub mod selector;
pub mod source;
pub mod validation;

pub use config::{ClusterConfig, ConfigOverrides, IpRange, PortRange};
pub use diag::{Diagnostic, Location, ModelError, ObjectRef, Severity};
pub use kind::Kind;
pub use objects::{Object, Sourced};
pub use selector::Labels;
pub use source::{parse_documents, SourceDoc};
