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

    fn meta(&mut self, meta: &ObjectMeta, name_rule: fn(&str) -> Result<(), String>) {
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
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        if !matches!(f.as_str(), "IPv4" | "IPv6") {
            c.err(
                &join_index("spec.ipFamilies", i),
                format!("Unsupported value: {f:?}: supported values: \"IPv4\", \"IPv6\""),
            );
        }
    }
}

/// Validates one object; pushes errors to `out`.
pub(crate) fn check_object(o: &Object, oref: ObjectRef, out: &mut Vec<Diagnostic>) {
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
        Object::HTTPRoute(s) => http_route(&mut checker!(s)),
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

fn network_policy(c: &mut Checker<'_, NetworkPolicy>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    if let Some(spec) = &s.obj.spec {
        if let Some(ps) = &spec.pod_selector {
            c.selector("spec.podSelector", ps);
        }
        for (i, t) in spec.policy_types.iter().flatten().enumerate() {
            if !matches!(t.as_str(), "Ingress" | "Egress") {
                c.err(
                    &format!("spec.policyTypes[{i}]"),
                    format!("Unsupported value: {t:?}: supported values: \"Egress\", \"Ingress\""),
                );
            }
        }
        let rules = spec
            .ingress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("spec.ingress[{i}]"),
                    "from",
                    r.from.as_ref(),
                    r.ports.as_ref(),
                )
            })
            .chain(spec.egress.iter().flatten().enumerate().map(|(i, r)| {
                (
                    format!("spec.egress[{i}]"),
                    "to",
                    r.to.as_ref(),
                    r.ports.as_ref(),
                )
            }))
            .collect::<Vec<_>>();
        for (base, peer_field, peers, ports) in rules {
            for (j, peer) in peers.into_iter().flatten().enumerate() {
                policy_peer(c, &format!("{base}.{peer_field}[{j}]"), peer);
            }
            for (j, p) in ports.into_iter().flatten().enumerate() {
                policy_port(c, &format!("{base}.ports[{j}]"), p);
            }
        }
    }
}

/// A peer of a NetworkPolicy rule: selectors, or an ipBlock whose `except` lies inside it.
fn policy_peer(c: &mut Checker<'_, NetworkPolicy>, pp: &str, peer: &NetworkPolicyPeer) {
    if let Some(ps) = &peer.pod_selector {
        c.selector(&format!("{pp}.podSelector"), ps);
    }
    if let Some(ns) = &peer.namespace_selector {
        c.selector(&format!("{pp}.namespaceSelector"), ns);
    }
    if let Some(b) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            c.err(
                pp,
                "Forbidden: may not specify ipBlock together with podSelector or namespaceSelector",
            );
        }
        match b.cidr.parse::<ipnet::IpNet>() {
            Err(_) => c.err(
                &format!("{pp}.ipBlock.cidr"),
                format!("Invalid value: {:?}: must be a valid CIDR", b.cidr),
            ),
            Ok(net) => {
                for (k, e) in b.except.iter().flatten().enumerate() {
                    match e.parse::<ipnet::IpNet>() {
                        Ok(x) if net.contains(&x) && x != net => {}
                        _ => c.err(
                            &format!("{pp}.ipBlock.except[{k}]"),
                            format!("Invalid value: {e:?}: must be a strict subset of `cidr`"),
                        ),
                    }
                }
            }
        }
    }
}

/// A port of a NetworkPolicy rule: protocol, number or name, and a range's end.
fn policy_port(c: &mut Checker<'_, NetworkPolicy>, pp: &str, p: &NetworkPolicyPort) {
    if let Some(pr) = &p.protocol {
        c.check(&format!("{pp}.protocol"), v::protocol(pr));
    }
    match &p.port {
        Some(IntOrString::Int(n)) => c.check(&format!("{pp}.port"), v::port_number(*n)),
        Some(IntOrString::String(name)) => c.check(&format!("{pp}.port"), v::iana_svc_name(name)),
        None => {}
    }
    if let Some(end) = p.end_port {
        match &p.port {
            Some(IntOrString::Int(n)) if end >= *n => {
                c.check(&format!("{pp}.endPort"), v::port_number(end))
            }
            Some(IntOrString::Int(_)) => c.err(
                &format!("{pp}.endPort"),
                "Invalid value: must be greater than or equal to `port`",
            ),
            _ => c.err(
                &format!("{pp}.endPort"),
                "Forbidden: may only be set with a numeric `port`",
            ),
        }
    }
}

