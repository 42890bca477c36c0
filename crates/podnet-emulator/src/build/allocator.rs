//! The allocators of addresses and ports: requested ones claimed, the rest handed out by hash
//! (the same manifests give the same plan), shortages reported at the object that lacks one.

use super::*;

/// Why a Service's requested address or port is refused, in the API server's words (its IP
/// and port allocators').
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refused {
    #[error("provided IP is not in the valid range (the cluster's serviceCIDR)")]
    IpOutOfRange,
    #[error("the network and broadcast addresses cannot be assigned")]
    NetworkOrBroadcast,
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    PortOutOfRange(podnet_model::config::PortRange),
    #[error("provided port is already allocated")]
    PortAllocated,
}

/// ClusterIP and NodePort allocation, as the API server's allocators do it, but deterministic:
/// a hash of the Service's name picks where to start looking, so that adding one Service does
/// not move the others. One address allocator per service CIDR (per family), as the API
/// server has.
pub(super) struct Allocator {
    pub(super) ranges: Vec<IpAllocator>,
    pub(super) port_range: podnet_model::config::PortRange,
    pub(super) ports: HashMap<i32, String>,
}

/// The addresses of one service CIDR.
pub(super) struct IpAllocator {
    pub(super) family: IpFamily,
    pub(super) net_base: u128,
    pub(super) size: u128,
    pub(super) ips: BTreeSet<u128>,
    /// Free offsets of the upper band (KEP-3070's dynamic band), then of the lower one.
    pub(super) bands: [FreeRanges; 2],
}

impl IpAllocator {
    fn new(cidr: &IpNet, dns_ip: IpAddr) -> Self {
        let family = IpFamily::of_net(cidr);
        let v4 = family == IpFamily::Ipv4;
        let bits = u32::from(family.bits() - cidr.prefix_len());
        let size = if bits >= 64 {
            1u128 << 64
        } else {
            1u128 << bits
        };
        let net_base = ip_to_u128(cidr.network());
        // KEP-3070: the lower band is kept for addresses that users set themselves.
        let static_band = (size / 16).clamp(16, 256);
        let usable_end = if v4 { size - 1 } else { size };
        let mut a = IpAllocator {
            family,
            net_base,
            size,
            ips: BTreeSet::new(),
            bands: [
                FreeRanges::new(static_band, usable_end),
                FreeRanges::new(1, static_band.min(usable_end)),
            ],
        };
        // The cluster DNS address is kept for kube-dns.
        if IpFamily::of(dns_ip) == family {
            let dns = ip_to_u128(dns_ip).wrapping_sub(net_base);
            for b in &mut a.bands {
                b.take(dns);
            }
        }
        a
    }
}

impl Allocator {
    pub(super) fn new(c: &ClusterConfig) -> Self {
        Allocator {
            ranges: c
                .service_cidrs
                .iter()
                .map(|cidr| IpAllocator::new(cidr, c.dns_ip))
                .collect(),
            port_range: c.node_port_range,
            ports: HashMap::new(),
        }
    }

    pub(super) fn claim_ip(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let n = ip_to_u128(ip);
        let r = self
            .ranges
            .iter_mut()
            .find(|r| r.family == IpFamily::of(ip) && n >= r.net_base && n < r.net_base + r.size)
            .ok_or(Refused::IpOutOfRange)?;
        let off = n - r.net_base;
        if off == 0 || (ip.is_ipv4() && off == r.size - 1) {
            return Err(Refused::NetworkOrBroadcast);
        }
        if !r.ips.insert(off) {
            return Err(Refused::IpAllocated);
        }
        for b in &mut r.bands {
            b.take(off);
        }
        Ok(())
    }

