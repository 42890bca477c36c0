//! Handing nftables transactions to the kernel through a long-lived `nft` process.
//!
//! `nft -f` per transaction costs a process start, and more: when a transaction deleted
//! anything (a set element, a map entry), the kernel frees those objects after an RCU grace
//! period, and releasing an nftables netlink socket waits for that. So an `nft` process that
//! deleted an element takes 5 to 20 ms more to exit than the transaction took to commit. A
//! session keeps one `nft -i` running in the namespace instead: `nft` runs each line of its
//! input as one batch (one transaction, all or nothing), so every transaction is written as one
//! line, its commands separated by `;`.
//!
//! nft says nothing on success, and on failure writes the error and the offending command to
//! its standard error. To know where one transaction's answer ends, each is followed by a
//! *sentinel*: a listing of a table that cannot exist (`podnet-sync-<n>`), whose error, naming
//! that table, always comes next. Anything before it that says `Error:` is the transaction's.
//!
//! Transactions too big for one line (a cold load of a large table) go to `nft -f -` as before.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};

use crate::{sys, NodeError};

/// Above this many bytes a transaction goes to `nft -f -`: reading one very long line in
/// interactive mode is slower than parsing a file.
pub const LINE_LIMIT: usize = 256 * 1024;

/// One `nft -i` in a network namespace.
pub struct Session {
    netns: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: BufReader<ChildStderr>,
    seq: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("netns", &self.netns)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

fn shown(netns: &Path) -> String {
    format!("nft -i (in {})", netns.display())
}

impl Session {
    /// Starts `nft -i` inside the namespace at `netns`.
    pub fn start(netns: &Path) -> Result<Session, NodeError> {
        let mut child = sys::in_netns(netns, || {
            Command::new("nft")
                .arg("-i")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| NodeError::Spawn {
                    cmd: shown(netns),
                    source,
                })
        })?;
        let stdin = child.stdin.take().expect("piped");
        let stderr = BufReader::new(child.stderr.take().expect("piped"));
        Ok(Session {
            netns: netns.to_path_buf(),
            child: Some(child),
            stdin: Some(stdin),
            stderr,
            seq: 0,
        })
    }

    /// Whether `script` can be run here as one line: small enough, and without a comment that
    /// would swallow the commands after it.
    pub fn fits(script: &str) -> bool {
        script.len() <= LINE_LIMIT && !script.contains('#')
    }

    /// Runs `script` (commands, one per line) as one transaction.
    pub fn apply(&mut self, script: &str) -> Result<(), NodeError> {
        let line: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if line.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        let sentinel = format!("list table ip podnet-sync-{}", self.seq);
        let broken = |e: std::io::Error, this: &Session| NodeError::Spawn {
            cmd: shown(&this.netns),
            source: e,
        };
        let input = format!("{}\n{sentinel}\n", line.join("; "));
        let stdin = self.stdin.as_mut().expect("open until dropped");
        if let Err(e) = stdin
            .write_all(input.as_bytes())
            .and_then(|()| stdin.flush())
        {
            return Err(broken(e, self));
        }
        // Everything up to the sentinel's own error (its message, the command, the carets).
        let mut said: Vec<String> = Vec::new();
        loop {
            let mut l = String::new();
            match self.stderr.read_line(&mut l) {
                Ok(0) => {
                    return Err(NodeError::Command {
                        cmd: shown(&self.netns),
                        status: self
                            .child
                            .as_mut()
                            .and_then(|c| c.try_wait().ok().flatten())
                            .and_then(|s| s.code()),
                        stderr: format!("nft exited: {}", said.join("\n")),
                    })
                }
                Ok(_) => {}
                Err(e) => return Err(broken(e, self)),
            }
            if l.trim_end() == sentinel {
                said.pop(); // the sentinel's "Error: ..." line
                let mut carets = String::new();
                if let Err(e) = self.stderr.read_line(&mut carets) {
                    return Err(broken(e, self));
                }
                break;
            }
            said.push(l.trim_end().to_string());
        }
        // nft writes `Error: ...`, after a location (`<cmdline>:1:5-9: Error: ...`) for
        // errors it can place.
        if said.iter().any(|l| l.contains("Error:")) {
            return Err(NodeError::Command {
                cmd: shown(&self.netns),
                status: None,
                stderr: said.join("\n"),
            });
        }
        Ok(())
    }
}

impl Drop for Session {
    /// Closes `nft`'s input and reaps it on another thread: its exit may wait for the kernel
    /// to free what the last transactions deleted, which nobody needs to wait for.
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
}
