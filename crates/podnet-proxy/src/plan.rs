//! What one node's proxy must do, computed from the model. Pure.
//!
//! Endpoint selection follows kube-proxy:
//! - ready endpoints; if there are none, serving-but-terminating ones (KEP-1669);
//! - `internalTrafficPolicy: Local` (for ClusterIPs) and `externalTrafficPolicy: Local` (for
//!   NodePorts, LoadBalancer IPs and externalIPs) keep only endpoints on this node;
//! - a frontend with no endpoint left is rejected (TCP reset, ICMP port unreachable), never
//!   left to time out; an external frontend with `Local` policy and no local endpoint drops;
//! - each family apart, as kube-proxy runs one proxier per family: a frontend's endpoints are
//!   those of its own address's family, and a NodePort Service's node ports answer on the
//!   node's addresses of each family the Service has.

use std::collections::BTreeMap;
use std::net::IpAddr;

use podnet_model::{Cluster, IpFamily, NsName, Protocol, ServiceInfo, ServiceType, TrafficPolicy};
use serde::Serialize;

/// Where traffic enters: a virtual IP and port (ClusterIP, LoadBalancer IP, externalIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Frontend {
    pub ip: IpAddr,
    pub proto: Protocol,
    pub port: u16,
}

/// What happens to new connections to a frontend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Dispatch {
    /// DNAT to one of these endpoints, equally at random.
    Endpoints {
        endpoints: Vec<(IpAddr, u16)>,
        masquerade: bool,
    },
    /// No endpoint: refuse actively.
    Reject,
    /// `Local` traffic policy and no endpoint on this node.
    Drop,
}

/// The owner of a frontend, for messages and `check`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Owner {
    pub service: NsName,
    pub port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyPlan {
    pub node: String,
    /// ClusterIPs, LoadBalancer IPs and externalIPs.
    pub frontends: BTreeMap<Frontend, (Owner, Dispatch)>,
    /// Node ports, on every local address of the node of their family.
    pub node_ports: BTreeMap<(IpFamily, Protocol, u16), (Owner, Dispatch)>,
    /// `sessionAffinity: ClientIP` timeouts in seconds, by Service.
    pub affinity: BTreeMap<NsName, u32>,
}

struct Ep {
    ip: IpAddr,
    port: u16,
    node: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
}

fn endpoints_for(svc: &ServiceInfo, port_name: &str, proto: Protocol) -> Vec<Ep> {
    let mut out = Vec::new();
    for slice in &svc.endpoint_slices {
        let Some(p) = slice
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == proto)
        else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        for e in &slice.endpoints {
            for ip in &e.addresses {
                out.push(Ep {
                    ip: *ip,
                    port,
                    node: e.node_name.clone(),
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                });
            }
        }
    }
    out.sort_by_key(|e| (e.ip, e.port));
    out.dedup_by_key(|e| (e.ip, e.port));
    out
}

/// The families of a Service's ClusterIPs, in their order.
pub fn families_of(svc: &ServiceInfo) -> Vec<IpFamily> {
    let mut out: Vec<IpFamily> = Vec::new();
    for ip in &svc.cluster_ips {
        if !out.contains(&IpFamily::of(*ip)) {
            out.push(IpFamily::of(*ip));
        }
    }
    out
}

/// KEP-1669: ready endpoints, else serving terminating ones; then the traffic policy's filter.
fn select(eps: &[&Ep], local_only: Option<&str>) -> Vec<(IpAddr, u16)> {
    let pick = |cands: Vec<&Ep>| -> Vec<(IpAddr, u16)> {
        let ready: Vec<_> = cands
            .iter()
            .filter(|e| e.ready)
            .map(|e| (e.ip, e.port))
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        cands
            .iter()
            .filter(|e| e.serving && e.terminating)
            .map(|e| (e.ip, e.port))
            .collect()
    };
    match local_only {
        None => pick(eps.to_vec()),
        Some(node) => pick(
            eps.iter()
                .copied()
                .filter(|e| e.node.as_deref() == Some(node))
                .collect(),
        ),
    }
}

