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
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::{ip_to_u128, nth_address, u128_to_ip, ClusterConfig, ConfigOverrides};
use crate::diag::{Diagnostic, Location, ModelError, ObjectRef, Severity};
use crate::model::*;
use crate::names::{fnv64, generate_name, suffix5, template_hash};
use crate::objects::{decode, is_namespaced, meta_of, Object, Sourced};
use crate::source::SourceDoc;

/// Namespaces every cluster has.
pub(crate) const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The objects of one kind.
macro_rules! of_kind {
    ($objects:expr, $kind:ident) => {
        $objects.iter().filter_map(|o| match o {
            Object::$kind(x) => Some(x),
            _ => None,
        })
    };
}

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
    let builtin_dns = !objects.iter().any(|o| {
        matches!(o, Object::Service(_))
            && is_named(o, crate::dns::DNS_NAMESPACE, crate::dns::DNS_SERVICE)
    });
    if builtin_dns {
        let docs = crate::source::parse_documents(
            "<podnet: cluster DNS>",
            &crate::dns::builtin_manifests(&config),
        )
        .expect("the built-in cluster DNS manifests parse");
        decode_into(&docs, &mut objects, &mut diags);
    }
    // The Ingress controller, when Ingresses need one and the manifests bring none.
    let builtin_ingress = objects.iter().any(|o| matches!(o, Object::Ingress(_)))
        && !objects.iter().any(|o| {
            matches!(o, Object::Service(_))
                && is_named(
                    o,
                    crate::edge::INGRESS_NAMESPACE,
                    crate::edge::INGRESS_SERVICE,
                )
        });
    if builtin_ingress {
        let has_class = objects.iter().any(|o| {
            matches!(o, Object::IngressClass(_))
                && meta_of(o).and_then(|m| m.name.as_deref()) == Some(crate::edge::INGRESS_CLASS)
        });
        let has_namespace = objects.iter().any(|o| {
            matches!(o, Object::Namespace(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(crate::edge::INGRESS_NAMESPACE)
        });
        let text = crate::edge::builtin_manifests(has_class);
        let docs = crate::source::parse_documents("<podnet: Ingress controller>", &text)
            .expect("the built-in Ingress controller's manifests parse");
        let before = objects.len();
        decode_into(&docs, &mut objects, &mut diags);
        if has_namespace {
            // The user's own podnet-system Namespace stands (its labels, say).
            let mut i = before;
            while i < objects.len() {
                if matches!(objects[i], Object::Namespace(_)) {
                    objects.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
    // Each Gateway of podnet's class: its proxy's Deployment and Service (and the class,
    // when the manifests have Gateways and no class of that name).
    let has_gateways = objects.iter().any(|o| matches!(o, Object::Gateway(_)));
    if has_gateways
        && !objects.iter().any(|o| {
            matches!(o, Object::GatewayClass(_))
                && meta_of(o).and_then(|m| m.name.as_deref()) == Some(crate::gateway::GATEWAY_CLASS)
        })
    {
        let docs = crate::source::parse_documents(
            "<podnet: GatewayClass>",
            &crate::gateway::class_manifest(),
        )
        .expect("the built-in GatewayClass parses");
        decode_into(&docs, &mut objects, &mut diags);
    }
    let ours: Vec<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::GatewayClass(c)
                if c.obj.spec.controller_name == crate::gateway::GATEWAY_CONTROLLER =>
            {
                c.obj.metadata.name.clone()
            }
            _ => None,
        })
        .collect();
    let mut gateway_infra = Vec::new();
    let infra_docs: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            // A Gateway without a valid port gets no proxy (and no address).
            // (A Gateway whose name is not valid is refused by the checks below.)
            Object::Gateway(g)
                if ours.contains(&g.obj.spec.gateway_class_name)
                    && !crate::gateway::listener_ports(&g.obj).is_empty()
                    && g.obj
                        .metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| crate::validation::dns1123_subdomain(n).is_ok())
                    && g.obj.metadata.namespace.as_deref().is_none_or(|n| {
                        n.is_empty() || crate::validation::dns1123_label(n).is_ok()
                    }) =>
            {
                Some(g)
            }
            _ => None,
        })
        .map(|g| {
            let mut g = g.obj.clone();
            if g.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                g.metadata.namespace = Some("default".into());
            }
            gateway_infra.push(crate::gateway::infra_name(&crate::gateway::key(&g)));
            crate::source::parse_documents(
                "<podnet: a Gateway's proxy>",
                &crate::gateway::infra_manifests(&g),
            )
            .expect("a Gateway's proxy's manifests parse")
        })
        .collect();
    if !infra_docs.is_empty() {
        for docs in infra_docs {
            decode_into(&docs, &mut objects, &mut diags);
        }
        if !objects.iter().any(|o| {
            matches!(o, Object::Namespace(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(crate::gateway::GATEWAY_NAMESPACE)
        }) {
            let docs = crate::source::parse_documents(
                "<podnet: Gateway proxies>",
                &format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
                    crate::gateway::GATEWAY_NAMESPACE
                ),
            )
            .expect("a Namespace parses");
            decode_into(&docs, &mut objects, &mut diags);
        }
    }
    normalize(&mut objects);
    check_all(&objects, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(ModelError::Invalid(diags));
    }

    let mut b = Builder {
        config,
        diags,
        used_names: BTreeSet::new(),
        builtin_dns,
        running: running.clone(),
    };
    let namespaces = b.namespaces(&objects);
    let nodes = b.nodes(&objects);
    let sources = b.pod_sources(&objects, &nodes);
    let pods = b.place_and_address(sources, &nodes);
    let (mut services, user_slices) = b.services(&objects);
    for s in &mut services {
        if (builtin_dns
            && s.namespace == crate::dns::DNS_NAMESPACE
            && s.name == crate::dns::DNS_SERVICE)
            || (builtin_ingress
                && s.namespace == crate::edge::INGRESS_NAMESPACE
                && s.name == crate::edge::INGRESS_SERVICE)
            || (s.namespace == crate::gateway::GATEWAY_NAMESPACE && gateway_infra.contains(&s.name))
        {
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
        reference_grants: of_kind!(objects, ReferenceGrant).cloned().collect(),
        warnings: Vec::new(),
        user_slices,
    };
    crate::endpoints::compute_all(&mut cluster);
    endpoint_warnings(&cluster, &objects, &mut b.diags);
    if b.diags.iter().any(Diagnostic::is_error) {
        return Err(ModelError::Invalid(b.diags));
    }
    cluster.warnings = b.diags;
    Ok(cluster)
}

/// Decodes documents into objects; what cannot be decoded becomes a diagnostic.
fn decode_into(docs: &[SourceDoc], objects: &mut Vec<Object>, diags: &mut Vec<Diagnostic>) {
    for d in docs {
        match decode(d, diags) {
            Ok(Some(o)) => objects.push(o),
            Ok(None) => {}
            Err(e) => diags.push(e),
        }
    }
}

/// Whether `o` is the object `<ns>/<name>`.
fn is_named(o: &Object, ns: &str, name: &str) -> bool {
    meta_of(o)
        .is_some_and(|m| m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name))
}

pub(crate) fn oref_of(o: &Object) -> ObjectRef {
    let (kind, meta) = match o {
        Object::ClusterConfig(_) => return ObjectRef::new("ClusterConfig", None, ""),
        _ => (
            kind_of(o),
            meta_of(o).expect("all but ClusterConfig have metadata"),
        ),
    };
    let name = meta
        .name
        .clone()
        .or_else(|| meta.generate_name.clone())
        .unwrap_or_default();
    ObjectRef::new(kind, meta.namespace.as_deref(), &name)
}

