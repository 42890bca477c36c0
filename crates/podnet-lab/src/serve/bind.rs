//! Binding sockets inside a namespace: a socket stays in the namespace it was created in, so
//! each is bound on a fresh thread that has entered the namespace ([`podnet_node::sys`]); then
//! one tokio runtime serves them all.

use std::net::SocketAddr;

use podnet_model::Protocol;
use podnet_node::sys;

use crate::LabError;

/// A port and its protocol.
pub type PortKey = (u16, Protocol);

/// A socket bound inside a namespace, ready for tokio.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

/// The name of a socket in the keeper's store ([`podnet_fdstore`]).
/// The accept queue of the test servers' TCP listeners (`net.core.somaxconn`'s default).
pub const LISTEN_BACKLOG: i32 = 4096;

pub fn store_name(netns: &str, (port, proto): PortKey) -> String {
    format!("{netns} {proto} {port}")
}

/// Binds `[::]:<port>` for each (port, protocol) inside the named namespace (one socket for
/// both families: `net.ipv6.bindv6only` is 0 in the lab's namespaces), or takes back
/// the socket the keeper held for it (a server started again). A port that cannot be bound is
/// reported on stderr and left out (SCTP: this kernel has no SCTP sockets). Must be called
/// from within the tokio runtime that will serve the sockets.
///
/// A TCP listener's accept queue is [`LISTEN_BACKLOG`] (the kernel caps it at
/// `net.core.somaxconn`).
pub fn bind_in(
    netns: &str,
    who: &str,
    ports: &[(u16, Protocol)],
) -> Result<Vec<(PortKey, Bound)>, LabError> {
    let std_sockets = sys::in_netns(&sys::netns_path(netns), || {
        let mut out = Vec::new();
        for &(port, proto) in ports {
            let addr = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
            let name = store_name(netns, (port, proto));
            let bound = match proto {
                Protocol::Tcp => podnet_fdstore::held(&name, || std::net::TcpListener::bind(addr))
                    .map(StdSocket::Tcp),
                Protocol::Udp => podnet_fdstore::held(&name, || std::net::UdpSocket::bind(addr))
                    .map(StdSocket::Udp),
                Protocol::Sctp => {
                    eprintln!(
                        "{who}: SCTP port {port}: this kernel has no SCTP sockets; not served"
                    );
                    continue;
                }
            };
            match bound {
                Ok(b) => out.push(((port, proto), b)),
                Err(e) => eprintln!("{who}: {proto} port {port}: {e}"),
            }
        }
        Ok(out)
    })?;
    let tokio_err = |source| LabError::Io {
        what: format!("{who}: handing a socket to tokio"),
        source,
    };
    std_sockets
        .into_iter()
        .map(|(at, s)| {
            let bound = match s {
                StdSocket::Tcp(l) => {
                    // std listens with a queue of 128; a burst of new connections to a server
                    // short of CPU overflowed it (a SYN dropped, the client's connect waiting
                    // for its retransmission a second later: bench/flows.py, with
                    // TcpExtListenOverflows 1 in the server pod). Go's servers (upstream's
                    // test images) listen with the kernel's maximum: so do these.
                    socket2::SockRef::from(&l)
                        .listen(LISTEN_BACKLOG)
                        .map_err(tokio_err)?;
                    l.set_nonblocking(true).map_err(tokio_err)?;
                    Bound::Tcp(tokio::net::TcpListener::from_std(l).map_err(tokio_err)?)
                }
                StdSocket::Udp(u) => {
                    u.set_nonblocking(true).map_err(tokio_err)?;
                    Bound::Udp(tokio::net::UdpSocket::from_std(u).map_err(tokio_err)?)
                }
            };
            Ok((at, bound))
        })
        .collect()
}

/// A socket as bound, before tokio takes it.
enum StdSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}
