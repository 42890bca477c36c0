//! The client connections and the connection budget: which can go first when there are too
//! many.

use super::*;

/// The client connections, each with its state: which can go first when there are too many.
#[derive(Default)]
pub(super) struct Conns {
    pub(super) next: u64,
    pub(super) open: HashMap<u64, ConnState>,
}

pub(super) struct ConnState {
    pub(super) in_flight: usize,
    /// Since when nothing is in flight (accept time for a connection that never asked).
    pub(super) idle_since: Instant,
    pub(super) close: Arc<tokio::sync::Notify>,
}

/// A client connection's place in [`Conns`]; the connection leaves it when dropped.
pub struct ConnSlot {
    pub(super) id: u64,
    pub(super) conns: Arc<std::sync::Mutex<Conns>>,
    pub(super) close: Arc<tokio::sync::Notify>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        lock(&self.conns).open.remove(&self.id);
    }
}

impl ConnSlot {
    /// A request in flight on this connection, until dropped.
    pub(super) fn busy(&self) -> Busy {
        if let Some(c) = lock(&self.conns).open.get_mut(&self.id) {
            c.in_flight += 1;
        }
        Busy {
            id: self.id,
            conns: self.conns.clone(),
        }
    }
}

/// One request in flight (its response's body included).
pub struct Busy {
    pub(super) id: u64,
    pub(super) conns: Arc<std::sync::Mutex<Conns>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.conns).open.get_mut(&self.id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = Instant::now();
            }
        }
    }
}

/// The client connections this process can hold: each may need a backend connection too, and
/// some descriptors are kept for everything else (half of the soft limit, less 128).
pub fn connection_budget() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    (soft / 2).saturating_sub(128).max(64)
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
