//! The node's links, addresses, routes, neighbours and FDB entries through rtnetlink.
//!
//! Each [`NetOp`] is one or two netlink requests in the namespace (a socket opened there, on a
//! fresh thread: [`crate::sys::in_netns`]), so a failure is the kernel's own errno
//! ([`NodeError::Netlink`]), never a tool's message. The requests are those `ip` and `bridge`
//! make for the same commands (`route replace` is `NLM_F_CREATE | NLM_F_REPLACE` with protocol
//! `boot`, link scope for a route without a gateway; `fdb replace ... self permanent` is an
//! `AF_BRIDGE` neighbour with `NTF_SELF`), so what the kernel holds is the same.

use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use std::net::IpAddr;
use std::path::Path;

use futures_util::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::AddressFamily;
use nix::errno::Errno;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
    RouteNextHopBuilder,
};

use crate::dataplane::VxlanDevice;
use crate::net::NetOp;
use crate::NodeError;

/// The errnos that say a removal's object is already gone: no such file or directory (a
/// route, a neighbour), no such process (a route), no such device (a link).
const GONE: [Errno; 3] = [Errno::ENOENT, Errno::ESRCH, Errno::ENODEV];

impl NodeError {
    /// The kernel's errno, for a netlink request that it refused.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NodeError::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            } => Some(Errno::from_raw(-e.raw_code())),
            NodeError::NoLink { .. } => Some(Errno::ENODEV),
            _ => None,
        }
    }

    /// Whether the kernel refused a request because its object (or the link it is on) does
    /// not exist.
    pub fn is_gone(&self) -> bool {
        self.errno().is_some_and(|e| GONE.contains(&e))
    }
}

fn nl(what: impl std::fmt::Display) -> impl FnOnce(rtnetlink::Error) -> NodeError {
    move |source| NodeError::Netlink {
        what: what.to_string(),
        source,
    }
}

/// Runs `f` with a netlink handle inside the namespace at `netns`.
pub fn within<T, F, Fut>(netns: &Path, f: F) -> Result<T, NodeError>
where
    F: FnOnce(Handle) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, NodeError>>,
    T: Send,
{
    crate::sys::in_netns(netns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|source| NodeError::Io {
                what: "a runtime for netlink".into(),
                source,
            })?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|source| NodeError::Io {
                    what: "a netlink socket".into(),
                    source,
                })?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })
}

/// Applies `ops` in order: a change that fails stops the rest; a removal of what is already
/// gone succeeds, and a removal that fails otherwise does not stop the others (every failure
/// is reported).
pub fn apply(netns: &Path, ops: &[NetOp]) -> Result<(), NodeError> {
    within(netns, |h| async move {
        let mut failures = Vec::new();
        for op in ops {
            match one(&h, op).await {
                Ok(()) => {}
                Err(e) if op.is_removal() && e.is_gone() => {}
                Err(e) if op.is_removal() => failures.push(e),
                Err(e) => return Err(e),
            }
        }
        NodeError::all(failures)
    })
}

/// The link called `name` in the namespace at `netns`, if there is one.
pub fn link(netns: &Path, name: &str) -> Result<Option<LinkMessage>, NodeError> {
    within(netns, |h| async move { link_by_name(&h, name).await })
}

