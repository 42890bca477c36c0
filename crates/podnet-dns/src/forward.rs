//! Relaying queries outside the cluster domain to upstream servers, as CoreDNS's `forward`
//! plugin does: the client's query goes out as it came (with a new ID), over UDP first and over
//! TCP when the UDP answer is truncated (RFC 7766 5).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The first answer any upstream gives, in order; None when none answers within `timeout`.
pub(crate) async fn relay(
    upstreams: &[SocketAddr],
    query: &[u8],
    timeout: Duration,
) -> Option<Message> {
    if query.len() < 12 {
        return None;
    }
    let id: u16 = rand_id();
    let mut out = query.to_vec();
    out[..2].copy_from_slice(&id.to_be_bytes());
    for up in upstreams {
        let attempt = async {
            let reply = udp(*up, &out, id).await?;
            if reply.metadata.truncation {
                tcp(*up, &out, id).await
            } else {
                Some(reply)
            }
        };
        if let Ok(Some(m)) = tokio::time::timeout(timeout, attempt).await {
            return Some(m);
        }
    }
    None
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u16
}

async fn udp(up: SocketAddr, query: &[u8], id: u16) -> Option<Message> {
    let bind: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(up).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.metadata.id == id {
                return Some(m);
            }
        }
    }
}

async fn tcp(up: SocketAddr, query: &[u8], id: u16) -> Option<Message> {
    let mut s = tokio::net::TcpStream::connect(up).await.ok()?;
    let len = u16::try_from(query.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await.ok()?;
    let n = s.read_u16().await.ok()?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.ok()?;
    Message::from_vec(&buf).ok().filter(|m| m.metadata.id == id)
}
