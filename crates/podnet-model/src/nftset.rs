//! Set and map elements as the kernel holds them: a key of 32-bit registers and its data.
//!
//! A transaction that only adds and deletes elements of sets that already exist (most of a
//! running node's changes: an endpoint, a Service, a pod) needs none of nft's parser: the
//! elements go to the kernel as one netlink batch, which it applies as one transaction, as it
//! does `nft -f`. The crates that own a table say what its elements are here (pure data); the
//! node's effects send them.
//!
//! The layout is nftables' (`nft_set_desc`, `concat`): a concatenated key puts each field in
//! whole registers, in its order, zero-padded to 4 bytes; addresses and ports in network order,
//! a `meta l4proto` in one byte, a `numgen` or `ct mark` value as a host-order `u32`.

use std::net::IpAddr;

use crate::{IpFamily, Protocol};

/// A key or a data value being built, field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registers(pub Vec<u8>);

impl Registers {
    pub fn new() -> Registers {
        Registers(Vec::with_capacity(40))
    }

    fn field(mut self, bytes: &[u8]) -> Registers {
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    /// `ipv4_addr` or `ipv6_addr`.
    pub fn addr(self, ip: IpAddr) -> Registers {
        match ip {
            IpAddr::V4(a) => self.field(&a.octets()),
            IpAddr::V6(a) => self.field(&a.octets()),
        }
    }

    /// `inet_proto` (`meta l4proto`).
    pub fn proto(self, p: Protocol) -> Registers {
        self.proto_number(match p {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        })
    }

    /// `inet_proto` by number.
    pub fn proto_number(self, p: u8) -> Registers {
        self.field(&[p])
    }

    /// `inet_service` (`th dport`).
    pub fn port(self, port: u16) -> Registers {
        self.field(&port.to_be_bytes())
    }

    /// A host-order integer: `numgen`, `ct mark`, `meta mark`.
    pub fn host_u32(self, n: u32) -> Registers {
        self.field(&n.to_ne_bytes())
    }
}

/// What a map's element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElementData {
    Value(Vec<u8>),
    Goto(String),
    Jump(String),
    Accept,
    Drop,
}

/// One element of one set or map of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetElement {
    /// The table's family (`ip` or `ip6`).
    pub family: IpFamily,
    pub table: &'static str,
    pub set: String,
    pub key: Vec<u8>,
    /// The last key of a range, in a set of concatenated ranges (`flags interval`).
    pub key_end: Option<Vec<u8>>,
    pub data: Option<ElementData>,
}

/// One step of an element-only transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementOp {
    Delete(Vec<SetElement>),
    Add(Vec<SetElement>),
}

impl ElementOp {
    pub fn elements(&self) -> &[SetElement] {
        match self {
            ElementOp::Delete(v) | ElementOp::Add(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_take_whole_registers_in_network_or_host_order() {
        let k = Registers::new()
            .addr("10.96.0.1".parse().unwrap())
            .proto(Protocol::Tcp)
            .port(80)
            .host_u32(1);
        let mut want = vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0];
        want.extend_from_slice(&1u32.to_ne_bytes());
        assert_eq!(k.0, want);
        let k6 = Registers::new().addr("fd00::1".parse().unwrap()).port(443);
        assert_eq!(k6.0.len(), 20);
        assert_eq!(&k6.0[16..], &[1, 187, 0, 0]);
    }
}

/// An address as `Display` writes it (RFC 5952: lower-case hexadecimal, the longest run of
/// zero groups as `::`), written without the formatting machinery's per-group calls: a
/// node's first load renders a hundred thousand of them.
#[derive(Debug, Clone, Copy)]
pub struct Addr(pub IpAddr);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = match self.0 {
            IpAddr::V4(a) => {
                let mut buf = [0u8; 15];
                let mut n = 0;
                for (i, o) in a.octets().iter().enumerate() {
                    if i > 0 {
                        buf[n] = b'.';
                        n += 1;
                    }
                    if *o >= 100 {
                        buf[n] = b'0' + o / 100;
                        n += 1;
                    }
                    if *o >= 10 {
                        buf[n] = b'0' + o / 10 % 10;
                        n += 1;
                    }
                    buf[n] = b'0' + o % 10;
                    n += 1;
                }
                return f.write_str(std::str::from_utf8(&buf[..n]).expect("ascii"));
            }
            IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => return a.fmt(f),
            IpAddr::V6(a) => a.segments(),
        };
        // The longest run of two or more zero groups (the first of equal ones).
        let (mut best, mut best_len, mut at, mut len) = (0, 0, 0, 0);
        for (i, g) in a.iter().enumerate() {
            if *g == 0 {
                if len == 0 {
                    at = i;
                }
                len += 1;
                if len > best_len {
                    (best, best_len) = (at, len);
                }
            } else {
                len = 0;
            }
        }
        if best_len < 2 {
            best_len = 0;
            best = 8;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 39];
        let mut n = 0;
        let mut i = 0;
        while i < 8 {
            if i == best {
                buf[n] = b':';
                buf[n + 1] = b':';
                n += 2;
                i += best_len;
                continue;
            }
            if i > 0 && i != best + best_len {
                buf[n] = b':';
                n += 1;
            }
            let g = a[i];
            let mut started = false;
            for shift in [12, 8, 4, 0] {
                let d = (g >> shift) & 0xf;
                if d != 0 || started || shift == 0 {
                    buf[n] = HEX[d as usize];
                    n += 1;
                    started = true;
                }
            }
            i += 1;
        }
        f.write_str(std::str::from_utf8(&buf[..n]).expect("ascii"))
    }
}

#[cfg(test)]
mod addr_tests {
    use super::Addr;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    proptest! {
        #[test]
        fn written_as_display_writes_it(
            groups in proptest::collection::vec(prop_oneof![Just(0u16), Just(1u16), any::<u16>()], 8),
            v4 in any::<u32>(),
        ) {
            let a = Ipv6Addr::new(groups[0], groups[1], groups[2], groups[3], groups[4], groups[5], groups[6], groups[7]);
            prop_assert_eq!(Addr(IpAddr::V6(a)).to_string(), a.to_string());
            let b = Ipv4Addr::from(v4);
            prop_assert_eq!(Addr(IpAddr::V4(b)).to_string(), b.to_string());
            let m = b.to_ipv6_mapped();
            prop_assert_eq!(Addr(IpAddr::V6(m)).to_string(), m.to_string());
        }
    }

    #[test]
    fn the_corners() {
        for s in [
            "::",
            "::1",
            "1::",
            "fd00:10:96::a",
            "1:0:0:1:0:0:0:1",
            "1:0:1:0:1:0:1:0",
            "0.0.0.0",
            "255.255.255.255",
            "10.96.0.10",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(Addr(ip).to_string(), ip.to_string(), "{s}");
        }
    }
}
