//! The keeper holds a server's sockets (the lab's servers'), as systemd's file descriptor store does for a
//! service: a server killed and started again takes back the very sockets the one before had
//! bound. Meanwhile they stay open, so the kernel still completes clients' connections (they
//! wait in the listener's backlog, datagrams in the socket's buffer) for the next server to
//! serve: no client sees a refused connection while the server is away.
//!
//! The keeper listens on a `SOCK_SEQPACKET` Unix socket (its path in [`ENV`] for the servers
//! it starts). Each message is one line of text, with a descriptor attached (`SCM_RIGHTS`)
//! where it carries one:
//! - keeper → a server that connects: `have NAME` + fd for each socket held, then `end`;
//! - server → keeper: `put NAME` + fd for each socket it binds, `drop NAME` when it closes one
//!   for good (a pod or a port went away).

use std::collections::BTreeMap;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};

/// The environment variable that tells a server where its keeper's store is.
pub const ENV: &str = "PODNET_FD_STORE";

fn send(sock: BorrowedFd<'_>, text: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let iov = [IoSlice::new(text.as_bytes())];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = fd.map(|f| [f]);
    if let Some(fds) = &fds {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::empty())?;
    Ok(())
}

/// One message; None at the end of the stream (the other side is gone).
fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<(String, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?.bytes
    };
    let mut fd = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for f in fds {
                fd.get_or_insert(f);
            }
        }
    }
    if n == 0 && fd.is_none() {
        return Ok(None);
    }
    Ok(Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fd)))
}

/// The keeper's store: the sockets of the lab's server, by name.
#[derive(Default, Clone)]
pub struct Store {
    fds: Arc<Mutex<BTreeMap<String, OwnedFd>>>,
}

