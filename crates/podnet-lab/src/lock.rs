//! One command changes a lab at a time: `lab up`, `lab apply` and `lab down` hold the lab's
//! lock (an exclusive `flock` on `/run/podnet/<lab>.lock`) from before they read its state
//! until after they saved it. A second command waits, saying for whom; the kernel releases the
//! lock of a process that dies, whatever kills it. `lab down` removes the file while it holds
//! the lock: a command that was waiting on the removed file notices (its path names another
//! file now, or none) and locks again.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::LabError;

/// The lab's lock, held until dropped.
#[derive(Debug)]
pub struct LabLock {
    file: File,
    path: PathBuf,
}

/// Where the lock of `lab` is: beside its directory, which `lab down` removes.
pub fn path(lab: &str) -> PathBuf {
    PathBuf::from(crate::RUN_DIR).join(format!("{lab}.lock"))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { what, source }
}

/// Takes the lab's lock for `what` (`lab apply`, ...); waits while another command holds it,
/// saying so on standard error.
pub fn lock(lab: &str, what: &str) -> Result<LabLock, LabError> {
    let path = path(lab);
    std::fs::create_dir_all(crate::RUN_DIR).map_err(io(format!("creating {}", crate::RUN_DIR)))?;
    let mut said = false;
    loop {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                if !said {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    eprintln!(
                        "lab {lab:?} is being changed by {}; waiting for it to finish",
                        holder.trim().trim_end_matches('.')
                    );
                    said = true;
                }
                file.lock()
                    .map_err(io(format!("locking {}", path.display())))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(format!("locking {}", path.display()))(e))
            }
        }
        // The file locked must still be the one at the path (`lab down` removes it).
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            continue;
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {} (podnet {what})", std::process::id());
        let _ = file.flush();
        return Ok(LabLock { file, path });
    }
}

impl LabLock {
    /// Removes the lock's file (the lab is gone), still holding it until dropped.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> String {
        format!("locktest{}", std::process::id())
    }

    #[test]
    fn a_second_holder_waits_for_the_first_and_a_removed_file_is_not_a_lock() {
        if std::fs::create_dir_all(crate::RUN_DIR).is_err() {
            eprintln!("SKIP: cannot create {}", crate::RUN_DIR);
            return;
        }
        let name = lab();
        let first = lock(&name, "lab apply").unwrap();
        let text = std::fs::read_to_string(path(&name)).unwrap();
        assert_eq!(
            text,
            format!("pid {} (podnet lab apply)", std::process::id())
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let n = name.clone();
        let waiter = std::thread::spawn(move || {
            let l = lock(&n, "lab down").unwrap();
            tx.send(()).unwrap();
            l
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "the second waits");
        // The first removes the file (as down does) and goes.
        first.remove();
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        let second = waiter.join().unwrap();
        // The waiter locked the file at the path, not the removed one.
        assert!(path(&name).exists());
        let third = std::fs::OpenOptions::new()
            .write(true)
            .open(path(&name))
            .unwrap();
        assert!(third.try_lock().is_err(), "held by the second");
        second.remove();
        drop(second);
    }
}
