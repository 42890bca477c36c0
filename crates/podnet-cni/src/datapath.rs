//! The datapath: how a pod is wired to its node.
//!
//! Routed, with no bridge: each pod gets a veth pair. Inside the pod, `eth0` holds the pod's
//! address as a /32, a permanent neighbour entry for the gateway `169.254.1.1` pointing at the
//! node side's MAC, a link route to the gateway and the default route through it. On the node,
//! the other end (`pn<hash>`) carries a /32 route to the pod and a permanent neighbour entry for
//! it, so neither side ever ARPs. IPv6 is wired the same way beside it: the pod's address as a
//! /128 without duplicate address detection (nothing else can hold it, and DAD would hold the
//! address back for a second), the link-local gateway `fe80::1` as a permanent neighbour and
//! the default route `::/0` through it; on the node a /128 route and a permanent neighbour
//! entry. Neither side ever sends neighbour solicitations. Every packet to or from a pod is
//! routed by the node's own IP stack, so nftables sees it with the pod's interface, and there is
//! no bridge learning, no ARP flooding and no br_netfilter to load. This is Calico's and
//! Cilium's design.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::netns;
use crate::spec::{code, CniError, CniResult};

/// The pod's gateway. Link-local, so it is the same on every node and never routed.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The pod's IPv6 gateway: link-local as well, the same on every node.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The gateway of an address's family.
pub fn gateway_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(GATEWAY),
        IpAddr::V6(_) => IpAddr::V6(GATEWAY6),
    }
}

pub(crate) fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// What to wire.
#[derive(Debug, Clone)]
pub struct Attach {
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    /// At most one per family, the primary first.
    pub ips: Vec<IpAddr>,
    pub mtu: u32,
}

/// What was wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_mac: String,
    /// Whether this attachment installed the pod's default routes (the first one does).
    pub default_route: bool,
}

/// The effects on Linux, behind a trait so that the plugin's logic is tested without root.
pub trait Datapath {
    fn add(&self, a: &Attach) -> CniResult<Wired>;
    /// Best effort; a missing namespace or interface is not an error.
    fn del(&self, container_id: &str, ifname: &str, netns: Option<&Path>) -> CniResult<()>;
    /// Whether everything `add` made is still there and right.
    fn check(&self, a: &Attach) -> CniResult<()>;
}

/// The node side's interface name: `pn` + 12 hex digits of a hash of the attachment.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(container_id.as_bytes());
    h.write(&[0]);
    h.write(ifname.as_bytes());
    format!("pn{:012x}", h.finish() & 0xffff_ffff_ffff)
}

fn nl(what: &str) -> impl Fn(rtnetlink::Error) -> CniError + '_ {
    move |e| CniError::new(code::NETLINK, format!("{what}: {e}"))
}

fn mac_string(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Fixed MACs for both ends, derived from the host interface's name: locally administered and
/// unicast. Each veth pair is an L2 segment of its own, so they only need to differ from each
/// other; fixing them saves looking them up across namespaces.
pub fn macs(host_ifname: &str) -> ([u8; 6], [u8; 6]) {
    let hex = &host_ifname[2..];
    let mut b = [0u8; 6];
    for (i, byte) in b.iter_mut().enumerate().skip(1) {
        *byte = u8::from_str_radix(hex.get(2 * (i - 1)..2 * i).unwrap_or("00"), 16).unwrap_or(0);
    }
    let mut host = b;
    host[0] = 0x0a;
    let mut pod = b;
    pod[0] = 0x0e;
    (host, pod)
}

fn mtu_of(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| {
        if let LinkAttribute::Mtu(m) = a {
            Some(*m)
        } else {
            None
        }
    })
}

/// The link called `name`, if it exists.
pub async fn link_by_name(h: &Handle, name: &str) -> CniResult<Option<LinkMessage>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(l) => Ok(l),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl("looking up a link")(e)),
    }
}

