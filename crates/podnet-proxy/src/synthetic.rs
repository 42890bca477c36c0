//! Synthetic plans for benchmarks: N Services of E endpoints each, of one family or both.

use podnet_model::{NsName, Protocol};

use crate::nft::Elements;
use crate::plan::{Dispatch, Frontend, Owner, ProxyPlan};

/// Service `i` (counting from 0) has ClusterIP 10.96.x.y (and/or fd00:10:96::i+1) port 80/TCP
/// and E endpoints at port 8080 on addresses no other Service uses.
pub fn plan(n: usize, e: usize, v4: bool, v6: bool) -> ProxyPlan {
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

/// [`plan`]'s elements, with the `ip6` table when `v6`.
pub fn elements(n: usize, e: usize, v4: bool, v6: bool) -> Elements {
    let mut el = Elements::of(&plan(n, e, v4, v6));
    el.ipv6 = v6;
    el
}
