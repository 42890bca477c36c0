//! The socket of podnet's nfnetlink_log group, in the network namespace it is opened in (a
//! node's: open it on a thread that entered the namespace; the socket stays there).

use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, Timeout,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::packet::{decode, Packet};
use crate::{FlowError, GROUP, SNAPLEN};

/// How long the kernel may hold logged packets to send several in one message (its default
/// is a second: a drop must show within one). With [`BATCH`] at 1 it holds none.
const FLUSH: Duration = Duration::from_millis(10);
/// How many packets the kernel gathers before it sends them at once: each at once (at 32, a
/// lone drop waited for the flush, 21 ms at the median; the agent reads 50,000 single
/// messages a second).
const BATCH: u32 = 1;
/// The socket's receive buffer: room for a burst while the reader is busy.
const RECEIVE_BUFFER: usize = 4 << 20;

/// podnet's group, bound.
pub struct Reader {
    socket: Socket,
    buf: Vec<u8>,
    conntrack: bool,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> FlowError + '_ {
    move |source| FlowError::Socket {
        what: what.to_string(),
        source,
    }
}

impl Reader {
    /// Binds [`GROUP`] in the calling thread's network namespace: the headers of each
    /// packet logged to it, with its conntrack entry. Fails if another socket holds the group
    /// (EBUSY).
    pub fn open() -> Result<Reader, FlowError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io("opening the socket"))?;
        socket.bind_auto().map_err(io("binding the socket"))?;
        socket
            .set_rx_buf_sz(RECEIVE_BUFFER)
            .map_err(io("sizing the receive buffer"))?;
        let mut r = Reader {
            socket,
            buf: vec![0; 1 << 16],
            conntrack: false,
        };
        r.config("binding the group", vec![ConfigCmd::Bind.into()])?;
        r.config(
            "the group's settings",
            vec![
                ConfigMode::new_packet(SNAPLEN).into(),
                ConfigNla::QThresh(BATCH),
                Timeout::from(FLUSH).into(),
            ],
        )?;
        // Each packet's conntrack entry (its original destination: the Service it was sent
        // to, before the proxy's DNAT) needs a kernel built with
        // CONFIG_NETFILTER_NETLINK_GLUE_CT; without it the kernel answers EOPNOTSUPP.
        r.conntrack = match r.config("conntrack entries", vec![ConfigFlags::CONNTRACK.into()]) {
            Ok(()) => true,
            Err(FlowError::Refused { code, .. }) if code == -libc::EOPNOTSUPP => false,
            Err(e) => return Err(e),
        };
        Ok(r)
    }

    /// Whether the kernel sends each packet's conntrack entry (then a packet sent to a
    /// Service says which, after the DNAT too).
    pub fn with_conntrack(&self) -> bool {
        self.conntrack
    }

    /// One request to the group's instance, and the kernel's answer.
    fn config(&mut self, what: &str, nlas: Vec<ConfigNla>) -> Result<(), FlowError> {
        let req = config_request(NetfilterProtoFamily::Unspec, GROUP, nlas);
        let mut out = vec![0; req.header.length as usize];
        req.serialize(&mut out);
        self.socket.send(&out, 0).map_err(io(what))?;
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.buf[..], 0)
                .map_err(io(what))?;
            let msg = <NetlinkMessage<NetfilterMessage>>::deserialize(&self.buf[..n])
                .map_err(|e| FlowError::Decode(e.to_string()))?;
            match msg.payload {
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        None => Ok(()),
                        Some(code) => Err(FlowError::Refused {
                            what: what.to_string(),
                            code: code.get(),
                        }),
                    }
                }
                // A packet logged before the answer came: not ours to keep yet.
                _ => continue,
            }
        }
    }

    /// Waits for the next packets logged ([`FlowError::Overrun`] when the kernel had to
    /// drop some: the reader may go on).
    pub fn read(&mut self) -> Result<Vec<Packet>, FlowError> {
        match self.socket.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => decode(&self.buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(FlowError::Overrun),
            Err(e) => Err(io("reading")(e)),
        }
    }
}

impl Drop for Reader {
    /// Gives the group back at once. Closing the socket alone is not enough: a process that
    /// forks (any `Command` on another thread) holds the socket until its child's exec, and
    /// until then the kernel keeps the group bound to it, so a reader opened next would be
    /// refused (EPERM). The kernel's answer is read, so the group is free when this returns.
    fn drop(&mut self) {
        // Failing, the close that follows still gives the group back (later).
        let _ = self.config("unbinding the group", vec![ConfigCmd::Unbind.into()]);
    }
}