/// The two ends of a pod's veth pair.
#[derive(Debug, Clone)]
struct Ends {
    host: String,
    ifname: String,
    ips: Vec<IpAddr>,
    mtu: u32,
    host_mac: [u8; 6],
    pod_mac: [u8; 6],
}

/// The node's side, from the node's namespace: the veth pair (its peer born inside the pod,
/// named and up: moving an interface between namespaces afterwards costs a grace period of
/// ~20 ms), a /32 (/128) route to each of the pod's addresses and their permanent neighbour
/// entries.
async fn wire_node_side(
    h: Handle,
    e: &Ends,
    pod_netns: BorrowedFd<'_>,
    netns_shown: &str,
) -> CniResult<()> {
    let (host, ifname, mtu, host_mac, pod_mac) = (&e.host, &e.ifname, e.mtu, e.host_mac, e.pod_mac);
    let fd = pod_netns.as_raw_fd();
    if let Some(old) = link_by_name(&h, host).await? {
        // A leftover of a failed ADD for the same attachment.
        h.link()
            .del(old.header.index)
            .execute()
            .await
            .map_err(nl("removing a stale host veth"))?;
    }
    let peer = LinkUnspec::new_with_name(ifname)
        .mtu(mtu)
        .address(pod_mac.to_vec())
        .setns_by_fd(fd)
        .build();
    let msg = rtnetlink::LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host.clone())
        .mtu(mtu)
        .address(host_mac.to_vec())
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("interface {ifname} already exists in {netns_shown}"),
            ));
        }
        Err(e) => return Err(nl("creating the veth pair")(e)),
    }
    let hl = link_by_name(&h, host)
        .await?
        .ok_or_else(|| CniError::new(code::NETLINK, "the host veth vanished"))?;
    let idx = hl.header.index;
    for &ip in &e.ips {
        let route = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(ip, host_prefix(ip))
            .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("route to {ip}: {e}")))?
            .output_interface(idx)
            .scope(RouteScope::Link)
            .build();
        h.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(nl("adding the route to the pod"))?;
        // No ARP or neighbour discovery on either side: the node knows the pod's MAC as the
        // pod knows its gateway's.
        permanent_neighbour(&h, idx, ip, &pod_mac, "adding the pod's neighbour entry").await?;
    }
    Ok(())
}

/// A permanent neighbour entry on interface `idx`: `ip` is at `mac`.
async fn permanent_neighbour(
    h: &Handle,
    idx: u32,
    ip: IpAddr,
    mac: &[u8; 6],
    what: &str,
) -> CniResult<()> {
    h.neighbours()
        .add(idx, ip)
        .link_layer_address(mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl(what))
}

/// The pod's side, from the pod's namespace: the interface and lo up, the addresses, the
/// gateways' permanent neighbours, and the routes (unless another attachment has them). True
/// when this attachment added the default routes.
async fn wire_pod_side(h: Handle, e: &Ends) -> CniResult<bool> {
    use netlink_packet_route::address::{AddressAttribute, AddressFlags};
    let (ifname, host_mac) = (&e.ifname, e.host_mac);
    let l = link_by_name(&h, ifname)
        .await?
        .ok_or_else(|| CniError::new(code::NETLINK, "the veth did not arrive in the pod"))?;
    let idx = l.header.index;
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl("raising the pod interface"))?;
    if let Some(lo) = link_by_name(&h, "lo").await? {
        h.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("raising lo"))?;
    }
    for &ip in &e.ips {
        let mut add = h.address().add(idx, ip, host_prefix(ip));
        if ip.is_ipv6() {
            // Usable at once: no duplicate address detection for an address only this pod has.
            add.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        add.execute().await.map_err(nl("adding the pod address"))?;
    }
    for &ip in &e.ips {
        permanent_neighbour(
            &h,
            idx,
            gateway_of(ip),
            &host_mac,
            "adding the gateway neighbour",
        )
        .await?;
    }
    // A second attachment (another ifname) leaves the pod's routing alone: the gateway
    // and the default route stay on the first interface.
    let has_default = routes_v4(&h)
        .await?
        .iter()
        .chain(routes_v6(&h).await?.iter())
        .any(|r| r.header.destination_prefix_length == 0 && r.header.table == 254);
    if !has_default {
        for &ip in &e.ips {
            match ip {
                IpAddr::V4(_) => {
                    let to_gw = RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(GATEWAY, 32)
                        .output_interface(idx)
                        .scope(RouteScope::Link)
                        .build();
                    add_route(&h, to_gw, "adding the route to the gateway").await?;
                    let default = RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                        .gateway(GATEWAY)
                        .output_interface(idx)
                        .build();
                    add_route(&h, default, "adding the default route").await?;
                }
                IpAddr::V6(_) => {
                    // fe80::/64 is on the link already: the default route goes straight
                    // through the link-local gateway.
                    let default = RouteMessageBuilder::<Ipv6Addr>::new()
                        .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                        .gateway(GATEWAY6)
                        .output_interface(idx)
                        .build();
                    add_route(&h, default, "adding the IPv6 default route").await?;
                }
            }
        }
    }
    Ok(!has_default)
}