pub(crate) fn kind_of(o: &Object) -> &'static str {
    match o {
        Object::Namespace(_) => "Namespace",
        Object::Node(_) => "Node",
        Object::Pod(_) => "Pod",
        Object::Deployment(_) => "Deployment",
        Object::ReplicaSet(_) => "ReplicaSet",
        Object::StatefulSet(_) => "StatefulSet",
        Object::DaemonSet(_) => "DaemonSet",
        Object::Service(_) => "Service",
        Object::EndpointSlice(_) => "EndpointSlice",
        Object::Endpoints(_) => "Endpoints",
        Object::NetworkPolicy(_) => "NetworkPolicy",
        Object::Ingress(_) => "Ingress",
        Object::IngressClass(_) => "IngressClass",
        Object::Secret(_) => "Secret",
        Object::GatewayClass(_) => "GatewayClass",
        Object::Gateway(_) => "Gateway",
        Object::HTTPRoute(_) => "HTTPRoute",
        Object::ReferenceGrant(_) => "ReferenceGrant",
        Object::ClusterConfig(_) => "ClusterConfig",
    }
}

fn start_of(o: &Object) -> Location {
    macro_rules! s {
        ($($v:ident),*) => { match o { $(Object::$v(x) => x.start.clone(),)* } };
    }
    s!(
        Namespace,
        Node,
        Pod,
        Deployment,
        ReplicaSet,
        StatefulSet,
        DaemonSet,
        Service,
        EndpointSlice,
        Endpoints,
        NetworkPolicy,
        Ingress,
        IngressClass,
        Secret,
        GatewayClass,
        Gateway,
        HTTPRoute,
        ReferenceGrant,
        ClusterConfig
    )
}

/// Defaults ← the ClusterConfig document ← flags.
pub(crate) fn settings(
    objects: &[Object],
    overrides: &ConfigOverrides,
    diags: &mut Vec<Diagnostic>,
) -> ClusterConfig {
    let mut config = ClusterConfig::default();
    let docs: Vec<_> = of_kind!(objects, ClusterConfig).collect();
    if let Some(extra) = docs.get(1) {
        diags.push(Diagnostic::error(
            extra.start.clone(),
            format!(
                "a second ClusterConfig document; the first is at {}",
                docs[0].start
            ),
        ));
    }
    if let Some(doc) = docs.first() {
        if let Err((field, why)) = config.apply(&doc.obj.settings) {
            diags.push(
                Diagnostic::error(doc.locate(&field), why)
                    .with_object(ObjectRef::new("ClusterConfig", None, ""))
                    .with_field(field),
            );
        }
    }
    if let Err((field, why)) = config.apply(overrides) {
        diags.push(Diagnostic {
            severity: Severity::Error,
            location: None,
            object: None,
            field: Some(format!("--{}", flag_name(&field))),
            message: why,
        });
    }
    config
}

/// The command-line flag that sets a config field.
fn flag_name(field: &str) -> String {
    match field {
        "podCIDR" => "pod-cidr".into(),
        "nodeCIDRMaskSize" => "node-cidr-mask-size".into(),
        "serviceCIDR" => "service-cidr".into(),
        "dnsIP" => "dns-ip".into(),
        "nodePortRange" => "node-port-range".into(),
        "clusterDomain" => "cluster-domain".into(),
        "loadBalancerPool" => "lb-pool".into(),
        other => other.to_string(),
    }
}

/// Namespaced objects without a namespace go to `default`.
fn normalize(objects: &mut [Object]) {
    for o in objects.iter_mut() {
        let kind = kind_of(o);
        let meta = match o {
            Object::Namespace(x) => &mut x.obj.metadata,
            Object::Node(x) => &mut x.obj.metadata,
            Object::Pod(x) => &mut x.obj.metadata,
            Object::Deployment(x) => &mut x.obj.metadata,
            Object::ReplicaSet(x) => &mut x.obj.metadata,
            Object::StatefulSet(x) => &mut x.obj.metadata,
            Object::DaemonSet(x) => &mut x.obj.metadata,
            Object::Service(x) => &mut x.obj.metadata,
            Object::EndpointSlice(x) => &mut x.obj.metadata,
            Object::Endpoints(x) => &mut x.obj.metadata,
            Object::NetworkPolicy(x) => &mut x.obj.metadata,
            Object::Ingress(x) => &mut x.obj.metadata,
            Object::IngressClass(x) => &mut x.obj.metadata,
            Object::Secret(x) => &mut x.obj.metadata,
            Object::GatewayClass(x) => &mut x.obj.metadata,
            Object::Gateway(x) => &mut x.obj.metadata,
            Object::HTTPRoute(x) => &mut x.obj.metadata,
            Object::ReferenceGrant(x) => &mut x.obj.metadata,
            Object::ClusterConfig(_) => continue,
        };
        if is_namespaced(kind) {
            if meta.namespace.as_deref().is_none_or(str::is_empty) {
                meta.namespace = Some("default".to_string());
            }
        } else {
            meta.namespace = None;
        }
    }
}

