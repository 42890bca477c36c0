//! The model of a cluster as its API serves it, kept up to date one object at a time.
//!
//! On a real cluster the control plane has already decided what the emulator (`podnet-emulator`) decides for
//! manifests: the scheduler placed each pod (`spec.nodeName`), the runtime gave it its address
//! (`status.podIPs`), the API server allocated each Service's ClusterIPs and node ports, a
//! load-balancer controller wrote `status.loadBalancer`, the EndpointSlice controller wrote the
//! slices, the controller-manager gave each Node its `spec.podCIDRs`. Nothing is decided again
//! here: each object's part of the model depends on that object alone (a Service's also on its
//! EndpointSlices), so a watch event changes only its own part, and [`ApiModel::apply`] says
//! which part ([`Changed`]) for the node's dataplane to recompute only that.
//!
//! Each object is decoded and validated as `podnet check` validates it (the same checks); one
//! that fails is left out, with its earlier version, and the rest of the model stands.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::config::settings;
use crate::config::ConfigOverrides;
use crate::convert::{pod_info, pod_source, service_info, user_slice, SYSTEM_NAMESPACES};
use crate::diag::{Diagnostic, ModelError};
use crate::kind::Kind;
use crate::model::*;
use crate::objects::{decode, Object, Sourced};
use crate::objects::{kind_of, oref_of};
use crate::source::SourceDoc;

/// The kinds a node's dataplane is kept from (what the agent watches).
pub const KINDS: [Kind; 7] = [
    Kind::Namespace,
    Kind::Node,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::NetworkPolicy,
    Kind::ClusterNetworkPolicy,
];

/// The kinds the Ingress controller's routes are kept from.
pub const EDGE_KINDS: [Kind; 5] = [
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Ingress,
    Kind::IngressClass,
    Kind::Secret,
];

/// The kinds a Gateway's routes are kept from.
pub const GATEWAY_KINDS: [Kind; 13] = [
    Kind::Namespace,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Secret,
    Kind::ConfigMap,
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::HTTPRoute,
    Kind::GRPCRoute,
    Kind::TLSRoute,
    Kind::BackendTLSPolicy,
    Kind::ReferenceGrant,
    Kind::ListenerSet,
];

/// Every kind the model takes from the API ([`Kind::read_from_api`]), in the table's order.
pub const ALL_KINDS: [Kind; 19] = {
    let mut out = [Kind::Namespace; 19];
    let (mut i, mut n) = (0, 0);
    while i < Kind::ALL.len() {
        if Kind::ALL[i].read_from_api() {
            out[n] = Kind::ALL[i];
            n += 1;
        }
        i += 1;
    }
    assert!(
        n == out.len(),
        "ALL_KINDS holds every kind read from the API"
    );
    out
};

/// Calls `$m!` with each kind the model keeps as it was written: its list in the cluster, and
/// what a change of it changes (`$ns`: the object's namespace and name, `$key`: its key).
macro_rules! with_kept_kinds {
    ($m:ident, $ns:ident, $key:ident) => {
        $m!(
            Ingress => ingresses, Changed::Ingress($ns);
            IngressClass => ingress_classes, Changed::IngressClass($key.name.clone());
            Secret => secrets, Changed::Secret($ns);
            ConfigMap => config_maps, Changed::Gateway($ns);
            GatewayClass => gateway_classes, Changed::Gateway($ns);
            Gateway => gateways, Changed::Gateway($ns);
            HTTPRoute => http_routes, Changed::Gateway($ns);
            GRPCRoute => grpc_routes, Changed::Gateway($ns);
            TLSRoute => tls_routes, Changed::Gateway($ns);
            BackendTLSPolicy => backend_tls_policies, Changed::Gateway($ns);
            ReferenceGrant => reference_grants, Changed::Gateway($ns);
            ListenerSet => listener_sets, Changed::Gateway($ns);
            ClusterNetworkPolicy => cluster_network_policies, Changed::NetworkPolicy($ns);
        )
    };
}

