//! The agent's records (what the node holds, what was programmed, what was verified), written
//! on a thread of their own.
//!
//! At 10,000 Services each record is 12 MB of JSON, 15–30 ms to write (60 ms for the two of a
//! quiet moment on a busy machine): on the loop, an event that came meanwhile waited for them.
//! The loop now hands the writer a copy of what to write (2–7 ms to clone at that size) and
//! goes on. Writes are done in the order they were asked; a newer write of a file whose
//! write still waits its turn takes its place (the file ends as the newer one says either
//! way, and one copy per file waits). The copies' pages are given back to the kernel once no
//! write came for 2 s. A failed write is the agent's error, as it was on the
//! loop: the loop takes it at its next call.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::AgentError;

type Serialize = Box<dyn FnOnce(&mut dyn Write) -> serde_json::Result<()> + Send>;

enum Job {
    Write(PathBuf, Serialize),
    /// Give the allocator's free pages back (after a peak, named).
    Trim(&'static str),
    /// Answer once every job before this one is done.
    Sync(mpsc::Sender<()>),
}

/// What the loop and the writer share.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The loop is gone: the writer ends once the queue is empty.
    closed: bool,
    /// The first write that failed since the loop last asked.
    failed: Option<AgentError>,
}

/// The writer of an agent's records.
pub(super) struct Recorder {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Pages freed by the writes' copies are given back once no write came for this long (each
/// trim walks the allocator's arenas, 3–17 ms at 10,000 Services).
const QUIET: Duration = Duration::from_secs(2);

impl Recorder {
    pub(super) fn new(node: &str) -> Result<Recorder, AgentError> {
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let thread = std::thread::Builder::new()
            .name("podnet-records".into())
            .spawn({
                let shared = shared.clone();
                let node = node.to_string();
                move || writer(&node, &shared)
            })
            .map_err(|source| AgentError::Io {
                what: "starting the records' writer".into(),
                source,
            })?;
        Ok(Recorder {
            shared,
            thread: Some(thread),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.0.lock().expect("records")
    }

    /// The first write that failed since the last call; an error too once the writer has
    /// ended (a panic in it: nothing would be written again).
    pub(super) fn check(&self) -> Result<(), AgentError> {
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(AgentError::Io {
                what: "the records' writer".into(),
                source: std::io::Error::other("it ended"),
            });
        }
        match self.queue().failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Queues `job`; a write of a file already waiting its turn takes that write's place (one
    /// copy per file waits, however fast the loop asks).
    fn send(&self, job: Job) -> Result<(), AgentError> {
        self.check()?;
        let replaced = {
            let mut q = self.queue();
            let waiting = match &job {
                Job::Write(path, _) => q
                    .jobs
                    .iter_mut()
                    .find(|j| matches!(j, Job::Write(p, _) if p == path)),
                Job::Trim(_) => q.jobs.iter_mut().find(|j| matches!(j, Job::Trim(_))),
                Job::Sync(_) => None,
            };
            match waiting {
                Some(w) => Some(std::mem::replace(w, job)),
                None => {
                    q.jobs.push_back(job);
                    None
                }
            }
        };
        self.shared.1.notify_one();
        // The older copy is freed here, outside the lock.
        drop(replaced);
        Ok(())
    }

    /// Writes `value` (a copy the writer owns) to `path` as JSON, whole or not at all.
    pub(super) fn write<T: serde::Serialize + Send + 'static>(
        &self,
        path: PathBuf,
        value: T,
    ) -> Result<(), AgentError> {
        self.send(Job::Write(
            path,
            Box::new(move |w| serde_json::to_writer(w, &value)),
        ))
    }

    /// Gives the kernel back the pages freed after a peak (`after` names it), once the writes
    /// asked before are done (their copies are freed then too).
    pub(super) fn trim(&self, after: &'static str) -> Result<(), AgentError> {
        self.send(Job::Trim(after))
    }

    /// Waits until every write asked so far is done; its failure, if one failed.
    pub(super) fn sync(&self) -> Result<(), AgentError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Sync(tx))?;
        let _ = rx.recv();
        self.check()
    }
}

impl Drop for Recorder {
    /// The writes asked are finished before the agent goes.
    fn drop(&mut self) {
        self.queue().closed = true;
        self.shared.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(node: &str, shared: &(Mutex<Queue>, Condvar)) {
    let (lock, wake) = shared;
    let mut last_write = Instant::now();
    // Copies were freed since the last trim.
    let mut freed = false;
    loop {
        let job = {
            let mut q = lock.lock().expect("records");
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break Some(j);
                }
                if q.closed {
                    break None;
                }
                // The copies' pages go back once the writes have quietened: not while events
                // flow (a trim locks each arena in turn, the loop's too).
                if freed && last_write.elapsed() >= QUIET {
                    break Some(Job::Trim("the records' copies"));
                }
                let wait = if freed {
                    QUIET.saturating_sub(last_write.elapsed())
                } else {
                    Duration::from_secs(3600)
                };
                q = wake.wait_timeout(q, wait).expect("records").0;
            }
        };
        let Some(job) = job else {
            return;
        };
        match job {
            Job::Write(path, serialize) => {
                if let Err(e) = write_json(&path, serialize) {
                    tracing::error!(node, "{}", podnet_node::chain(&e));
                    lock.lock().expect("records").failed.get_or_insert(e);
                }
                freed = true;
                last_write = Instant::now();
            }
            Job::Trim(after) => {
                let t = Instant::now();
                let gave = podnet_alloc::release_free_memory();
                tracing::debug!(node, gave, took = ?t.elapsed(), "freed pages given back after {after}");
                freed = false;
            }
            Job::Sync(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Writes a JSON file whole or not at all (a temporary file renamed over it).
pub(super) fn write_json(
    path: &Path,
    serialize: impl FnOnce(&mut dyn Write) -> serde_json::Result<()>,
) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let io = |source| AgentError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    // Streamed to the file: a node's record is megabytes of JSON at 10,000 Services, and a
    // buffer that size, made and freed after each change, grew the agent's RSS by about 160 MB
    // over 100 changes (glibc raises its mmap threshold after freeing one, and the next come from
    // the heap, leaving holes).
    let mut out =
        std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&tmp).map_err(io)?);
    serialize(&mut out).map_err(|e| io(e.into()))?;
    out.flush().map_err(io)?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_in_order_and_a_failure_is_the_callers_next_error() {
        let dir = std::env::temp_dir().join(format!("podnet-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = Recorder::new("n").unwrap();
        let a = dir.join("a.json");
        for i in 0..50u32 {
            r.write(a.clone(), vec![i; 1000]).unwrap();
        }
        r.sync().unwrap();
        let got: Vec<u32> = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
        assert_eq!(
            got,
            vec![49; 1000],
            "the last write asked is what the file holds"
        );
        // A directory that is not there: the write fails on the thread, and the agent hears
        // of it.
        r.write(dir.join("no/such/b.json"), 1u8).unwrap();
        let e = r.sync().unwrap_err();
        assert!(
            podnet_node::chain(&e).contains("no/such/b.json"),
            "{}",
            podnet_node::chain(&e)
        );
        // Said once; the writer goes on.
        r.write(a.clone(), 7u8).unwrap();
        r.sync().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"7");
        // A writer that died (a panic while writing) is the caller's error from then on.
        r.send(Job::Write(
            a.clone(),
            Box::new(|_| panic!("a writer's panic, on purpose")),
        ))
        .unwrap();
        let t = std::time::Instant::now();
        while r.check().is_ok() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "the writer's end unseen"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(r.write(a.clone(), 8u8).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
