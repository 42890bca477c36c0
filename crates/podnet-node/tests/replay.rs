//! A verify pass's kernel read, done beside the agent's loop, is brought up to date with the
//! proxy's element changes written while it ran ([`Read::replay`]): whichever of the states
//! between the read's start and its end each element was read in, the replayed read holds
//! what the last state holds.

use std::net::IpAddr;

use podnet_model::{IpFamily, Protocol};
use podnet_node::effects::Read;
use podnet_node::observe::Table;
use podnet_proxy::nft::{
    Backend, BackendMap, BackendSlot, Element, Elements, FrontendKey, ServiceKey, Transaction,
};
use proptest::prelude::*;

/// The keys an element may have (both families), each with its values: element `k` of the
/// pool with value `v` (0 = absent).
fn element(k: usize, v: u8) -> Option<Element> {
    if v == 0 {
        return None;
    }
    let ip: IpAddr = if k.is_multiple_of(2) {
        format!("10.96.0.{}", k + 1).parse().unwrap()
    } else {
        format!("fd00::{}", k + 1).parse().unwrap()
    };
    let key = ServiceKey {
        ip,
        proto: Protocol::Tcp,
        port: 80,
    };
    Some(match k / 2 {
        0 | 1 => Element::Hairpin(ip),
        2 | 3 => Element::NoEndpoints(key),
        _ => Element::Backend(
            BackendSlot {
                map: BackendMap {
                    family: IpFamily::of(ip),
                    node_port: false,
                    affinity: false,
                    proto: Protocol::Tcp,
                },
                frontend: FrontendKey::Service(key),
                slot: 0,
            },
            // The value changes between states: a write replaces it.
            Backend {
                ip: if ip.is_ipv4() {
                    format!("10.244.1.{v}").parse().unwrap()
                } else {
                    format!("fd10::{v}").parse().unwrap()
                },
                port: 8080,
            },
        ),
    })
}

const KEYS: usize = 8;

/// A state of the table: each key's value. Both families are always there (a pair of
/// elements no state changes), so that no transaction makes a table.
fn state(values: &[u8]) -> Elements {
    let mut e = Elements::default();
    let fixed = [
        Element::Hairpin("10.96.9.9".parse().unwrap()),
        Element::Hairpin("fd00::99".parse().unwrap()),
    ];
    let of: Vec<Element> = (0..KEYS)
        .filter_map(|k| element(k, values[k]))
        .chain(fixed)
        .collect();
    e.patch(&[], &of);
    e.ipv6 = true;
    e
}

fn split(e: &Elements, family: IpFamily) -> Elements {
    let mut out = Elements::default();
    let of: Vec<Element> = e.iter().filter(|x| x.family() == family).collect();
    out.patch(&[], &of);
    out
}

proptest! {
    #[test]
    fn a_read_made_while_elements_changed_ends_as_the_last_state(
        states in prop::collection::vec(prop::collection::vec(0u8..3, KEYS), 2..6),
        seen in prop::collection::vec(0usize..6, KEYS + 2),
    ) {
        let states: Vec<Elements> = states.iter().map(|v| state(v)).collect();
        let last = states.last().unwrap();
        // Each element as one of the states showed it (the read is not atomic as a whole).
        let mut read_elements = Elements::default();
        for (k, &j) in seen.iter().take(KEYS).enumerate() {
            let s = &states[j % states.len()];
            let here: Vec<Element> = s.iter().filter(|e| {
                (0..3).filter_map(|v| element(k, v)).any(|x| same_key(&x, e))
            }).collect();
            read_elements.patch(&[], &here);
        }
        read_elements.patch(&[], &state(&[0; KEYS]).iter().collect::<Vec<_>>());
        let mut read = Read::default();
        read.tables.proxy = Some(Table { content: split(&read_elements, IpFamily::Ipv4), ..Default::default() });
        read.tables.proxy6 = Some(Table { content: split(&read_elements, IpFamily::Ipv6), ..Default::default() });
        for w in states.windows(2) {
            let tx = Transaction::update(&w[0], &w[1]);
            prop_assert!(read.replay(&tx), "elements alone: {tx:?}");
        }
        prop_assert_eq!(&read.tables.proxy.as_ref().unwrap().content, &split(last, IpFamily::Ipv4));
        prop_assert_eq!(&read.tables.proxy6.as_ref().unwrap().content, &split(last, IpFamily::Ipv6));
    }
}

/// Whether two elements are of the same key (their values aside).
fn same_key(a: &Element, b: &Element) -> bool {
    match (a, b) {
        (Element::Hairpin(x), Element::Hairpin(y)) => x == y,
        (Element::NoEndpoints(x), Element::NoEndpoints(y)) => x == y,
        (Element::Backend(x, _), Element::Backend(y, _)) => x == y,
        _ => false,
    }
}

#[test]
fn a_transaction_that_makes_more_than_elements_is_not_replayed() {
    let mut read = Read::default();
    read.tables.proxy = Some(Table::default());
    let none = Elements::default();
    let one = state(&[1, 0, 0, 0, 0, 0, 0, 0]);
    // From nothing: the table is made.
    assert!(!read.replay(&Transaction::update(&none, &one)));
    // An IPv6 element, with no IPv6 table read.
    let mut read = Read::default();
    read.tables.proxy = Some(Table::default());
    let tx = Transaction::update(&one, &state(&[1, 1, 0, 0, 0, 0, 0, 0]));
    assert!(!read.replay(&tx), "{tx:?}");
}