fn ingress(c: &mut Checker<'_, Ingress>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    if let Some(spec) = &s.obj.spec {
        for (i, r) in spec.rules.iter().flatten().enumerate() {
            if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
                c.check(&format!("spec.rules[{i}].host"), v::wildcard_hostname(h));
            }
            for (j, p) in r.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let pp = format!("spec.rules[{i}].http.paths[{j}]");
                if !matches!(
                    p.path_type.as_str(),
                    "Exact" | "Prefix" | "ImplementationSpecific"
                ) {
                    c.err(&format!("{pp}.pathType"), format!("Unsupported value: {:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"", p.path_type));
                }
                if let Some(path) = &p.path {
                    if p.path_type != "ImplementationSpecific" && !path.starts_with('/') {
                        c.err(
                            &format!("{pp}.path"),
                            format!("Invalid value: {path:?}: must be an absolute path"),
                        );
                    }
                }
                if let Some(svc) = &p.backend.service {
                    if let Some(port) = &svc.port {
                        if let Some(n) = port.number {
                            c.check(
                                &format!("{pp}.backend.service.port.number"),
                                v::port_number(n),
                            );
                        }
                        if port.number.is_some() && port.name.is_some() {
                            c.err(
                                &format!("{pp}.backend.service.port"),
                                "Invalid value: cannot set both port name & port number",
                            );
                        }
                    }
                }
            }
        }
    }
}

fn gateway(c: &mut Checker<'_, crate::gateway_api::Gateway>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    if spec.gateway_class_name.is_empty() {
        c.err("spec.gatewayClassName", "Required value");
    }
    if spec.listeners.is_empty() {
        c.err("spec.listeners", "Required value: at least one listener");
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, l) in spec.listeners.iter().enumerate() {
        let at = format!("spec.listeners[{i}]");
        c.check(&format!("{at}.name"), v::dns1123_label(&l.name));
        if !names.insert(l.name.as_str()) {
            c.err(
                &format!("{at}.name"),
                format!(
                    "Duplicate value: {:?}: listener names must be unique",
                    l.name
                ),
            );
        }
        c.check(&format!("{at}.port"), v::port_number(l.port));
        if l.protocol.is_empty() {
            c.err(&format!("{at}.protocol"), "Required value");
        }
        if let Some(h) = &l.hostname {
            c.check(&format!("{at}.hostname"), v::wildcard_hostname(h));
        }
        if l.protocol == "HTTPS"
            && l.tls.as_ref().is_none_or(|t| {
                t.mode.as_deref() == Some("Terminate") && t.certificate_refs.is_empty()
            })
        {
            c.err(
                &format!("{at}.tls"),
                "Invalid value: an HTTPS listener in mode Terminate needs tls.certificateRefs",
            );
        }
        if l.protocol == "HTTP" && l.tls.is_some() {
            c.err(
                &format!("{at}.tls"),
                "Forbidden: tls must not be set for protocol HTTP",
            );
        }
        if let Some(sel) = l
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
        {
            match sel.from.as_deref() {
                None | Some("Same") | Some("All") | Some("None") => {}
                Some("Selector") => match &sel.selector {
                    Some(ls) => c.selector(&format!("{at}.allowedRoutes.namespaces.selector"), ls),
                    None => c.err(
                        &format!("{at}.allowedRoutes.namespaces.selector"),
                        "Required value: from: Selector needs a selector",
                    ),
                },
                Some(other) => c.err(
                    &format!("{at}.allowedRoutes.namespaces.from"),
                    format!("Unsupported value: {other:?}: supported values: \"All\", \"None\", \"Same\", \"Selector\""),
                ),
            }
        }
    }
}

