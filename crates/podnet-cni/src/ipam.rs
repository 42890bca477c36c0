//! Address management from a node's pod CIDR, kept on disk so that it survives the plugin's
//! short life.
//!
//! The store is a directory per network: one file per reserved address (named by the address,
//! holding `containerID` and `ifname`), `last_reserved_ip` to hand out addresses round-robin
//! (an address just released is not handed out again at once), and `lock`, which every change
//! holds exclusively, so that concurrent ADDs never hand out the same address.
//!
//! The first address of the subnet is the node's own (gateway) address; the network and
//! broadcast addresses are never handed out.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::spec::{code, Attachment, CniError, CniResult};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

pub struct Store {
    dir: PathBuf,
    subnet: IpNet,
}

/// The store, locked for one change.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: File,
}

fn io(e: std::io::Error, what: &str) -> CniError {
    CniError::new(code::IO_FAILURE, format!("IPAM store: {what}: {e}"))
}

impl Store {
    pub fn new(data_dir: &Path, network: &str, subnet: IpNet) -> Self {
        Store {
            dir: data_dir.join(network),
            subnet: subnet.trunc(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// The addresses that may be handed out, in order.
    pub fn pool(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let net = self.subnet;
        net.hosts().filter(move |ip| Some(*ip) != gateway(&net))
    }
}

/// The first usable address: the node's side of the pod network.
pub fn gateway(net: &IpNet) -> Option<IpAddr> {
    net.hosts().next()
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

    /// The address reserved for an attachment, if any.
    pub fn find(&self, att: &Attachment) -> CniResult<Option<IpAddr>> {
        Ok(self
            .reservations()?
            .into_iter()
            .find(|(_, a)| a == att)
            .map(|(ip, _)| ip))
    }

    /// Reserves an address for `att`: the one it already has, the requested one, or the next free
    /// one after the last handed out.
    pub fn allocate(&self, att: &Attachment, requested: Option<IpAddr>) -> CniResult<IpAddr> {
        let reserved = self.reservations()?;
        if let Some((ip, _)) = reserved.iter().find(|(_, a)| a == att) {
            return Ok(*ip);
        }
        let taken: std::collections::BTreeSet<IpAddr> =
            reserved.iter().map(|(ip, _)| *ip).collect();
        if let Some(ip) = requested {
            if !self.store.pool().any(|p| p == ip) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested IP {ip} is not a usable address of {}",
                        self.store.subnet
                    ),
                ));
            }
            if taken.contains(&ip) {
                return Err(CniError::new(
                    code::POOL_EXHAUSTED,
                    format!("requested IP {ip} is already reserved"),
                ));
            }
            self.reserve(ip, att)?;
            return Ok(ip);
        }
        let last = fs::read_to_string(self.store.dir.join("last_reserved_ip"))
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        let pool: Vec<IpAddr> = self.store.pool().collect();
        let start = last
            .and_then(|l| pool.iter().position(|p| *p == l))
            .map_or(0, |i| i + 1);
        for i in 0..pool.len() {
            let ip = pool[(start + i) % pool.len()];
            if !taken.contains(&ip) {
                self.reserve(ip, att)?;
                return Ok(ip);
            }
        }
        Err(CniError::new(
            code::POOL_EXHAUSTED,
            format!("no free address left in {}", self.store.subnet),
        ))
    }

    fn reserve(&self, ip: IpAddr, att: &Attachment) -> CniResult<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path(ip))
            .map_err(|e| io(e, &format!("reserving {ip}")))?;
        writeln!(f, "{}\n{}", att.container_id, att.ifname)
            .map_err(|e| io(e, "writing a reservation"))?;
        fs::write(self.store.dir.join("last_reserved_ip"), ip.to_string())
            .map_err(|e| io(e, "writing last_reserved_ip"))?;
        Ok(())
    }

    /// Releases what `att` holds. Releasing nothing is not an error.
    pub fn release(&self, att: &Attachment) -> CniResult<Option<IpAddr>> {
        let Some(ip) = self.find(att)? else {
            return Ok(None);
        };
        match fs::remove_file(self.path(ip)) {
            Ok(()) => Ok(Some(ip)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e, "releasing")),
        }
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

    /// Addresses still free.
    pub fn free(&self) -> CniResult<usize> {
        let n = self.reservations()?.len();
        Ok(self.store.pool().count().saturating_sub(n))
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
        let s = Store::new(&dir, "net", "10.244.1.0/29".parse().unwrap());
        let l = s.lock().unwrap();
        let a = l.allocate(&att("a"), None).unwrap();
        assert_eq!(a.to_string(), "10.244.1.2", ".1 is the node's");
        assert_eq!(
            l.allocate(&att("a"), None).unwrap(),
            a,
            "the same attachment keeps its address"
        );
        let b = l.allocate(&att("b"), None).unwrap();
        assert_eq!(b.to_string(), "10.244.1.3");
        assert_eq!(l.release(&att("a")).unwrap(), Some(a));
        assert_eq!(
            l.release(&att("a")).unwrap(),
            None,
            "releasing twice is fine"
        );
        let c = l.allocate(&att("c"), None).unwrap();
        assert_eq!(c.to_string(), "10.244.1.4", "not the address just released");
        for id in ["d", "e", "f"] {
            l.allocate(&att(id), None).unwrap();
        }
        // .2 .. .6 are usable in a /29: now all five are taken.
        assert_eq!(l.free().unwrap(), 0);
        assert_eq!(
            l.allocate(&att("g"), None).unwrap_err().code,
            code::POOL_EXHAUSTED
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requested_addresses_and_gc() {
        let dir = tmp("req");
        let s = Store::new(&dir, "net", "10.244.1.0/24".parse().unwrap());
        let l = s.lock().unwrap();
        let ip: IpAddr = "10.244.1.50".parse().unwrap();
        assert_eq!(l.allocate(&att("a"), Some(ip)).unwrap(), ip);
        assert_eq!(
            l.allocate(&att("b"), Some(ip)).unwrap_err().code,
            code::POOL_EXHAUSTED
        );
        assert_eq!(
            l.allocate(&att("b"), Some("10.244.1.1".parse().unwrap()))
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        l.allocate(&att("b"), None).unwrap();
        l.allocate(&att("c"), None).unwrap();
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
    fn concurrent_allocations_are_unique() {
        let dir = tmp("conc");
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let s = Store::new(&dir, "net", "10.244.1.0/24".parse().unwrap());
                    let l = s.lock().unwrap();
                    l.allocate(&att(&format!("c{i}")), None).unwrap()
                })
            })
            .collect();
        let ips: std::collections::BTreeSet<_> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ips.len(), 32);
        fs::remove_dir_all(dir).unwrap();
    }
}
