//! Address management from a node's pod CIDRs (one per family), kept on disk so that it
//! survives the plugin's short life.
//!
//! The store is a directory per network: one file per reserved address (named by the address,
//! holding `containerID` and `ifname`), `last_reserved_ip` (`last_reserved_ip.1` for the
//! second range, as host-local names them) to hand out addresses round-robin (an address just
//! released is not handed out again at once), and `lock`, which every change holds
//! exclusively, so that concurrent ADDs never hand out the same address. An attachment gets
//! one address from each range.
//!
//! The first address of each range is the node's own (gateway) address; the network address
//! and (IPv4) the broadcast address are never handed out. Addresses are found by arithmetic,
//! never by listing a range: an IPv6 /64 has 2^64 of them.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::spec::{code, Attachment, CniError, CniResult};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

pub struct Store {
    dir: PathBuf,
    subnets: Vec<IpNet>,
}

/// The store, locked for one change.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: File,
}

fn io(e: std::io::Error, what: &str) -> CniError {
    CniError::new(code::IO_FAILURE, format!("IPAM store: {what}: {e}"))
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A range's usable addresses as offsets from its network address: `first..=last`.
#[derive(Debug, Clone, Copy)]
struct Usable {
    net: IpNet,
    first: u128,
    last: u128,
}

impl Usable {
    fn of(net: IpNet) -> Usable {
        let bits = u32::from(net.max_prefix_len() - net.prefix_len());
        let size_less_one = if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        // 0: the network (IPv6: the subnet-router anycast); 1: the gateway; IPv4's last is
        // the broadcast.
        let last = if net.addr().is_ipv4() {
            size_less_one.saturating_sub(1)
        } else {
            size_less_one
        };
        Usable {
            net,
            first: 2,
            last,
        }
    }
    fn count(&self) -> u128 {
        if self.last < self.first {
            0
        } else {
            self.last - self.first + 1
        }
    }
    fn offset(&self, ip: IpAddr) -> Option<u128> {
        if !self.net.contains(&ip) {
            return None;
        }
        let off = to_u128(ip) - to_u128(self.net.network());
        (off >= self.first && off <= self.last).then_some(off)
    }
    fn at(&self, off: u128) -> IpAddr {
        let n = to_u128(self.net.network()) + off;
        match self.net {
            IpNet::V4(_) => IpAddr::V4((n as u32).into()),
            IpNet::V6(_) => IpAddr::V6(n.into()),
        }
    }
    /// The offset after `off`, wrapping around.
    fn next(&self, off: u128) -> u128 {
        if off >= self.last || off < self.first {
            self.first
        } else {
            off + 1
        }
    }
}

impl Store {
    /// `subnets`: one or two ranges (one per family), the primary first.
    pub fn new(data_dir: &Path, network: &str, subnets: &[IpNet]) -> Self {
        Store {
            dir: data_dir.join(network),
            subnets: subnets.iter().map(IpNet::trunc).collect(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn subnets(&self) -> &[IpNet] {
        &self.subnets
    }

    /// Takes the store's lock (blocking until other plugins are done).
    pub fn lock(&self) -> CniResult<Locked<'_>> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| io(e, &format!("creating {}", self.dir.display())))?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .map_err(|e| io(e, "opening the lock"))?;
        f.lock().map_err(|e| io(e, "locking"))?;
        Ok(Locked {
            store: self,
            _lock: f,
        })
    }

    fn last_file(&self, range: usize) -> PathBuf {
        match range {
            0 => self.dir.join("last_reserved_ip"),
            i => self.dir.join(format!("last_reserved_ip.{i}")),
        }
    }
}

/// The first usable address: the node's side of the pod network.
pub fn gateway(net: &IpNet) -> Option<IpAddr> {
    let u = Usable::of(*net);
    (u.last >= 1).then(|| u.at(1))
}

impl Locked<'_> {
    fn path(&self, ip: IpAddr) -> PathBuf {
        self.store.dir.join(ip.to_string())
    }

    /// Every reservation: (address, containerID, ifname).
    pub fn reservations(&self) -> CniResult<Vec<(IpAddr, Attachment)>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.store.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(e, "listing")),
        };
        for e in entries {
            let e = e.map_err(|e| io(e, "listing"))?;
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let text = match fs::read_to_string(e.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e, "reading a reservation")),
            };
            let mut lines = text.lines();
            let container_id = lines.next().unwrap_or("").to_string();
            let ifname = lines.next().unwrap_or("").to_string();
            out.push((
                ip,
                Attachment {
                    container_id,
                    ifname,
                },
            ));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }

    /// The addresses reserved for an attachment, in the order of the ranges (empty: none).
    pub fn find(&self, att: &Attachment) -> CniResult<Vec<IpAddr>> {
        let mine: Vec<IpAddr> = self
            .reservations()?
            .into_iter()
            .filter(|(_, a)| a == att)
            .map(|(ip, _)| ip)
            .collect();
        let mut ordered = Vec::new();
        for net in &self.store.subnets {
            ordered.extend(mine.iter().copied().find(|ip| net.contains(ip)));
        }
        Ok(ordered)
    }

    /// Reserves an address of each range for `att`: the one it already has there, the
    /// requested one of that family, or the next free one after the last handed out. All or
    /// nothing: a range that cannot give one leaves the others as they were.
    pub fn allocate(&self, att: &Attachment, requested: &[IpAddr]) -> CniResult<Vec<IpAddr>> {
        let reserved = self.reservations()?;
        let taken: BTreeSet<IpAddr> = reserved.iter().map(|(ip, _)| *ip).collect();
        for ip in requested {
            if !self
                .store
                .subnets
                .iter()
                .any(|n| Usable::of(*n).offset(*ip).is_some())
            {
                let shown: Vec<String> =
                    self.store.subnets.iter().map(ToString::to_string).collect();
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested IP {ip} is not a usable address of {}",
                        shown.join(" or ")
                    ),
                ));
            }
        }
        let mut picked: Vec<(usize, IpAddr, bool)> = Vec::new();
        for (i, net) in self.store.subnets.iter().enumerate() {
            let u = Usable::of(*net);
            if let Some((ip, _)) = reserved.iter().find(|(ip, a)| a == att && net.contains(ip)) {
                picked.push((i, *ip, false));
                continue;
            }
            if let Some(ip) = requested.iter().find(|ip| net.contains(*ip)) {
                if taken.contains(ip) {
                    return Err(CniError::new(
                        code::POOL_EXHAUSTED,
                        format!("requested IP {ip} is already reserved"),
                    ));
                }
                picked.push((i, *ip, true));
                continue;
            }
            let last = fs::read_to_string(self.store.last_file(i))
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .and_then(|ip| u.offset(ip));
            let in_range = taken.iter().filter(|ip| u.offset(**ip).is_some()).count() as u128;
            let mut off = last.map_or(u.first, |l| u.next(l));
            let mut found = None;
            // At most `in_range` offsets are taken: one more try finds a free one if any is.
            for _ in 0..(in_range + 1).min(u.count()) {
                let ip = u.at(off);
                if !taken.contains(&ip) {
                    found = Some(ip);
                    break;
                }
                off = u.next(off);
            }
            match found {
                Some(ip) => picked.push((i, ip, true)),
                None => {
                    return Err(CniError::new(
                        code::POOL_EXHAUSTED,
                        format!("no free address left in {net}"),
                    ))
                }
            }
        }
        let mut done: Vec<IpAddr> = Vec::new();
        for (i, ip, new) in &picked {
            if !new {
                continue;
            }
            if let Err(e) = self.reserve(*i, *ip, att) {
                for ip in done {
                    let _ = fs::remove_file(self.path(ip));
                }
                return Err(e);
            }
            done.push(*ip);
        }
        Ok(picked.into_iter().map(|(_, ip, _)| ip).collect())
    }

    fn reserve(&self, range: usize, ip: IpAddr, att: &Attachment) -> CniResult<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path(ip))
            .map_err(|e| io(e, &format!("reserving {ip}")))?;
        writeln!(f, "{}\n{}", att.container_id, att.ifname)
            .map_err(|e| io(e, "writing a reservation"))?;
        fs::write(self.store.last_file(range), ip.to_string())
            .map_err(|e| io(e, "writing last_reserved_ip"))?;
        Ok(())
    }

    /// Releases what `att` holds (every family). Releasing nothing is not an error.
    pub fn release(&self, att: &Attachment) -> CniResult<Vec<IpAddr>> {
        let mut released = Vec::new();
        for ip in self.find(att)? {
            match fs::remove_file(self.path(ip)) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io(e, "releasing")),
            }
        }
        Ok(released)
    }

    /// Releases every reservation whose attachment is not in `valid`; returns what it released.
    pub fn gc(&self, valid: &[Attachment]) -> CniResult<Vec<(IpAddr, Attachment)>> {
        let mut released = Vec::new();
        let mut errors = Vec::new();
        for (ip, att) in self.reservations()? {
            if valid.contains(&att) {
                continue;
            }
            match fs::remove_file(self.path(ip)) {
                Ok(()) => released.push((ip, att)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("{ip}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(released)
        } else {
            Err(CniError::new(
                code::IO_FAILURE,
                format!("GC could not release: {}", errors.join("; ")),
            ))
        }
    }

    /// Addresses still free: of the range with the fewest (an attachment needs one of each).
    pub fn free(&self) -> CniResult<usize> {
        let reserved = self.reservations()?;
        let free = self
            .store
            .subnets
            .iter()
            .map(|n| {
                let u = Usable::of(*n);
                let used = reserved
                    .iter()
                    .filter(|(ip, _)| u.offset(*ip).is_some())
                    .count();
                u.count().saturating_sub(used as u128)
            })
            .min()
            .unwrap_or(0);
        Ok(usize::try_from(free).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podnet-ipam-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn allocates_round_robin_and_releases() {
        let dir = tmp("rr");
        let s = Store::new(&dir, "net", &["10.244.1.0/29".parse().unwrap()]);
        let l = s.lock().unwrap();
        let a = l.allocate(&att("a"), &[]).unwrap()[0];
        assert_eq!(a.to_string(), "10.244.1.2", ".1 is the node's");
        assert_eq!(
            l.allocate(&att("a"), &[]).unwrap()[0],
            a,
            "the same attachment keeps its address"
        );
        let b = l.allocate(&att("b"), &[]).unwrap()[0];
        assert_eq!(b.to_string(), "10.244.1.3");
        assert_eq!(l.release(&att("a")).unwrap(), [a]);
        assert_eq!(
            l.release(&att("a")).unwrap(),
            Vec::<IpAddr>::new(),
            "releasing twice is fine"
        );
        let c = l.allocate(&att("c"), &[]).unwrap()[0];
        assert_eq!(c.to_string(), "10.244.1.4", "not the address just released");
        for id in ["d", "e", "f"] {
            l.allocate(&att(id), &[]).unwrap();
        }
        // .2 .. .6 are usable in a /29: now all five are taken.
        assert_eq!(l.free().unwrap(), 0);
        assert_eq!(
            l.allocate(&att("g"), &[]).unwrap_err().code,
            code::POOL_EXHAUSTED
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requested_addresses_and_gc() {
        let dir = tmp("req");
        let s = Store::new(&dir, "net", &["10.244.1.0/24".parse().unwrap()]);
        let l = s.lock().unwrap();
        let ip: IpAddr = "10.244.1.50".parse().unwrap();
        assert_eq!(l.allocate(&att("a"), &[ip]).unwrap(), [ip]);
        assert_eq!(
            l.allocate(&att("b"), &[ip]).unwrap_err().code,
            code::POOL_EXHAUSTED
        );
        assert_eq!(
            l.allocate(&att("b"), &["10.244.1.1".parse().unwrap()])
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        l.allocate(&att("b"), &[]).unwrap();
        l.allocate(&att("c"), &[]).unwrap();
        let released = l.gc(&[att("b")]).unwrap();
        let ids: Vec<_> = released
            .iter()
            .map(|(_, a)| a.container_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"], "b is valid and kept");
        assert_eq!(l.reservations().unwrap().len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_address_per_family_from_a_slash_64_without_listing_it() {
        let dir = tmp("dual");
        let nets: Vec<IpNet> = vec![
            "10.244.1.0/30".parse().unwrap(),
            "fd00:10:244:1::/64".parse().unwrap(),
        ];
        let s = Store::new(&dir, "net", &nets);
        let l = s.lock().unwrap();
        let a = l.allocate(&att("a"), &[]).unwrap();
        let shown: Vec<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.244.1.2", "fd00:10:244:1::2"]);
        assert_eq!(l.find(&att("a")).unwrap(), a);
        // A requested IPv6 address; the IPv4 one allocated. The /30 has one usable address:
        // all or nothing, the IPv6 one is not kept.
        let want: IpAddr = "fd00:10:244:1::99".parse().unwrap();
        let e = l.allocate(&att("b"), &[want]).unwrap_err();
        assert_eq!(e.code, code::POOL_EXHAUSTED);
        assert_eq!(l.reservations().unwrap().len(), 2, "nothing of b is kept");
        assert_eq!(l.free().unwrap(), 0, "the smaller range decides");
        assert_eq!(l.release(&att("a")).unwrap(), a);
        let b = l.allocate(&att("b"), &[want]).unwrap();
        assert_eq!(b[1], want);
        assert_eq!(gateway(&nets[1]).unwrap().to_string(), "fd00:10:244:1::1");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_allocations_are_unique() {
        let dir = tmp("conc");
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let s = Store::new(&dir, "net", &["10.244.1.0/24".parse().unwrap()]);
                    let l = s.lock().unwrap();
                    l.allocate(&att(&format!("c{i}")), &[]).unwrap()[0]
                })
            })
            .collect();
        let ips: std::collections::BTreeSet<_> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ips.len(), 32);
        fs::remove_dir_all(dir).unwrap();
    }
}
