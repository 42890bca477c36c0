//! Dual-stack and IPv6 clusters: the API rules of `../shared/conformance/dual-stack/README.md`
//! (pods, nodes, Services, EndpointSlices), as the model computes them.

use podnet_model::config::ClusterFamily;
use podnet_model::{IpFamily, IpFamilyPolicy};

use super::*;

fn family(f: ClusterFamily) -> ConfigOverrides {
    ConfigOverrides {
        ip_family: Some(f),
        ..Default::default()
    }
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: single}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: prefer}
spec: {selector: {app: web}, ipFamilyPolicy: PreferDualStack, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: require-v6-first}
spec:
  type: LoadBalancer
  selector: {app: web}
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: only-v6}
spec: {selector: {app: web}, ipFamilies: [IPv6], ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless-bare}
spec: {clusterIP: None, ports: [{port: 80}]}
"#;

#[test]
fn a_dual_stack_cluster_gives_nodes_and_pods_both_families_primary_first() {
    let c = cluster_with(DEPLOY, &family(ClusterFamily::Dual));
    for (i, n) in c.nodes.iter().enumerate() {
        let cidrs: Vec<String> = n.pod_cidrs.iter().map(ToString::to_string).collect();
        let v6 = if i == 0 {
            "fd00:10:244::/64".to_string()
        } else {
            format!("fd00:10:244:{i}::/64")
        };
        assert_eq!(cidrs, [format!("10.244.{i}.0/24"), v6], "{}", n.name);
        assert_eq!(n.internal_ip, ip(&format!("172.18.0.{}", i + 2)));
        assert_eq!(
            n.internal_ipv6,
            Some(ip(&format!("fc00:f853:ccd:e793::{}", i + 2)))
        );
    }
    for p in &c.pods {
        // status.podIPs: at most one per family, in the cluster's order, each from the
        // node's range of that family.
        let node = c.node(p.node.as_deref().unwrap()).unwrap();
        assert_eq!(p.ips.len(), 2, "{}", p.name);
        assert!(p.ips[0].is_ipv4() && p.ips[1].is_ipv6(), "{:?}", p.ips);
        for (ip, cidr) in p.ips.iter().zip(&node.pod_cidrs) {
            assert!(cidr.contains(ip), "{ip} in {cidr}");
        }
    }
    // The ipv4 cluster is unchanged: one family everywhere.
    let v4 = cluster(DEPLOY);
    assert!(v4
        .nodes
        .iter()
        .all(|n| n.pod_cidrs.len() == 1 && n.internal_ipv6.is_none()));
    assert!(v4
        .pods
        .iter()
        .all(|p| p.ips.len() == 1 && p.ips[0].is_ipv4()));
}

#[test]
fn an_ipv6_cluster_has_kinds_ipv6_ranges_and_dns_address() {
    // RequireDualStack is refused on a single-stack cluster, at its line and field.
    let docs = parse_documents("s.yaml", SERVICES).unwrap();
    let err = build(&docs, &family(ClusterFamily::Ipv6))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("s.yaml:18:19")
            && err.contains("spec.ipFamilyPolicy")
            && err.contains("this cluster is not configured for dual-stack services"),
        "{err}"
    );
    let services: Vec<&str> = SERVICES
        .split("---")
        .filter(|d| !d.contains("RequireDualStack"))
        .collect();
    let c = cluster_with(
        &format!("{DEPLOY}---\n{}", services.join("---")),
        &family(ClusterFamily::Ipv6),
    );
    assert_eq!(c.config.dns_ip, ip("fd00:10:96::a"));
    assert_eq!(c.nodes[1].pod_cidrs[0].to_string(), "fd00:10:244:1::/64");
    assert!(c
        .pods
        .iter()
        .all(|p| p.ips.len() == 1 && p.ips[0].is_ipv6()));
    let k = c.service("default", "kubernetes").unwrap();
    assert_eq!(k.cluster_ips, [ip("fd00:10:96::1")]);
    let dns = c.service("kube-system", "kube-dns").unwrap();
    assert_eq!(dns.cluster_ips, [ip("fd00:10:96::a")]);
    let single = c.service("default", "single").unwrap();
    assert_eq!(single.ip_families, [IpFamily::Ipv6]);
    assert!(c.config.service_cidr().contains(&single.cluster_ips[0]));
    let slices: Vec<&str> = single
        .endpoint_slices
        .iter()
        .map(|s| s.address_type.as_str())
        .collect();
    assert_eq!(slices, ["IPv6"]);
    // PreferDualStack on a single-stack cluster: one family.
    let prefer = c.service("default", "prefer").unwrap();
    assert_eq!(prefer.ip_families, [IpFamily::Ipv6]);
    assert_eq!(prefer.cluster_ips.len(), 1);
}

