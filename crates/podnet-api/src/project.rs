//! The model, projected into the API's own objects (k8s-openapi types, serialized as the API
//! server serializes them): what a lab serves. Everything the model computed is filled in, as
//! the control plane would have: pods' node, addresses and status; Services' ClusterIPs,
//! NodePorts and load-balancer addresses; the EndpointSlices; the nodes' podCIDRs and
//! addresses. Manifest kinds the model keeps as they are (NetworkPolicy, Ingress,
//! IngressClass, Secret, the Gateway API's) are served as they were written, except the status
//! of those whose status controllers write ([`Kind::status_by_controllers`]): none here, as
//! the API server takes none with an object; the controllers write it
//! ([`crate::write`]), as on a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, HostIP, LoadBalancerIngress, LoadBalancerStatus, Namespace, NamespaceStatus,
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodIP, PodStatus,
    Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podnet_model::{
    Cluster, IpFamily, Kind, NodeInfo, PodInfo, ServiceInfo, ServiceType, TargetPort, TrafficPolicy,
};
use serde::Serialize;
use serde_json::Value;

/// The annotation on each Node that tells the other nodes how to reach its pods over the
/// overlay: the node's VXLAN tunnel endpoint (its InternalIP).
pub const VTEP_ANNOTATION: &str = "podnet.dev/vtep";

fn value<T: Serialize>(o: &T) -> Value {
    serde_json::to_value(o).expect("API objects serialize")
}

fn labels(l: &podnet_model::Labels) -> Option<BTreeMap<String, String>> {
    (!l.is_empty()).then(|| l.clone())
}

/// An object of a kind whose status controllers write, without the status its manifest had.
fn without_status<T: Serialize>(o: &T) -> Value {
    let mut v = value(o);
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

/// Every object the lab serves, in no particular order.
pub fn project(c: &Cluster) -> Vec<Value> {
    let mut out = Vec::new();
    out.extend(c.namespaces.values().map(|n| {
        value(&Namespace {
            metadata: ObjectMeta {
                name: Some(n.name.clone()),
                labels: labels(&n.labels),
                ..Default::default()
            },
            status: Some(NamespaceStatus {
                phase: Some("Active".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }));
    out.extend(c.nodes.iter().map(|n| value(&node(n))));
    out.extend(c.pods.iter().map(|p| value(&pod(c, p))));
    for s in &c.services {
        out.push(value(&service(s)));
        out.extend(slices(s).iter().map(value));
    }
    out.extend(c.network_policies.iter().map(|p| value(&p.obj)));
    out.extend(c.ingresses.iter().map(|i| without_status(&i.obj)));
    out.extend(c.ingress_classes.iter().map(|p| value(&p.obj)));
    out.extend(c.secrets.iter().map(|p| value(&p.obj)));
    out.extend(c.config_maps.iter().map(|p| value(&p.obj)));
    // The Gateway API's objects (their status is their controller's).
    let typed = |mut v: Value, kind: Kind| {
        v["apiVersion"] = Value::from(kind.api_version());
        v["kind"] = Value::from(kind.as_str());
        v
    };
    out.extend(
        c.gateway_classes
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::GatewayClass)),
    );
    out.extend(
        c.gateways
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::Gateway)),
    );
    out.extend(
        c.http_routes
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::HTTPRoute)),
    );
    out.extend(
        c.tls_routes
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::TLSRoute)),
    );
    out.extend(
        c.grpc_routes
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::GRPCRoute)),
    );
    out.extend(
        c.backend_tls_policies
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::BackendTLSPolicy)),
    );
    out.extend(
        c.listener_sets
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::ListenerSet)),
    );
    out.extend(
        c.cluster_network_policies
            .iter()
            .map(|o| typed(without_status(&o.obj), Kind::ClusterNetworkPolicy)),
    );
    out.extend(
        c.reference_grants
            .iter()
            .map(|o| typed(value(&o.obj), Kind::ReferenceGrant)),
    );
    out
}