fn http_route(c: &mut Checker<'_, crate::gateway_api::HTTPRoute>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    if spec.parent_refs.len() > 32 {
        c.err("spec.parentRefs", "Too many: at most 32 parentRefs");
    }
    for (i, h) in spec.hostnames.iter().enumerate() {
        c.check(&format!("spec.hostnames[{i}]"), v::wildcard_hostname(h));
    }
    for (i, p) in spec.parent_refs.iter().enumerate() {
        if let Some(port) = p.port {
            c.check(&format!("spec.parentRefs[{i}].port"), v::port_number(port));
        }
    }
    for (i, r) in spec.rules.iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (j, m) in r.matches.iter().flatten().enumerate() {
            let at = format!("{at}.matches[{j}]");
            if let Some(p) = &m.path {
                let t = p.type_.as_deref().unwrap_or("PathPrefix");
                if !matches!(t, "Exact" | "PathPrefix" | "RegularExpression") {
                    c.err(&format!("{at}.path.type"), format!("Unsupported value: {t:?}: supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\""));
                }
                let value = p.value.as_deref().unwrap_or("/");
                if t != "RegularExpression" && !value.starts_with('/') {
                    c.err(
                        &format!("{at}.path.value"),
                        format!("Invalid value: {value:?}: must be an absolute path"),
                    );
                }
                if t != "RegularExpression"
                    && (value.contains("//")
                        || value.contains("/./")
                        || value.contains("/../")
                        || value.contains('%') && value.contains("%2f")
                        || value.ends_with("/..")
                        || value.ends_with("/.")
                        || value.contains('#')
                        || value.contains('?'))
                {
                    c.err(&format!("{at}.path.value"), format!("Invalid value: {value:?}: must not contain '//', '/./', '/../', '#' or '?', or end in '/..' or '/.'"));
                }
            }
            for (k, h) in m.headers.iter().enumerate() {
                if h.name.is_empty()
                    || !h
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    c.err(
                        &format!("{at}.headers[{k}].name"),
                        format!("Invalid value: {:?}: not an HTTP header name", h.name),
                    );
                }
            }
            if let Some(method) = &m.method {
                if !matches!(
                    method.as_str(),
                    "GET"
                        | "HEAD"
                        | "POST"
                        | "PUT"
                        | "DELETE"
                        | "CONNECT"
                        | "OPTIONS"
                        | "TRACE"
                        | "PATCH"
                ) {
                    c.err(
                        &format!("{at}.method"),
                        format!("Unsupported value: {method:?}"),
                    );
                }
            }
        }
        let mut all: Vec<(String, &crate::gateway_api::HTTPRouteFilter)> = r
            .filters
            .iter()
            .enumerate()
            .map(|(k, f)| (format!("{at}.filters[{k}]"), f))
            .collect();
        for (j, b) in r.backend_refs.iter().flatten().enumerate() {
            all.extend(
                b.filters
                    .iter()
                    .enumerate()
                    .map(|(k, f)| (format!("{at}.backendRefs[{j}].filters[{k}]"), f)),
            );
        }
        for (at, f) in &all {
            let set = [
                ("RequestHeaderModifier", f.request_header_modifier.is_some()),
                (
                    "ResponseHeaderModifier",
                    f.response_header_modifier.is_some(),
                ),
                ("RequestRedirect", f.request_redirect.is_some()),
                ("URLRewrite", f.url_rewrite.is_some()),
                ("RequestMirror", f.request_mirror.is_some()),
                ("ExtensionRef", f.extension_ref.is_some()),
                ("CORS", f.cors.is_some()),
                ("ExternalAuth", f.external_auth.is_some()),
            ];
            match set.iter().find(|(t, _)| *t == f.type_) {
                None => c.err(
                    &format!("{at}.type"),
                    format!("Unsupported value: {:?}", f.type_),
                ),
                Some((_, false)) => c.err(
                    at,
                    format!(
                        "Invalid value: filter type {} needs its {} field",
                        f.type_, f.type_
                    ),
                ),
                Some(_) => {}
            }
            if let Some(code) = f.request_redirect.as_ref().and_then(|r| r.status_code) {
                if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                    c.err(
                        &format!("{at}.requestRedirect.statusCode"),
                        format!(
                            "Unsupported value: {code}: supported values: 301, 302, 303, 307, 308"
                        ),
                    );
                }
            }
        }
        let redirect = r.filters.iter().any(|f| f.request_redirect.is_some());
        let rewrite = r.filters.iter().any(|f| f.url_rewrite.is_some());
        if redirect && rewrite {
            c.err(
                &format!("{at}.filters"),
                "Invalid value: RequestRedirect and URLRewrite cannot both be set",
            );
        }
        if redirect && r.backend_refs.as_ref().is_some_and(|b| !b.is_empty()) {
            c.err(
                &format!("{at}.backendRefs"),
                "Invalid value: a rule with a RequestRedirect filter has no backendRefs",
            );
        }
        for (j, b) in r.backend_refs.iter().flatten().enumerate() {
            let at = format!("{at}.backendRefs[{j}]");
            if let Some(w) = b.weight {
                if !(0..=1_000_000).contains(&w) {
                    c.err(
                        &format!("{at}.weight"),
                        format!("Invalid value: {w}: must be between 0 and 1000000"),
                    );
                }
            }
            let service = b.group.as_deref().unwrap_or("").is_empty()
                && b.kind.as_deref().unwrap_or("Service") == "Service";
            match b.port {
                Some(p) => c.check(&format!("{at}.port"), v::port_number(p)),
                None if service => c.err(
                    &format!("{at}.port"),
                    "Required value: a Service backendRef needs a port",
                ),
                None => {}
            }
        }
    }
}