fn dispatch(eps: &[&Ep], local: Option<&str>, masquerade: bool, empty: Dispatch) -> Dispatch {
    let endpoints = select(eps, local);
    if endpoints.is_empty() {
        empty
    } else {
        Dispatch::Endpoints {
            endpoints,
            masquerade,
        }
    }
}

impl ProxyPlan {
    /// The plan of `node`'s proxy.
    pub fn new(cluster: &Cluster, node: &str) -> ProxyPlan {
        let mut plan = ProxyPlan {
            node: node.to_string(),
            ..Default::default()
        };
        for svc in &cluster.services {
            plan.add_service(svc);
        }
        plan
    }

    /// One Service's frontends, added to the plan. A Service's part of the plan depends on
    /// that Service alone (with its endpoints) and the plan's node: an agent recomputes only
    /// the part of the Service an event changed.
    pub fn add_service(&mut self, svc: &ServiceInfo) {
        let node = self.node.clone();
        let node = node.as_str();
        let plan = self;
        if svc.service_type == ServiceType::ExternalName || svc.headless {
            return; // DNS serves them; no virtual IP.
        }
        // Labels by which upstream proxies step aside: a Service for another proxy, or one
        // marked headless although it has a ClusterIP.
        if svc
            .labels
            .contains_key("service.kubernetes.io/service-proxy-name")
            || svc.labels.contains_key("service.kubernetes.io/headless")
        {
            return;
        }
        if let Some(t) = svc.session_affinity_timeout {
            plan.affinity
                .insert(svc.key(), u32::try_from(t).unwrap_or(10800));
        }
        for p in &svc.ports {
            let proto = p.protocol;
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let owner = Owner {
                service: svc.key(),
                port: if p.name.is_empty() {
                    p.port.to_string()
                } else {
                    p.name.clone()
                },
            };
            let all = endpoints_for(svc, &p.name, p.protocol);
            let itp_local = (svc.internal_traffic_policy == TrafficPolicy::Local).then_some(node);
            let etp_local = svc.external_traffic_policy == TrafficPolicy::Local;
            // The families the Service has (its ClusterIPs'), and those of its external
            // addresses: each dispatches to endpoints of its own family.
            let mut families: Vec<IpFamily> = crate::plan::families_of(svc);
            for ip in svc.load_balancer_ips.iter().chain(&svc.external_ips) {
                if !families.contains(&IpFamily::of(*ip)) {
                    families.push(IpFamily::of(*ip));
                }
            }
            for family in families {
                let eps: Vec<&Ep> = all
                    .iter()
                    .filter(|e| IpFamily::of(e.ip) == family)
                    .collect();
                // Any endpoint at all, for the external policy's "no endpoint" case.
                let any = !select(&eps, None).is_empty();
                let internal = dispatch(
                    &eps,
                    itp_local,
                    false,
                    if itp_local.is_some() && any {
                        Dispatch::Drop
                    } else {
                        Dispatch::Reject
                    },
                );
                // External frontends: masquerade unless the policy is Local (which keeps the
                // client's address and uses only this node's endpoints).
                let external = if etp_local {
                    dispatch(
                        &eps,
                        Some(node),
                        false,
                        if any {
                            Dispatch::Drop
                        } else {
                            Dispatch::Reject
                        },
                    )
                } else {
                    dispatch(&eps, None, true, Dispatch::Reject)
                };
                let externals = svc.load_balancer_ips.iter().chain(&svc.external_ips);
                let frontends = svc
                    .cluster_ips
                    .iter()
                    .map(|ip| (ip, &internal))
                    .chain(externals.map(|ip| (ip, &external)));
                for (ip, d) in frontends.filter(|(ip, _)| IpFamily::of(**ip) == family) {
                    plan.frontends.insert(
                        Frontend {
                            ip: *ip,
                            proto,
                            port,
                        },
                        (owner.clone(), d.clone()),
                    );
                }
                let has_family = svc.cluster_ips.iter().any(|ip| IpFamily::of(*ip) == family);
                if let (true, true, Some(np)) =
                    (svc.service_type.has_node_ports(), has_family, p.node_port)
                {
                    if let Ok(np) = u16::try_from(np) {
                        plan.node_ports
                            .insert((family, proto, np), (owner.clone(), external.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_emulator::build;
    use podnet_model::{parse_documents, ConfigOverrides};

    fn cluster(extra: &str) -> Cluster {
        cluster_with(extra, &ConfigOverrides::default())
    }

    fn cluster_with(extra: &str, o: &ConfigOverrides) -> Cluster {
        let base = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: web}}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
"#;
        let docs = parse_documents("t.yaml", &format!("{base}---\n{extra}")).unwrap();
        build(&docs, o).unwrap()
    }

    fn svc(spec: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: http}}], {spec}}}\n")
    }