/// Per-object validation and duplicate detection.
fn check_all(objects: &[Object], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<ObjectRef, Location> = HashMap::new();
    for o in objects {
        let oref = oref_of(o);
        crate::checks::check_object(o, oref.clone(), diags);
        if matches!(o, Object::ClusterConfig(_)) || oref.name.is_empty() {
            continue;
        }
        if matches!(o, Object::Pod(p) if p.obj.metadata.name.as_deref().is_none_or(str::is_empty)) {
            continue; // generateName
        }
        let here = start_of(o);
        if let Some(first) = seen.get(&oref) {
            diags.push(
                Diagnostic::error(
                    here,
                    format!("AlreadyExists: {oref} is defined twice; the first is at {first}"),
                )
                .with_object(oref.clone()),
            );
        } else {
            seen.insert(oref, here);
        }
    }
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

impl Builder {
    fn namespaces(&mut self, objects: &[Object]) -> BTreeMap<String, NamespaceInfo> {
        let mut out = BTreeMap::new();
        for n in SYSTEM_NAMESPACES {
            out.insert(
                n.to_string(),
                NamespaceInfo {
                    name: n.to_string(),
                    labels: Labels::new(),
                    declared: true,
                },
            );
        }
        for o in objects {
            if let Object::Namespace(ns) = o {
                let name = ns.obj.metadata.name.clone().unwrap_or_default();
                let labels = ns.obj.metadata.labels.clone().unwrap_or_default();
                out.insert(
                    name.clone(),
                    NamespaceInfo {
                        name,
                        labels,
                        declared: true,
                    },
                );
            }
        }
        for o in objects {
            let Some(ns) = meta_of(o).and_then(|m| m.namespace.as_deref()) else {
                continue;
            };
            if !out.contains_key(ns) {
                self.diags.push(
                    Diagnostic::warning(
                        Some(start_of(o)),
                        format!("namespace {ns:?} is used but not declared; it is created"),
                    )
                    .with_object(oref_of(o)),
                );
                out.insert(
                    ns.to_string(),
                    NamespaceInfo {
                        name: ns.to_string(),
                        labels: Labels::new(),
                        declared: false,
                    },
                );
            }
        }
        // The NamespaceDefaultLabelName admission: every namespace carries its own name.
        for (name, ns) in out.iter_mut() {
            ns.labels
                .insert("kubernetes.io/metadata.name".to_string(), name.clone());
        }
        out
    }

    /// Node objects if any are given, otherwise `config.nodes` generated nodes.
    fn nodes(&mut self, objects: &[Object]) -> Vec<NodeInfo> {
        let given: Vec<_> = of_kind!(objects, Node).collect();
        let cidr_slots =
            1u128 << (self.config.node_cidr_mask_size - self.config.pod_cidr.prefix_len()).min(100);
        let node_cidr = |i: u128, c: &ClusterConfig| -> Option<IpNet> {
            let size = 1u128
                << ((if c.pod_cidr.addr().is_ipv4() { 32 } else { 128 }) - c.node_cidr_mask_size);
            let base = ip_to_u128(c.pod_cidr.network()) + i * size;
            IpNet::new(
                u128_to_ip(base, c.pod_cidr.addr().is_ipv4()),
                c.node_cidr_mask_size,
            )
            .ok()
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let mut nodes = Vec::new();
        let mut used_cidrs = BTreeSet::new();
        let mut used_ips = BTreeSet::new();
        if given.is_empty() {
            for i in 0..self.config.nodes {
                let name = format!("node-{i}");
                let cidr = node_cidr(u128::from(i), &self.config).expect("checked by config");
                let ip = nth_address(&self.config.node_network, u128::from(i) + 2)
                    .expect("node network holds the nodes");
                nodes.push(NodeInfo {
                    name,
                    labels: Labels::new(),
                    pod_cidrs: vec![cidr],
                    internal_ip: ip,
                });
            }
        } else {
            if given.len() as u32 != self.config.nodes
                && self.config.nodes != ClusterConfig::default().nodes
            {
                self.diags.push(Diagnostic::warning(
                    Some(given[0].start.clone()),
                    format!("{} Node objects are given; they are the nodes, and the node count {} is ignored", given.len(), self.config.nodes),
                ));
            }
            let mut sorted = given.clone();
            sorted.sort_by(|a, b| a.obj.metadata.name.cmp(&b.obj.metadata.name));
            // First the nodes that state their podCIDR and address, then the rest.
            for n in &sorted {
                let name = n.obj.metadata.name.clone().unwrap_or_default();
                let oref = ObjectRef::new("Node", None, &name);
                let cidr = n
                    .obj
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .map(|c| (c, c.parse::<IpNet>()));
                let cidr = match cidr {
                    None => None,
                    Some((_, Ok(net)))
                        if self.config.pod_cidr.contains(&net)
                            && net.prefix_len() == self.config.node_cidr_mask_size
                            && used_cidrs.insert(net) =>
                    {
                        Some(net)
                    }
                    Some((raw, _)) => {
                        self.diags.push(
                            Diagnostic::error(n.locate("spec.podCIDR"), format!("Invalid value: {raw:?}: must be a free /{} inside the cluster podCIDR {}", self.config.node_cidr_mask_size, self.config.pod_cidr))
                                .with_object(oref.clone())
                                .with_field("spec.podCIDR"),
                        );
                        None
                    }
                };
                let ip = n
                    .obj
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .and_then(|a| a.address.parse::<IpAddr>().ok());
                if let Some(ip) = ip {
                    used_ips.insert(ip);
                }
                let labels = n.obj.metadata.labels.clone().unwrap_or_default();
                nodes.push(NodeInfo {
                    name,
                    labels,
                    pod_cidrs: cidr.into_iter().collect(),
                    internal_ip: ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                });
            }
            let mut next_cidr = 0u128;
            let mut next_ip = 2u128;
            for n in nodes.iter_mut() {
                if n.pod_cidrs.is_empty() {
                    while next_cidr < cidr_slots {
                        let c = node_cidr(next_cidr, &self.config).expect("inside podCIDR");
                        next_cidr += 1;
                        if used_cidrs.insert(c) {
                            n.pod_cidrs.push(c);
                            break;
                        }
                    }
                }
                if n.internal_ip.is_unspecified() {
                    while let Some(ip) = nth_address(&self.config.node_network, next_ip) {
                        next_ip += 1;
                        if used_ips.insert(ip) {
                            n.internal_ip = ip;
                            break;
                        }
                    }
                }
            }
        }
        for n in nodes.iter_mut() {
            n.labels
                .entry("kubernetes.io/hostname".into())
                .or_insert_with(|| n.name.clone());
            n.labels
                .entry("kubernetes.io/os".into())
                .or_insert_with(|| "linux".into());
            n.labels
                .entry("kubernetes.io/arch".into())
                .or_insert_with(|| arch.into());
        }
        nodes
    }

    /// Pods from bare Pods and from workloads, named as their controllers name them.
    fn pod_sources(&mut self, objects: &[Object], nodes: &[NodeInfo]) -> Vec<PodSource> {
        // Names of bare pods are taken first so that generated names avoid them.
        for o in objects {
            if let Object::Pod(p) = o {
                if let Some(n) = p.obj.metadata.name.as_deref().filter(|n| !n.is_empty()) {
                    self.used_names.insert(NsName::new(
                        p.obj.metadata.namespace.as_deref().unwrap_or("default"),
                        n,
                    ));
                }
            }
        }
        let mut sorted: Vec<&Object> = objects.iter().collect();
        // The built-in cluster DNS pods are placed first, as kind's sit on its control plane:
        // they keep their nodes and addresses whatever the user's workloads do.
        let builtin_dns = self.builtin_dns;
        sorted.sort_by_cached_key(|o| {
            let dns = builtin_dns
                && matches!(o, Object::Deployment(_))
                && is_named(o, crate::dns::DNS_NAMESPACE, crate::dns::DNS_DEPLOYMENT);
            (!dns, kind_order(o), oref_of(o))
        });
        let mut out = Vec::new();
        for o in sorted {
            let ns = meta_of(o)
                .and_then(|m| m.namespace.clone())
                .unwrap_or_default();
            let name = meta_of(o).and_then(|m| m.name.clone()).unwrap_or_default();
            match o {
                Object::Pod(p) => out.push(self.bare_pod(p, &ns)),
                Object::Deployment(d) => {
                    let spec = &d.obj.spec;
                    let hash =
                        template_hash(&serde_json::to_string(&spec.template).expect("serializes"));
                    let rs = format!("{name}-{hash}");
                    self.replicas(
                        &ns,
                        &rs,
                        &spec.template,
                        spec.replicas.unwrap_or(1),
                        Some(&hash),
                        &mut out,
                    );
                }
                Object::ReplicaSet(r) => {
                    let spec = &r.obj.spec;
                    let t = spec.template.clone().unwrap_or_default();
                    self.replicas(&ns, &name, &t, spec.replicas.unwrap_or(1), None, &mut out);
                }
                Object::StatefulSet(s) => {
                    let spec = &s.obj.spec;
                    let rev = format!(
                        "{name}-{}",
                        template_hash(&serde_json::to_string(&spec.template).expect("serializes"))
                    );
                    let shared = Arc::new(spec.template.spec.clone().unwrap_or_default());
                    for i in 0..spec.replicas.unwrap_or(1).max(0) {
                        let pod_name = format!("{name}-{i}");
                        self.used_names.insert(NsName::new(&ns, &pod_name));
                        let mut src = PodSource::from_template(
                            &ns,
                            pod_name.clone(),
                            &spec.template,
                            shared.clone(),
                            OwnerInfo {
                                kind: "StatefulSet".into(),
                                name: name.clone(),
                            },
                        );
                        src.labels.insert(
                            "statefulset.kubernetes.io/pod-name".into(),
                            pod_name.clone(),
                        );
                        src.labels
                            .insert("apps.kubernetes.io/pod-index".into(), i.to_string());
                        src.labels
                            .insert("controller-revision-hash".into(), rev.clone());
                        src.hostname = Some(pod_name);
                        src.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
                        out.push(src);
                    }
                }
                Object::DaemonSet(d) => {
                    let spec = &d.obj.spec;
                    let hash =
                        template_hash(&serde_json::to_string(&spec.template).expect("serializes"));
                    let sel = spec
                        .template
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_selector.clone())
                        .unwrap_or_default();
                    let shared = Arc::new(spec.template.spec.clone().unwrap_or_default());
                    for node in nodes.iter().filter(|n| selector_matches(&sel, &n.labels)) {
                        let pod_name = unique_name(&mut self.used_names, &ns, |salt| {
                            generate_name(
                                &format!("{name}-"),
                                fnv64(&[
                                    ns.as_bytes(),
                                    name.as_bytes(),
                                    node.name.as_bytes(),
                                    &salt.to_le_bytes(),
                                ]),
                            )
                        });
                        let mut src = PodSource::from_template(
                            &ns,
                            pod_name,
                            &spec.template,
                            shared.clone(),
                            OwnerInfo {
                                kind: "DaemonSet".into(),
                                name: name.clone(),
                            },
                        );
                        src.labels
                            .insert("controller-revision-hash".into(), hash.clone());
                        src.labels
                            .insert("pod-template-generation".into(), "1".into());
                        Arc::make_mut(&mut src.spec).node_name = Some(node.name.clone());
                        out.push(src);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn replicas(
        &mut self,
        ns: &str,
        rs: &str,
        t: &k8s_openapi::api::core::v1::PodTemplateSpec,
        n: i32,
        hash: Option<&str>,
        out: &mut Vec<PodSource>,
    ) {
        let shared = Arc::new(t.spec.clone().unwrap_or_default());
        for i in 0..n.max(0) {
            let pod_name = unique_name(&mut self.used_names, ns, |salt| {
                generate_name(
                    &format!("{rs}-"),
                    fnv64(&[
                        ns.as_bytes(),
                        rs.as_bytes(),
                        &(i as u64).to_le_bytes(),
                        &salt.to_le_bytes(),
                    ]),
                )
            });
            let mut src = PodSource::from_template(
                ns,
                pod_name,
                t,
                shared.clone(),
                OwnerInfo {
                    kind: "ReplicaSet".into(),
                    name: rs.to_string(),
                },
            );
            if let Some(h) = hash {
                src.labels.insert("pod-template-hash".into(), h.to_string());
            }
            out.push(src);
        }
    }

    fn bare_pod(&mut self, p: &Sourced<k8s_openapi::api::core::v1::Pod>, ns: &str) -> PodSource {
        let meta = &p.obj.metadata;
        let name = match meta.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let base = meta.generate_name.clone().unwrap_or_default();
                unique_name(&mut self.used_names, ns, |salt| {
                    generate_name(
                        &base,
                        fnv64(&[ns.as_bytes(), base.as_bytes(), &salt.to_le_bytes()]),
                    )
                })
            }
        };
        pod_source(p, ns, name)
    }

    /// Scheduling (nodeName, nodeSelector, otherwise least-loaded node) and pod IPs.
    fn place_and_address(&mut self, sources: Vec<PodSource>, nodes: &[NodeInfo]) -> Vec<PodInfo> {
        let mut load: Vec<usize> = vec![0; nodes.len()];
        let mut placed: Vec<(PodSource, Option<usize>)> = Vec::with_capacity(sources.len());
        for src in sources {
            let node = self.pick_node(&src, nodes, &load);
            if let Some(i) = node {
                load[i] += 1;
            }
            placed.push((src, node));
        }
        // Pod IPs from each node's podCIDR: the first address is the node's gateway, pods get
        // the next ones. Addresses the manifests fix (status.podIP) are taken first.
        let mut taken = self.claim_fixed_ips(&placed, nodes);
        let kept = self.keep_running_ips(&placed, nodes, &mut taken);
        let mut next: Vec<u128> = vec![2; nodes.len()];
        let mut pods = Vec::with_capacity(placed.len());
        for (src, node) in placed {
            let ips = match node {
                None => Vec::new(),
                Some(i) if src.spec.host_network.unwrap_or(false) => vec![nodes[i].internal_ip],
                Some(_) if src.fixed_ip.is_some() => {
                    vec![src.fixed_ip.as_ref().expect("checked").0]
                }
                Some(_) if kept.contains_key(&NsName::new(&src.namespace, &src.name)) => {
                    vec![kept[&NsName::new(&src.namespace, &src.name)]]
                }
                Some(i) => self
                    .next_pod_ip(&nodes[i], &mut next[i], &mut taken, &src)
                    .into_iter()
                    .collect(),
            };
            pods.push(pod_info(src, node.map(|i| nodes[i].name.clone()), ips));
        }
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// The scheduler's choice: `nodeName`, else the node whose podCIDR holds a fixed pod IP,
    /// else the least loaded node that matches the `nodeSelector`.
    fn pick_node(&mut self, src: &PodSource, nodes: &[NodeInfo], load: &[usize]) -> Option<usize> {
        let named = src.spec.node_name.as_deref().filter(|n| !n.is_empty());
        let running = self
            .running
            .get(&NsName::new(&src.namespace, &src.name))
            .and_then(|p| nodes.iter().position(|n| n.name == p.node));
        if let (Some(i), None) = (running, named) {
            return Some(i);
        }
        if let Some(n) = src.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            let idx = nodes.iter().position(|x| x.name == n);
            if idx.is_none() {
                self.diags.push(Diagnostic::warning(
                    None,
                    format!(
                        "pod {}/{} names node {n:?}, which does not exist; it stays Pending",
                        src.namespace, src.name
                    ),
                ));
            }
            idx
        } else if let Some((ip, _)) = src
            .fixed_ip
            .as_ref()
            .filter(|_| !src.spec.host_network.unwrap_or(false))
        {
            nodes
                .iter()
                .position(|n| n.pod_cidrs.iter().any(|c| c.contains(ip)))
        } else {
            let sel = src.spec.node_selector.clone().unwrap_or_default();
            let best = (0..nodes.len())
                .filter(|&i| selector_matches(&sel, &nodes[i].labels))
                .min_by_key(|&i| (load[i], i));
            if best.is_none() {
                self.diags.push(Diagnostic::warning(
                    None,
                    format!(
                        "pod {}/{}: no node matches its nodeSelector; it stays Pending",
                        src.namespace, src.name
                    ),
                ));
            }
            best
        }
    }

    /// The pod IPs the manifests fix, each checked to be a free address of its node's podCIDR.
    fn claim_fixed_ips(
        &mut self,
        placed: &[(PodSource, Option<usize>)],
        nodes: &[NodeInfo],
    ) -> BTreeSet<IpAddr> {
        let mut taken: BTreeSet<IpAddr> = BTreeSet::new();
        for (src, node) in placed {
            if let (Some((ip, loc)), Some(i)) = (&src.fixed_ip, node) {
                if src.spec.host_network.unwrap_or(false) {
                    continue;
                }
                let inside = nodes[*i]
                    .pod_cidrs
                    .iter()
                    .any(|c| c.contains(ip) && *ip != c.network() && *ip != c.broadcast());
                if !inside || !taken.insert(*ip) {
                    self.diags.push(
                        Diagnostic::error(
                            loc.clone(),
                            format!(
                                "Invalid value: {ip}: not a free address of node {}'s podCIDR {}",
                                nodes[*i].name,
                                nodes[*i]
                                    .pod_cidrs
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                        )
                        .with_object(ObjectRef::new("Pod", Some(&src.namespace), &src.name))
                        .with_field("status.podIP"),
                    );
                }
            }
        }
        taken
    }

    /// The addresses of running pods that stay on their node: kept where they still belong to
    /// the node's podCIDR and no fixed address took them.
    fn keep_running_ips(
        &self,
        placed: &[(PodSource, Option<usize>)],
        nodes: &[NodeInfo],
        taken: &mut BTreeSet<IpAddr>,
    ) -> HashMap<NsName, IpAddr> {
        let mut kept = HashMap::new();
        for (src, node) in placed {
            let (Some(i), None) = (node, &src.fixed_ip) else {
                continue;
            };
            if src.spec.host_network.unwrap_or(false) {
                continue;
            }
            let key = NsName::new(&src.namespace, &src.name);
            let Some(p) = self.running.get(&key) else {
                continue;
            };
            let Some(ip) = p.ip.filter(|_| p.node == nodes[*i].name) else {
                continue;
            };
            let inside = nodes[*i]
                .pod_cidrs
                .iter()
                .any(|c| c.contains(&ip) && ip != c.network() && ip != c.broadcast());
            if inside && taken.insert(ip) {
                kept.insert(key, ip);
            }
        }
        kept
    }

    /// The next free address of a node's podCIDR.
    fn next_pod_ip(
        &mut self,
        node: &NodeInfo,
        next: &mut u128,
        taken: &mut BTreeSet<IpAddr>,
        src: &PodSource,
    ) -> Option<IpAddr> {
        let cidr = node.pod_cidrs[0];
        let mut ip = None;
        while let Some(cand) = nth_address(&cidr, *next) {
            *next += 1;
            if cand != cidr.broadcast() && taken.insert(cand) {
                ip = Some(cand);
                break;
            }
        }
        if ip.is_none() {
            self.diags.push(Diagnostic::global_error(
                format!("node {}'s podCIDR {cidr} is full: pod {}/{} gets no IP; use fewer pods per node or more nodes", node.name, src.namespace, src.name),
            ));
        }
        ip
    }

    fn services(
        &mut self,
        objects: &[Object],
    ) -> (Vec<ServiceInfo>, Vec<(NsName, EndpointSliceInfo)>) {
        let mut svcs: Vec<&Sourced<Service>> = of_kind!(objects, Service).collect();
        svcs.sort_by(|a, b| {
            (&a.obj.metadata.namespace, &a.obj.metadata.name)
                .cmp(&(&b.obj.metadata.namespace, &b.obj.metadata.name))
        });
        let mut infos: Vec<ServiceInfo> = svcs.iter().map(|s| service_info(s)).collect();
        let has_kubernetes = infos
            .iter()
            .any(|s| s.namespace == "default" && s.name == "kubernetes");
        let mut alloc = Allocator::new(&self.config);
        // The API server's own Service takes the first address.
        let builtin = (!has_kubernetes).then(|| {
            let ip = nth_address(&self.config.service_cidr, 1).expect("serviceCIDR holds .1");
            alloc
                .claim_ip(ip)
                .expect("the first address of the serviceCIDR is free");
            kubernetes_service(ip)
        });
        // Pass 1: what the manifests ask for. Pass 2: allocate the rest, in a stable order.
        for (svc, src) in infos.iter_mut().zip(&svcs) {
            self.claim_requested(&mut alloc, svc, src);
        }
        let mut short = Shortages::default();
        for (svc, src) in infos.iter_mut().zip(&svcs) {
            self.allocate_rest(&mut alloc, svc, src, &mut short);
        }
        self.report_shortages(short);
        // Pass 3: the load-balancer controller.
        self.assign_load_balancer_ips(&mut infos, &svcs);
        let user = self.user_slices(objects, &infos);
        if let Some(b) = builtin {
            infos.push(b);
            infos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        (infos, user)
    }

    /// The ClusterIPs, node ports and health-check port a Service asks for, where free.
    fn claim_requested(
        &mut self,
        alloc: &mut Allocator,
        svc: &mut ServiceInfo,
        src: &Sourced<Service>,
    ) {
        let spec = src.obj.spec.as_ref().expect("validated");
        let oref = ObjectRef::new("Service", Some(&svc.namespace), &svc.name);
        let ips: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
            (Some(list), _) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            (_, Some(ip)) if !ip.is_empty() => vec![ip.as_str()],
            _ => vec![],
        };
        if svc.service_type != ServiceType::ExternalName && !svc.headless {
            if let Some(fam) = spec.ip_families.as_ref().and_then(|f| f.first()) {
                if fam == "IPv6" && self.config.service_cidr.addr().is_ipv4() {
                    self.diags.push(Diagnostic::error(src.locate("spec.ipFamilies[0]"), "Invalid value: \"IPv6\": not configured on this cluster (the serviceCIDR is IPv4)".into()).with_object(oref.clone()).with_field("spec.ipFamilies[0]"));
                }
            }
            for (i, raw) in ips.iter().enumerate() {
                let field = if spec.cluster_ips.as_ref().is_some_and(|l| !l.is_empty()) {
                    format!("spec.clusterIPs[{i}]")
                } else {
                    "spec.clusterIP".to_string()
                };
                let Ok(ip) = raw.parse::<IpAddr>() else {
                    continue;
                };
                if let Err(why) = alloc.claim_ip(ip) {
                    self.diags.push(
                        Diagnostic::error(
                            src.locate(&field),
                            format!("Invalid value: {raw:?}: {why}"),
                        )
                        .with_object(oref.clone())
                        .with_field(field),
                    );
                } else {
                    svc.cluster_ips.push(ip);
                }
            }
        }
        for (i, p) in svc.ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            if let Some(np) = p.node_port {
                if let Err(why) =
                    alloc.claim_port(np, &svc.namespace, &svc.name, p.protocol.as_str())
                {
                    self.diags.push(
                        Diagnostic::error(
                            src.locate(&field),
                            format!("Invalid value: {np}: {why}"),
                        )
                        .with_object(oref.clone())
                        .with_field(field),
                    );
                    p.node_port = None;
                }
            }
        }
        if let Some(hc) = svc.health_check_node_port {
            if let Err(why) = alloc.claim_port(hc, &svc.namespace, &svc.name, "health") {
                self.diags.push(
                    Diagnostic::error(
                        src.locate("spec.healthCheckNodePort"),
                        format!("Invalid value: {hc}: {why}"),
                    )
                    .with_object(oref.clone())
                    .with_field("spec.healthCheckNodePort"),
                );
            }
        }
    }

    /// What a Service did not ask for: a ClusterIP, node ports, a health-check port.
    fn allocate_rest(
        &mut self,
        alloc: &mut Allocator,
        svc: &mut ServiceInfo,
        src: &Sourced<Service>,
        short: &mut Shortages,
    ) {
        let spec = src.obj.spec.as_ref().expect("validated");
        let key = svc.key().to_string();
        if svc.service_type != ServiceType::ExternalName
            && !svc.headless
            && svc.cluster_ips.is_empty()
        {
            match alloc.allocate_ip(&key) {
                Some(ip) => svc.cluster_ips.push(ip),
                None => short.cluster_ips.push((src.start.clone(), svc.key())),
            }
        }
        let wants_node_ports = svc.service_type == ServiceType::NodePort
            || (svc.service_type == ServiceType::LoadBalancer
                && spec.allocate_load_balancer_node_ports != Some(false));
        if wants_node_ports {
            // Ports with the same number but another protocol share the node port.
            let mut by_port: HashMap<i32, i32> = HashMap::new();
            let svc_key = svc.key();
            for p in svc.ports.iter_mut() {
                if p.node_port.is_none() {
                    let shared = by_port.get(&p.port).copied();
                    p.node_port = shared.or_else(|| {
                        alloc.allocate_port(&format!("{key}/{}/{}", p.name, p.protocol))
                    });
                    if p.node_port.is_none() {
                        short.node_ports.push((src.start.clone(), svc_key.clone()));
                    }
                }
                if let Some(np) = p.node_port {
                    by_port.entry(p.port).or_insert(np);
                }
            }
        }
        if svc.service_type == ServiceType::LoadBalancer
            && svc.external_traffic_policy == TrafficPolicy::Local
            && svc.health_check_node_port.is_none()
        {
            svc.health_check_node_port = alloc.allocate_port(&format!("{key}/healthz"));
        }
    }

    /// One error per exhausted range, naming the first Service that got nothing and counting
    /// the rest, rather than one error per Service.
    fn report_shortages(&mut self, short: Shortages) {
        let ranges = [
            (
                short.cluster_ips,
                format!("serviceCIDR {} is full", self.config.service_cidr),
                "ClusterIP",
            ),
            (
                short.node_ports,
                format!(
                    "the node port range {} is full",
                    self.config.node_port_range
                ),
                "node port",
            ),
        ];
        for (list, full, what) in ranges {
            let Some((at, first)) = list.first() else {
                continue;
            };
            let more = match list.len() - 1 {
                0 => String::new(),
                n => format!(" and {n} more Service(s)"),
            };
            self.diags.push(
                Diagnostic::error(
                    at.clone(),
                    format!("{full}: no {what} is left for {first}{more}"),
                )
                .with_object(ObjectRef::new(
                    "Service",
                    Some(&first.namespace),
                    &first.name,
                )),
            );
        }
    }

    /// The load-balancer controller: requested addresses first, then the rest from the pool.
    fn assign_load_balancer_ips(&mut self, infos: &mut [ServiceInfo], svcs: &[&Sourced<Service>]) {
        let pool: Vec<IpAddr> = self
            .config
            .load_balancer_pool
            .iter()
            .flat_map(|r| r.iter(65536))
            .collect();
        let mut lb_taken: BTreeMap<IpAddr, String> = BTreeMap::new();
        let ours = |s: &Sourced<Service>| {
            s.obj
                .spec
                .as_ref()
                .and_then(|sp| sp.load_balancer_class.as_deref())
                .is_none()
        };
        for (svc, src) in infos.iter_mut().zip(svcs) {
            if svc.service_type != ServiceType::LoadBalancer || !ours(src) {
                continue;
            }
            let key = svc.key().to_string();
            let wanted = src
                .obj
                .spec
                .as_ref()
                .and_then(|s| s.load_balancer_ip.as_deref())
                .filter(|s| !s.is_empty());
            if let Some(raw) = wanted {
                let ip: IpAddr = raw.parse().expect("validated");
                if !pool.contains(&ip) {
                    self.diags.push(Diagnostic::warning(Some(src.locate("spec.loadBalancerIP")), format!("{raw} is not in the LoadBalancer pool {}; the Service stays <pending>", pool_string(&self.config))).with_object(ObjectRef::new("Service", Some(&svc.namespace), &svc.name)));
                } else if let Some(owner) = lb_taken.get(&ip) {
                    self.diags.push(
                        Diagnostic::warning(
                            Some(src.locate("spec.loadBalancerIP")),
                            format!(
                                "{raw} is already assigned to {owner}; the Service stays <pending>"
                            ),
                        )
                        .with_object(ObjectRef::new(
                            "Service",
                            Some(&svc.namespace),
                            &svc.name,
                        )),
                    );
                } else {
                    lb_taken.insert(ip, key.clone());
                    svc.load_balancer_ips.push(ip);
                }
            }
        }
        for (svc, src) in infos.iter_mut().zip(svcs) {
            if svc.service_type != ServiceType::LoadBalancer
                || !ours(src)
                || !svc.load_balancer_ips.is_empty()
            {
                continue;
            }
            let wanted = src
                .obj
                .spec
                .as_ref()
                .and_then(|s| s.load_balancer_ip.as_deref())
                .filter(|s| !s.is_empty());
            if wanted.is_some() || pool.is_empty() {
                continue;
            }
            let key = svc.key().to_string();
            let start = (fnv64(&[key.as_bytes()]) % pool.len() as u64) as usize;
            let found = (0..pool.len())
                .map(|i| pool[(start + i) % pool.len()])
                .find(|ip| !lb_taken.contains_key(ip));
            match found {
                Some(ip) => {
                    lb_taken.insert(ip, key);
                    svc.load_balancer_ips.push(ip);
                }
                None => self.diags.push(
                    Diagnostic::warning(
                        Some(src.start.clone()),
                        format!(
                            "the LoadBalancer pool {} is exhausted; the Service stays <pending>",
                            pool_string(&self.config)
                        ),
                    )
                    .with_object(ObjectRef::new(
                        "Service",
                        Some(&svc.namespace),
                        &svc.name,
                    )),
                ),
            }
        }
    }

    /// User EndpointSlices and mirrored Endpoints, by Service.
    fn user_slices(
        &mut self,
        objects: &[Object],
        infos: &[ServiceInfo],
    ) -> Vec<(NsName, EndpointSliceInfo)> {
        let mut user = Vec::new();
        let by_key: BTreeMap<NsName, &ServiceInfo> = infos.iter().map(|s| (s.key(), s)).collect();
        for o in objects {
            match o {
                Object::EndpointSlice(es) => {
                    let ns = es.obj.metadata.namespace.clone().unwrap_or_default();
                    let svc_name = es
                        .obj
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .cloned();
                    let Some(svc_name) = svc_name else {
                        self.diags.push(Diagnostic::warning(Some(es.start.clone()), "EndpointSlice has no kubernetes.io/service-name label; no Service uses it".into()).with_object(oref_of(o)));
                        continue;
                    };
                    let key = NsName::new(&ns, &svc_name);
                    // `default/kubernetes` is built in when the manifests do not define it.
                    if !by_key.contains_key(&key) && key != NsName::new("default", "kubernetes") {
                        self.diags.push(
                            Diagnostic::warning(
                                Some(es.start.clone()),
                                format!("EndpointSlice is for Service {key}, which does not exist"),
                            )
                            .with_object(oref_of(o)),
                        );
                    }
                    if es.obj.address_type == "FQDN" {
                        continue; // kube-proxy ignores FQDN slices.
                    }
                    user.push((key, user_slice(&es.obj)));
                }
                Object::Endpoints(ep) => {
                    let ns = ep.obj.metadata.namespace.clone().unwrap_or_default();
                    let name = ep.obj.metadata.name.clone().unwrap_or_default();
                    let key = NsName::new(&ns, &name);
                    match by_key.get(&key) {
                        // The mirroring controller skips Services with a selector.
                        Some(s) if s.selector.is_none() => user.extend(mirror_endpoints(&ep.obj).into_iter().map(|sl| (key.clone(), sl))),
                        Some(_) => self.diags.push(Diagnostic::warning(Some(ep.start.clone()), format!("Endpoints {key} is ignored: Service {key} has a selector, so its endpoints come from its pods")).with_object(oref_of(o))),
                        None => self.diags.push(Diagnostic::warning(Some(ep.start.clone()), format!("Endpoints {key} has no Service of the same name")).with_object(oref_of(o))),
                    }
                }
                _ => {}
            }
        }

        user
    }
}

/// The API server's own Service, `default/kubernetes`, when the manifests do not define it.
fn kubernetes_service(ip: IpAddr) -> ServiceInfo {
    ServiceInfo {
        namespace: "default".into(),
        name: "kubernetes".into(),
        service_type: ServiceType::ClusterIP,
        labels: [
            ("component".to_string(), "apiserver".to_string()),
            ("provider".to_string(), "kubernetes".to_string()),
        ]
        .into(),
        selector: None,
        cluster_ips: vec![ip],
        headless: false,
        external_name: None,
        ports: vec![ServicePortInfo {
            name: "https".into(),
            protocol: Protocol::Tcp,
            port: 443,
            target_port: TargetPort::Number(6443),
            node_port: None,
            app_protocol: None,
        }],
        external_ips: vec![],
        load_balancer_ips: vec![],
        session_affinity_timeout: None,
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
        publish_not_ready_addresses: false,
        endpoint_slices: vec![],
        builtin: true,
    }
}

/// A placed pod as the model holds it.
/// A pod as it is given (a bare Pod, or one the API serves): its labels, spec and status.
pub(crate) fn pod_source(
    p: &Sourced<k8s_openapi::api::core::v1::Pod>,
    ns: &str,
    name: String,
) -> PodSource {
    let meta = &p.obj.metadata;
    let spec = Arc::new(p.obj.spec.clone().unwrap_or_default());
    let status = p.obj.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Running".to_string());
    let ready_cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True");
    PodSource {
        namespace: ns.to_string(),
        name,
        labels: meta.labels.clone().unwrap_or_default(),
        hostname: spec.hostname.clone(),
        subdomain: spec.subdomain.clone(),
        spec,
        owner: None,
        ready: ready_cond.unwrap_or(phase == "Running"),
        terminating: meta.deletion_timestamp.is_some(),
        phase,
        fixed_ip: status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .map(|ip| (ip, p.locate("status.podIP"))),
    }
}

pub(crate) fn pod_info(src: PodSource, node: Option<String>, ips: Vec<IpAddr>) -> PodInfo {
    let host_net = src.spec.host_network.unwrap_or(false);
    let containers = src.spec.containers.iter().map(|c| c.name.clone()).collect();
    let ports = src
        .spec
        .containers
        .iter()
        .flat_map(|c| {
            c.ports.iter().flatten().map(move |p| ContainerPortInfo {
                container: c.name.clone(),
                name: p.name.clone(),
                container_port: p.container_port,
                protocol: Protocol::of_checked(p.protocol.as_deref()),
            })
        })
        .collect();
    PodInfo {
        namespace: src.namespace,
        name: src.name,
        labels: src.labels,
        node: node.clone(),
        phase: if node.is_none() {
            "Pending".to_string()
        } else {
            src.phase
        },
        ready: node.is_some() && src.ready,
        terminating: src.terminating,
        host_network: host_net,
        hostname: src.hostname,
        subdomain: src.subdomain,
        containers,
        ports,
        owner: src.owner,
        ips,
        spec: src.spec,
    }
}

fn kind_order(o: &Object) -> u8 {
    match o {
        Object::Pod(_) => 0,
        Object::StatefulSet(_) => 1,
        Object::Deployment(_) => 2,
        Object::ReplicaSet(_) => 3,
        Object::DaemonSet(_) => 4,
        _ => 9,
    }
}

fn pool_string(c: &ClusterConfig) -> String {
    c.load_balancer_pool
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn service_info(src: &Sourced<Service>) -> ServiceInfo {
    let meta = &src.obj.metadata;
    let spec = src.obj.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    let policy = |p: &Option<String>| {
        if p.as_deref() == Some("Local") {
            TrafficPolicy::Local
        } else {
            TrafficPolicy::Cluster
        }
    };
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10800)
    });
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| ServicePortInfo {
            name: p.name.clone().unwrap_or_default(),
            protocol: Protocol::of_checked(p.protocol.as_deref()),
            port: p.port,
            target_port: match &p.target_port {
                None => TargetPort::Number(p.port),
                Some(IntOrString::Int(n)) => TargetPort::Number(*n),
                Some(IntOrString::String(s)) => s
                    .parse()
                    .map(TargetPort::Number)
                    .unwrap_or_else(|_| TargetPort::Name(s.clone())),
            },
            node_port: p.node_port.filter(|n| *n != 0),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    // The API server drops a nil or empty selector to "no selector".
    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    ServiceInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        service_type,
        labels: meta.labels.clone().unwrap_or_default(),
        selector,
        cluster_ips: vec![],
        headless: spec.cluster_ip.as_deref() == Some("None"),
        external_name: (service_type == ServiceType::ExternalName)
            .then(|| spec.external_name.clone().unwrap_or_default()),
        ports,
        external_ips: spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok())
            .collect(),
        load_balancer_ips: vec![],
        session_affinity_timeout: affinity,
        external_traffic_policy: policy(&spec.external_traffic_policy),
        internal_traffic_policy: policy(&spec.internal_traffic_policy),
        health_check_node_port: spec.health_check_node_port.filter(|n| *n != 0),
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        endpoint_slices: vec![],
        builtin: false,
    }
}

pub(crate) fn user_slice(es: &k8s_openapi::api::discovery::v1::EndpointSlice) -> EndpointSliceInfo {
    let managed_by = es
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
        .cloned()
        .unwrap_or_else(|| "user".into());
    EndpointSliceInfo {
        name: es.metadata.name.clone().unwrap_or_default(),
        address_type: es.address_type.clone(),
        managed_by,
        ports: es
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(EndpointPortInfo {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port?,
                    protocol: Protocol::of_checked(p.protocol.as_deref()),
                })
            })
            .collect(),
        endpoints: es
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                // Unset conditions: ready and serving are "unknown", which consumers read as true.
                let ready = c.ready.unwrap_or(true);
                EndpointInfo {
                    addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                    hostname: e.hostname.clone(),
                    node_name: e.node_name.clone(),
                    pod: e
                        .target_ref
                        .as_ref()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.clone()),
                }
            })
            .collect(),
    }
}

