//! Prints podnet's proxy ruleset for N synthetic Services of E endpoints each, for the benchmark
//! in `bench/proxy.sh`: `ruleset full N E` (a node's first load) or `ruleset add-one N E` (the
//! diff that adds one more Service at N).

use podnet_model::{NsName, Protocol};
use podnet_proxy::nft::{Elements, Transaction};
use podnet_proxy::plan::{Dispatch, Frontend, Owner, ProxyPlan};

fn plan(n: usize, e: usize) -> ProxyPlan {
    let mut p = ProxyPlan {
        node: "node-0".into(),
        ..Default::default()
    };
    for i in 0..n {
        let vip = format!("10.96.{}.{}", i / 250, i % 250 + 1)
            .parse()
            .unwrap();
        let endpoints = (0..e)
            .map(|j| {
                (
                    format!(
                        "10.244.{}.{}",
                        (i * e + j) / 250 % 250,
                        (i * e + j) % 250 + 2
                    )
                    .parse()
                    .unwrap(),
                    8080,
                )
            })
            .collect();
        p.frontends.insert(
            Frontend {
                ip: vip,
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
    p
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let e: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    match args.get(1).map(String::as_str) {
        Some("full") => print!(
            "{}",
            Transaction::create(&Elements::of(&plan(n, e))).render()
        ),
        Some("add-one") => print!(
            "{}",
            Transaction::update(&Elements::of(&plan(n, e)), &Elements::of(&plan(n + 1, e)))
                .render()
        ),
        _ => eprintln!("usage: ruleset full|add-one N E"),
    }
}
