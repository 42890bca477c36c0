//! The agent's side of the CNI plugin's wait ([`podnet_cni::agent`]): a Unix socket on which
//! each connection carries one request and one answer. Requests go to the agent's loop, which
//! answers an ADD once a verify pass found the node's kernel holding what the pod needs.

use std::path::{Path, PathBuf};

use podnet_cni::agent::{Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::AgentError;

/// A request and where its answer goes.
pub type Asked = (Request, oneshot::Sender<Reply>);

/// Listens on `path` (a file left by an earlier run is replaced) and sends each request to
/// `tx`. The socket is bound before this returns, so a plugin that runs after the agent
/// started finds it.
pub fn listen(path: &Path, tx: mpsc::UnboundedSender<Asked>) -> Result<(), AgentError> {
    let io = |what: String| move |source| AgentError::Io { what, source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing the old {}", path.display()))(e)),
    }
    let l = UnixListener::bind(path).map_err(io(format!("listening on {}", path.display())))?;
    let path: PathBuf = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(one(s, tx.clone()));
                }
                Err(e) => {
                    tracing::warn!("accepting on {}: {e}", path.display());
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn one(s: UnixStream, tx: mpsc::UnboundedSender<Asked>) {
    let (r, mut w) = s.into_split();
    let mut line = String::new();
    let reply = match BufReader::new(r).read_line(&mut line).await {
        Err(e) => Reply::missing(format!("reading the request: {e}")),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Reply::missing(format!(
                "the request {:?} does not decode: {e}",
                line.trim()
            )),
            Ok(req) => {
                let (answer, rx) = oneshot::channel();
                if tx.send((req, answer)).is_err() {
                    Reply::missing("the agent is stopping")
                } else {
                    rx.await
                        .unwrap_or_else(|_| Reply::missing("the agent dropped the request"))
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&reply).expect("replies serialize");
    out.push(b'\n');
    let _ = w.write_all(&out).await;
}