/// The EndpointSliceMirroring controller: one slice per subset of a v1 Endpoints.
fn mirror_endpoints(ep: &k8s_openapi::api::core::v1::Endpoints) -> Vec<EndpointSliceInfo> {
    let name = ep.metadata.name.clone().unwrap_or_default();
    ep.subsets
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ss)| {
            let mut endpoints = Vec::new();
            for (ready, list) in [(true, &ss.addresses), (false, &ss.not_ready_addresses)] {
                for a in list.iter().flatten() {
                    endpoints.push(EndpointInfo {
                        addresses: a.ip.parse().into_iter().collect(),
                        ready,
                        serving: ready,
                        terminating: false,
                        hostname: a.hostname.clone(),
                        node_name: a.node_name.clone(),
                        pod: a
                            .target_ref
                            .as_ref()
                            .filter(|r| r.kind.as_deref() == Some("Pod"))
                            .and_then(|r| r.name.clone()),
                    });
                }
            }
            EndpointSliceInfo {
                name: format!(
                    "{name}-{}",
                    suffix5(fnv64(&[name.as_bytes(), &(i as u64).to_le_bytes()]))
                ),
                address_type: "IPv4".into(),
                managed_by: crate::model::MANAGED_BY_MIRRORING.into(),
                ports: ss
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| EndpointPortInfo {
                        name: p.name.clone().unwrap_or_default(),
                        port: p.port,
                        protocol: Protocol::of_checked(p.protocol.as_deref()),
                    })
                    .collect(),
                endpoints,
            }
        })
        .collect()
}

