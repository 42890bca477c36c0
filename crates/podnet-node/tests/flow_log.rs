//! The flow log for real, in a namespace of its own (root only; a skip says why, and is a
//! failure under `CI=true`): a packet that a rule logs with podnet's statement reaches
//! podnet's nfnetlink_log socket with its reason, its ports, and the destination its
//! connection was first sent to before a DNAT.

mod common;
use common::scratch;

use std::process::Command;
use std::time::Duration;

use podnet_flow::packet::UDP;
use podnet_flow::reader::Reader;
use podnet_flow::Reason;
use podnet_node::sys::in_netns;

#[test]
fn a_logged_packet_reaches_the_reader_with_its_reason_and_original_destination() {
    let Some(ns) = scratch() else { return };
    let script = format!(
        "add table ip podnet-flowtest
         add chain ip podnet-flowtest nat {{ type nat hook output priority -100; }}
         add rule ip podnet-flowtest nat udp dport 9999 dnat to 127.0.0.1:9998
         add chain ip podnet-flowtest out {{ type filter hook output priority filter; }}
         add rule ip podnet-flowtest out udp dport 9998 ct state new {} drop
         add rule ip podnet-flowtest out udp dport 9997 log prefix \"not-podnet\" group {} drop
        ",
        Reason::PolicyEgress.log_statement(),
        podnet_flow::GROUP,
    );
    ns.run(
        Command::new("nft").arg("-f").arg("-"),
        Some(script.as_bytes()),
    )
    .unwrap();
    ns.run(Command::new("ip").args(["link", "set", "lo", "up"]), None)
        .unwrap();
    // The reader's socket is made in the namespace, then read from another thread.
    let mut reader = in_netns(&ns.path, || {
        Reader::open().map_err(|e| podnet_node::NodeError::Panicked {
            what: format!("{e}"),
        })
    })
    .unwrap();
    let conntrack = reader.with_conntrack();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let got = reader.read();
        if tx.send(got.map_err(|e| e.to_string())).is_err() {
            return;
        }
    });
    in_netns(&ns.path, || {
        let s = std::net::UdpSocket::bind("127.0.0.1:40000").unwrap();
        // Not podnet's prefix: read and passed over.
        let _ = s.send_to(b"x", "127.0.0.1:9997");
        let _ = s.send_to(b"x", "127.0.0.1:9999");
        Ok(())
    })
    .unwrap();
    let mut packets = Vec::new();
    while packets.is_empty() {
        let got = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("nothing logged within 2 s");
        packets.extend(got.unwrap());
    }
    assert_eq!(packets.len(), 1, "{packets:?}");
    let p = &packets[0];
    assert_eq!(p.reason, Reason::PolicyEgress);
    assert_eq!(p.protocol, UDP);
    assert_eq!((p.sport, p.dport), (40000, 9998));
    assert_eq!(p.dst, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    if conntrack {
        assert_eq!(
            p.original_dst,
            Some(("127.0.0.1".parse().unwrap(), 9999)),
            "conntrack's original destination"
        );
    } else {
        eprintln!(
            "NOTE: this kernel sends no conntrack entry with logged packets \
             (CONFIG_NETFILTER_NETLINK_GLUE_CT): the original destination is not checked"
        );
        assert_eq!(p.original_dst, None);
    }
}

/// The group is held by one reader at a time, and given back the moment that reader is
/// dropped: also while another thread forks (a child holds the socket until its exec; the
/// reader's drop unbinds the group so the kernel need not wait for the socket's last close).
/// Without the unbind, a reader opened right after the drop was refused (EPERM) within a few
/// rounds of this loop.
#[test]
fn the_group_is_the_first_readers_own() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(ns) = scratch() else { return };
    let open = || in_netns(&ns.path, || Ok(Reader::open().map_err(|e| e.to_string()))).unwrap();
    let first = open().unwrap();
    let second = open();
    assert!(
        second.as_ref().is_err_and(|e| e.contains("refused")),
        "a second reader of the group: {:?}",
        second.err()
    );
    drop(first);
    let forking = std::sync::Arc::new(AtomicBool::new(true));
    let forker = {
        let forking = forking.clone();
        std::thread::spawn(move || {
            let mut children = 0u32;
            while forking.load(Ordering::Relaxed) {
                Command::new("true").status().unwrap();
                children += 1;
            }
            children
        })
    };
    let mut refused = Vec::new();
    for round in 0..500 {
        match open() {
            Ok(reader) => drop(reader),
            Err(e) => refused.push(format!("round {round}: {e}")),
        }
    }
    forking.store(false, Ordering::Relaxed);
    let children = forker.join().unwrap();
    assert!(
        refused.is_empty(),
        "the group is free again once its reader is dropped, while {children} children \
         were forked: {} of 500 refused, first {:?}",
        refused.len(),
        refused.first()
    );
    assert!(children > 0, "the other thread forked no child");
}

/// The policy table's sample of allowed connections, as the kernel holds it.
fn sample_held(ns: &podnet_node::sys::Scratch) -> u16 {
    let text = ns
        .run(Command::new("nft").args(["-j", "list", "ruleset"]), None)
        .unwrap();
    podnet_node::observe::tables(&text)
        .unwrap()
        .policy
        .expect("the policy table")
        .content
        .sample
}

#[test]
fn the_sample_of_allowed_connections_is_set_read_back_and_changed_in_one_transaction() {
    use podnet_node::Effects;
    let Some(ns) = scratch() else { return };
    let mut fx = podnet_node::effects::Linux::at(ns.path.clone());
    let plan = podnet_policy::PolicyPlan {
        sample: 250,
        ..Default::default()
    };
    fx.nft_policy(&podnet_policy::Transaction::create(&plan))
        .unwrap();
    assert_eq!(sample_held(&ns), 250);
    let rules = ns
        .run(
            Command::new("nft").args(["list", "chain", "ip", "podnet-policy", "sample"]),
            None,
        )
        .unwrap();
    assert!(
        rules.contains("numgen random mod 10000 < 250") && rules.contains("podnet:allowed"),
        "{rules}"
    );
    // Every one: no random number asked.
    let all = podnet_policy::PolicyPlan {
        sample: 10_000,
        ..Default::default()
    };
    fx.nft_policy(&podnet_policy::Transaction::update(&plan, &all))
        .unwrap();
    assert_eq!(sample_held(&ns), 10_000);
    let off = podnet_policy::PolicyPlan::default();
    let tx = podnet_policy::Transaction::update(&all, &off);
    assert_eq!(tx.ops, vec![podnet_policy::Op::SetSample(0)]);
    fx.nft_policy(&tx).unwrap();
    assert_eq!(sample_held(&ns), 0);
}