/// An object of the API, as a watch event names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiKey {
    pub kind: Kind,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl ApiKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ApiKey {
        ApiKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object as the API serves it (JSON with `kind` and `metadata`); None for
    /// a kind podnet does not read.
    pub fn of(o: &Value) -> Option<ApiKey> {
        Some(ApiKey::new(
            Kind::parse(o["kind"].as_str()?)?,
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str()?,
        ))
    }

    /// `api:Kind/namespace/name`: where diagnostics say the object is.
    pub fn origin(&self) -> String {
        if self.namespace.is_empty() {
            format!("api:{}/{}", self.kind, self.name)
        } else {
            format!("api:{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin())
    }
}

/// A part of the model that an object's change changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Changed {
    /// One Service: its addresses, ports or endpoints.
    Service(NsName),
    /// One pod came, went, or changed its labels, addresses, node or ports (what
    /// NetworkPolicy reads).
    Pod(NsName),
    /// One pod changed only its state (phase, readiness, being deleted): nothing NetworkPolicy
    /// reads.
    PodState(NsName),
    Namespace(String),
    NetworkPolicy(NsName),
    Ingress(NsName),
    IngressClass(String),
    Secret(NsName),
    /// A Gateway API object (GatewayClass, Gateway, HTTPRoute, ReferenceGrant).
    Gateway(NsName),
    /// The nodes: one came, went, or changed its podCIDR, address or labels.
    Nodes,
}

/// What one event did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The parts of the model that changed (none when the object changed nothing it reads).
    pub changed: Vec<Changed>,
    /// The object could not be used: why. It is left out (with its earlier version).
    pub refused: Option<ModelError>,
}

/// The model of a cluster, from its API's objects.
#[derive(Debug, Clone)]
pub struct ApiModel {
    cluster: Cluster,
    /// Each Service's slices, in slice name order; kept while the Service is absent. A sorted
    /// list, not a map: most Services have one slice, and a B-tree's first node holds room
    /// for eleven (1.6 KB a Service at 10,000 of them).
    slices: HashMap<NsName, Vec<(String, EndpointSliceInfo)>>,
    /// The Service each slice is for (`kubernetes.io/service-name`).
    slice_of: HashMap<NsName, NsName>,
    nodes: BTreeMap<String, NodeInfo>,
}

/// An object left out of the model, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `api:Kind/namespace/name`.
    pub object: String,
    pub why: String,
}

impl ApiModel {
    /// An empty cluster (the system namespaces only) with these settings.
    pub fn new(overrides: &ConfigOverrides) -> Result<ApiModel, ModelError> {
        let mut diags = Vec::new();
        let config = settings(&[], overrides, &mut diags);
        if diags.iter().any(Diagnostic::is_error) {
            return Err(ModelError::Invalid(diags));
        }
        let namespaces = SYSTEM_NAMESPACES
            .iter()
            .map(|n| (n.to_string(), namespace(n, Labels::new())))
            .collect();
        Ok(ApiModel {
            cluster: Cluster {
                config,
                namespaces,
                nodes: Vec::new(),
                pods: Vec::new(),
                services: Vec::new(),
                network_policies: Vec::new(),
                ingresses: Vec::new(),
                ingress_classes: Vec::new(),
                secrets: Vec::new(),
                gateway_classes: Vec::new(),
                gateways: Vec::new(),
                http_routes: Vec::new(),
                tls_routes: Vec::new(),
                grpc_routes: Vec::new(),
                backend_tls_policies: Vec::new(),
                config_maps: Vec::new(),
                reference_grants: Vec::new(),
                listener_sets: Vec::new(),
                cluster_network_policies: Vec::new(),
                warnings: Vec::new(),
                user_slices: Vec::new(),
            },
            slices: HashMap::new(),
            slice_of: HashMap::new(),
            nodes: BTreeMap::new(),
        })
    }