impl Store {
    /// Listens at `path` (replacing a file left there) and serves each server that connects,
    /// on a thread of its own.
    pub fn listen(&self, path: &Path) -> io::Result<()> {
        let _ = std::fs::remove_file(path);
        let l = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&l, &SocketAddrUnix::new(path)?)?;
        rustix::net::listen(&l, 16)?;
        let store = self.clone();
        std::thread::spawn(move || loop {
            match rustix::net::accept_with(&l, rustix::net::SocketFlags::CLOEXEC) {
                Ok(conn) => {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = store.serve(conn) {
                            eprintln!("the socket store: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("the socket store: accepting: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        });
        Ok(())
    }

    /// One server: what is held goes to it, then the store follows what it says until it is
    /// gone.
    fn serve(&self, conn: OwnedFd) -> io::Result<()> {
        {
            let fds = self.fds.lock().expect("the store's lock");
            for (name, fd) in fds.iter() {
                send(conn.as_fd(), &format!("have {name}"), Some(fd.as_fd()))?;
            }
            send(conn.as_fd(), "end", None)?;
        }
        while let Some((text, fd)) = recv(conn.as_fd())? {
            let mut held = self.fds.lock().expect("the store's lock");
            match (text.split_once(' '), fd) {
                (Some(("put", name)), Some(fd)) => {
                    held.insert(name.to_string(), fd);
                }
                (Some(("drop", name)), _) => {
                    held.remove(name);
                }
                _ => eprintln!("the socket store: {text:?} is not a message"),
            }
        }
        Ok(())
    }

    /// How many sockets are held.
    pub fn len(&self) -> usize {
        self.fds.lock().expect("the store's lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A server's side: the sockets the keeper handed over, and the way to hand it new ones.
pub struct Client {
    sock: OwnedFd,
    handed: Mutex<BTreeMap<String, OwnedFd>>,
    /// The names of the sockets this server holds in the store.
    owned: Mutex<std::collections::BTreeSet<String>>,
}

impl Client {
    /// Connects to the store at `path` and takes what it holds.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let sock = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&sock, &SocketAddrUnix::new(path)?)?;
        let mut handed = BTreeMap::new();
        loop {
            match recv(sock.as_fd())? {
                None => return Err(io::Error::other("the keeper closed the socket store")),
                Some((t, _)) if t == "end" => break,
                Some((t, Some(fd))) => {
                    if let Some(name) = t.strip_prefix("have ") {
                        handed.insert(name.to_string(), fd);
                    }
                }
                Some((t, None)) => {
                    return Err(io::Error::other(format!("the socket store sent {t:?}")))
                }
            }
        }
        Ok(Client {
            sock,
            handed: Mutex::new(handed),
            owned: Mutex::new(Default::default()),
        })
    }

    /// How many sockets were handed over and not taken yet.
    pub fn untaken(&self) -> usize {
        self.handed.lock().expect("the client's lock").len()
    }

    /// The socket the keeper held under `name`, if any (taken: asked again, None).
    pub fn take(&self, name: &str) -> Option<OwnedFd> {
        let fd = self
            .handed
            .lock()
            .expect("the client's lock")
            .remove(name)?;
        self.owned
            .lock()
            .expect("the client's lock")
            .insert(name.to_string());
        Some(fd)
    }

    /// Hands a socket just bound to the keeper.
    pub fn put(&self, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        send(self.sock.as_fd(), &format!("put {name}"), Some(fd))?;
        self.owned
            .lock()
            .expect("the client's lock")
            .insert(name.to_string());
        Ok(())
    }

    /// Every socket whose name starts with `prefix` is closed for good.
    pub fn forget_prefix(&self, prefix: &str) {
        let names: Vec<String> = self
            .owned
            .lock()
            .expect("the client's lock")
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        for n in names {
            self.forget(&n);
        }
    }

    /// The socket `name` is closed for good.
    pub fn forget(&self, name: &str) {
        self.handed.lock().expect("the client's lock").remove(name);
        self.owned.lock().expect("the client's lock").remove(name);
        if let Err(e) = send(self.sock.as_fd(), &format!("drop {name}"), None) {
            eprintln!("the socket store: dropping {name}: {e}");
        }
    }

    /// Forgets every socket handed over and not taken (what it served is gone).
    pub fn forget_untaken(&self) {
        let names: Vec<String> = self
            .handed
            .lock()
            .expect("the client's lock")
            .keys()
            .cloned()
            .collect();
        for n in names {
            self.forget(&n);
        }
    }

    /// A socket (TCP listener, UDP socket): the one held under `name`, or a new one from
    /// `bind`, handed to the keeper.
    pub fn socket<S: From<OwnedFd> + AsFd>(
        &self,
        name: &str,
        bind: impl FnOnce() -> io::Result<S>,
    ) -> io::Result<S> {
        if let Some(fd) = self.take(name) {
            return Ok(S::from(fd));
        }
        let s = bind()?;
        self.put(name, s.as_fd())?;
        Ok(s)
    }
}

/// The store of this process, if a keeper started it: set once at start.
static CLIENT: std::sync::OnceLock<Option<Client>> = std::sync::OnceLock::new();

/// Connects this process to its keeper's store, when a keeper started it ([`ENV`]); returns
/// how many sockets it handed over.
pub fn init() -> io::Result<usize> {
    let path: Option<PathBuf> = std::env::var_os(ENV).map(PathBuf::from);
    let c = match path {
        Some(p) => Some(Client::connect(&p).map_err(|e| {
            io::Error::new(e.kind(), format!("the socket store {}: {e}", p.display()))
        })?),
        None => None,
    };
    let n = c.as_ref().map_or(0, Client::untaken);
    let _ = CLIENT.set(c);
    Ok(n)
}

/// The store of this process, if a keeper started it.
pub fn client() -> Option<&'static Client> {
    CLIENT.get().and_then(Option::as_ref)
}

/// A socket of this process's server: taken back from the keeper's store, or bound and handed
/// to it ([`Client::socket`]); without a keeper, bound.
pub fn held<S: From<OwnedFd> + AsFd>(
    name: &str,
    bind: impl FnOnce() -> io::Result<S>,
) -> io::Result<S> {
    match client() {
        Some(c) => c.socket(name, bind),
        None => bind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_put_by_one_server_is_handed_to_the_next_and_dropped_ones_are_not() {
        let dir = std::env::temp_dir().join(format!("podnet-fdstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fds.sock");
        let store = Store::default();
        store.listen(&path).unwrap();
        let first = Client::connect(&path).unwrap();
        let l = first
            .socket("pod 80", || std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = l.local_addr().unwrap();
        let _u = first
            .socket("pod 53", || std::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        first.forget("pod 53");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.len() != 1 {
            assert!(std::time::Instant::now() < deadline, "{} held", store.len());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The first server dies.
        drop(first);
        drop(l);
        // While no server runs, a client's connection is still accepted by the kernel.
        let c = std::net::TcpStream::connect(addr).unwrap();
        let second = Client::connect(&path).unwrap();
        assert_eq!(second.untaken(), 1);
        assert!(second.take("pod 53").is_none());
        let l = second
            .socket::<std::net::TcpListener>("pod 80", || panic!("the held socket comes back"))
            .unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
