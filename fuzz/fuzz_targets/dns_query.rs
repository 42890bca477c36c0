//! The DNS server's query path: any datagram, through the UDP path (answer cache included, each
//! input twice) and the TCP-sized path. No panic, and every answer is a DNS response with the
//! query's ID.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use podnet_dns::{ClusterDns, UdpPath};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.5, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.7], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.244.2.7], conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: www.example.com}
"#;

fn dns() -> &'static Arc<ClusterDns> {
    static DNS: OnceLock<Arc<ClusterDns>> = OnceLock::new();
    DNS.get_or_init(|| {
        let docs = podnet_model::parse_documents("fuzz.yaml", MANIFESTS).expect("parses");
        let cluster = podnet_emulator::build(&docs, &Default::default()).expect("builds");
        let zone = podnet_model::dns::DnsZone::from_cluster(&cluster);
        Arc::new(ClusterDns::new(zone, vec![]).expect("zone"))
    })
}

fuzz_target!(|data: &[u8]| {
    let dns = dns();
    let mut udp = UdpPath::new(dns.clone());
    let first = udp.answer(data);
    let second = udp.answer(data);
    assert_eq!(first, second);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let tcp = rt.block_on(dns.answer_bytes(data, false));
    for out in [first, tcp].into_iter().flatten() {
        assert!(out.len() >= 12);
        assert_eq!(out[..2], data[..2]);
        assert_eq!(out[2] & 0x80, 0x80, "QR set");
    }
});