fn node(n: &NodeInfo) -> Node {
    let mut annotations = BTreeMap::new();
    annotations.insert(VTEP_ANNOTATION.to_string(), n.internal_ip.to_string());
    let cidrs: Vec<String> = n.pod_cidrs.iter().map(ToString::to_string).collect();
    Node {
        metadata: ObjectMeta {
            name: Some(n.name.clone()),
            labels: labels(&n.labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidrs.first().cloned(),
            pod_cidrs: Some(cidrs),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(
                n.internal_ips()
                    .iter()
                    .map(|ip| NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.to_string(),
                    })
                    .chain([NodeAddress {
                        type_: "Hostname".into(),
                        address: n.name.clone(),
                    }])
                    .collect(),
            ),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod(c: &Cluster, p: &PodInfo) -> Pod {
    let mut spec = (*p.spec).clone();
    spec.node_name = p.node.clone();
    // As the StatefulSet controller writes them.
    spec.hostname = p.hostname.clone().or(spec.hostname);
    spec.subdomain = p.subdomain.clone().or(spec.subdomain);
    // The node's addresses of the cluster's families, primary first (`status.hostIPs`).
    let host_ips: Vec<String> = p
        .node
        .as_deref()
        .and_then(|n| c.node(n))
        .map(|n| {
            n.internal_ips()
                .iter()
                .filter(|ip| c.config.families().contains(&IpFamily::of(**ip)))
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default();
    let host_ip = host_ips.first().cloned();
    let ready = if p.ready { "True" } else { "False" };
    let owner = p.owner.as_ref().map(|o| {
        vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: String::new(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            labels: labels(&p.labels),
            owner_references: owner,
            // A terminating pod: the model knows that it is, not since when.
            deletion_timestamp: p.terminating.then_some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            ),
            deletion_grace_period_seconds: p.terminating.then_some(30),
            ..Default::default()
        },
        spec: Some(spec),
        status: Some(PodStatus {
            phase: Some(p.phase.clone()),
            pod_ip: p.ips.first().map(ToString::to_string),
            pod_ips: (!p.ips.is_empty()).then(|| {
                p.ips
                    .iter()
                    .map(|ip| PodIP { ip: ip.to_string() })
                    .collect()
            }),
            host_ip,
            host_ips: (!host_ips.is_empty())
                .then(|| host_ips.into_iter().map(|ip| HostIP { ip }).collect()),
            conditions: p.node.as_ref().map(|_| {
                ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                    .iter()
                    .map(|t| PodCondition {
                        type_: (*t).into(),
                        status: if matches!(*t, "ContainersReady" | "Ready") {
                            ready.into()
                        } else {
                            "True".into()
                        },
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
    }
}

fn policy(t: TrafficPolicy) -> String {
    match t {
        TrafficPolicy::Cluster => "Cluster".into(),
        TrafficPolicy::Local => "Local".into(),
    }
}

fn service(s: &ServiceInfo) -> Service {
    let external = s.service_type == ServiceType::ExternalName;
    let cluster_ips: Vec<String> = if s.headless {
        vec!["None".into()]
    } else {
        s.cluster_ips.iter().map(ToString::to_string).collect()
    };
    let routed = matches!(
        s.service_type,
        ServiceType::NodePort | ServiceType::LoadBalancer
    );
    Service {
        metadata: ObjectMeta {
            name: Some(s.name.clone()),
            namespace: Some(s.namespace.clone()),
            labels: labels(&s.labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(s.service_type.as_str().into()),
            selector: s.selector.clone(),
            cluster_ip: (!external).then(|| cluster_ips.first().cloned()).flatten(),
            cluster_ips: (!external && !cluster_ips.is_empty()).then_some(cluster_ips),
            ip_families: (!s.ip_families.is_empty())
                .then(|| s.ip_families.iter().map(|f| f.as_str().into()).collect()),
            ip_family_policy: s.ip_family_policy.map(|p| p.as_str().into()),
            external_name: s.external_name.clone(),
            ports: (!s.ports.is_empty()).then(|| {
                s.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: (!p.name.is_empty()).then(|| p.name.clone()),
                        protocol: Some(p.protocol.as_str().into()),
                        port: p.port,
                        target_port: Some(match &p.target_port {
                            TargetPort::Number(n) => IntOrString::Int(*n),
                            TargetPort::Name(n) => IntOrString::String(n.clone()),
                        }),
                        node_port: p.node_port,
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect()
            }),
            external_ips: (!s.external_ips.is_empty())
                .then(|| s.external_ips.iter().map(ToString::to_string).collect()),
            session_affinity: Some(
                if s.session_affinity_timeout.is_some() {
                    "ClientIP"
                } else {
                    "None"
                }
                .into(),
            ),
            session_affinity_config: s.session_affinity_timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            external_traffic_policy: routed.then(|| policy(s.external_traffic_policy)),
            internal_traffic_policy: (!external).then(|| policy(s.internal_traffic_policy)),
            health_check_node_port: s.health_check_node_port,
            publish_not_ready_addresses: s.publish_not_ready_addresses.then_some(true),
            ..Default::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: (s.service_type == ServiceType::LoadBalancer
                    && !s.load_balancer_ips.is_empty())
                .then(|| {
                    s.load_balancer_ips
                        .iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ip_mode: Some("VIP".into()),
                            ..Default::default()
                        })
                        .collect()
                }),
            }),
            ..Default::default()
        }),
    }
}

fn slices(s: &ServiceInfo) -> Vec<EndpointSlice> {
    s.endpoint_slices
        .iter()
        .map(|sl| {
            let mut labels = BTreeMap::new();
            labels.insert(
                podnet_model::model::SERVICE_NAME_LABEL.to_string(),
                s.name.clone(),
            );
            labels.insert(
                "endpointslice.kubernetes.io/managed-by".to_string(),
                sl.managed_by.clone(),
            );
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(sl.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                address_type: sl.address_type.clone(),
                endpoints: Some(
                    sl.endpoints
                        .iter()
                        .map(|e| Endpoint {
                            addresses: e.addresses.iter().map(ToString::to_string).collect(),
                            conditions: Some(EndpointConditions {
                                ready: Some(e.ready),
                                serving: Some(e.serving),
                                terminating: Some(e.terminating),
                            }),
                            hostname: e.hostname.clone(),
                            node_name: e.node_name.clone(),
                            target_ref: e.pod.as_ref().map(|p| {
                                k8s_openapi::api::core::v1::ObjectReference {
                                    kind: Some("Pod".into()),
                                    name: Some(p.clone()),
                                    namespace: Some(s.namespace.clone()),
                                    ..Default::default()
                                }
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: Some(
                    sl.ports
                        .iter()
                        .map(|p| EndpointPort {
                            name: Some(p.name.clone()),
                            port: Some(p.port),
                            protocol: Some(p.protocol.as_str().into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}