/// Adds a route (`what` says which, in an error).
async fn add_route(
    h: &Handle,
    route: netlink_packet_route::route::RouteMessage,
    what: &str,
) -> CniResult<()> {
    h.route().add(route).execute().await.map_err(nl(what))
}

/// Whether the interface `ifindex` has a permanent neighbour entry `ip` → `mac`.
async fn has_permanent_neighbour(
    h: &Handle,
    ifindex: u32,
    ip: IpAddr,
    mac: &[u8],
) -> CniResult<bool> {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
    let mut entries = h.neighbours().get().execute();
    while let Some(n) = entries.try_next().await.map_err(nl("listing neighbours"))? {
        let at = |want: &NeighbourAttribute| n.attributes.contains(want);
        if n.header.ifindex == ifindex
            && n.header.state == NeighbourState::Permanent
            && at(&NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }))
            && at(&NeighbourAttribute::LinkLayerAddress(mac.to_vec()))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An attachment's addresses and its veth pair's ends: the host interface's name, its MAC and
/// the pod's.
fn ends_of(a: &Attach) -> CniResult<Ends> {
    let one_per_family = match a.ips.as_slice() {
        [_] => true,
        [x, y] => x.is_ipv4() != y.is_ipv4(),
        _ => false,
    };
    if !one_per_family {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("a pod takes one address of each family, not {:?}", a.ips),
        ));
    }
    let host = host_ifname(&a.container_id, &a.ifname);
    let (host_mac, pod_mac) = macs(&host);
    Ok(Ends {
        host,
        ifname: a.ifname.clone(),
        ips: a.ips.clone(),
        mtu: a.mtu,
        host_mac,
        pod_mac,
    })
}

/// Turns on forwarding for each family the node routes pods of (it is per namespace).
fn forwarding(ips: &[IpAddr]) -> CniResult<()> {
    for key in forwarding_keys(ips) {
        if netns::read_sysctl(key).ok().as_deref() != Some("1") {
            netns::sysctl(key, "1")?;
        }
    }
    Ok(())
}

fn forwarding_keys(ips: &[IpAddr]) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if ips.iter().any(IpAddr::is_ipv4) {
        keys.push("net.ipv4.ip_forward");
    }
    if ips.iter().any(IpAddr::is_ipv6) {
        keys.push("net.ipv6.conf.all.forwarding");
    }
    keys
}

/// The real datapath, through rtnetlink. Node-side work runs in the plugin's own namespace.
pub struct Netlink;