/// The networks of link `name`'s global addresses (`172.18.0.3/16` gives `172.18.0.0/16`),
/// both families; none when the link is missing. What `routing: auto` compares the other nodes'
/// addresses with on a real node (Calico's CrossSubnet reads the node's address and prefix so).
pub fn networks(netns: &Path, name: &str) -> Result<Vec<ipnet::IpNet>, NodeError> {
    within(netns, |h| async move {
        let Some(l) = link_by_name(&h, name).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut s = h
            .address()
            .get()
            .set_link_index_filter(l.header.index)
            .execute();
        while let Some(a) = s
            .try_next()
            .await
            .map_err(nl(format!("listing the addresses of {name}")))?
        {
            if a.header.scope != netlink_packet_route::address::AddressScope::Universe {
                continue;
            }
            let ip = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = ip.and_then(|ip| ipnet::IpNet::new(ip, a.header.prefix_len).ok()) {
                out.push(net.trunc());
            }
        }
        Ok(out)
    })
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NodeError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(l) => Ok(l),
        Err(source) => {
            let e = nl(format!("looking up link {name}"))(source);
            if e.is_gone() {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The index of link `name`; a missing one is [`NodeError::NoLink`].
async fn index(h: &Handle, name: &str) -> Result<u32, NodeError> {
    match link_by_name(h, name).await? {
        Some(l) => Ok(l.header.index),
        None => Err(NodeError::NoLink {
            name: name.to_string(),
        }),
    }
}

async fn one(h: &Handle, op: &NetOp) -> Result<(), NodeError> {
    match op {
        NetOp::LoopbackUp => up(h, "lo", None).await,
        NetOp::Bridge { name } => h
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(nl(format!("adding bridge {name}"))),
        NetOp::Veth {
            name,
            peer,
            peer_netns,
        } => veth(h, name, peer, peer_netns).await,
        NetOp::Up { link, master } => up(h, link, master.as_deref()).await,
        NetOp::Vxlan(d) => vxlan(h, d).await,
        NetOp::DeleteLink { name } => {
            let i = index(h, name).await?;
            h.link()
                .del(i)
                .execute()
                .await
                .map_err(nl(format!("deleting link {name}")))
        }
        NetOp::Address { dev, addr } => {
            let i = index(h, dev).await?;
            add_address(h, i, addr.addr(), addr.prefix_len())
                .await
                .map_err(nl(format!("adding address {addr} to {dev}")))
        }
        NetOp::Route {
            dst,
            via,
            dev,
            onlink,
        } => route(h, dst, via, dev.as_deref(), *onlink).await,
        NetOp::DeleteRoute { dst } => {
            let mut b = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .map_err(|e| invalid(format!("route {dst}"), e))?;
            // Any route to `dst` in the main table, as `ip route del` asks.
            let m = b.get_mut();
            m.header.scope = RouteScope::NoWhere;
            m.header.protocol = RouteProtocol::Unspec;
            m.header.kind = RouteType::Unspec;
            h.route()
                .del(b.build())
                .execute()
                .await
                .map_err(nl(format!("deleting route {dst}")))
        }
        NetOp::Neighbour { ip, mac, dev } => {
            let i = index(h, dev).await?;
            h.neighbours()
                .add(i, *ip)
                .link_layer_address(&mac.0)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("neighbour {ip} on {dev}")))
        }
        NetOp::DeleteNeighbour { ip, dev } => {
            let i = index(h, dev).await?;
            let mut m = NeighbourMessage::default();
            m.header.family = family(*ip);
            m.header.ifindex = i;
            m.attributes
                .push(NeighbourAttribute::Destination(address(*ip)));
            h.neighbours()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("deleting neighbour {ip} on {dev}")))
        }
        NetOp::Fdb { mac, dev, dst } => {
            let i = index(h, dev).await?;
            h.neighbours()
                .add_bridge(i, &mac.0)
                .destination(*dst)
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("FDB entry {mac} on {dev}")))
        }
        NetOp::DeleteFdb { mac, dev, dst } => {
            let i = index(h, dev).await?;
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Bridge;
            m.header.ifindex = i;
            m.header.flags = NeighbourFlags::Own;
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
            m.attributes
                .push(NeighbourAttribute::Destination(address(*dst)));
            h.neighbours()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("deleting FDB entry {mac} on {dev}")))
        }
    }
}

/// A request that rtnetlink's builder refuses (addresses of two families in one route).
fn invalid(what: String, e: impl std::error::Error + Send + Sync + 'static) -> NodeError {
    NodeError::Invalid {
        what,
        source: Box::new(e),
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// `ip link set LINK [master M] up`.
async fn up(h: &Handle, link: &str, master: Option<&str>) -> Result<(), NodeError> {
    let i = index(h, link).await?;
    let mut b = LinkUnspec::new_with_index(i).up();
    if let Some(m) = master {
        b = b.controller(index(h, m).await?);
    }
    h.link()
        .set(b.build())
        .execute()
        .await
        .map_err(nl(format!("raising {link}")))
}

/// `ip link add NAME type veth peer name PEER netns PEER_NETNS`: the peer is born in its
/// namespace.
async fn veth(h: &Handle, name: &str, peer: &str, peer_netns: &str) -> Result<(), NodeError> {
    let path = crate::sys::netns_path(peer_netns);
    let ns = std::fs::File::open(&path).map_err(|source| NodeError::Netns { path, source })?;
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&ns))
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link().add(msg).execute().await.map_err(nl(format!(
        "adding veth {name} (peer {peer} in {peer_netns})"
    )))
}

