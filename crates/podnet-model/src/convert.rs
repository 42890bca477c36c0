//! Typed objects as the model holds them: what both the emulator (manifests) and the agent's
//! model (the API's objects) make of a Pod, a Service and a user's EndpointSlice.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::*;
use crate::objects::Sourced;

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// A pod as it is given (a bare Pod, or one the API serves): its labels, spec and status.
pub fn pod_source(
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

/// The fields of a pod's spec the model reads after [`pod_info`] has taken its containers'
/// names and ports: those of its resolv.conf and /etc/hosts (dnsPolicy, dnsConfig,
/// hostAliases, hostname, subdomain) and hostNetwork. What a follower of the API keeps of a
/// spec (and, with the containers and the node, what its watches keep of a Pod).
pub fn read_spec_fields(
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> k8s_openapi::api::core::v1::PodSpec {
    k8s_openapi::api::core::v1::PodSpec {
        dns_policy: spec.dns_policy.clone(),
        dns_config: spec.dns_config.clone(),
        host_aliases: spec.host_aliases.clone(),
        hostname: spec.hostname.clone(),
        subdomain: spec.subdomain.clone(),
        host_network: spec.host_network,
        ..Default::default()
    }
}

pub fn pod_info(src: PodSource, node: Option<String>, ips: Vec<IpAddr>) -> PodInfo {
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

/// The addresses a Service asks for, as the API server reads them: `clusterIPs`, else
/// `clusterIP` (`None` included); empty when it asks for none.
pub fn requested_cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<&str> {
    match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(list), _) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        (_, Some(ip)) if !ip.is_empty() => vec![ip.as_str()],
        _ => vec![],
    }
}

pub fn service_info(src: &Sourced<Service>) -> ServiceInfo {
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
        // As the API server set them (the emulator decides them for manifests).
        ip_family_policy: spec
            .ip_family_policy
            .as_deref()
            .and_then(IpFamilyPolicy::parse),
        ip_families: spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| IpFamily::parse(f))
            .collect(),
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

pub fn user_slice(es: &k8s_openapi::api::discovery::v1::EndpointSlice) -> EndpointSliceInfo {
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
