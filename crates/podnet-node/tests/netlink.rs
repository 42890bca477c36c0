//! The node's network operations through rtnetlink, for real in a namespace of the test's own
//! (root only; a skip says why, and is a failure under `CI=true`): what `ip` shows afterwards
//! is what the same `ip` commands would have made, removals of what is gone succeed, and a
//! refused change carries the kernel's errno, not a tool's message.

mod common;
use common::scratch;

use std::process::Command;

use nix::errno::Errno;
use podnet_node::dataplane::{MacAddr, Vtep, VxlanDevice};
use podnet_node::net::NetOp;
use podnet_node::netlink;
use podnet_node::sys::Scratch;

fn sh(ns: &Scratch, args: &[&str]) -> String {
    ns.run(Command::new(args[0]).args(&args[1..]), None)
        .unwrap_or_else(|e| panic!("{}: {}", args.join(" "), podnet_node::chain(&e)))
}

fn json(ns: &Scratch, args: &[&str]) -> Vec<serde_json::Value> {
    serde_json::from_str(&sh(ns, args)).unwrap()
}

#[test]
fn the_overlay_made_by_netlink_is_what_ip_would_make_and_removals_tolerate_gone() {
    let Some(ns) = scratch() else { return };
    sh(
        &ns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    sh(&ns, &["ip", "addr", "add", "172.18.0.3/16", "dev", "eth0"]);
    sh(&ns, &["ip", "link", "set", "eth0p", "up"]);
    // The uplink's networks, as `routing: auto` compares other nodes' addresses with them:
    // global addresses only (not the link-local one), each family.
    sh(
        &ns,
        &[
            "ip",
            "addr",
            "add",
            "fc00:f853:ccd:e793::3/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let nets: Vec<String> = netlink::networks(&ns.path, "eth0")
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["172.18.0.0/16", "fc00:f853:ccd:e793::/64"]);
    assert!(netlink::networks(&ns.path, "nothere").unwrap().is_empty());
    sh(
        &ns,
        &[
            "ip",
            "addr",
            "del",
            "fc00:f853:ccd:e793::3/64",
            "dev",
            "eth0",
        ],
    );
    let mac: MacAddr = "02:70:6e:00:00:03".parse().unwrap();
    let peer: MacAddr = "02:70:6e:00:00:04".parse().unwrap();
    let dev = VxlanDevice {
        name: "vxlan0".into(),
        vni: 7,
        port: 8472,
        uplink: "eth0".into(),
        mtu: 1450,
        vtep: Vtep {
            node_ip: "172.18.0.3".parse().unwrap(),
            ip: "10.244.1.0".parse().unwrap(),
            mac,
        },
        secondary_ip: Some("fd00:10:244:1::".parse().unwrap()),
    };
    let ops = vec![
        NetOp::LoopbackUp,
        NetOp::Up {
            link: "eth0".into(),
            master: None,
        },
        NetOp::Vxlan(dev.clone()),
        NetOp::Neighbour {
            ip: "10.244.2.0".parse().unwrap(),
            mac: peer,
            dev: "vxlan0".into(),
        },
        NetOp::Fdb {
            mac: peer,
            dev: "vxlan0".into(),
            dst: "172.18.0.4".parse().unwrap(),
        },
        NetOp::Route {
            dst: "10.244.2.0/24".parse().unwrap(),
            via: vec!["10.244.2.0".parse().unwrap()],
            dev: Some("vxlan0".into()),
            onlink: true,
        },
        // The second family over the same device and MAC.
        NetOp::Neighbour {
            ip: "fd00:10:244:2::".parse().unwrap(),
            mac: peer,
            dev: "vxlan0".into(),
        },
        NetOp::Route {
            dst: "fd00:10:244:2::/64".parse().unwrap(),
            via: vec!["fd00:10:244:2::".parse().unwrap()],
            dev: Some("vxlan0".into()),
            onlink: true,
        },
        NetOp::Address {
            dev: "eth0".into(),
            addr: "fc00:f853:ccd:e793::3/64".parse().unwrap(),
        },
        NetOp::Route {
            dst: "172.18.255.200/32".parse().unwrap(),
            via: vec!["172.18.0.4".parse().unwrap(), "172.18.0.5".parse().unwrap()],
            dev: None,
            onlink: false,
        },
        NetOp::Route {
            dst: "10.96.0.0/16".parse().unwrap(),
            via: vec![],
            dev: Some("eth0".into()),
            onlink: false,
        },
    ];
    netlink::apply(&ns.path, &ops).unwrap_or_else(|e| panic!("{}", podnet_node::chain(&e)));
    // Applied twice: every change is a replace (the device aside, which apply makes once).
    let replaceable: Vec<NetOp> = ops[3..]
        .iter()
        .filter(|o| !matches!(o, NetOp::Address { .. }))
        .cloned()
        .collect();
    netlink::apply(&ns.path, &replaceable).unwrap_or_else(|e| panic!("{}", podnet_node::chain(&e)));

    let link = &json(&ns, &["ip", "-j", "-d", "link", "show", "dev", "vxlan0"])[0];
    assert_eq!(link["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(link["linkinfo"]["info_data"]["id"], 7);
    assert_eq!(link["linkinfo"]["info_data"]["port"], 8472);
    assert_eq!(link["linkinfo"]["info_data"]["local"], "172.18.0.3");
    assert_eq!(link["linkinfo"]["info_data"]["learning"], false);
    assert_eq!(link["linkinfo"]["info_data"]["udp_csum"], true, "{link:#}");
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["address"], "02:70:6e:00:00:03");
    let held = netlink::link(&ns.path, "vxlan0")
        .unwrap()
        .expect("the device");
    assert!(podnet_node::observe::vxlan_matches(&held, &dev));
    let other = VxlanDevice {
        mtu: 1400,
        ..dev.clone()
    };
    assert!(
        !podnet_node::observe::vxlan_matches(&held, &other),
        "another MTU"
    );
    assert!(netlink::link(&ns.path, "nope0").unwrap().is_none());

    let addrs = sh(&ns, &["ip", "-o", "addr", "show", "dev", "vxlan0"]);
    assert!(addrs.contains("inet 10.244.1.0/32"), "{addrs}");
    // IPv6 addresses podnet gives are usable at once: no duplicate address detection.
    assert!(addrs.contains("inet6 fd00:10:244:1::/128"), "{addrs}");
    let v6 = sh(&ns, &["ip", "-6", "-o", "addr", "show", "tentative"]);
    assert!(
        v6.is_empty() || !v6.contains("fd00:") && !v6.contains("fc00:"),
        "{v6}"
    );
    let uplink = sh(&ns, &["ip", "-o", "-6", "addr", "show", "dev", "eth0"]);
    assert!(
        uplink.contains("fc00:f853:ccd:e793::3/64 scope global nodad"),
        "{uplink}"
    );
    let neigh = sh(&ns, &["ip", "neigh", "show", "dev", "vxlan0"]);
    let mut neigh: Vec<&str> = neigh.lines().map(str::trim).collect();
    neigh.sort();
    assert_eq!(
        neigh,
        [
            "10.244.2.0 lladdr 02:70:6e:00:00:04 PERMANENT",
            "fd00:10:244:2:: lladdr 02:70:6e:00:00:04 PERMANENT"
        ]
    );
    let routes6 = sh(&ns, &["ip", "-6", "route", "show", "dev", "vxlan0"]);
    assert!(
        routes6
            .lines()
            .any(|l| l.starts_with("fd00:10:244:2::/64 via fd00:10:244:2:: ")
                && l.contains(" onlink")),
        "{routes6}"
    );
    let fdb = sh(&ns, &["bridge", "fdb", "show", "dev", "vxlan0"]);
    assert!(
        fdb.contains("02:70:6e:00:00:04 dst 172.18.0.4 self permanent"),
        "{fdb}"
    );
    // `ip route` leaves out `proto boot`, its own default: the routes read as `ip` makes them.
    let routes = sh(&ns, &["ip", "route", "show"]);
    for want in [
        "10.96.0.0/16 dev eth0 scope link \n",
        "10.244.2.0/24 via 10.244.2.0 dev vxlan0 onlink \n",
        "172.18.255.200 \n",
        "nexthop via 172.18.0.4 dev eth0 weight 1",
        "nexthop via 172.18.0.5 dev eth0 weight 1",
    ] {
        assert!(routes.contains(want), "{want:?} in:\n{routes}");
    }

    // Removed, then removed again: the second time everything is already gone.
    let removals = vec![
        NetOp::DeleteFdb {
            mac: peer,
            dev: "vxlan0".into(),
            dst: "172.18.0.4".parse().unwrap(),
        },
        NetOp::DeleteNeighbour {
            ip: "10.244.2.0".parse().unwrap(),
            dev: "vxlan0".into(),
        },
        NetOp::DeleteRoute {
            dst: "10.244.2.0/24".parse().unwrap(),
        },
        NetOp::DeleteNeighbour {
            ip: "fd00:10:244:2::".parse().unwrap(),
            dev: "vxlan0".into(),
        },
        NetOp::DeleteRoute {
            dst: "fd00:10:244:2::/64".parse().unwrap(),
        },
        NetOp::DeleteRoute {
            dst: "172.18.255.200/32".parse().unwrap(),
        },
    ];
    for round in 0..2 {
        netlink::apply(&ns.path, &removals)
            .unwrap_or_else(|e| panic!("round {round}: {}", podnet_node::chain(&e)));
    }
    assert_eq!(
        sh(&ns, &["ip", "neigh", "show", "dev", "vxlan0"]).trim(),
        ""
    );
    assert!(!sh(&ns, &["bridge", "fdb", "show", "dev", "vxlan0"]).contains("172.18.0.4"));
    let routes = sh(&ns, &["ip", "route", "show"]);
    assert!(!routes.contains("10.244.2.0/24") && !routes.contains("172.18.255.200"));
    let routes6 = sh(&ns, &["ip", "-6", "route", "show"]);
    assert!(!routes6.contains("fd00:10:244:2::/64"), "{routes6}");
    assert!(
        routes.contains("10.96.0.0/16 dev eth0"),
        "the others stay: {routes}"
    );
    // The device gone too: removals on it are of what is gone (its entries went with it).
    let gone = [NetOp::DeleteLink {
        name: "vxlan0".into(),
    }];
    netlink::apply(&ns.path, &gone).unwrap();
    netlink::apply(&ns.path, &gone).unwrap();
    netlink::apply(&ns.path, &removals[..2]).unwrap();

    // A change the kernel refuses: its errno, typed.
    let twice = [NetOp::Address {
        dev: "eth0".into(),
        addr: "172.18.0.3/16".parse().unwrap(),
    }];
    let e = netlink::apply(&ns.path, &twice).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST), "{}", podnet_node::chain(&e));
    assert!(!e.is_gone());
    // A change on a link that does not exist stops the batch and names the link.
    let e = netlink::apply(
        &ns.path,
        &[
            NetOp::Address {
                dev: "nope0".into(),
                addr: "10.0.0.1/32".parse().unwrap(),
            },
            NetOp::Bridge {
                name: "podnetbr0".into(),
            },
        ],
    )
    .unwrap_err();
    assert!(
        podnet_node::chain(&e).contains("nope0"),
        "{}",
        podnet_node::chain(&e)
    );
    assert!(
        netlink::link(&ns.path, "podnetbr0").unwrap().is_none(),
        "nothing after it"
    );
}