/// Warnings a user wants before deploying: Services that select nothing, named targetPorts
/// that a selected pod lacks.
fn endpoint_warnings(cluster: &Cluster, objects: &[Object], diags: &mut Vec<Diagnostic>) {
    let srcs: HashMap<NsName, &Sourced<Service>> = objects
        .iter()
        .filter_map(|o| {
            if let Object::Service(s) = o {
                Some(s)
            } else {
                None
            }
        })
        .map(|s| {
            (
                NsName::new(
                    s.obj.metadata.namespace.as_deref().unwrap_or(""),
                    s.obj.metadata.name.as_deref().unwrap_or(""),
                ),
                s,
            )
        })
        .collect();
    let index = crate::endpoints::LabelIndex::new(&cluster.pods);
    for svc in &cluster.services {
        let (Some(sel), Some(src)) = (&svc.selector, srcs.get(&svc.key())) else {
            continue;
        };
        if svc.service_type == ServiceType::ExternalName {
            continue;
        }
        let oref = ObjectRef::new("Service", Some(&svc.namespace), &svc.name);
        let selected: Vec<&PodInfo> = index
            .select(&cluster.pods, &svc.namespace, sel)
            .into_iter()
            .map(|i| &cluster.pods[i])
            .collect();
        if selected.is_empty() {
            let sel_str = sel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            diags.push(Diagnostic::warning(Some(src.locate("spec.selector")), format!("selector {sel_str} selects no pod in namespace {}; the Service has no endpoints", svc.namespace)).with_object(oref.clone()).with_field("spec.selector"));
            continue;
        }
        for (i, p) in svc.ports.iter().enumerate() {
            let TargetPort::Name(name) = &p.target_port else {
                continue;
            };
            let lacking: Vec<&str> = selected
                .iter()
                .filter(|pod| pod.find_port(name, p.protocol).is_none())
                .map(|pod| pod.name.as_str())
                .collect();
            if !lacking.is_empty() {
                let shown = lacking
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = if lacking.len() > 5 {
                    format!(" and {} more", lacking.len() - 5)
                } else {
                    String::new()
                };
                let field = format!("spec.ports[{i}].targetPort");
                diags.push(Diagnostic::warning(Some(src.locate(&field)), format!("targetPort {name:?} ({}) is not a named container port of pod(s) {shown}{more}; they get no endpoint for this port", p.protocol)).with_object(oref.clone()).with_field(field));
            }
        }
    }
}