impl Datapath for Netlink {
    fn add(&self, a: &Attach) -> CniResult<Wired> {
        let ends = ends_of(a)?;
        let (host, host_mac, pod_mac) = (ends.host.clone(), ends.host_mac, ends.pod_mac);
        let ns_file = netns::open(&a.netns)?;
        let netns_shown = a.netns.display().to_string();
        let node = ends.clone();
        let node_side = netns::here(move |h| async move {
            wire_node_side(h, &node, ns_file.as_fd(), &netns_shown).await
        });
        if let Err(e) = node_side {
            if e.code != code::INVALID_CONFIG {
                let _ = self.del(&a.container_id, &a.ifname, None);
            }
            return Err(e);
        }
        // Forwarding is per namespace; a node must route for its pods.
        forwarding(&a.ips)?;
        let pod = netns::within(
            &a.netns,
            move |h| async move { wire_pod_side(h, &ends).await },
        );
        match pod {
            Ok(default_route) => Ok(Wired {
                host_ifname: host,
                host_mac: mac_string(&host_mac),
                pod_mac: mac_string(&pod_mac),
                default_route,
            }),
            Err(e) => {
                let _ = self.del(&a.container_id, &a.ifname, Some(&a.netns));
                Err(e)
            }
        }
    }

    fn del(&self, container_id: &str, ifname: &str, netns: Option<&Path>) -> CniResult<()> {
        // Deleting either end removes the pair; the pod's routes go with its interface.
        let host = host_ifname(container_id, ifname);
        let had_host_end = netns::here(move |h| async move {
            let Some(l) = link_by_name(&h, &host).await? else {
                return Ok(false);
            };
            match h.link().del(l.header.index).execute().await {
                Ok(()) => Ok(true),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(false),
                Err(e) => Err(nl("deleting the host veth")(e)),
            }
        })?;
        if had_host_end {
            return Ok(());
        }
        if let Some(ns) = netns.filter(|p| p.exists()) {
            let ifname = ifname.to_string();
            // The pod side may be a leftover without its host end.
            let r = netns::within(ns, move |h| async move {
                if let Some(l) = link_by_name(&h, &ifname).await? {
                    if l.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkInfo(info) if info.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))))) {
                        let _ = h.link().del(l.header.index).execute().await;
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                if e.code != code::UNKNOWN_CONTAINER {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn check(&self, a: &Attach) -> CniResult<()> {
        let ends = ends_of(a)?;
        let node = ends.clone();
        netns::here(move |h| check_node_side(h, node))?;
        for key in forwarding_keys(&a.ips) {
            if netns::read_sysctl(key)? != "1" {
                return Err(CniError::new(
                    code::NETLINK,
                    format!("forwarding is off on the node ({key}): pods are unreachable"),
                ));
            }
        }
        netns::within(&a.netns, move |h| check_pod_side(h, ends))
    }
}

/// A CHECK that failed unless `ok`: what is wrong.
fn ensure(ok: bool, wrong: impl FnOnce() -> String) -> CniResult<()> {
    if ok {
        Ok(())
    } else {
        Err(CniError::new(code::NETLINK, wrong()))
    }
}

/// The interface `name` (`what`: whose), which must be there with MTU `mtu`.
async fn link_with_mtu(h: &Handle, what: &str, name: &str, mtu: u32) -> CniResult<LinkMessage> {
    let l = link_by_name(h, name).await?;
    ensure(l.is_some(), || {
        format!("{what} interface {name} is missing")
    })?;
    let l = l.expect("checked");
    let has = mtu_of(&l);
    ensure(has == Some(mtu), || {
        format!("{what} interface {name} has MTU {has:?}, want {mtu}")
    })?;
    Ok(l)
}

/// Every IPv4 route of the namespace's main table.
async fn routes_v4(h: &Handle) -> CniResult<Vec<netlink_packet_route::route::RouteMessage>> {
    collect_routes(h, RouteMessageBuilder::<Ipv4Addr>::new().build()).await
}

/// Every IPv6 route of the namespace.
async fn routes_v6(h: &Handle) -> CniResult<Vec<netlink_packet_route::route::RouteMessage>> {
    collect_routes(h, RouteMessageBuilder::<Ipv6Addr>::new().build()).await
}

async fn collect_routes(
    h: &Handle,
    filter: netlink_packet_route::route::RouteMessage,
) -> CniResult<Vec<netlink_packet_route::route::RouteMessage>> {
    let mut routes = h.route().get(filter).execute();
    let mut out = Vec::new();
    while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
        out.push(r);
    }
    Ok(out)
}

/// Every route of `ip`'s family.
async fn routes_of(
    h: &Handle,
    ip: IpAddr,
) -> CniResult<Vec<netlink_packet_route::route::RouteMessage>> {
    match ip {
        IpAddr::V4(_) => routes_v4(h).await,
        IpAddr::V6(_) => routes_v6(h).await,
    }
}

fn route_dst(r: &netlink_packet_route::route::RouteMessage) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress;
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

/// CHECK on the node's side: the host interface with its MTU, the /32 (/128) route to each
/// of the pod's addresses through it, their permanent neighbour entries.
async fn check_node_side(h: Handle, e: Ends) -> CniResult<()> {
    let (host, pod_mac) = (&e.host, e.pod_mac);
    let l = link_with_mtu(&h, "host", host, e.mtu).await?;
    for &ip in &e.ips {
        let routes = routes_of(&h, ip).await?;
        let found = routes.iter().any(|r| {
            r.header.destination_prefix_length == host_prefix(ip)
                && r.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == l.header.index))
                && route_dst(r) == Some(ip)
        });
        ensure(found, || {
            format!("the node has no route to {ip} through {host}")
        })?;
        let neighbour = has_permanent_neighbour(&h, l.header.index, ip, &pod_mac).await?;
        ensure(neighbour, || {
            format!(
                "the node has no permanent neighbour entry for {ip} ({}) on {host}",
                mac_string(&pod_mac)
            )
        })?;
    }
    Ok(())
}

