//! A logged packet, decoded from nfnetlink_log's messages: why it was logged (the prefix),
//! its addresses and ports (from the headers the kernel copied), the interfaces, and the
//! destination its connection was first sent to (conntrack's original tuple: a Service's
//! address before the proxy translated it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator};
use netlink_packet_netfilter::nflog::{PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};

use crate::{FlowError, Reason};

/// IP protocol numbers with ports.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub reason: Reason,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number.
    pub protocol: u8,
    /// 0 for a protocol without ports.
    pub sport: u16,
    pub dport: u16,
    /// Where the connection was first sent, when conntrack says (before any translation).
    pub original_dst: Option<(IpAddr, u16)>,
    /// The tables said the destination was translated (sent to a Service), without saying
    /// from what (a kernel that does not attach conntrack to logged packets).
    pub translated: bool,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
}

/// Addresses, protocol and ports read from a packet's first bytes (None: too short, or not
/// IP).
pub fn headers(b: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, Option<&[u8]>) = match b.first()? >> 4 {
        4 => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            if ihl < 20 || b.len() < 20 {
                return None;
            }
            let v4 = |i: usize| IpAddr::V4(Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]));
            // Only the first fragment carries the transport header.
            let offset = u16::from_be_bytes([b[6], b[7]]) & 0x1fff;
            (
                v4(12),
                v4(16),
                b[9],
                (offset == 0).then(|| b.get(ihl..)).flatten(),
            )
        }
        6 => {
            if b.len() < 40 {
                return None;
            }
            let v6 = |i: usize| {
                let a: [u8; 16] = b[i..i + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(a))
            };
            (v6(8), v6(24), b[6], b.get(40..))
        }
        _ => return None,
    };
    let (sport, dport) = match (proto, l4) {
        (TCP | UDP | SCTP, Some(l4)) if l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        _ => (0, 0),
    };
    Some((src, dst, proto, sport, dport))
}

/// nfnetlink_log's attribute with the packet's conntrack entry (nested CTA_ attributes).
const NFULA_CT: u16 = 18;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_DST_PORT: u16 = 3;

/// The nested attributes in `value`, by kind (flags masked off).
fn nested(value: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(value)
        .filter_map(Result::ok)
        .map(|n: NlaBuffer<&[u8]>| {
            let (kind, len) = (n.kind(), usize::from(n.length()));
            let all: &[u8] = n.into_inner();
            (kind, all.get(4..len).unwrap_or_default())
        })
}

/// The original destination in a conntrack entry's attributes.
fn original_dst(ct: &[u8]) -> Option<(IpAddr, u16)> {
    let (_, tuple) = nested(ct).find(|(k, _)| *k == CTA_TUPLE_ORIG)?;
    let mut ip = None;
    let mut port = 0;
    for (k, v) in nested(tuple) {
        match k {
            CTA_TUPLE_IP => {
                for (k, v) in nested(v) {
                    ip = match (k, v.len()) {
                        (CTA_IP_V4_DST, 4) => {
                            Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])))
                        }
                        (CTA_IP_V6_DST, 16) => {
                            let a: [u8; 16] = v.try_into().expect("16 bytes");
                            Some(IpAddr::V6(Ipv6Addr::from(a)))
                        }
                        _ => ip,
                    };
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, v) in nested(v) {
                    if k == CTA_PROTO_DST_PORT && v.len() == 2 {
                        port = u16::from_be_bytes([v[0], v[1]]);
                    }
                }
            }
            _ => {}
        }
    }
    ip.map(|ip| (ip, port))
}

/// The packets in one read of the socket (one or more netlink messages). A message logged by
/// a prefix that is not podnet's is passed over; acknowledgements too.
pub fn decode(buf: &[u8]) -> Result<Vec<Packet>, FlowError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > rest.len() {
            return Err(FlowError::Decode(format!(
                "a message of {len} bytes in {} left",
                rest.len()
            )));
        }
        let msg = <NetlinkMessage<NetfilterMessage>>::deserialize(&rest[..len])
            .map_err(|e| FlowError::Decode(e.to_string()))?;
        if let Some(p) = packet(&msg) {
            out.push(p);
        }
        // Messages are aligned to 4 bytes.
        let step = (len + 3) & !3;
        rest = rest.get(step..).unwrap_or_default();
    }
    Ok(out)
}

