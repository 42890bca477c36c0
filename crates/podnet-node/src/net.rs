//! Link, address, route, neighbour and FDB changes as typed values. They are written in
//! iproute2's batch syntax only by [`render`], where they are handed to the kernel (one `ip
//! -batch` or `bridge -batch` process per run of operations: measured faster than a netlink
//! round trip per operation from a fresh thread, see `bench/RESULTS.md`).

use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::dataplane::{MacAddr, VxlanDevice};

/// One change to a namespace's links, addresses, routes, neighbours or FDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetOp {
    /// `lo` up.
    LoopbackUp,
    Bridge {
        name: String,
    },
    /// A veth pair whose peer goes into another named namespace.
    Veth {
        name: String,
        peer: String,
        peer_netns: String,
    },
    /// Puts a link up, optionally into a bridge.
    Up {
        link: String,
        master: Option<String>,
    },
    Vxlan(VxlanDevice),
    /// Deletes a link; a missing one is not an error.
    DeleteLink {
        name: String,
    },
    Address {
        dev: String,
        addr: IpNet,
    },
    /// Adds or replaces a route: through a device, via a gateway on it, or over several next
    /// hops (ECMP).
    Route {
        dst: IpNet,
        via: Vec<IpAddr>,
        dev: Option<String>,
        onlink: bool,
    },
    /// Deletes a route; a missing one is not an error.
    DeleteRoute {
        dst: IpNet,
    },
    /// Adds or replaces a permanent neighbour.
    Neighbour {
        ip: IpAddr,
        mac: MacAddr,
        dev: String,
    },
    DeleteNeighbour {
        ip: IpAddr,
        dev: String,
    },
    /// Adds or replaces a permanent FDB entry of a VXLAN device.
    Fdb {
        mac: MacAddr,
        dev: String,
        dst: IpAddr,
    },
    DeleteFdb {
        mac: MacAddr,
        dev: String,
        dst: IpAddr,
    },
}

impl NetOp {
    /// Whether the operation removes something: removing what is already gone succeeds.
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            NetOp::DeleteLink { .. }
                | NetOp::DeleteRoute { .. }
                | NetOp::DeleteNeighbour { .. }
                | NetOp::DeleteFdb { .. }
        )
    }

    /// The operation as `ip -batch` (or, for FDB entries, `bridge -batch`) would take it: for
    /// messages and tests; [`crate::netlink`] applies it.
    pub fn render(&self, s: &mut String) {
        let _ = match self {
            NetOp::LoopbackUp => writeln!(s, "link set lo up"),
            NetOp::Bridge { name } => writeln!(s, "link add {name} type bridge"),
            NetOp::Veth {
                name,
                peer,
                peer_netns,
            } => writeln!(
                s,
                "link add {name} type veth peer name {peer} netns {peer_netns}"
            ),
            NetOp::Up {
                link,
                master: Some(m),
            } => writeln!(s, "link set {link} master {m} up"),
            NetOp::Up { link, master: None } => writeln!(s, "link set {link} up"),
            NetOp::Vxlan(d) => writeln!(
                s,
                "link add {name} type vxlan id {vni} dstport {port} local {local} dev {uplink} nolearning\n\
                 link set {name} address {mac} mtu {mtu} up\naddr add {vtep}/{plen} dev {name}{second}",
                name = d.name,
                vni = d.vni,
                port = d.port,
                local = d.vtep.node_ip,
                uplink = d.uplink,
                mac = d.vtep.mac,
                mtu = d.mtu,
                vtep = d.vtep.ip,
                plen = podnet_model::IpFamily::of(d.vtep.ip).bits(),
                second = d
                    .secondary_ip
                    .map(|ip| {
                        let plen = podnet_model::IpFamily::of(ip).bits();
                        format!("\naddr add {ip}/{plen} dev {}", d.name)
                    })
                    .unwrap_or_default(),
            ),
            NetOp::DeleteLink { name } => writeln!(s, "link del {name}"),
            NetOp::Address { dev, addr } => writeln!(s, "addr add {addr} dev {dev}"),
            NetOp::Route {
                dst,
                via,
                dev,
                onlink,
            } => {
                let mut line = format!("route replace {dst}");
                match via.as_slice() {
                    [] => {}
                    [gw] => line += &format!(" via {gw}"),
                    hops => hops.iter().for_each(|h| line += &format!(" nexthop via {h}")),
                }
                if let Some(d) = dev {
                    line += &format!(" dev {d}");
                }
                if *onlink {
                    line += " onlink";
                }
                writeln!(s, "{line}")
            }
            NetOp::DeleteRoute { dst } => writeln!(s, "route del {dst}"),
            NetOp::Neighbour { ip, mac, dev } => {
                writeln!(s, "neigh replace {ip} lladdr {mac} dev {dev} nud permanent")
            }
            NetOp::DeleteNeighbour { ip, dev } => writeln!(s, "neigh del {ip} dev {dev}"),
            NetOp::Fdb { mac, dev, dst } => {
                writeln!(s, "fdb replace {mac} dev {dev} dst {dst} self permanent")
            }
            NetOp::DeleteFdb { mac, dev, dst } => {
                writeln!(s, "fdb del {mac} dev {dev} dst {dst} self")
            }
        };
    }
}

/// The operations as `ip`/`bridge` batch lines, in order.
pub fn render(ops: &[NetOp]) -> String {
    let mut text = String::new();
    for op in ops {
        op.render(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Vtep;

    #[test]
    fn lines_keep_order() {
        let mac: MacAddr = "02:70:6e:00:00:02".parse().unwrap();
        let ops = vec![
            NetOp::Vxlan(VxlanDevice {
                name: "vxlan0".into(),
                vni: 1,
                port: 4789,
                uplink: "eth0".into(),
                mtu: 1450,
                vtep: Vtep {
                    node_ip: "172.18.0.3".parse().unwrap(),
                    ip: "10.244.1.0".parse().unwrap(),
                    mac,
                },
                secondary_ip: None,
            }),
            NetOp::Neighbour {
                ip: "10.244.2.0".parse().unwrap(),
                mac,
                dev: "vxlan0".into(),
            },
            NetOp::Fdb {
                mac,
                dev: "vxlan0".into(),
                dst: "172.18.0.4".parse().unwrap(),
            },
            NetOp::Route {
                dst: "10.244.2.0/24".parse().unwrap(),
                via: vec!["10.244.2.0".parse().unwrap()],
                dev: Some("vxlan0".into()),
                onlink: true,
            },
            NetOp::Route {
                dst: "172.18.255.200/32".parse().unwrap(),
                via: vec!["172.18.0.2".parse().unwrap(), "172.18.0.3".parse().unwrap()],
                dev: None,
                onlink: false,
            },
        ];
        assert_eq!(
            render(&ops),
            "link add vxlan0 type vxlan id 1 dstport 4789 local 172.18.0.3 dev eth0 nolearning\n\
             link set vxlan0 address 02:70:6e:00:00:02 mtu 1450 up\naddr add 10.244.1.0/32 dev vxlan0\n\
             neigh replace 10.244.2.0 lladdr 02:70:6e:00:00:02 dev vxlan0 nud permanent\n\
             fdb replace 02:70:6e:00:00:02 dev vxlan0 dst 172.18.0.4 self permanent\n\
             route replace 10.244.2.0/24 via 10.244.2.0 dev vxlan0 onlink\n\
             route replace 172.18.255.200/32 nexthop via 172.18.0.2 nexthop via 172.18.0.3\n"
        );
    }
}
