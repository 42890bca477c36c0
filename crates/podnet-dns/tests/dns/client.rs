//! A minimal stub-resolver client: one query, one answer, over UDP or TCP.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;

pub struct Dns {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

impl Dns {
    pub fn udp(&self, q: &Message) -> Message {
        Message::from_vec(&self.udp_raw(&q.to_vec().unwrap()).expect("an answer")).unwrap()
    }

    /// Sends raw bytes over UDP; None if nothing comes back within 500 ms.
    pub fn udp_raw(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.send_to(bytes, self.udp).unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    }

    pub fn tcp(&self, q: &Message) -> Message {
        let mut s = std::net::TcpStream::connect(self.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let b = q.to_vec().unwrap();
        let mut framed = (b.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&b);
        s.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        Message::from_vec(&buf).unwrap()
    }
}