#[test]
fn services_on_a_dual_stack_cluster_follow_the_api_servers_rules() {
    let c = cluster_with(
        &format!("{DEPLOY}---\n{SERVICES}"),
        &family(ClusterFamily::Dual),
    );
    let svc = |n: &str| c.service("default", n).unwrap();
    let families = |n: &str| svc(n).ip_families.clone();
    let fam_of_ips = |n: &str| -> Vec<IpFamily> {
        svc(n)
            .cluster_ips
            .iter()
            .map(|ip| IpFamily::of(*ip))
            .collect()
    };
    // SingleStack by default, the cluster's primary family.
    assert_eq!(
        svc("single").ip_family_policy,
        Some(IpFamilyPolicy::SingleStack)
    );
    assert_eq!(families("single"), [IpFamily::Ipv4]);
    // A dual policy adds the other family second; clusterIPs in ipFamilies' order.
    assert_eq!(families("prefer"), [IpFamily::Ipv4, IpFamily::Ipv6]);
    assert_eq!(fam_of_ips("prefer"), families("prefer"));
    assert_eq!(
        families("require-v6-first"),
        [IpFamily::Ipv6, IpFamily::Ipv4]
    );
    assert_eq!(fam_of_ips("require-v6-first"), families("require-v6-first"));
    // A single [IPv6] on an IPv4-primary cluster: from the secondary service CIDR.
    assert_eq!(families("only-v6"), [IpFamily::Ipv6]);
    assert!(c
        .config
        .service_cidr_of(IpFamily::Ipv6)
        .unwrap()
        .contains(&svc("only-v6").cluster_ips[0]));
    // Headless: no addresses, but families; with a selector SingleStack, without one
    // RequireDualStack.
    assert!(svc("headless").cluster_ips.is_empty());
    assert_eq!(families("headless"), [IpFamily::Ipv4]);
    assert_eq!(
        svc("headless-bare").ip_family_policy,
        Some(IpFamilyPolicy::RequireDualStack)
    );
    assert_eq!(families("headless-bare"), [IpFamily::Ipv4, IpFamily::Ipv6]);
    // Slices per family of ipFamilies, each holding only that family's addresses, every
    // selected pod in each.
    for name in [
        "single",
        "prefer",
        "require-v6-first",
        "only-v6",
        "headless",
    ] {
        let s = svc(name);
        let types: Vec<&str> = s
            .endpoint_slices
            .iter()
            .map(|x| x.address_type.as_str())
            .collect();
        let want: Vec<&str> = s.ip_families.iter().map(|f| f.as_str()).collect();
        assert_eq!(types, want, "{name}");
        for slice in &s.endpoint_slices {
            assert_eq!(slice.endpoints.len(), 4, "{name}");
            for ep in &slice.endpoints {
                assert_eq!(ep.addresses.len(), 1);
                assert_eq!(IpFamily::of(ep.addresses[0]).as_str(), slice.address_type);
            }
        }
        let names: BTreeSet<&str> = s.endpoint_slices.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names.len(),
            s.endpoint_slices.len(),
            "{name}: distinct slice names"
        );
    }
    // A load balancer address per family, in the Service's order.
    let lb: Vec<IpFamily> = svc("require-v6-first")
        .load_balancer_ips
        .iter()
        .map(|ip| IpFamily::of(*ip))
        .collect();
    assert_eq!(lb, [IpFamily::Ipv6, IpFamily::Ipv4]);
}

#[test]
fn host_network_pods_report_their_nodes_addresses_of_each_family() {
    let host = r#"
apiVersion: v1
kind: Pod
metadata: {name: h}
spec: {hostNetwork: true, nodeName: node-1, containers: [{name: c, image: x}]}
"#;
    let c = cluster_with(host, &family(ClusterFamily::Dual));
    let p = c.pod("default", "h").unwrap();
    let n = c.node("node-1").unwrap();
    assert_eq!(p.ips, [n.internal_ip, n.internal_ipv6.unwrap()]);
}

#[test]
fn node_objects_state_a_podcidr_per_family() {
    let nodes = r#"
apiVersion: v1
kind: Node
metadata: {name: a}
spec: {podCIDRs: [10.244.5.0/24, "fd00:10:244:5::/64"]}
status: {addresses: [{type: InternalIP, address: 172.18.0.9}, {type: InternalIP, address: "fc00:f853:ccd:e793::9"}]}
---
apiVersion: v1
kind: Node
metadata: {name: b}
"#;
    let c = cluster_with(nodes, &family(ClusterFamily::Dual));
    let a = c.node("a").unwrap();
    assert_eq!(a.pod_cidrs[1].to_string(), "fd00:10:244:5::/64");
    assert_eq!(a.internal_ipv6, Some(ip("fc00:f853:ccd:e793::9")));
    let b = c.node("b").unwrap();
    assert_eq!(b.pod_cidrs.len(), 2, "the free ranges of each family");
    // A CIDR of a family the cluster does not have: at its line and field.
    let docs = parse_documents("n.yaml", nodes).unwrap();
    let err = build(&docs, &ConfigOverrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("n.yaml:5:") && err.contains("spec.podCIDRs[1]"),
        "{err}"
    );
}
