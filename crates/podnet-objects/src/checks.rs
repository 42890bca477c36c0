//! Per-kind validation, as the API server would reject an object on `kubectl apply`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Endpoints, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    Ingress, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::diag::{Diagnostic, ObjectRef};
use crate::objects::{Object, Sourced};
use crate::source::{join_index, join_key};
use crate::validation as v;

mod gateway;
mod network;
mod policy;

use gateway::{backend_tls_policy, gateway, grpc_route, http_route, listener_set, tls_route};
use network::{ingress, network_policy};
use policy::cluster_network_policy;

/// Collects errors for one object.
pub(crate) struct Checker<'a, T> {
    pub src: &'a Sourced<T>,
    pub oref: ObjectRef,
    pub out: &'a mut Vec<Diagnostic>,
}

impl<T> Checker<'_, T> {
    pub fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.out.push(
            Diagnostic::error(self.src.locate(path), msg.into())
                .with_object(self.oref.clone())
                .with_field(path),
        );
    }

    fn check<E: Into<String>>(&mut self, path: &str, r: Result<(), E>) {
        if let Err(e) = r {
            self.err(path, e);
        }
    }

    fn labels(&mut self, path: &str, labels: Option<&BTreeMap<String, String>>) {
        if let Some(l) = labels {
            for (k, why) in v::labels(l) {
                self.err(&join_key(path, &k), why);
            }
        }
    }

    fn selector(&mut self, path: &str, sel: &LabelSelector) {
        for (p, why) in v::label_selector(sel) {
            self.err(&format!("{path}.{p}"), why);
        }
    }

    fn meta(&mut self, meta: &ObjectMeta, name_rule: fn(&str) -> Result<(), v::Invalid>) {
        match (&meta.name, &meta.generate_name) {
            (Some(n), _) if !n.is_empty() => self.check("metadata.name", name_rule(n)),
            (_, Some(g)) if !g.is_empty() && self.oref.kind == "Pod" => {}
            _ => self.err(
                "metadata.name",
                "Required value: name or generateName is required",
            ),
        }
        if let Some(ns) = &meta.namespace {
            self.check("metadata.namespace", v::dns1123_label(ns));
        }
        self.labels("metadata.labels", meta.labels.as_ref());
    }

    fn pod_spec(&mut self, path: &str, spec: &PodSpec) {
        if spec.containers.is_empty() {
            self.err(
                &format!("{path}.containers"),
                "Required value: a pod needs at least one container",
            );
        }
        let mut port_names = BTreeSet::new();
        let mut container_names = BTreeSet::new();
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c));
        let all = spec
            .containers
            .iter()
            .map(|c| ("containers", c))
            .chain(init);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (list, c) in all {
            let i = {
                let n = counts.entry(list).or_default();
                *n += 1;
                *n - 1
            };
            let cpath = format!("{path}.{list}[{i}]");
            self.check(&format!("{cpath}.name"), v::dns1123_label(&c.name));
            if !container_names.insert(c.name.clone()) {
                self.err(
                    &format!("{cpath}.name"),
                    format!("Duplicate value: {:?}", c.name),
                );
            }
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let ppath = join_index(&format!("{cpath}.ports"), j);
                self.check(
                    &format!("{ppath}.containerPort"),
                    v::port_number(p.container_port),
                );
                if let Some(proto) = &p.protocol {
                    self.check(&format!("{ppath}.protocol"), v::protocol(proto));
                }
                if let Some(hp) = p.host_port {
                    if hp != 0 {
                        self.check(&format!("{ppath}.hostPort"), v::port_number(hp));
                    }
                }
                if let Some(name) = &p.name {
                    self.check(&format!("{ppath}.name"), v::iana_svc_name(name));
                    if !port_names.insert(name.clone()) {
                        self.err(
                            &format!("{ppath}.name"),
                            format!(
                                "Duplicate value: {name:?}: port names must be unique within a pod"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(h) = &spec.hostname {
            self.check(&format!("{path}.hostname"), v::dns1123_label(h));
        }
        if let Some(s) = &spec.subdomain {
            self.check(&format!("{path}.subdomain"), v::dns1123_label(s));
        }
        if let Some(p) = &spec.dns_policy {
            if !matches!(
                p.as_str(),
                "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
            ) {
                self.err(
                    &format!("{path}.dnsPolicy"),
                    format!("Unsupported value: {p:?}: supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""),
                );
            }
            if p == "None"
                && spec
                    .dns_config
                    .as_ref()
                    .is_none_or(|c| c.nameservers.as_ref().is_none_or(Vec::is_empty))
            {
                self.err(&format!("{path}.dnsConfig.nameservers"), "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None");
            }
        }
        if let Some(sel) = &spec.node_selector {
            self.labels(&format!("{path}.nodeSelector"), Some(sel));
        }
    }

    /// An apps/v1 workload: required selector that matches the template's labels.
    /// A controller of pods: its selector, its template (labels and pod spec) and replicas.
    fn workload(
        &mut self,
        selector: &LabelSelector,
        template: Option<&PodTemplateSpec>,
        replicas: Option<i32>,
    ) {
        let template_labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref());
        match template.and_then(|t| t.spec.as_ref()) {
            Some(ps) => self.pod_spec("spec.template.spec", ps),
            None => self.err("spec.template.spec", "Required value"),
        }
        self.selector("spec.selector", selector);
        let empty = selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty);
        if empty {
            self.err(
                "spec.selector",
                "Required value: empty selector is invalid for deployment-like workloads",
            );
        } else {
            let labels = template_labels.cloned().unwrap_or_default();
            if !crate::selector::matches(selector, &labels) {
                self.err(
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`",
                );
            }
        }
        self.labels("spec.template.metadata.labels", template_labels);
        if let Some(r) = replicas {
            if r < 0 {
                self.err(
                    "spec.replicas",
                    format!("Invalid value: {r}: must be greater than or equal to 0"),
                );
            }
        }
    }
}

fn service(c: &mut Checker<'_, Service>) {
    let svc = &c.src.obj;
    c.meta(&svc.metadata, v::dns1035_label);
    let Some(spec) = &svc.spec else {
        c.err("spec", "Required value: a Service needs a spec");
        return;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        c.err("spec.type", format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
        return;
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ty == "ExternalName" {
        match spec.external_name.as_deref() {
            None | Some("") => c.err(
                "spec.externalName",
                "Required value: an ExternalName Service needs spec.externalName",
            ),
            Some(n) => c.check(
                "spec.externalName",
                v::dns1123_subdomain(n.trim_end_matches('.')),
            ),
        }
        if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
            c.err(
                "spec.clusterIP",
                "Invalid value: must be empty for an ExternalName Service",
            );
        }
    } else if ports.is_empty() && !headless {
        c.err(
            "spec.ports",
            "Required value: a Service that is not headless needs at least one port",
        );
    }
    if headless && (ty == "NodePort" || ty == "LoadBalancer") {
        c.err(
            "spec.clusterIP",
            format!("Invalid value: \"None\": may not be set to 'None' for {ty} services"),
        );
    }
    if let Some(ip) = spec.cluster_ip.as_deref() {
        if !ip.is_empty() && ip != "None" && ip.parse::<IpAddr>().is_err() {
            c.err(
                "spec.clusterIP",
                format!("Invalid value: {ip:?}: must be a valid IP address, \"None\" or empty"),
            );
        }
    }
    if let (Some(ip), Some(ips)) = (spec.cluster_ip.as_deref(), spec.cluster_ips.as_ref()) {
        if !ip.is_empty() && ips.first().is_some_and(|first| first != ip) {
            c.err(
                "spec.clusterIPs[0]",
                format!("Invalid value: must match `clusterIP` ({ip:?})"),
            );
        }
    }
    service_ports(c, ty, ports);
    service_traffic(c, spec, ty);
}

/// A Service's ports: names, numbers, protocols, target ports and node ports, each unique.
fn service_ports(c: &mut Checker<'_, Service>, ty: &str, ports: &[ServicePort]) {
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut node_ports: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = join_index("spec.ports", i);
        let name = p.name.as_deref().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            c.err(
                &format!("{pp}.name"),
                "Required value: a name is required when a Service has more than one port",
            );
        } else if !name.is_empty() {
            c.check(&format!("{pp}.name"), v::dns1123_label(name));
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            c.err(&format!("{pp}.name"), format!("Duplicate value: {name:?}"));
        }
        c.check(&format!("{pp}.port"), v::port_number(p.port));
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        c.check(&format!("{pp}.protocol"), v::protocol(proto));
        if !seen.insert((p.port, proto.to_string())) {
            c.err(
                &pp,
                format!(
                    "Duplicate value: port {} with protocol {proto} is already declared",
                    p.port
                ),
            );
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) => c.check(&format!("{pp}.targetPort"), v::port_number(*n)),
            Some(IntOrString::String(s)) => {
                // The API server reads an all-digit string as a number.
                match s.parse::<i32>() {
                    Ok(n) => c.check(&format!("{pp}.targetPort"), v::port_number(n)),
                    Err(_) => c.check(&format!("{pp}.targetPort"), v::iana_svc_name(s)),
                }
            }
            None => {}
        }
        if let Some(np) = p.node_port {
            if !(ty == "NodePort" || ty == "LoadBalancer") {
                c.err(
                    &format!("{pp}.nodePort"),
                    format!("Forbidden: may not be used when `type` is '{ty}'"),
                );
            } else if np != 0 {
                c.check(&format!("{pp}.nodePort"), v::port_number(np));
                if !node_ports.entry(np).or_default().insert(proto.to_string()) {
                    c.err(&format!("{pp}.nodePort"), format!("Duplicate value: {np}"));
                }
            }
        }
    }
}

/// How a Service takes traffic: selector, session affinity, traffic policies, external and
/// load-balancer addresses, IP families.
fn service_traffic(c: &mut Checker<'_, Service>, spec: &ServiceSpec, ty: &str) {
    if let Some(sel) = &spec.selector {
        c.labels("spec.selector", Some(sel));
    }
    if let Some(a) = spec.session_affinity.as_deref() {
        if !matches!(a, "None" | "ClientIP") {
            c.err(
                "spec.sessionAffinity",
                format!("Unsupported value: {a:?}: supported values: \"ClientIP\", \"None\""),
            );
        }
        if let Some(t) = spec
            .session_affinity_config
            .as_ref()
            .and_then(|s| s.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
        {
            if !(1..=86400).contains(&t) {
                c.err(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    format!("Invalid value: {t}: must be greater than 0 and less than 86400"),
                );
            }
        }
    }
    for (field, val) in [
        ("spec.externalTrafficPolicy", &spec.external_traffic_policy),
        ("spec.internalTrafficPolicy", &spec.internal_traffic_policy),
    ] {
        if let Some(p) = val.as_deref() {
            if !matches!(p, "Cluster" | "Local") {
                c.err(
                    field,
                    format!("Unsupported value: {p:?}: supported values: \"Cluster\", \"Local\""),
                );
            }
        }
    }
    if spec.external_traffic_policy.is_some() && !(ty == "NodePort" || ty == "LoadBalancer") {
        c.err(
            "spec.externalTrafficPolicy",
            format!(
                "Invalid value: may only be set for NodePort and LoadBalancer services, not {ty}"
            ),
        );
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            c.err(
                &join_index("spec.externalIPs", i),
                format!("Invalid value: {ip:?}: must be a valid IP address"),
            );
        }
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref() {
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            c.err(
                "spec.loadBalancerIP",
                format!("Invalid value: {ip:?}: must be a valid IP address"),
            );
        }
    }
    let families = spec.ip_families.as_deref().unwrap_or_default();
    for (i, f) in families.iter().enumerate() {
        if !matches!(f.as_str(), "IPv4" | "IPv6") {
            c.err(
                &join_index("spec.ipFamilies", i),
                format!("Unsupported value: {f:?}: supported values: \"IPv4\", \"IPv6\""),
            );
        } else if families[..i].contains(f) {
            c.err(
                &join_index("spec.ipFamilies", i),
                format!("Duplicate value: {f:?}"),
            );
        }
    }
    if families.len() > 2 {
        let shown: Vec<String> = families.iter().map(|f| format!("{f:?}")).collect();
        c.err(
            "spec.ipFamilies",
            format!(
                "Invalid value: []core.IPFamily{{{}}}: may specify no more than two IP families",
                shown.join(", ")
            ),
        );
    }
    if let Some(p) = spec.ip_family_policy.as_deref() {
        if !matches!(p, "SingleStack" | "PreferDualStack" | "RequireDualStack") {
            c.err(
                "spec.ipFamilyPolicy",
                format!("Unsupported value: {p:?}: supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""),
            );
        }
    }
}

/// Validates one object; pushes errors to `out`.
/// Checks one object as the API server validates it; every error goes to `out`.
pub fn check_object(o: &Object, oref: ObjectRef, out: &mut Vec<Diagnostic>) {
    macro_rules! checker {
        ($s:expr) => {
            Checker { src: $s, oref, out }
        };
    }
    match o {
        Object::Namespace(s) => checker!(s).meta(&s.obj.metadata, v::dns1123_label),
        Object::Node(s) => checker!(s).meta(&s.obj.metadata, v::dns1123_subdomain),
        Object::Secret(s) => checker!(s).meta(&s.obj.metadata, v::dns1123_subdomain),
        Object::IngressClass(s) => checker!(s).meta(&s.obj.metadata, v::dns1123_subdomain),
        Object::Pod(s) => pod(&mut checker!(s)),
        Object::Deployment(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_subdomain);
            let spec = &s.obj.spec;
            c.workload(&spec.selector, Some(&spec.template), spec.replicas);
        }
        Object::ReplicaSet(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_subdomain);
            let spec = &s.obj.spec;
            c.workload(&spec.selector, spec.template.as_ref(), spec.replicas);
        }
        Object::StatefulSet(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_label);
            let spec = &s.obj.spec;
            c.workload(&spec.selector, Some(&spec.template), spec.replicas);
            if let Some(sn) = spec.service_name.as_deref().filter(|n| !n.is_empty()) {
                c.check("spec.serviceName", v::dns1123_label(sn));
            }
        }
        Object::DaemonSet(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_subdomain);
            let spec = &s.obj.spec;
            c.workload(&spec.selector, Some(&spec.template), None);
        }
        Object::Service(s) => service(&mut checker!(s)),
        Object::EndpointSlice(s) => endpoint_slice(&mut checker!(s)),
        Object::Endpoints(s) => endpoints(&mut checker!(s)),
        Object::NetworkPolicy(s) => network_policy(&mut checker!(s)),
        Object::Ingress(s) => ingress(&mut checker!(s)),
        Object::GatewayClass(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_subdomain);
            if s.obj.spec.controller_name.is_empty() {
                c.err("spec.controllerName", "Required value");
            }
        }
        Object::Gateway(s) => gateway(&mut checker!(s)),
        Object::ListenerSet(s) => listener_set(&mut checker!(s)),
        Object::HTTPRoute(s) => http_route(&mut checker!(s)),
        Object::TLSRoute(s) => tls_route(&mut checker!(s)),
        Object::GRPCRoute(s) => grpc_route(&mut checker!(s)),
        Object::BackendTLSPolicy(s) => backend_tls_policy(&mut checker!(s)),
        Object::ConfigMap(s) => checker!(s).meta(&s.obj.metadata, v::dns1123_subdomain),
        Object::ReferenceGrant(s) => {
            let mut c = checker!(s);
            c.meta(&s.obj.metadata, v::dns1123_subdomain);
            if s.obj.spec.from.is_empty() {
                c.err("spec.from", "Required value: at least one entry");
            }
            if s.obj.spec.to.is_empty() {
                c.err("spec.to", "Required value: at least one entry");
            }
        }
        Object::ClusterNetworkPolicy(s) => cluster_network_policy(&mut checker!(s)),
        Object::ClusterConfig(_) => {}
    }
}

fn pod(c: &mut Checker<'_, Pod>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    match &s.obj.spec {
        Some(spec) => c.pod_spec("spec", spec),
        None => c.err("spec", "Required value: a Pod needs a spec"),
    }
    if let Some(ip) = s.obj.status.as_ref().and_then(|st| st.pod_ip.as_deref()) {
        if ip.parse::<IpAddr>().is_err() {
            c.err(
                "status.podIP",
                format!("Invalid value: {ip:?}: must be a valid IP address"),
            );
        }
    }
}

fn endpoint_slice(c: &mut Checker<'_, EndpointSlice>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let es = &s.obj;
    if !matches!(es.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
        c.err(
            "addressType",
            format!(
                "Unsupported value: {:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
                es.address_type
            ),
        );
    }
    for (i, ep) in es.endpoints.iter().flatten().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            let ok = match es.address_type.as_str() {
                "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => v::dns1123_subdomain(a).is_ok(),
            };
            if !ok {
                c.err(
                    &format!("endpoints[{i}].addresses[{j}]"),
                    format!(
                        "Invalid value: {a:?}: must be a valid {} address",
                        es.address_type
                    ),
                );
            }
        }
    }
    for (i, p) in es.ports.iter().flatten().enumerate() {
        if let Some(n) = p.port {
            c.check(&format!("ports[{i}].port"), v::port_number(n));
        }
        if let Some(pr) = &p.protocol {
            c.check(&format!("ports[{i}].protocol"), v::protocol(pr));
        }
    }
}

fn endpoints(c: &mut Checker<'_, Endpoints>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    for (i, ss) in s.obj.subsets.iter().flatten().enumerate() {
        for (list, addrs) in [
            ("addresses", &ss.addresses),
            ("notReadyAddresses", &ss.not_ready_addresses),
        ] {
            for (j, a) in addrs.iter().flatten().enumerate() {
                if a.ip.parse::<IpAddr>().is_err() {
                    c.err(
                        &format!("subsets[{i}].{list}[{j}].ip"),
                        format!("Invalid value: {:?}: must be a valid IP address", a.ip),
                    );
                }
            }
        }
        for (j, p) in ss.ports.iter().flatten().enumerate() {
            c.check(
                &format!("subsets[{i}].ports[{j}].port"),
                v::port_number(p.port),
            );
        }
    }
}
