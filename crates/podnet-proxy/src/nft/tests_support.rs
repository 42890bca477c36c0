use super::svc;
use crate::plan::{Dispatch, Frontend, Owner, ProxyPlan};
use podnet_model::{IpFamily, Protocol};

pub fn plan3() -> ProxyPlan {
    let mut p = ProxyPlan {
        node: "node-0".into(),
        ..Default::default()
    };
    let owner = Owner {
        service: svc("default", "s"),
        port: "80".into(),
    };
    let eps: Vec<_> = (0..3)
        .map(|i| (format!("10.244.0.{}", i + 2).parse().unwrap(), 8080))
        .collect();
    let endpoints = |masquerade| Dispatch::Endpoints {
        endpoints: eps.clone(),
        masquerade,
    };
    let mut front = |ip: &str, proto, port, d| {
        p.frontends.insert(
            Frontend {
                ip: ip.parse().unwrap(),
                proto,
                port,
            },
            (owner.clone(), d),
        );
    };
    front("10.96.0.5", Protocol::Tcp, 80, endpoints(false));
    front("172.18.255.201", Protocol::Tcp, 80, endpoints(true));
    front("10.96.0.6", Protocol::Udp, 53, Dispatch::Reject);
    // SCTP is compiled like the others, even where the kernel cannot carry it.
    front(
        "10.96.0.7",
        Protocol::Sctp,
        3868,
        Dispatch::Endpoints {
            endpoints: vec![("10.244.0.9".parse().unwrap(), 3868)],
            masquerade: false,
        },
    );
    p.node_ports.insert(
        (IpFamily::Ipv4, Protocol::Tcp, 30080),
        (owner.clone(), endpoints(true)),
    );
    p.node_ports.insert(
        (IpFamily::Ipv4, Protocol::Udp, 30053),
        (owner.clone(), Dispatch::Reject),
    );
    p.node_ports.insert(
        (IpFamily::Ipv4, Protocol::Tcp, 30081),
        (owner, Dispatch::Drop),
    );
    p
}