    /// The model of these objects, leaving out (and saying) each one it cannot use.
    pub fn of_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
        overrides: &ConfigOverrides,
    ) -> Result<(ApiModel, Vec<Skipped>), ModelError> {
        let mut m = ApiModel::new(overrides)?;
        let mut skipped = Vec::new();
        for o in objects {
            let Some(key) = ApiKey::of(o) else { continue };
            if let Some(e) = m.apply(&key, Some(o)).refused {
                skipped.push(Skipped {
                    object: key.origin(),
                    why: why(&e),
                });
            }
        }
        Ok((m, skipped))
    }

    /// The model.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// One watch event with the object as JSON (as the API serves it): `object` is the
    /// object's new version, or None when it was deleted.
    pub fn apply(&mut self, key: &ApiKey, object: Option<&Value>) -> Outcome {
        self.apply_received(key, object.map(|o| decode_one(key, o)))
    }

    /// One watch event: the object as received (decoded, or why it could not be), or None
    /// when it was deleted. An object refused is taken out of the model.
    pub fn apply_received(
        &mut self,
        key: &ApiKey,
        object: Option<Result<Object, ModelError>>,
    ) -> Outcome {
        if !ALL_KINDS.contains(&key.kind) {
            return Outcome::default();
        }
        let decoded = match object.map(|o| o.and_then(|o| prepare(key, o))) {
            None => None,
            Some(Ok(o)) => Some(o),
            Some(Err(e)) => {
                return Outcome {
                    changed: self.remove(key),
                    refused: Some(e),
                }
            }
        };
        let changed = match decoded {
            None => self.remove(key),
            Some(o) => match self.put(key, o) {
                Ok(changed) => changed,
                Err(e) => {
                    return Outcome {
                        changed: self.remove(key),
                        refused: Some(e),
                    }
                }
            },
        };
        Outcome {
            changed,
            refused: None,
        }
    }

    /// The object's part taken out.
    fn remove(&mut self, key: &ApiKey) -> Vec<Changed> {
        let ns = NsName::new(&key.namespace, &key.name);
        match key.kind {
            Kind::Namespace => {
                let had = if SYSTEM_NAMESPACES.contains(&key.name.as_str()) {
                    let plain = namespace(&key.name, Labels::new());
                    self.cluster
                        .namespaces
                        .insert(key.name.clone(), plain.clone())
                        != Some(plain)
                } else {
                    self.cluster.namespaces.remove(&key.name).is_some()
                };
                changed_if(had, Changed::Namespace(key.name.clone()))
            }
            Kind::Node => {
                let had = self.nodes.remove(&key.name).is_some();
                if had {
                    self.cluster.nodes = self.nodes.values().cloned().collect();
                }
                changed_if(had, Changed::Nodes)
            }
            Kind::Pod => {
                let had = remove_sorted(&mut self.cluster.pods, &ns, PodInfo::key);
                changed_if(had, Changed::Pod(ns))
            }
            Kind::Service => {
                let had = remove_sorted(&mut self.cluster.services, &ns, ServiceInfo::key);
                changed_if(had, Changed::Service(ns))
            }
            Kind::EndpointSlice => match self.drop_slice(&ns) {
                Some(svc) => self.refresh_slices(&svc),
                None => Vec::new(),
            },
            Kind::NetworkPolicy => {
                let had = remove_sorted(&mut self.cluster.network_policies, &ns, policy_key);
                changed_if(had, Changed::NetworkPolicy(ns))
            }
            kind => {
                // The kinds the model keeps as they were written: one list each.
                macro_rules! kept {
                    ($($k:ident => $list:ident, $changed:expr;)*) => {
                        match kind {
                            $(Kind::$k => {
                                let had = remove_sorted(&mut self.cluster.$list, &ns, |o| {
                                    meta_key(&o.obj.metadata)
                                });
                                changed_if(had, $changed)
                            })*
                            _ => Vec::new(),
                        }
                    };
                }
                with_kept_kinds!(kept, ns, key)
            }
        }
    }

    /// The object's part, new or changed.
    fn put(&mut self, key: &ApiKey, o: Object) -> Result<Vec<Changed>, ModelError> {
        let ns = NsName::new(&key.namespace, &key.name);
        Ok(match o {
            Object::Namespace(n) => {
                let labels = n.obj.metadata.labels.clone().unwrap_or_default();
                let new = namespace(&key.name, labels);
                let old = self
                    .cluster
                    .namespaces
                    .insert(key.name.clone(), new.clone());
                changed_if(old != Some(new), Changed::Namespace(key.name.clone()))
            }
            Object::Node(n) => {
                let new = node_info(&n)?;
                let old = self.nodes.insert(key.name.clone(), new.clone());
                if old.as_ref() == Some(&new) {
                    return Ok(Vec::new());
                }
                self.cluster.nodes = self.nodes.values().cloned().collect();
                vec![Changed::Nodes]
            }
            Object::Pod(p) => {
                let new = api_pod(&p, &key.namespace, &key.name)?;
                let state_only = self
                    .cluster
                    .pod(&key.namespace, &key.name)
                    .is_some_and(|old| same_but_state(old, &new));
                changed_if(
                    put_sorted(&mut self.cluster.pods, new, PodInfo::key),
                    if state_only {
                        Changed::PodState(ns)
                    } else {
                        Changed::Pod(ns)
                    },
                )
            }
            Object::Service(s) => {
                let mut new = api_service(&s)?;
                new.endpoint_slices = self.slices_of(&ns);
                changed_if(
                    put_sorted(&mut self.cluster.services, new, ServiceInfo::key),
                    Changed::Service(ns),
                )
            }
            Object::EndpointSlice(es) => {
                let svc =
                    crate::model::slice_service(&es.obj).map(|s| NsName::new(&key.namespace, s));
                // kube-proxy ignores FQDN slices and slices of no Service.
                let usable = svc.filter(|_| es.obj.address_type != "FQDN");
                let mut services: Vec<NsName> = self.drop_slice(&ns).into_iter().collect();
                if let Some(svc) = usable {
                    let list = self.slices.entry(svc.clone()).or_default();
                    let slice = (key.name.clone(), user_slice(&es.obj));
                    match list.binary_search_by(|(n, _)| n.cmp(&key.name)) {
                        Ok(i) => list[i] = slice,
                        Err(i) => list.insert(i, slice),
                    }
                    self.slice_of.insert(ns, svc.clone());
                    services.push(svc);
                }
                services.dedup();
                services
                    .iter()
                    .flat_map(|svc| self.refresh_slices(svc))
                    .collect()
            }
            Object::NetworkPolicy(np) => changed_if(
                put_sorted_by(
                    &mut self.cluster.network_policies,
                    np,
                    policy_key,
                    |a, b| a.obj == b.obj,
                ),
                Changed::NetworkPolicy(ns),
            ),
            o => {
                // The kinds the model keeps as they were written: one list each.
                macro_rules! kept {
                    ($($v:ident => $list:ident, $changed:expr;)*) => {
                        match o {
                            $(Object::$v(x) => changed_if(
                                put_sorted_by(
                                    &mut self.cluster.$list,
                                    x,
                                    |o| meta_key(&o.obj.metadata),
                                    |a, b| a.obj == b.obj,
                                ),
                                $changed,
                            ),)*
                            _ => Vec::new(),
                        }
                    };
                }
                with_kept_kinds!(kept, ns, key)
            }
        })
    }
}

