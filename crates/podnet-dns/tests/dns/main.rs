//! The DNS server over real sockets on loopback: the upstream spec cases of
//! `../shared/conformance/dns/spec_cases.yaml` over UDP and TCP, negative answers, truncation,
//! forwarding, live zone changes, and malformed input.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use podnet_dns::ClusterDns;
use podnet_model::dns::{DnsZone, ZoneInput};
use podnet_model::{
    EndpointInfo, EndpointPortInfo, EndpointSliceInfo, ServiceInfo, ServicePortInfo, ServiceType,
    TargetPort, TrafficPolicy,
};
use serde_json::Value;

mod client;
mod conformance;
mod robustness;

use client::Dns;

/// A running server on loopback; dropped with the runtime.
pub struct Running {
    pub rt: tokio::runtime::Runtime,
    pub dns: Arc<ClusterDns>,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

impl Running {
    pub fn start(dns: ClusterDns) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dns = Arc::new(dns);
        let (udp, tcp) = rt.block_on(async {
            let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let t = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (ua, ta) = (u.local_addr().unwrap(), t.local_addr().unwrap());
            tokio::spawn(dns.clone().run(vec![u], vec![t]));
            (ua, ta)
        });
        Running { rt, dns, udp, tcp }
    }

    pub fn client(&self) -> Dns {
        Dns {
            udp: self.udp,
            tcp: self.tcp,
        }
    }
}

/// A Service as the conformance fixtures describe it.
pub fn service(v: &Value) -> ServiceInfo {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let ty = match v["type"].as_str().unwrap_or("ClusterIP") {
        "ExternalName" => ServiceType::ExternalName,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        _ => ServiceType::ClusterIP,
    };
    let cip = v["clusterIP"].as_str();
    let headless = cip == Some("None");
    ServiceInfo {
        namespace: s("namespace").unwrap_or_else(|| "default".into()),
        name: s("name").unwrap(),
        service_type: ty,
        labels: Default::default(),
        selector: None,
        cluster_ips: cip
            .and_then(|c| c.parse::<IpAddr>().ok())
            .into_iter()
            .collect(),
        // What the API server would set does not matter to these cases.
        ip_family_policy: None,
        ip_families: vec![],
        headless,
        external_name: s("externalName"),
        ports: v["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| ServicePortInfo {
                name: p["name"].as_str().unwrap_or("").into(),
                protocol: podnet_model::Protocol::of_checked(p["protocol"].as_str()),
                port: p["port"].as_i64().unwrap() as i32,
                target_port: TargetPort::Number(p["port"].as_i64().unwrap() as i32),
                node_port: None,
                app_protocol: None,
            })
            .collect(),
        external_ips: vec![],
        load_balancer_ips: vec![],
        session_affinity_timeout: None,
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: None,
        publish_not_ready_addresses: v["publishNotReadyAddresses"].as_bool().unwrap_or(false),
        endpoint_slices: vec![],
        builtin: false,
    }
}

pub fn slice(v: &Value) -> EndpointSliceInfo {
    EndpointSliceInfo {
        name: v["name"].as_str().unwrap().into(),
        address_type: v["addressType"].as_str().unwrap().into(),
        managed_by: "test".into(),
        ports: v["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| EndpointPortInfo {
                name: p["name"].as_str().unwrap_or("").into(),
                port: p["port"].as_i64().unwrap() as i32,
                protocol: podnet_model::Protocol::of_checked(p["protocol"].as_str()),
            })
            .collect(),
        endpoints: v["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| EndpointInfo {
                addresses: e["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().parse().unwrap())
                    .collect(),
                ready: e["conditions"]["ready"].as_bool().unwrap_or(true),
                serving: true,
                terminating: false,
                hostname: e["hostname"].as_str().map(str::to_string),
                node_name: None,
                pod: None,
            })
            .collect(),
    }
}

/// Services (with their slices attached) from fixture objects.
pub fn services(fixtures: &[Value]) -> Vec<ServiceInfo> {
    let mut svcs: Vec<ServiceInfo> = fixtures
        .iter()
        .filter(|f| f["kind"] == "Service")
        .map(service)
        .collect();
    for f in fixtures.iter().filter(|f| f["kind"] == "EndpointSlice") {
        let owner = f["labels"]["kubernetes.io/service-name"].as_str().unwrap();
        let ns = f["namespace"].as_str().unwrap_or("default");
        let svc = svcs
            .iter_mut()
            .find(|s| s.name == owner && s.namespace == ns)
            .unwrap();
        svc.endpoint_slices.push(slice(f));
    }
    svcs
}

pub fn zone_of(services: &[ServiceInfo], namespaces: &[&str]) -> DnsZone {
    DnsZone::new(&ZoneInput {
        domain: "cluster.local",
        dns_ip: Some("10.3.0.10".parse().unwrap()),
        services,
        namespaces: namespaces.to_vec(),
        ttl: 30,
    })
}

/// The presentation form of a record: `name ttl IN TYPE rdata`, names absolute.
pub fn text(r: &Record) -> String {
    format!("{} {} IN {} {}", r.name, r.ttl, r.record_type(), r.data)
}

pub fn query(name: &str, ty: RecordType, edns: bool) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(4242);
    N.fetch_add(7919, Ordering::Relaxed)
}

#[test]
fn a_zone_change_is_answered_at_once() {
    let svcs = vec![];
    let srv = Running::start(ClusterDns::new(zone_of(&svcs, &["default"]), vec![]).unwrap());
    let c = srv.client();
    let name = "late.default.svc.cluster.local.";
    assert_eq!(
        c.udp(&query(name, RecordType::A, true))
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let mut s = service(
        &serde_json::json!({"name": "late", "clusterIP": "10.3.0.77", "ports": [{"name": "http", "port": 80}]}),
    );
    s.namespace = "default".into();
    srv.dns.set_zone(zone_of(&[s], &["default"])).unwrap();
    let r = c.udp(&query(name, RecordType::A, true));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers
            .iter()
            .map(|a| a.data.to_string())
            .collect::<Vec<_>>(),
        ["10.3.0.77"]
    );
}