    fn front(plan: &ProxyPlan, c: &Cluster) -> Dispatch {
        let ip = c.service("default", "s").unwrap().cluster_ips[0];
        plan.frontends[&Frontend {
            ip,
            proto: Protocol::Tcp,
            port: 80,
        }]
            .1
            .clone()
    }

    #[test]
    fn each_family_dispatches_to_its_own_endpoints() {
        let services = r#"
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {type: NodePort, ipFamilyPolicy: PreferDualStack, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: v4}
spec: {type: NodePort, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
"#;
        let o = ConfigOverrides {
            ip_family: Some(podnet_model::config::ClusterFamily::Dual),
            ..Default::default()
        };
        let c = cluster_with(services, &o);
        let p = ProxyPlan::new(&c, "node-0");
        let s = c.service("default", "s").unwrap();
        assert_eq!(s.cluster_ips.len(), 2);
        for ip in &s.cluster_ips {
            let f = Frontend {
                ip: *ip,
                proto: Protocol::Tcp,
                port: 80,
            };
            match &p.frontends[&f].1 {
                Dispatch::Endpoints { endpoints, .. } => {
                    // Both pods, each at its address of the ClusterIP's family.
                    assert_eq!(endpoints.len(), 2);
                    assert!(
                        endpoints
                            .iter()
                            .all(|(e, _)| IpFamily::of(*e) == IpFamily::of(*ip)),
                        "{ip}"
                    );
                }
                d => panic!("{d:?}"),
            }
        }
        // Node ports on each family the Service has: the dual one on both, the IPv4 one on
        // the node's IPv4 addresses only.
        let np = |svc: &str| -> Vec<IpFamily> {
            p.node_ports
                .iter()
                .filter(|(_, (o, _))| o.service.name == svc)
                .map(|((f, _, _), _)| *f)
                .collect()
        };
        assert_eq!(np("s"), [IpFamily::Ipv4, IpFamily::Ipv6]);
        assert_eq!(np("v4"), [IpFamily::Ipv4]);
    }

    #[test]
    fn cluster_ip_balances_over_all_ready_endpoints() {
        let c = cluster(&svc("type: ClusterIP"));
        let p = ProxyPlan::new(&c, "node-0");
        match front(&p, &c) {
            Dispatch::Endpoints {
                endpoints,
                masquerade,
            } => {
                assert_eq!(endpoints.len(), 2);
                assert!(endpoints.iter().all(|(_, port)| *port == 8080));
                assert!(!masquerade);
            }
            d => panic!("{d:?}"),
        }
        assert!(p.node_ports.is_empty());
    }

    #[test]
    fn internal_traffic_policy_local_uses_this_nodes_endpoints() {
        let c = cluster(&svc("internalTrafficPolicy: Local"));
        let ips = |n: &str| match front(&ProxyPlan::new(&c, n), &c) {
            Dispatch::Endpoints { endpoints, .. } => {
                endpoints.iter().map(|e| e.0).collect::<Vec<_>>()
            }
            d => panic!("{d:?}"),
        };
        assert_eq!(ips("node-0"), [c.pod("default", "a").unwrap().ips[0]]);
        assert_eq!(ips("node-1"), [c.pod("default", "b").unwrap().ips[0]]);
        assert_eq!(
            front(&ProxyPlan::new(&c, "node-2"), &c),
            Dispatch::Drop,
            "no local endpoint: drop, like kube-proxy"
        );
    }

    #[test]
    fn node_ports_masquerade_unless_external_policy_is_local() {
        let c = cluster(&svc("type: NodePort"));
        let p = ProxyPlan::new(&c, "node-2");
        let (_, d) = p.node_ports.values().next().unwrap();
        assert!(
            matches!(d, Dispatch::Endpoints { masquerade: true, endpoints } if endpoints.len() == 2)
        );
        let c = cluster(&svc("type: LoadBalancer, externalTrafficPolicy: Local"));
        let lb = c.service("default", "s").unwrap().load_balancer_ips[0];
        let p0 = ProxyPlan::new(&c, "node-0");
        assert!(
            matches!(&p0.frontends[&Frontend { ip: lb, proto: Protocol::Tcp, port: 80 }].1, Dispatch::Endpoints { masquerade: false, endpoints } if endpoints.len() == 1)
        );
        let p2 = ProxyPlan::new(&c, "node-2");
        assert_eq!(
            p2.frontends[&Frontend {
                ip: lb,
                proto: Protocol::Tcp,
                port: 80
            }]
                .1,
            Dispatch::Drop
        );
    }

    #[test]
    fn no_endpoints_reject_and_terminating_fallback() {
        let c = cluster("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {app: none}, ports: [{name: http, port: 80}]}\n");
        assert_eq!(front(&ProxyPlan::new(&c, "node-0"), &c), Dispatch::Reject);
        let term = r#"
apiVersion: v1
kind: Pod
metadata: {name: t, labels: {app: old}, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {selector: {app: old}, ports: [{name: http, port: 80, targetPort: http}]}
"#;
        let c = cluster(term);
        match front(&ProxyPlan::new(&c, "node-1"), &c) {
            Dispatch::Endpoints { endpoints, .. } => assert_eq!(
                endpoints,
                [(c.pod("default", "t").unwrap().ips[0], 8080)],
                "serving terminating endpoints when no ready one exists"
            ),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn services_for_another_proxy_or_marked_headless_are_not_programmed() {
        for label in [
            "service.kubernetes.io/service-proxy-name: foo-bar",
            "service.kubernetes.io/headless: \"\"",
        ] {
            let c = cluster(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s, labels: {{{label}}}}}\nspec: {{selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: http}}]}}\n"));
            let p = ProxyPlan::new(&c, "node-0");
            assert!(
                p.frontends.keys().all(|f| Some(f.ip)
                    != c.service("default", "s")
                        .unwrap()
                        .cluster_ips
                        .first()
                        .copied()),
                "{label}"
            );
        }
    }

    #[test]
    fn headless_and_external_name_have_no_frontend() {
        let c = cluster("apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: e}\nspec: {type: ExternalName, externalName: example.com}\n");
        let p = ProxyPlan::new(&c, "node-0");
        // Only the Services every lab has: default/kubernetes and the built-in
        // kube-system/kube-dns (one frontend per port: dns/UDP and dns-tcp/TCP).
        let mut services: Vec<String> = p
            .frontends
            .values()
            .map(|f| f.0.service.to_string())
            .collect();
        services.sort();
        assert_eq!(
            services,
            [
                "default/kubernetes",
                "kube-system/kube-dns",
                "kube-system/kube-dns"
            ]
        );
    }
}
