//! Prints podnet's proxy ruleset for N synthetic Services of E endpoints each, for the benchmark
//! in `bench/proxy.sh`: `ruleset full N E [FAMILY]` (a node's first load) or `ruleset add-one N E
//! [FAMILY]` (the diff that adds one more Service at N). FAMILY: `ipv4` (the default), `ipv6`
//! (each Service's address and endpoints IPv6, in the ip6 table), `dual` (each Service both:
//! N frontends in each table).

use podnet_proxy::nft::Transaction;
use podnet_proxy::synthetic::elements as synthetic;

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
    let elements = |n| synthetic(n, e, v4, v6);
    match args.get(1).map(String::as_str) {
        Some("full") => print!("{}", Transaction::create(&elements(n)).render()),
        Some("add-one") => print!(
            "{}",
            Transaction::update(&elements(n), &elements(n + 1)).render()
        ),
        _ => eprintln!("usage: ruleset full|add-one N E [ipv4|ipv6|dual]"),
    }
}