fn packet(msg: &NetlinkMessage<NetfilterMessage>) -> Option<Packet> {
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
        ..
    }) = &msg.payload
    else {
        return None;
    };
    let mut reason = None;
    let mut translated = false;
    let mut head = None;
    let (mut in_if, mut out_if, mut original) = (None, None, None);
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => {
                if let Some((r, t)) = Reason::from_prefix(&p.to_string_lossy()) {
                    reason = Some(r);
                    translated = t;
                }
            }
            PacketNla::Payload(b) => head = headers(b),
            PacketNla::IfIndexInDev(i) => in_if = Some(*i),
            PacketNla::IfIndexOutDev(i) => out_if = Some(*i),
            PacketNla::Other(n) if n.kind() & 0x3fff == NFULA_CT => {
                let mut v = vec![0; n.value_len()];
                n.emit_value(&mut v);
                original = original_dst(&v);
            }
            _ => {}
        }
    }
    let (src, dst, protocol, sport, dport) = head?;
    Some(Packet {
        reason: reason?,
        src,
        dst,
        protocol,
        sport,
        dport,
        original_dst: original,
        translated,
        in_if,
        out_if,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute: length, kind, value, padded to 4 bytes.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// An nfnetlink_log packet message as the kernel sends it.
    fn message(attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let mut m = Vec::new();
        let len = 16 + 4 + body.len();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        // NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET (0)
        m.extend_from_slice(&(4u16 << 8).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: AF_INET, version 0, resource id (the group), big-endian.
        m.extend_from_slice(&[2, 0]);
        m.extend_from_slice(&crate::GROUP.to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn tcp_syn_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn a_dropped_syn_with_its_original_destination() {
        let ct = nla(
            CTA_TUPLE_ORIG | 0x8000,
            &[
                nla(
                    CTA_TUPLE_IP | 0x8000,
                    &[
                        nla(1, &[10, 244, 1, 5]),
                        nla(CTA_IP_V4_DST, &[10, 96, 0, 10]),
                    ]
                    .concat(),
                ),
                nla(
                    CTA_TUPLE_PROTO | 0x8000,
                    &[
                        nla(1, &[TCP]),
                        nla(2, &43210u16.to_be_bytes()),
                        nla(CTA_PROTO_DST_PORT, &80u16.to_be_bytes()),
                    ]
                    .concat(),
                ),
            ]
            .concat(),
        );
        let mut buf = message(&[
            nla(10, b"podnet:policy-ingress\0"),
            nla(4, &7u32.to_be_bytes()),
            nla(
                9,
                &tcp_syn_v4([10, 244, 1, 5], [10, 244, 2, 9], 43210, 8080),
            ),
            nla(NFULA_CT | 0x8000, &ct),
        ]);
        // A second message in the same read, not podnet's: passed over.
        buf.extend(message(&[
            nla(10, b"other\0"),
            nla(9, &tcp_syn_v4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2)),
        ]));
        let got = decode(&buf).unwrap();
        assert_eq!(
            got,
            vec![Packet {
                reason: Reason::PolicyIngress,
                src: "10.244.1.5".parse().unwrap(),
                dst: "10.244.2.9".parse().unwrap(),
                protocol: TCP,
                sport: 43210,
                dport: 8080,
                original_dst: Some(("10.96.0.10".parse().unwrap(), 80)),
                translated: false,
                in_if: Some(7),
                out_if: None,
            }]
        );
    }

    #[test]
    fn headers_of_v6_and_of_what_is_not_ip() {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, UDP, 64];
        p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&5353u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        assert_eq!(
            headers(&p),
            Some((
                "fd00::1".parse().unwrap(),
                "fd00::2".parse().unwrap(),
                UDP,
                5353,
                53
            ))
        );
        assert_eq!(headers(&[0x20; 40]), None);
        assert_eq!(headers(&[0x45; 10]), None);
        // A later fragment: no ports.
        let mut frag = tcp_syn_v4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2);
        frag[7] = 10;
        assert_eq!(headers(&frag).map(|h| (h.3, h.4)), Some((0, 0)));
    }

    #[test]
    fn a_truncated_read_is_an_error() {
        let m = message(&[nla(10, b"podnet:no-endpoints\0")]);
        assert!(decode(&m[..m.len() - 8]).is_err());
        // Without headers there is nothing to tell: passed over.
        assert_eq!(decode(&m).unwrap(), vec![]);
    }
}
