//! Property: any valid set of Services gets unique ClusterIPs and NodePorts inside their ranges.

use std::collections::BTreeSet;

use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Svc {
    ty: u8,
    fixed_ip: Option<u16>,
    ports: Vec<(u16, bool, Option<u16>)>,
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        0u8..3,
        proptest::option::weighted(0.3, 2u16..4000),
        proptest::collection::vec(
            (
                1u16..2000,
                any::<bool>(),
                proptest::option::weighted(0.3, 0u16..2768),
            ),
            1..4,
        ),
    )
        .prop_map(|(ty, fixed_ip, ports)| Svc {
            ty,
            fixed_ip,
            ports,
        })
}

/// Writes the services as YAML, dropping requests that would be invalid (duplicates), so that
/// the set is valid.
fn to_yaml(svcs: &[Svc]) -> String {
    let mut used_ips = BTreeSet::new();
    let mut used_np = BTreeSet::new();
    let mut out = String::new();
    for (i, s) in svcs.iter().enumerate() {
        let ty = ["ClusterIP", "NodePort", "LoadBalancer"][s.ty as usize];
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec:\n  type: {ty}\n"
        ));
        if let Some(n) = s.fixed_ip {
            // 10.96.0.0/16, avoiding .0.1 (kubernetes) and .0.10 (DNS) and the broadcast.
            let n = n.max(11);
            if used_ips.insert(n) {
                out.push_str(&format!("  clusterIP: 10.96.{}.{}\n", n / 256, n % 256));
            }
        }
        out.push_str("  ports:\n");
        let mut seen = BTreeSet::new();
        for (j, (port, udp, np)) in s.ports.iter().enumerate() {
            let proto = if *udp { "UDP" } else { "TCP" };
            if !seen.insert((port, proto)) {
                continue;
            }
            out.push_str(&format!(
                "  - {{name: p{j}, port: {port}, protocol: {proto}"
            ));
            if let (Some(np), true) = (np, s.ty > 0) {
                let np = 30000 + np;
                if used_np.insert(np) {
                    out.push_str(&format!(", nodePort: {np}"));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn allocations_are_unique_and_in_range(svcs in proptest::collection::vec(svc(), 1..60)) {
        let yaml = to_yaml(&svcs);
        let docs = parse_documents("p.yaml", &yaml).unwrap();
        let c = build(&docs, &ConfigOverrides::default()).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        let mut ips = BTreeSet::new();
        let mut node_ports = BTreeSet::new();
        for s in &c.services {
            prop_assert_eq!(s.cluster_ips.len(), 1);
            let ip = s.cluster_ips[0];
            prop_assert!(c.config.service_cidr().contains(&ip));
            prop_assert!(ip != c.config.service_cidr().network() && ip != c.config.service_cidr().broadcast());
            prop_assert!(ips.insert(ip), "duplicate ClusterIP {}", ip);
            let mut own = BTreeSet::new();
            for p in &s.ports {
                match p.node_port {
                    Some(np) => {
                        prop_assert!(s.service_type.has_node_ports());
                        prop_assert!(c.config.node_port_range.contains(np));
                        // Within a Service one node port may serve one port number over two protocols.
                        if own.insert(np) {
                            prop_assert!(node_ports.insert(np), "duplicate NodePort {}", np);
                        }
                    }
                    None => prop_assert!(!s.service_type.has_node_ports(), "{} lacks a node port", s.name),
                }
            }
            if let Some(hc) = s.health_check_node_port {
                prop_assert!(node_ports.insert(hc));
            }
        }
    }
}
