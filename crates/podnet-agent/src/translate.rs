//! From the API's objects to the model: what a node's agent reads, turned into the same
//! [`Cluster`] the lab and `podnet check` compute from manifests, so that one model and one
//! dataplane serve both.
//!
//! What the control plane decided is kept, not decided again: each pod keeps its node and
//! address (`spec.nodeName`, `status.podIP`, as running placements), each Service its
//! ClusterIPs and NodePorts (requested addresses), each Node its podCIDR and InternalIP.
//! EndpointSlices that the endpoint-slice controller made are recomputed from the pods by the
//! model, with the controller's rules; other slices (a Service without a selector, mirrored
//! Endpoints) are taken as they are.

use podnet_model::{
    build_with, Cluster, ConfigOverrides, ModelError, NsName, Placement, Placements, SourceDoc,
    MANAGED_BY_CONTROLLER,
};
use serde_json::Value;

/// The kinds a node's dataplane is computed from.
pub const KINDS: [&str; 6] = [
    "Namespace",
    "Node",
    "Pod",
    "Service",
    "EndpointSlice",
    "NetworkPolicy",
];

/// What the API server sets on every object and the model has no use for.
const SERVER_FIELDS: [&str; 6] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
];

/// An object as the model reads it, or None for one it computes itself.
fn document(o: &Value) -> Option<SourceDoc> {
    let kind = o["kind"].as_str()?;
    if !KINDS.contains(&kind) {
        return None;
    }
    if kind == "EndpointSlice"
        && o["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
            == MANAGED_BY_CONTROLLER
    {
        return None;
    }
    let mut v = o.clone();
    if let Some(meta) = v["metadata"].as_object_mut() {
        for f in SERVER_FIELDS {
            meta.remove(f);
        }
        meta.remove("ownerReferences");
    }
    let origin = format!(
        "api:{kind}/{}{}",
        o["metadata"]["namespace"]
            .as_str()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or("")
    );
    Some(SourceDoc::from_value(&origin, v))
}

/// Where the API says each pod runs.
pub fn placements<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Placements {
    objects
        .into_iter()
        .filter(|o| o["kind"] == "Pod")
        .filter_map(|o| {
            let node = o["spec"]["nodeName"].as_str()?;
            let key = NsName::new(
                o["metadata"]["namespace"].as_str().unwrap_or("default"),
                o["metadata"]["name"].as_str()?,
            );
            let ip = o["status"]["podIP"].as_str().and_then(|ip| ip.parse().ok());
            Some((
                key,
                Placement {
                    node: node.to_string(),
                    ip,
                },
            ))
        })
        .collect()
}

/// The model of the cluster the objects describe.
pub fn model<'a>(
    objects: impl IntoIterator<Item = &'a Value> + Clone,
    overrides: &ConfigOverrides,
) -> Result<Cluster, ModelError> {
    let docs: Vec<SourceDoc> = objects.clone().into_iter().filter_map(document).collect();
    build_with(&docs, overrides, &placements(objects))
}

/// An object left out of the model, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `api:Kind/namespace/name`.
    pub object: String,
    pub why: String,
}

/// The model of the cluster the objects describe, leaving out each object the model refuses
/// (an EndpointSlice with an invalid address, say): what the node can use is programmed, and
/// what it cannot is said. Fails only when an error names no object.
pub fn model_skipping<'a>(
    objects: impl IntoIterator<Item = &'a Value> + Clone,
    overrides: &ConfigOverrides,
) -> Result<(Cluster, Vec<Skipped>), ModelError> {
    let mut docs: Vec<SourceDoc> = objects.clone().into_iter().filter_map(document).collect();
    let placements = placements(objects);
    let mut skipped = Vec::new();
    loop {
        let err = match build_with(&docs, overrides, &placements) {
            Ok(c) => return Ok((c, skipped)),
            Err(e) => e,
        };
        let mut bad: Vec<Skipped> = err
            .diagnostics()
            .iter()
            .filter(|d| d.is_error())
            .filter_map(|d| {
                let file = d.location.as_ref()?.file.to_string();
                file.starts_with("api:").then(|| Skipped {
                    object: file,
                    why: d.message.clone(),
                })
            })
            .collect();
        bad.dedup_by(|a, b| a.object == b.object);
        let before = docs.len();
        docs.retain(|d| !bad.iter().any(|b| *b.object == *d.start.file));
        if docs.len() == before {
            return Err(err);
        }
        skipped.extend(bad);
    }
}