/// ClusterIP and NodePort allocation, as the API server's allocators do it, but deterministic:
/// a hash of the Service's name picks where to start looking, so that adding one Service does
/// not move the others.
struct Allocator {
    net_base: u128,
    size: u128,
    v4: bool,
    ips: BTreeSet<u128>,
    /// Free offsets of the upper band (KEP-3070's dynamic band), then of the lower one.
    bands: [FreeRanges; 2],
    port_range: crate::config::PortRange,
    ports: HashMap<i32, String>,
}

impl Allocator {
    fn new(c: &ClusterConfig) -> Self {
        let v4 = c.service_cidr.addr().is_ipv4();
        let bits = (if v4 { 32 } else { 128 }) - u32::from(c.service_cidr.prefix_len());
        let size = if bits >= 64 {
            1u128 << 64
        } else {
            1u128 << bits
        };
        let net_base = ip_to_u128(c.service_cidr.network());
        // KEP-3070: the lower band is kept for addresses that users set themselves.
        let static_band = (size / 16).clamp(16, 256);
        let usable_end = if v4 { size - 1 } else { size };
        let mut a = Allocator {
            net_base,
            size,
            v4,
            ips: BTreeSet::new(),
            bands: [
                FreeRanges::new(static_band, usable_end),
                FreeRanges::new(1, static_band.min(usable_end)),
            ],
            port_range: c.node_port_range,
            ports: HashMap::new(),
        };
        // The cluster DNS address is kept for kube-dns.
        let dns = ip_to_u128(c.dns_ip).wrapping_sub(net_base);
        for b in &mut a.bands {
            b.take(dns);
        }
        a
    }