    /// A free address of a family, from a hash of the Service's key so that adding a Service
    /// moves no other: the first free one at or after the hashed place, upper band first.
    /// O(log n).
    pub(super) fn allocate_ip(&mut self, key: &str, family: IpFamily) -> Option<IpAddr> {
        let r = self.ranges.iter_mut().find(|r| r.family == family)?;
        let h = u128::from(fnv64(&[key.as_bytes()]));
        let off = r.bands.iter_mut().find_map(|b| b.take_hashed(h))?;
        r.ips.insert(off);
        Some(u128_to_ip(r.net_base + off, family == IpFamily::Ipv4))
    }

    pub(super) fn claim_port(
        &mut self,
        port: i32,
        ns: &str,
        name: &str,
        proto: &str,
    ) -> Result<(), Refused> {
        if !self.port_range.contains(port) {
            return Err(Refused::PortOutOfRange(self.port_range));
        }
        let owner = format!("{ns}/{name}");
        match self.ports.get(&port) {
            // Within one Service, one node port may serve the same port number over two protocols.
            Some(o) if *o == owner && proto != "health" => Ok(()),
            Some(_) => Err(Refused::PortAllocated),
            None => {
                self.ports.insert(port, owner);
                Ok(())
            }
        }
    }

    pub(super) fn allocate_port(&mut self, key: &str) -> Option<i32> {
        let size = self.port_range.len();
        if self.ports.len() >= size as usize {
            return None;
        }
        let band = (size / 32).clamp(16, 128).min(size);
        let h = fnv64(&[key.as_bytes()]);
        for (lo, hi) in [(band, size), (0, band)] {
            if hi <= lo {
                continue;
            }
            let span = u64::from(hi - lo);
            for i in 0..span {
                let p = i32::from(self.port_range.first)
                    + (u64::from(lo) + (h.wrapping_add(i)) % span) as i32;
                if let std::collections::hash_map::Entry::Vacant(e) = self.ports.entry(p) {
                    e.insert(key.to_string());
                    return Some(p);
                }
            }
        }
        None
    }
}

/// Services that an exhausted range could not serve, with where each was defined.
#[derive(Default)]
pub(super) struct Shortages {
    /// By family.
    pub(super) cluster_ips: BTreeMap<IpFamily, Vec<(Location, NsName)>>,
    pub(super) node_ports: Vec<(Location, NsName)>,
}

/// The free values of `[lo, hi)` as disjoint ranges, start → end (exclusive), so that finding
/// the first free value at or after a place is a tree lookup however full the range is, and
/// memory grows with the number of values taken, not with the size of the range.
#[derive(Debug, Clone)]
pub(super) struct FreeRanges {
    pub(super) lo: u128,
    pub(super) hi: u128,
    pub(super) free: BTreeMap<u128, u128>,
}

impl FreeRanges {
    pub(super) fn new(lo: u128, hi: u128) -> FreeRanges {
        let mut free = BTreeMap::new();
        if lo < hi {
            free.insert(lo, hi);
        }
        FreeRanges { lo, hi, free }
    }

    /// Takes `x`; false when it was not free.
    pub(super) fn take(&mut self, x: u128) -> bool {
        let Some((&start, &end)) = self.free.range(..=x).next_back() else {
            return false;
        };
        if x >= end {
            return false;
        }
        self.free.remove(&start);
        if start < x {
            self.free.insert(start, x);
        }
        if x + 1 < end {
            self.free.insert(x + 1, end);
        }
        true
    }

    /// Takes the first free value at or after `lo + h % (hi - lo)`, wrapping around.
    pub(super) fn take_hashed(&mut self, h: u128) -> Option<u128> {
        if self.free.is_empty() {
            return None;
        }
        let at = self.lo + h % (self.hi - self.lo);
        let x = match self.free.range(..=at).next_back() {
            Some((_, &end)) if at < end => at,
            _ => {
                *self
                    .free
                    .range(at..)
                    .next()
                    .or_else(|| self.free.iter().next())?
                    .0
            }
        };
        self.take(x);
        Some(x)
    }
}
