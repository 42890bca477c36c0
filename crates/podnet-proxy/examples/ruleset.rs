//! Prints podnet's proxy ruleset for N synthetic Services of E endpoints each, for the benchmark
//! in `bench/proxy.sh`: `ruleset full N E [FAMILY]` (a node's first load) or `ruleset add-one N E
//! [FAMILY]` (the diff that adds one more Service at N). FAMILY: `ipv4` (the default), `ipv6`
//! (each Service's address and endpoints IPv6, in the ip6 table), `dual` (each Service both:
//! N frontends in each table).

use podnet_model::{NsName, Protocol};
use podnet_proxy::nft::{Elements, Transaction};
use podnet_proxy::plan::{Dispatch, Frontend, Owner, ProxyPlan};

fn plan(n: usize, e: usize, v4: bool, v6: bool) -> ProxyPlan {
    let mut p = ProxyPlan {
        node: "node-0".into(),
        ..Default::default()
    };
    for i in 0..n {
        let mut families = Vec::new();
        if v4 {
            families.push((
                format!("10.96.{}.{}", i / 250, i % 250 + 1),
                (0..e)
                    .map(|j| {
                        let k = i * e + j;
                        format!("10.244.{}.{}", k / 250 % 250, k % 250 + 2)
                    })
                    .collect::<Vec<_>>(),
            ));
        }
        if v6 {
            families.push((
                format!("fd00:10:96::{:x}", i + 1),
                (0..e)
                    .map(|j| {
                        let k = i * e + j;
                        format!("fd00:10:244:{:x}::{:x}", k / 250 % 250, k % 250 + 2)
                    })
                    .collect::<Vec<_>>(),
            ));
        }
        for (vip, eps) in families {
            let endpoints = eps.iter().map(|ip| (ip.parse().unwrap(), 8080)).collect();
            p.frontends.insert(
                Frontend {
                    ip: vip.parse().unwrap(),
                    proto: Protocol::Tcp,
                    port: 80,
                },
                (
                    Owner {
                        service: NsName::new("ns", &format!("s{i}")),
                        port: "80".into(),
                    },
                    Dispatch::Endpoints {
                        endpoints,
                        masquerade: false,
                    },
                ),
            );
        }
    }
    p
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let e: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let (v4, v6) = match args.get(4).map(String::as_str) {
        None | Some("ipv4") => (true, false),
        Some("ipv6") => (false, true),
        Some("dual") => (true, true),
        Some(other) => {
            eprintln!("{other:?}: ipv4, ipv6 or dual");
            std::process::exit(2);
        }
    };
    let elements = |n| {
        let mut el = Elements::of(&plan(n, e, v4, v6));
        el.ipv6 = v6;
        el
    };
    match args.get(1).map(String::as_str) {
        Some("full") => print!("{}", Transaction::create(&elements(n)).render()),
        Some("add-one") => print!(
            "{}",
            Transaction::update(&elements(n), &elements(n + 1)).render()
        ),
        _ => eprintln!("usage: ruleset full|add-one N E [ipv4|ipv6|dual]"),
    }
}