    fn claim_ip(&mut self, ip: IpAddr) -> Result<(), String> {
        let n = ip_to_u128(ip);
        if ip.is_ipv4() != self.v4 || n < self.net_base || n >= self.net_base + self.size {
            return Err("provided IP is not in the valid range (the cluster's serviceCIDR)".into());
        }
        let off = n - self.net_base;
        if off == 0 || (self.v4 && off == self.size - 1) {
            return Err("the network and broadcast addresses cannot be assigned".into());
        }
        if !self.ips.insert(off) {
            return Err("provided IP is already allocated".into());
        }
        for b in &mut self.bands {
            b.take(off);
        }
        Ok(())
    }

    /// A free address, from a hash of the Service's key so that adding a Service moves no
    /// other: the first free one at or after the hashed place, upper band first. O(log n).
    fn allocate_ip(&mut self, key: &str) -> Option<IpAddr> {
        let h = u128::from(fnv64(&[key.as_bytes()]));
        let off = self.bands.iter_mut().find_map(|b| b.take_hashed(h))?;
        self.ips.insert(off);
        Some(u128_to_ip(self.net_base + off, self.v4))
    }

    fn claim_port(&mut self, port: i32, ns: &str, name: &str, proto: &str) -> Result<(), String> {
        if !self.port_range.contains(port) {
            return Err(format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.port_range
            ));
        }
        let owner = format!("{ns}/{name}");
        match self.ports.get(&port) {
            // Within one Service, one node port may serve the same port number over two protocols.
            Some(o) if *o == owner && proto != "health" => Ok(()),
            Some(_) => Err("provided port is already allocated".into()),
            None => {
                self.ports.insert(port, owner);
                Ok(())
            }
        }
    }

    fn allocate_port(&mut self, key: &str) -> Option<i32> {
        let size = self.port_range.len();
        if self.ports.len() >= size as usize {
            return None;
        }
        let band = (size / 32).clamp(16, 128).min(size);
        let h = fnv64(&[key.as_bytes()]);
        for (lo, hi) in [(band, size), (0, band)] {
            if hi <= lo {
                continue;
            }
            let span = u64::from(hi - lo);
            for i in 0..span {
                let p = i32::from(self.port_range.first)
                    + (u64::from(lo) + (h.wrapping_add(i)) % span) as i32;
                if let std::collections::hash_map::Entry::Vacant(e) = self.ports.entry(p) {
                    e.insert(key.to_string());
                    return Some(p);
                }
            }
        }
        None
    }
}