impl ApiModel {
    /// The slice's entry taken out; the Service it was for.
    fn drop_slice(&mut self, slice: &NsName) -> Option<NsName> {
        let svc = self.slice_of.remove(slice)?;
        if let Some(m) = self.slices.get_mut(&svc) {
            m.retain(|(n, _)| *n != slice.name);
            if m.is_empty() {
                self.slices.remove(&svc);
            }
        }
        Some(svc)
    }

    /// A Service's slices, in name order.
    fn slices_of(&self, svc: &NsName) -> Vec<EndpointSliceInfo> {
        self.slices
            .get(svc)
            .map(|m| m.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// A Service's endpoints brought up to date with its slices.
    fn refresh_slices(&mut self, svc: &NsName) -> Vec<Changed> {
        let slices = self.slices_of(svc);
        let Ok(i) = self
            .cluster
            .services
            .binary_search_by(|s| (&s.namespace, &s.name).cmp(&(&svc.namespace, &svc.name)))
        else {
            return Vec::new();
        };
        let s = &mut self.cluster.services[i];
        if s.endpoint_slices == slices {
            return Vec::new();
        }
        s.endpoint_slices = slices;
        vec![Changed::Service(svc.clone())]
    }
}

/// Whether two versions of a pod differ at most in their state (phase, readiness, deletion).
fn same_but_state(a: &PodInfo, b: &PodInfo) -> bool {
    a.labels == b.labels
        && a.ips == b.ips
        && a.node == b.node
        && a.host_network == b.host_network
        && a.ports == b.ports
        && a.hostname == b.hostname
        && a.subdomain == b.subdomain
}

fn changed_if(yes: bool, c: Changed) -> Vec<Changed> {
    if yes {
        vec![c]
    } else {
        Vec::new()
    }
}

/// The first error's message (with its field), for a log line.
fn why(e: &ModelError) -> String {
    e.diagnostics()
        .iter()
        .find(|d| d.is_error())
        .map(|d| match &d.field {
            Some(f) => format!("{f}: {}", d.message),
            None => d.message.clone(),
        })
        .unwrap_or_else(|| e.to_string())
}

impl Outcome {
    /// Why the object was refused, in one line.
    pub fn why(&self) -> Option<String> {
        self.refused.as_ref().map(why)
    }
}

fn namespace(name: &str, mut labels: Labels) -> NamespaceInfo {
    // The NamespaceDefaultLabelName admission: every namespace carries its own name.
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    NamespaceInfo {
        name: name.into(),
        labels,
        declared: true,
    }
}

fn policy_key(p: &Sourced<k8s_openapi::api::networking::v1::NetworkPolicy>) -> NsName {
    NsName::new(
        p.obj.metadata.namespace.as_deref().unwrap_or_default(),
        p.obj.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// An object's namespace and name (empty namespace for cluster-scoped kinds).
fn meta_key(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> NsName {
    NsName::new(
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
    )
}

/// Inserts or replaces `item` in a list sorted by `key`; true when the list changed.
fn put_sorted<T: PartialEq>(v: &mut Vec<T>, item: T, key: impl Fn(&T) -> NsName) -> bool {
    put_sorted_by(v, item, key, |a, b| a == b)
}

/// [`put_sorted`] with the items' own equality.
fn put_sorted_by<T>(
    v: &mut Vec<T>,
    item: T,
    key: impl Fn(&T) -> NsName,
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    let k = key(&item);
    match v.binary_search_by(|x| key(x).cmp(&k)) {
        Ok(i) if same(&v[i], &item) => false,
        Ok(i) => {
            v[i] = item;
            true
        }
        Err(i) => {
            v.insert(i, item);
            true
        }
    }
}

/// Removes the item with key `k` from a list sorted by `key`; true when there was one.
fn remove_sorted<T>(v: &mut Vec<T>, k: &NsName, key: impl Fn(&T) -> NsName) -> bool {
    match v.binary_search_by(|x| key(x).cmp(k)) {
        Ok(i) => {
            v.remove(i);
            true
        }
        Err(_) => false,
    }
}

/// An API object decoded and validated as the manifests' objects are.
/// An object of the API as JSON, decoded (strictly, as a manifest is).
fn decode_one(key: &ApiKey, o: &Value) -> Result<Object, ModelError> {
    let doc = SourceDoc::from_value(&key.origin(), o.clone());
    let mut diags = Vec::new();
    match decode(&doc, &mut diags) {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(ModelError::Invalid(vec![Diagnostic::error(
            doc.start.clone(),
            format!("{key} is not a kind podnet reads"),
        )])),
        Err(e) => Err(ModelError::Invalid(vec![e])),
    }
}

/// A decoded object of the API as the model takes it: of the kind its key says, the fields
/// the API server sets cleared (the Gateway API's kinds keep their generation, which status
/// says it observed, and creation time: the oldest route wins a tie), checked as the API
/// server checks it. Idempotent.
pub fn prepare(key: &ApiKey, mut decoded: Object) -> Result<Object, ModelError> {
    if kind_of(&decoded) != key.kind {
        return Err(ModelError::Invalid(vec![Diagnostic::error(
            crate::objects::start_of(&decoded),
            format!("{key}: the object is a {}", kind_of(&decoded)),
        )]));
    }
    if let Some(meta) = crate::objects::meta_mut(&mut decoded) {
        meta.uid = None;
        meta.resource_version = None;
        meta.managed_fields = None;
        meta.self_link = None;
        meta.owner_references = None;
        if !key.kind.is_gateway_api() {
            meta.generation = None;
            meta.creation_timestamp = None;
        }
    }
    let mut diags = Vec::new();
    crate::checks::check_object(&decoded, oref_of(&decoded), &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(ModelError::Invalid(diags));
    }
    Ok(decoded)
}

fn invalid(src_start: &crate::diag::Location, field: &str, message: String) -> ModelError {
    ModelError::Invalid(vec![
        Diagnostic::error(src_start.clone(), message).with_field(field)
    ])
}

/// A Node as the controller-manager and the kubelet made it: its podCIDRs and InternalIP.
fn node_info(n: &Sourced<k8s_openapi::api::core::v1::Node>) -> Result<NodeInfo, ModelError> {
    let name = n.obj.metadata.name.clone().unwrap_or_default();
    let spec = n.obj.spec.clone().unwrap_or_default();
    let raw: Vec<String> = match (spec.pod_cidrs, spec.pod_cidr) {
        (Some(list), _) if !list.is_empty() => list,
        (_, Some(c)) if !c.is_empty() => vec![c],
        _ => Vec::new(),
    };
    let mut pod_cidrs = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let net: IpNet = c.parse().map_err(|_| {
            invalid(
                &n.locate(&format!("spec.podCIDRs[{i}]")),
                "spec.podCIDRs",
                format!("Invalid value: {c:?}: not a CIDR"),
            )
        })?;
        pod_cidrs.push(net);
    }
    let internal: Vec<IpAddr> = n
        .obj
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .collect();
    // The overlay's underlay address: the IPv4 one where the node has one.
    let internal_ip = internal
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(internal.first())
        .copied()
        .ok_or_else(|| {
            invalid(
                &n.start,
                "status.addresses",
                format!("node {name} has no InternalIP address yet"),
            )
        })?;
    Ok(NodeInfo {
        name,
        labels: n.obj.metadata.labels.clone().unwrap_or_default(),
        pod_cidrs,
        internal_ip,
        internal_ipv6: internal
            .iter()
            .find(|ip| ip.is_ipv6() && **ip != internal_ip)
            .copied(),
    })
}

/// A pod where the scheduler put it, with the addresses its runtime gave it.
fn api_pod(
    p: &Sourced<k8s_openapi::api::core::v1::Pod>,
    ns: &str,
    name: &str,
) -> Result<PodInfo, ModelError> {
    let node = p
        .obj
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let status = p.obj.status.as_ref();
    let listed: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|l| l.iter().map(|a| a.ip.as_str()).collect())
        .unwrap_or_default();
    let raw = if listed.is_empty() {
        status
            .and_then(|s| s.pod_ip.as_deref())
            .into_iter()
            .collect()
    } else {
        listed
    };
    let mut ips = Vec::new();
    for a in raw {
        ips.push(a.parse::<IpAddr>().map_err(|_| {
            invalid(
                &p.locate("status.podIP"),
                "status.podIP",
                format!("Invalid value: {a:?}: not an IP address"),
            )
        })?);
    }
    if node.is_none() {
        ips.clear();
    }
    let mut pod = pod_info(pod_source(p, ns, name.to_string()), node, ips);
    pod.spec = slim_spec(&pod.spec);
    Ok(pod)
}

/// What the model's readers take from a pod's spec once [`pod_info`] has read its containers
/// and ports: the fields of its resolv.conf and /etc/hosts (dnsPolicy, dnsConfig, hostAliases,
/// hostname, subdomain, hostNetwork). A follower of the API keeps only these (the full spec,
/// its containers above all, was half of the model's memory: 5 KB of the 5.1 KB a pod took
/// at 10,000 pods), and most pods, which set none of them, share one empty spec.
fn slim_spec(
    spec: &std::sync::Arc<k8s_openapi::api::core::v1::PodSpec>,
) -> std::sync::Arc<k8s_openapi::api::core::v1::PodSpec> {
    static PLAIN: std::sync::OnceLock<std::sync::Arc<k8s_openapi::api::core::v1::PodSpec>> =
        std::sync::OnceLock::new();
    let slim = crate::convert::read_spec_fields(spec);
    let plain = PLAIN.get_or_init(Default::default);
    if slim == **plain {
        plain.clone()
    } else {
        std::sync::Arc::new(slim)
    }
}

/// A Service with what the API server allocated (ClusterIPs, node ports) and what its
/// load-balancer controller wrote (`status.loadBalancer.ingress`).
fn api_service(
    s: &Sourced<k8s_openapi::api::core::v1::Service>,
) -> Result<ServiceInfo, ModelError> {
    let mut info = service_info(s);
    let spec = s.obj.spec.clone().unwrap_or_default();
    if info.service_type != ServiceType::ExternalName && !info.headless {
        for (i, r) in crate::convert::requested_cluster_ips(&spec)
            .into_iter()
            .enumerate()
        {
            let field = format!("spec.clusterIPs[{i}]");
            info.cluster_ips.push(r.parse().map_err(|_| {
                invalid(
                    &s.locate(&field),
                    &field,
                    format!("Invalid value: {r:?}: not an IP address"),
                )
            })?);
        }
    }
    if info.service_type == ServiceType::LoadBalancer {
        info.load_balancer_ips = s
            .obj
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
    }
    Ok(info)
}
