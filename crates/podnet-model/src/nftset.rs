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
        while self.0.len() % 4 != 0 {
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
        self.field(&[match p {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }])
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
