//! Building a [`Cluster`] from manifest documents.
//!
//! The order mirrors a cluster's own: the API server validates and allocates (ClusterIPs,
//! NodePorts), controllers make pods from workloads, the scheduler places them, the CNI plugin
//! gives them IPs, the EndpointSlice controller computes endpoints, and a load-balancer
//! controller assigns LoadBalancer addresses. Everything is deterministic: the same manifests
//! give the same plan, in whatever order the files list the objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use podnet_model::config::settings;
use podnet_model::config::{ip_to_u128, nth_address, u128_to_ip, ClusterConfig, ConfigOverrides};
use podnet_model::convert::{pod_info, pod_source, service_info, user_slice, SYSTEM_NAMESPACES};
use podnet_model::diag::{Diagnostic, Location, ModelError, ObjectRef};
use podnet_model::model::*;
use podnet_model::names::{fnv64, generate_name, suffix5, template_hash};
use podnet_model::objects::{decode, kind_of, meta_of, oref_of, start_of, Object, Sourced};
use podnet_model::source::SourceDoc;

/// The objects of one kind.
macro_rules! of_kind {
    ($objects:expr, $kind:ident) => {
        $objects.iter().filter_map(|o| match o {
            Object::$kind(x) => Some(x),
            _ => None,
        })
    };
}

mod addons;
mod admission;
mod allocator;
mod endpointslices;
mod families;
mod nodes;
mod scheduler;
mod services;
mod workloads;

use admission::{check_all, decode_into, is_named, normalize};
use allocator::{Allocator, Shortages};
use endpointslices::endpoint_warnings;

/// Builds the cluster model. On any error nothing is returned but every diagnostic found.
pub fn build(docs: &[SourceDoc], overrides: &ConfigOverrides) -> Result<Cluster, ModelError> {
    build_with(docs, overrides, &Placements::new())
}

/// Builds the cluster model around pods that already run: each keeps its node and (when it
/// still fits its node's podCIDR and is free) its address; only new pods are placed, so adding
/// or removing objects never moves a running pod.
pub fn build_with(
    docs: &[SourceDoc],
    overrides: &ConfigOverrides,
    running: &Placements,
) -> Result<Cluster, ModelError> {
    let mut diags = Vec::new();
    let mut objects = Vec::new();
    decode_into(docs, &mut objects, &mut diags);
    let config = settings(&objects, overrides, &mut diags);
    let builtins = addons::add(&mut objects, &config, &mut diags);
    normalize(&mut objects);
    check_all(&objects, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(ModelError::Invalid(diags));
    }
    compute(objects, config, diags, &builtins, running)
}

/// The cluster, from objects that passed admission: what the controllers, the scheduler and
/// the allocators make of them.
fn compute(
    objects: Vec<Object>,
    config: ClusterConfig,
    diags: Vec<Diagnostic>,
    builtins: &addons::Builtins,
    running: &Placements,
) -> Result<Cluster, ModelError> {
    let mut b = Builder {
        config,
        diags,
        used_names: BTreeSet::new(),
        builtin_dns: builtins.dns,
        running: running.clone(),
    };
    let namespaces = b.namespaces(&objects);
    let nodes = b.nodes(&objects);
    let sources = b.pod_sources(&objects, &nodes);
    let pods = b.place_and_address(sources, &nodes);
    let (mut services, user_slices) = b.services(&objects);
    for s in &mut services {
        if builtins.owns(s) {
            s.builtin = true;
        }
    }
    let mut cluster = Cluster {
        config: b.config,
        namespaces,
        nodes,
        pods,
        services,
        network_policies: of_kind!(objects, NetworkPolicy).cloned().collect(),
        ingresses: of_kind!(objects, Ingress).cloned().collect(),
        ingress_classes: of_kind!(objects, IngressClass).cloned().collect(),
        secrets: of_kind!(objects, Secret).cloned().collect(),
        gateway_classes: of_kind!(objects, GatewayClass).cloned().collect(),
        gateways: of_kind!(objects, Gateway).cloned().collect(),
        http_routes: of_kind!(objects, HTTPRoute).cloned().collect(),
        tls_routes: of_kind!(objects, TLSRoute).cloned().collect(),
        grpc_routes: of_kind!(objects, GRPCRoute).cloned().collect(),
        backend_tls_policies: of_kind!(objects, BackendTLSPolicy).cloned().collect(),
        config_maps: of_kind!(objects, ConfigMap).cloned().collect(),
        reference_grants: of_kind!(objects, ReferenceGrant).cloned().collect(),
        listener_sets: of_kind!(objects, ListenerSet).cloned().collect(),
        cluster_network_policies: {
            let mut v: Vec<_> = of_kind!(objects, ClusterNetworkPolicy).cloned().collect();
            v.sort_by(|a, b| a.obj.metadata.name.cmp(&b.obj.metadata.name));
            v
        },
        warnings: Vec::new(),
        user_slices,
    };
    podnet_model::endpoints::compute_all(&mut cluster);
    endpoint_warnings(&cluster, &objects, &mut b.diags);
    for (name, why) in podnet_model::cnp::warnings(&cluster) {
        let at = cluster
            .cluster_network_policies
            .iter()
            .find(|p| p.obj.name() == name)
            .map(|p| p.start.clone());
        b.diags.push(Diagnostic::warning(at, why));
    }
    if b.diags.iter().any(Diagnostic::is_error) {
        return Err(ModelError::Invalid(b.diags));
    }
    cluster.warnings = b.diags;
    Ok(cluster)
}

struct Builder {
    config: ClusterConfig,
    diags: Vec<Diagnostic>,
    used_names: BTreeSet<NsName>,
    /// The cluster DNS Deployment is the built-in one.
    builtin_dns: bool,
    /// Pods that already run, and where.
    running: Placements,
}