/// CHECK in the pod: its interface with its MTU and addresses, the permanent neighbour entry
/// of each family's gateway, each family's default route.
async fn check_pod_side(h: Handle, e: Ends) -> CniResult<()> {
    let (ifname, host_mac) = (&e.ifname, e.host_mac);
    let l = link_with_mtu(&h, "pod", ifname, e.mtu).await?;
    let mut addrs = h
        .address()
        .get()
        .set_link_index_filter(l.header.index)
        .execute();
    let mut has: Vec<IpAddr> = Vec::new();
    while let Some(m) = addrs.try_next().await.map_err(nl("listing addresses"))? {
        for a in &m.attributes {
            if let netlink_packet_route::address::AddressAttribute::Address(x) = a {
                has.push(*x);
            }
        }
    }
    for &ip in &e.ips {
        ensure(has.contains(&ip), || {
            format!("pod interface {ifname} lacks {ip}")
        })?;
        let gw = gateway_of(ip);
        // (After the address: the kernel flushes a device's neighbours with its last one.)
        let neighbour = has_permanent_neighbour(&h, l.header.index, gw, &host_mac).await?;
        ensure(neighbour, || {
            format!(
                "the pod has no permanent neighbour entry for its gateway {gw} ({}) on {ifname}",
                mac_string(&host_mac)
            )
        })?;
        let routes = routes_of(&h, ip).await?;
        let default = routes.iter().any(|r| {
            r.header.destination_prefix_length == 0
                && r.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        });
        ensure(default, || format!("the pod has no default route via {gw}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_ifname("abc", "eth0");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("pn"));
        assert_ne!(a, host_ifname("abc", "net1"));
        assert_eq!(a, host_ifname("abc", "eth0"));
        let (h, p) = macs(&a);
        assert_ne!(h, p);
        assert_eq!(h[0] & 0x03, 0x02, "locally administered, unicast");
        assert_eq!(p[0] & 0x03, 0x02);
    }
}
