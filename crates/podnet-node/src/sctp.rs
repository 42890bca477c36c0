//! Probing SCTP on a kernel without SCTP sockets.
//!
//! This kernel cannot open an SCTP socket, but packets are packets: an INIT chunk sent through
//! a raw socket crosses conntrack, NAT and nftables like any other, and a destination without
//! an SCTP stack answers it with ICMP *protocol unreachable* (IPv6: ICMPv6 *parameter problem,
//! unrecognized next header*), quoting it. That answer is the proof that the INIT reached the
//! destination's kernel; silence means it was dropped on the way. An answer to a packet sent
//! to a Service's address comes back translated, quoting the address the probe was sent to.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// SCTP's IP protocol number.
pub const IPPROTO_SCTP: u8 = 132;

/// An SCTP packet holding one INIT chunk, with its CRC32c checksum (RFC 9260, appendix A).
pub fn init_packet(sport: u16, dport: u16, tag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // verification tag: 0 in an INIT
    p.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled below
    p.extend_from_slice(&[1, 0, 0, 20]); // chunk INIT, no flags, 20 bytes
    p.extend_from_slice(&tag.max(1).to_be_bytes()); // initiate tag, never 0
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
    let sum = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// An IPv4 header for SCTP, as an IPPROTO_RAW socket takes it: the kernel fills in the total
/// length, the identification, the checksum and, when zero, the source address.
fn ip_header(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_SCTP, 0, 0];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// The SCTP packet an ICMP protocol-unreachable message quotes, from the message as a raw
/// socket reads it (IP header first): (source, destination, source port, destination port).
pub fn quoted(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16)> {
    let ihl = usize::from(*pkt.first()? & 0x0f) * 4;
    let icmp = pkt.get(ihl..)?;
    // Destination unreachable, protocol unreachable.
    if icmp.first()? != &3 || icmp.get(1)? != &2 {
        return None;
    }
    let inner = icmp.get(8..)?;
    if inner.get(9)? != &IPPROTO_SCTP {
        return None;
    }
    let inner_ihl = usize::from(*inner.first()? & 0x0f) * 4;
    let addr = |o: usize| -> Option<Ipv4Addr> {
        let b = inner.get(o..o + 4)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let ports = inner.get(inner_ihl..inner_ihl + 4)?;
    Some((
        addr(12)?,
        addr(16)?,
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    ))
}

/// An IPv6 header for SCTP, as an IPv6 IPPROTO_RAW socket takes it (the whole header: the
/// kernel fills in nothing).
fn ip6_header(src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[IPPROTO_SCTP, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// The SCTP packet an ICMPv6 parameter problem (unrecognized next header) quotes, from the
/// message as a raw ICMPv6 socket reads it (ICMPv6 first): (source, destination, source port,
/// destination port).
pub fn quoted6(msg: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u16, u16)> {
    if msg.first()? != &4 || msg.get(1)? != &1 {
        return None;
    }
    let inner = msg.get(8..)?;
    if inner.get(6)? != &IPPROTO_SCTP {
        return None;
    }
    let addr = |o: usize| -> Option<Ipv6Addr> {
        let b: [u8; 16] = inner.get(o..o + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(b))
    };
    let ports = inner.get(40..44)?;
    Some((
        addr(8)?,
        addr(24)?,
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    ))
}

/// The source address the kernel would choose towards `to` (what an IPv6 raw socket that
/// writes its own header must put there).
fn source_towards(to: Ipv6Addr) -> std::io::Result<Ipv6Addr> {
    let s = std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
    s.connect((to, 9))?;
    match s.local_addr()?.ip() {
        IpAddr::V6(a) => Ok(a),
        IpAddr::V4(_) => Err(std::io::Error::other("no IPv6 source address")),
    }
}

/// One INIT in flight.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The source address to send from; `None`: the kernel chooses.
    pub from: Option<IpAddr>,
    /// Of either family; probes of both families may go in one call.
    pub to: SocketAddr,
}

/// Sends an INIT for every probe at once from the current thread's namespace, and says for
/// each whether its destination answered before `timeout`. Source ports are chosen from
/// `first_port` on, one per probe, so that answers are told apart.
pub fn reach_all(
    probes: &[Probe],
    first_port: u16,
    timeout: Duration,
) -> std::io::Result<Vec<bool>> {
    let any6 = probes.iter().any(|p| p.to.is_ipv6());
    let icmp = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    icmp.set_nonblocking(true)?;
    let icmp6 = match any6 {
        true => Some(Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::ICMPV6),
        )?),
        false => None,
    };
    if let Some(s) = &icmp6 {
        s.set_nonblocking(true)?;
    }
    // Sent through an IPPROTO_RAW socket, which only sends: a raw socket of protocol SCTP
    // would also take in every INIT that arrives meanwhile, and the kernel answers no INIT that
    // a raw socket took (pods probing each other at once would not answer each other).
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
    let raw6 = match any6 {
        true => Some(Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(255)),
        )?),
        false => None,
    };
    let mut sent = Vec::with_capacity(probes.len());
    for (i, p) in probes.iter().enumerate() {
        let sport = first_port.wrapping_add(i as u16);
        let init = init_packet(sport, p.to.port(), 1 + i as u32);
        match (p.to.ip(), &raw6) {
            (IpAddr::V4(dst), _) => {
                let src = match p.from {
                    Some(IpAddr::V4(a)) => a,
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                let mut packet = ip_header(src, dst);
                packet.extend(init);
                let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(dst, 0)));
                raw.send_to(&packet, &to)?;
            }
            (IpAddr::V6(dst), Some(raw6)) => {
                let src = match p.from {
                    Some(IpAddr::V6(a)) => a,
                    _ => source_towards(dst)?,
                };
                let mut packet = ip6_header(src, dst, init.len());
                packet.extend(init);
                let to = SockAddr::from(SocketAddr::V6(SocketAddrV6::new(dst, 0, 0, 0)));
                raw6.send_to(&packet, &to)?;
            }
            (IpAddr::V6(_), None) => unreachable!("an IPv6 socket where there are IPv6 probes"),
        }
        sent.push(sport);
    }
    let mut answered = vec![false; probes.len()];
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    // Which probe an answer quoting (source, destination, ports) is for.
    let mark = |answered: &mut [bool], src: IpAddr, dst: IpAddr, sport: u16, dport: u16| {
        for (i, p) in probes.iter().enumerate() {
            let from_ok = p.from.is_none_or(|f| f == src);
            if from_ok && dst == p.to.ip() && dport == p.to.port() && sport == sent[i] {
                answered[i] = true;
            }
        }
    };
    while Instant::now() < deadline && answered.iter().any(|a| !a) {
        let mut idle = true;
        match (&icmp).read(&mut buf) {
            Ok(n) => {
                idle = false;
                if let Some((src, dst, sport, dport)) = quoted(&buf[..n]) {
                    mark(&mut answered, src.into(), dst.into(), sport, dport);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if let Some(mut s) = icmp6.as_ref() {
            match s.read(&mut buf) {
                Ok(n) => {
                    idle = false;
                    if let Some((src, dst, sport, dport)) = quoted6(&buf[..n]) {
                        mark(&mut answered, src.into(), dst.into(), sport, dport);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_quoted_back_is_recognised() {
        let init = init_packet(40000, 80, 7);
        assert_eq!(init.len(), 32);
        // The checksum covers the packet with the checksum field zero.
        let mut zeroed = init.clone();
        zeroed[8..12].fill(0);
        let sum = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&zeroed);
        assert_eq!(init[8..12], sum.to_le_bytes());
        // An ICMP protocol unreachable from 10.0.0.2 quoting 10.0.0.1 -> 10.0.0.2.
        let ip = |proto: u8, src: [u8; 4], dst: [u8; 4]| {
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
            h.extend_from_slice(&src);
            h.extend_from_slice(&dst);
            h
        };
        let mut msg = ip(1, [10, 0, 0, 2], [10, 0, 0, 1]);
        msg.extend_from_slice(&[3, 2, 0, 0, 0, 0, 0, 0]);
        msg.extend(ip(IPPROTO_SCTP, [10, 0, 0, 1], [10, 0, 0, 2]));
        msg.extend_from_slice(&init[..8]);
        assert_eq!(
            quoted(&msg),
            Some((
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                40000,
                80
            ))
        );
        // Port unreachable is another answer.
        msg[21] = 3;
        assert_eq!(quoted(&msg), None);
    }
}