/// Services that an exhausted range could not serve, with where each was defined.
#[derive(Default)]
struct Shortages {
    cluster_ips: Vec<(Location, NsName)>,
    node_ports: Vec<(Location, NsName)>,
}

/// The free values of `[lo, hi)` as disjoint ranges, start → end (exclusive), so that finding
/// the first free value at or after a place is a tree lookup however full the range is, and
/// memory grows with the number of values taken, not with the size of the range.
#[derive(Debug, Clone)]
struct FreeRanges {
    lo: u128,
    hi: u128,
    free: BTreeMap<u128, u128>,
}

impl FreeRanges {
    fn new(lo: u128, hi: u128) -> FreeRanges {
        let mut free = BTreeMap::new();
        if lo < hi {
            free.insert(lo, hi);
        }
        FreeRanges { lo, hi, free }
    }

    /// Takes `x`; false when it was not free.
    fn take(&mut self, x: u128) -> bool {
        let Some((&start, &end)) = self.free.range(..=x).next_back() else {
            return false;
        };
        if x >= end {
            return false;
        }
        self.free.remove(&start);
        if start < x {
            self.free.insert(start, x);
        }
        if x + 1 < end {
            self.free.insert(x + 1, end);
        }
        true
    }

    /// Takes the first free value at or after `lo + h % (hi - lo)`, wrapping around.
    fn take_hashed(&mut self, h: u128) -> Option<u128> {
        if self.free.is_empty() {
            return None;
        }
        let at = self.lo + h % (self.hi - self.lo);
        let x = match self.free.range(..=at).next_back() {
            Some((_, &end)) if at < end => at,
            _ => {
                *self
                    .free
                    .range(at..)
                    .next()
                    .or_else(|| self.free.iter().next())?
                    .0
            }
        };
        self.take(x);
        Some(x)
    }
}
