//! From the API's objects to the model: what a node's agent reads, turned into the same
//! [`Cluster`] the lab and `podnet check` compute from manifests, so that one dataplane serves
//! both. The model is kept object by object ([`podnet_model::api`]): what the control plane
//! decided is taken as it is (each pod's node and addresses, each Service's ClusterIPs, node
//! ports and load-balancer addresses, the EndpointSlices, each Node's podCIDRs), never decided
//! again.

use podnet_model::api::Skipped;
use podnet_model::{ApiModel, Cluster, ConfigOverrides, ModelError};
use serde_json::Value;

pub use podnet_model::api::KINDS;

/// The model of the cluster the objects describe; an error if any object cannot be used.
pub fn model<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    overrides: &ConfigOverrides,
) -> Result<Cluster, ModelError> {
    let mut m = ApiModel::new(overrides)?;
    for o in objects {
        let Some(key) = podnet_model::ApiKey::of(o) else {
            continue;
        };
        if let Some(e) = m.apply(&key, Some(o)).refused {
            return Err(e);
        }
    }
    Ok(m.cluster().clone())
}

/// The model of the cluster the objects describe, leaving out each object the model refuses
/// (an EndpointSlice with an invalid address, say): what the node can use is programmed, and
/// what it cannot is said.
pub fn model_skipping<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
    overrides: &ConfigOverrides,
) -> Result<(Cluster, Vec<Skipped>), ModelError> {
    let (m, skipped) = ApiModel::of_objects(objects, overrides)?;
    Ok((m.cluster().clone(), skipped))
}
