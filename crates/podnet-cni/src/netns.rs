//! Running netlink work inside another network namespace.
//!
//! `setns` changes the namespace of the calling thread only, so each call gets a fresh OS thread
//! that enters the namespace, opens its own netlink socket there (a socket stays in the namespace
//! it was created in) and runs a single-threaded tokio runtime. No tokio worker thread ever
//! changes namespace.

use std::future::Future;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;

use crate::spec::{code, CniError, CniResult};

/// Runs `f` with a netlink handle in the current thread's namespace.
pub fn here<F, Fut, T>(f: F) -> CniResult<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = CniResult<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("tokio runtime: {e}")))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| CniError::new(code::NETLINK, format!("netlink socket: {e}")))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// Runs `f` with a netlink handle inside the network namespace at `path`, on a fresh thread.
pub fn within<F, Fut, T>(path: &Path, f: F) -> CniResult<T>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = CniResult<T>>,
    T: Send + 'static,
{
    let file = open(path)?;
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("entering the network namespace: {e}"),
            )
        })?;
        here(f)
    })
    .join()
    .map_err(|_| CniError::new(code::IO_FAILURE, "a netns thread panicked"))?
}

/// Opens a network namespace file; a missing one is code 3 (container unknown).
pub fn open(path: &Path) -> CniResult<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        let c = if e.kind() == std::io::ErrorKind::NotFound {
            code::UNKNOWN_CONTAINER
        } else {
            code::IO_FAILURE
        };
        CniError::new(c, format!("network namespace {}: {e}", path.display()))
    })
}

/// Writes a sysctl of the current thread's network namespace (`/proc/sys/net/...` is resolved
/// against the namespace of the thread that opens it).
pub fn sysctl(key: &str, value: &str) -> CniResult<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("sysctl {key}={value}: {e}")))
}

/// Reads a sysctl of the current thread's network namespace.
pub fn read_sysctl(key: &str) -> CniResult<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("sysctl {key}: {e}")))
}
