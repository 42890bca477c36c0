//! The proxy's tables of each family through the node's own effects (what the agent does), as
//! root, in fresh namespaces of its own, for an IPv4 node, an IPv6 node and a dual-stack node
//! (N Services in each table; the Service added is dual-stack too): the cold load of N
//! synthetic Services of two endpoints (one transaction through `nft -f`), LOADS times per
//! round, the families taking turns; after each load, one Service added ADDS times (each an
//! element-only transaction: one netlink batch) and removed again. A single load varies by a
//! third on a small virtual machine, whichever the family, so a round reports medians. Prints
//! one line per round and family:
//!   `<family> cold <ms> add <ms> cold_ratio <x> add_ratio <x>` (the medians of the round's
//!   loads and additions, and the median of their ratios to IPv4's measured side by side)
//!   cargo run --release -p podnet-node --example proxy_family -- [N] [ROUNDS] [LOADS] [ADDS]

use std::time::Instant;

use podnet_node::effects::Linux;
use podnet_node::sys::Scratch;
use podnet_node::Effects;
use podnet_proxy::nft::Transaction;
use podnet_proxy::synthetic::elements;

/// The pause after a set of loads, for the kernel to free their namespaces.
const SETTLE_MS: u64 = 1500;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("N ROUNDS REPS: numbers"))
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let loads = args.get(2).copied().unwrap_or(5);
    let reps = args.get(3).copied().unwrap_or(10);
    let families = [
        ("ipv4", true, false),
        ("ipv6", false, true),
        ("dual", true, true),
    ];
    let prepared: Vec<_> = families
        .iter()
        .map(|(name, v4, v6)| {
            let (full, more) = (elements(n, 2, *v4, *v6), elements(n + 1, 2, *v4, *v6));
            let add = Transaction::update(&full, &more);
            assert!(
                add.element_ops().is_some(),
                "adding a Service is elements only"
            );
            (
                *name,
                Transaction::create(&full),
                add,
                Transaction::update(&more, &full),
            )
        })
        .collect();
    let ratio =
        |num: &[f64], den: &[f64]| median(num.iter().zip(den).map(|(a, b)| a / b).collect());
    for round in 0..rounds {
        let mut cold = vec![Vec::new(); prepared.len()];
        let mut adds = vec![Vec::new(); prepared.len()];
        for load in 0..loads {
            // The three nodes side by side, loaded one after another (who goes first turns).
            let order: Vec<usize> = (0..prepared.len())
                .map(|k| (round + load + k) % prepared.len())
                .collect();
            let mut nodes: Vec<Option<(Scratch, Linux)>> =
                (0..prepared.len()).map(|_| None).collect();
            for &at in &order {
                let ns = match Scratch::new() {
                    Ok(ns) => ns,
                    Err(e) => {
                        eprintln!("needs root: {}", podnet_node::chain(&e));
                        std::process::exit(1);
                    }
                };
                let mut fx = Linux::at(ns.path.clone());
                let t = Instant::now();
                fx.nft(&prepared[at].1).expect("cold load");
                cold[at].push(ms(t));
                if std::env::var_os("VERBOSE").is_some() {
                    eprintln!(
                        "round {round} load {load} {} cold {:.1}",
                        prepared[at].0,
                        ms(t)
                    );
                }
                // The first batch also opens the namespace's netlink socket: not timed.
                fx.nft(&prepared[at].2).expect("one Service added");
                fx.nft(&prepared[at].3).expect("and removed");
                nodes[at] = Some((ns, fx));
            }
            for _ in 0..reps {
                for &at in &order {
                    let fx = &mut nodes[at].as_mut().expect("loaded").1;
                    let t = Instant::now();
                    fx.nft(&prepared[at].2).expect("one Service added");
                    adds[at].push(ms(t));
                    fx.nft(&prepared[at].3).expect("and removed");
                }
            }
            // The kernel frees a namespace's tables in the background once it is gone: let
            // it finish before the next loads, which would otherwise share the CPU with it.
            drop(nodes);
            std::thread::sleep(std::time::Duration::from_millis(SETTLE_MS));
        }
        for (k, (name, ..)) in prepared.iter().enumerate() {
            // The ratio to IPv4 of each pair measured side by side, then their median: the
            // machine's slow and fast spells last longer than a pair.
            println!(
                "{name} cold {:.2} add {:.3} cold_ratio {:.3} add_ratio {:.3}",
                median(cold[k].clone()),
                median(adds[k].clone()),
                ratio(&cold[k], &cold[0]),
                ratio(&adds[k], &adds[0]),
            );
        }
    }
}