/// The overlay's device, made as `ip link add NAME type vxlan id VNI dstport PORT local IP dev
/// UPLINK nolearning udpcsum`, given its MAC and MTU and raised, with the VTEP's address.
async fn vxlan(h: &Handle, d: &VxlanDevice) -> Result<(), NodeError> {
    let uplink = index(h, &d.uplink).await?;
    // Outer UDP checksums: a receiving NIC that checks them can aggregate the tunnel's
    // packets (GRO) instead of handing the stack each one (Antrea measured 2.6 -> 5.2 Gbit/s);
    // between the lab's veth nodes, which pass whole GSO packets, it changes nothing
    // (bench/overlay.sh).
    let mut b = LinkVxlan::new(&d.name, d.vni)
        .port(d.port)
        .dev(uplink)
        .learning(false)
        .udp_csum(true);
    b = match d.vtep.node_ip {
        IpAddr::V4(ip) => b.local(ip),
        IpAddr::V6(ip) => b.local6(ip),
    };
    h.link()
        .add(b.build())
        .execute()
        .await
        .map_err(nl(format!("adding the VXLAN device {}", d.name)))?;
    let i = index(h, &d.name).await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(i)
                .address(d.vtep.mac.0.to_vec())
                .mtu(d.mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("raising the VXLAN device {}", d.name)))?;
    for ip in std::iter::once(d.vtep.ip).chain(d.secondary_ip) {
        let prefix = podnet_model::IpFamily::of(ip).bits();
        let mut add = address_message(h, i, ip, prefix);
        if ip.is_ipv6() {
            // Deprecated (preferred lifetime 0, valid for ever): it still answers, but the
            // node never picks it as the source of what it sends. IPv6's source selection
            // prefers the longest match, and this address in the node's own pod range would
            // win for every pod: a node service answering a pod through a Service (a
            // hostNetwork endpoint) would answer from it, not from the address the
            // connection was translated to, and the pod would drop the answer. IPv4's
            // selection takes the outgoing link's address first (the underlay's).
            let mut life = netlink_packet_route::address::CacheInfo::default();
            life.ifa_preferred = 0;
            life.ifa_valid = u32::MAX;
            add.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(life));
        }
        add.execute()
            .await
            .map_err(nl(format!("adding the VTEP address {ip}")))?;
    }
    Ok(())
}

/// `ip addr add IP/PREFIX dev I`, IPv6 ones with `nodad`: an address podnet gives is unique
/// by construction, and duplicate address detection would hold it back for a second.
async fn add_address(h: &Handle, i: u32, ip: IpAddr, prefix: u8) -> Result<(), rtnetlink::Error> {
    address_message(h, i, ip, prefix).execute().await
}

fn address_message(h: &Handle, i: u32, ip: IpAddr, prefix: u8) -> rtnetlink::AddressAddRequest {
    let mut add = h.address().add(i, ip, prefix);
    if ip.is_ipv6() {
        add.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    add
}

/// `ip route replace DST [via GW | nexthop via GW ...] [dev DEV] [onlink]`.
async fn route(
    h: &Handle,
    dst: &ipnet::IpNet,
    via: &[IpAddr],
    dev: Option<&str>,
    onlink: bool,
) -> Result<(), NodeError> {
    let what = || format!("route {dst}");
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(|e| invalid(what(), e))?
        .protocol(RouteProtocol::Boot);
    let oif = match dev {
        Some(d) => Some(index(h, d).await?),
        None => None,
    };
    match via {
        [] => b = b.scope(RouteScope::Link),
        [gw] => b = b.gateway(*gw).map_err(|e| invalid(what(), e))?,
        hops => {
            let mut next = Vec::with_capacity(hops.len());
            for gw in hops {
                let mut n = RouteNextHopBuilder::new(family(*gw))
                    .via(*gw)
                    .map_err(|e| invalid(what(), e))?;
                if let Some(i) = oif {
                    n = n.interface(i);
                }
                if onlink {
                    n = n.onlink();
                }
                next.push(n.build());
            }
            b = b.multipath(next);
        }
    }
    if via.len() < 2 {
        if let Some(i) = oif {
            b = b.output_interface(i);
        }
        if onlink {
            b = b.onlink();
        }
    }
    h.route()
        .add(b.build())
        .replace()
        .execute()
        .await
        .map_err(nl(what()))
}
