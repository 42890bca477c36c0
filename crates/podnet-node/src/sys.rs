//! The two ways podnet touches the system: entering a network namespace, and running a command.
//!
//! `setns` changes the namespace of the calling thread only, so [`in_netns`] runs its closure
//! on a fresh OS thread that enters the namespace first: sockets it creates stay there, and
//! processes it starts inherit it. No tokio worker thread ever changes namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sched::{setns, CloneFlags};

use crate::NodeError;

/// Where a named network namespace (`ip netns add NAME`) is mounted.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `f` inside the network namespace at `path`, on a fresh thread.
pub fn in_netns<T, F>(path: &Path, f: F) -> Result<T, NodeError>
where
    F: FnOnce() -> Result<T, NodeError> + Send,
    T: Send,
{
    let file = std::fs::File::open(path).map_err(|source| NodeError::Netns {
        path: path.to_path_buf(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| NodeError::Netns {
                path: path.to_path_buf(),
                source: std::io::Error::from(e),
            })?;
            f()
        })
        .join()
        .map_err(|_| NodeError::Panicked {
            what: format!("a thread in {}", path.display()),
        })?
    })
}

/// Runs a command to its end, with `input` on its standard input; its standard output on
/// success, its standard error in the error otherwise.
pub fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<String, NodeError> {
    let out = output(cmd, input)?;
    if !out.status.success() {
        return Err(NodeError::Command {
            cmd: shown(cmd),
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command to its end, with `input` on its standard input, and returns its status and
/// output whatever the status (for protocols that answer on stdout when they fail, like CNI).
pub fn output(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output, NodeError> {
    let shown = shown(cmd);
    let spawn_err = |source| NodeError::Spawn {
        cmd: shown.clone(),
        source,
    };
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("piped");
        // A command that exits early closes its input: its status tells why.
        let _ = stdin.write_all(bytes);
    }
    child.wait_with_output().map_err(spawn_err)
}

/// Runs a command inside the network namespace at `path`.
pub fn run_in(path: &Path, cmd: &mut Command, input: Option<&[u8]>) -> Result<String, NodeError> {
    in_netns(path, || run(cmd, input))
}

/// A command as a person would type it, for messages.
pub fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A network namespace of its own, anonymous (`unshare(CLONE_NEWNET)` on a thread parked for
/// as long as this value lives): for tests and benchmarks, which must never touch the host's
/// namespace. It goes away with the value, and with everything in it.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scratch {
    /// Fails without CAP_NET_ADMIN / CAP_SYS_ADMIN.
    pub fn new() -> Result<Scratch, NodeError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(std::io::Error::from(e)));
                return;
            }
            let path = PathBuf::from(format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            ));
            let _ = tx.send(Ok(path));
            let _ = stop_rx.recv();
        });
        let answer = rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace's thread ended early")));
        match answer {
            Ok(path) => Ok(Scratch {
                path,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(source) => {
                let _ = thread.join();
                Err(NodeError::Netns {
                    path: PathBuf::from("(a new namespace)"),
                    source,
                })
            }
        }
    }

    /// Runs a command inside the namespace.
    pub fn run(&self, cmd: &mut Command, input: Option<&[u8]>) -> Result<String, NodeError> {
        run_in(&self.path, cmd, input)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
