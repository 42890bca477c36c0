use super::*;
use crate::plan::{Frontend, Owner};

fn plan(n: usize) -> ProxyPlan {
    let mut p = ProxyPlan {
        node: "node-0".into(),
        ..Default::default()
    };
    let eps = (0..n)
        .map(|i| (format!("10.244.0.{}", i + 2).parse().unwrap(), 8080))
        .collect();
    let owner = Owner {
        service: svc("default", "s"),
        port: "80".into(),
    };
    p.frontends.insert(
        Frontend {
            ip: "10.96.0.5".parse().unwrap(),
            proto: Protocol::Tcp,
            port: 80,
        },
        (
            owner.clone(),
            Dispatch::Endpoints {
                endpoints: eps,
                masquerade: false,
            },
        ),
    );
    p.frontends.insert(
        Frontend {
            ip: "10.96.0.6".parse().unwrap(),
            proto: Protocol::Udp,
            port: 53,
        },
        (owner.clone(), Dispatch::Reject),
    );
    p.node_ports.insert(
        (IpFamily::Ipv4, Protocol::Tcp, 30080),
        (owner, Dispatch::Drop),
    );
    p
}

#[test]
fn elements_of_a_plan() {
    let l = Elements::of(&plan(2)).listing();
    assert_eq!(l.services, ["10.96.0.5 . tcp . 80 : goto svc_tcp_ep2"]);
    let b = &l.backends["backends_tcp"];
    assert_eq!(b.len(), 2);
    assert!(b.contains(&"10.96.0.5 . tcp . 80 . 1 : 10.244.0.3 . 8080".to_string()));
    assert_eq!(l.no_endpoints, ["10.96.0.6 . udp . 53"]);
    assert_eq!(l.node_ports, ["tcp . 30080 : drop"]);
    assert!(l.hairpin.contains(&"10.244.0.2 . 10.244.0.2".to_string()));
}

#[test]
fn elements_survive_a_round_trip_through_saved_state() {
    let e = Elements::of(&crate::nft::tests_support::plan3());
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Elements>(&json).unwrap(), e);
}

#[test]
fn full_table_has_chains_per_protocol_and_endpoint_count() {
    let s = Transaction::create(&Elements::of(&plan(3))).render();
    assert!(s.contains("add chain ip podnet-proxy svc_tcp_ep3\n"));
    assert!(s.contains("numgen random mod 3 map @backends_tcp"));
    assert!(s.contains("add map ip podnet-proxy backends_udp { typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . udp dport; }"));
    assert!(s.contains("add map ip podnet-proxy np_aff_backends_sctp { typeof meta l4proto . th dport . ct mark : ip daddr . sctp dport; }"));
    assert!(!s.contains("svc_tcp_ep2"), "no chain for counts not in use");
}

#[test]
fn stale_udp_flows_are_found() {
    let frontend = |ip: &str, port| {
        FrontendKey::Service(ServiceKey {
            ip: ip.parse().unwrap(),
            proto: Protocol::Udp,
            port,
        })
    };
    let slot = |frontend: FrontendKey, slot| BackendSlot {
        map: BackendMap {
            family: frontend.family(),
            node_port: frontend.is_node_port(),
            affinity: false,
            proto: frontend.proto(),
        },
        frontend,
        slot,
    };
    let be = |ip: &str, port| Backend {
        ip: ip.parse().unwrap(),
        port,
    };
    let dns = frontend("10.96.0.6", 53);
    let np = FrontendKey::NodePort(NodePortKey {
        family: IpFamily::Ipv4,
        proto: Protocol::Udp,
        port: 30053,
    });
    let web = FrontendKey::Service(ServiceKey {
        ip: "10.96.0.5".parse().unwrap(),
        proto: Protocol::Tcp,
        port: 80,
    });
    let mut a = Elements::default();
    a.backends.insert(slot(dns, 0), be("10.244.0.2", 5353));
    a.backends.insert(slot(dns, 1), be("10.244.0.3", 5353));
    a.backends.insert(slot(web, 0), be("10.244.0.2", 8080));
    a.backends.insert(slot(np, 0), be("10.244.0.3", 5353));
    let mut b = Elements::default();
    // 10.244.0.3 moved to slot 0: still a backend of that frontend.
    b.backends.insert(slot(dns, 0), be("10.244.0.3", 5353));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        a.stale_udp_flows(&b),
        [
            StaleUdpFlow {
                vip: None,
                port: 30053,
                endpoint: ip("10.244.0.3")
            },
            StaleUdpFlow {
                vip: Some(ip("10.96.0.6")),
                port: 53,
                endpoint: ip("10.244.0.2")
            }
        ]
    );
}

#[test]
fn update_touches_only_what_changed() {
    let e = |n| Elements::of(&plan(n));
    assert!(Transaction::update(&e(2), &e(2)).is_empty());
    assert_eq!(e(3).counts().into_iter().collect::<Vec<_>>(), [3]);
    let d = Transaction::update(&e(2), &e(3)).render();
    assert!(d.contains("add chain ip podnet-proxy svc_tcp_ep3\n"), "{d}");
    assert!(
        d.contains("delete element ip podnet-proxy services { 10.96.0.5 . tcp . 80 }\n"),
        "{d}"
    );
    assert!(
        d.contains(
            "add element ip podnet-proxy services { 10.96.0.5 . tcp . 80 : goto svc_tcp_ep3 }\n"
        ),
        "{d}"
    );
    assert!(d.contains("add element ip podnet-proxy backends_tcp { 10.96.0.5 . tcp . 80 . 2 : 10.244.0.4 . 8080 }\n"), "{d}");
    assert!(
        !d.contains("10.96.0.6"),
        "the unchanged frontend is not touched: {d}"
    );
    let del = d.find("delete element").unwrap();
    let add = d.find("add element").unwrap();
    assert!(del < add, "deletes come first");
}

#[test]
fn big_element_lists_are_chunked() {
    let mut e = Elements::default();
    for i in 0..2500u32 {
        e.hairpin
            .insert(IpAddr::from(std::net::Ipv4Addr::from(0x0af4_0000 + i)));
    }
    let s = Transaction::create(&e).render();
    assert_eq!(s.matches("add element ip podnet-proxy hairpin").count(), 3);
}
