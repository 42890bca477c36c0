//! The plugin and its node's agent: a pod's ADD returns only once the agent has programmed
//! what the pod needs (its NetworkPolicy entries; the plugin itself installs the pod's route),
//! as Cilium's plugin waits for the endpoint's regeneration. Without it a pod could start
//! before its node knows its address, and the node's policy table drops every local address
//! it does not know.
//!
//! The protocol is one JSON line each way over the agent's Unix socket (the conflist's
//! [`AGENT_SOCKET_KEY`]): the plugin sends a [`Request`] and reads one [`Reply`]. The agent
//! answers an ADD once it read back from the kernel that the node holds the pod's entries, or
//! when the wait the request names is over, saying what is still missing. A DEL is answered at
//! once (the agent forgets the address the plugin told it).

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{code, CniError, CniResult};

/// The conflist key that names the agent's socket.
pub const AGENT_SOCKET_KEY: &str = "podnet.dev/agentSocket";
/// The conflist key that bounds the wait for the agent, in seconds.
pub const AGENT_WAIT_KEY: &str = "podnet.dev/agentWaitSeconds";
/// The default bound of the wait: the agent programs a pod in milliseconds; this is for a
/// node whose agent is starting or struggling, and well inside the kubelet's 4 minutes.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// What the plugin tells the agent.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub op: Op,
    /// The pod (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`).
    pub namespace: String,
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The address the plugin gave the pod (ADD).
    pub ip: Option<IpAddr>,
    /// How long the agent may take before it answers with what is missing (ADD).
    #[serde(default)]
    pub wait_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Del,
}

/// The agent's answer: done, or what the node does not hold yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            error: String::new(),
        }
    }
    pub fn missing(why: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: why.into(),
        }
    }
}

/// Sends `req` to the agent at `socket` and waits for its answer, at most `wait` (plus a
/// second for the agent's own answer to arrive). An agent that is not there, or that answers
/// with what is missing, is an error that says so (code 11, try again later: the runtime
/// retries the pod).
pub fn ask(socket: &Path, req: &Request, wait: Duration) -> CniResult<()> {
    let unavailable = |what: String| {
        CniError::new(code::TRY_AGAIN_LATER, what).details(format!(
            "the node's agent (socket {}) programs a pod's NetworkPolicy entries before the pod may start",
            socket.display()
        ))
    };
    let pod = format!("{}/{}", req.namespace, req.name);
    let mut s = UnixStream::connect(socket).map_err(|e| {
        unavailable(format!(
            "pod {pod}: the node's agent is not running or not ready ({e})"
        ))
    })?;
    let io =
        |e: std::io::Error| unavailable(format!("pod {pod}: talking to the node's agent: {e}"));
    s.set_read_timeout(Some(wait + Duration::from_secs(1)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    s.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            unavailable(format!(
                "pod {pod}: the node's agent did not answer within {} s",
                wait.as_secs_f64()
            ))
        } else {
            io(e)
        }
    })?;
    let reply: Reply = serde_json::from_str(answer.trim()).map_err(|e| {
        unavailable(format!(
            "pod {pod}: the node's agent answered {:?}, not a reply: {e}",
            answer.trim()
        ))
    })?;
    if reply.ok {
        Ok(())
    } else {
        Err(unavailable(format!(
            "pod {pod}: the node's agent has not programmed it: {}",
            reply.error
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn req() -> Request {
        Request {
            op: Op::Add,
            namespace: "default".into(),
            name: "web".into(),
            container_id: "c1".into(),
            ip: Some("10.244.1.5".parse().unwrap()),
            wait_ms: 100,
        }
    }

    /// An agent that reads one request and answers with `reply` (or nothing).
    fn agent(dir: &Path, reply: Option<Reply>) -> std::thread::JoinHandle<Request> {
        let path = dir.join("agent.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            let got: Request = serde_json::from_str(&line).unwrap();
            match reply {
                Some(r) => {
                    let mut out = serde_json::to_vec(&r).unwrap();
                    out.push(b'\n');
                    (&s).write_all(&out).unwrap();
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
            got
        })
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("podnet-cni-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_request_arrives_and_ok_is_ok() {
        let d = tmp("ok");
        let a = agent(&d, Some(Reply::ok()));
        ask(&d.join("agent.sock"), &req(), Duration::from_millis(100)).unwrap();
        assert_eq!(a.join().unwrap(), req());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn what_is_missing_is_the_error() {
        let d = tmp("missing");
        let a = agent(
            &d,
            Some(Reply::missing("the API has no Pod default/web yet")),
        );
        let e = ask(&d.join("agent.sock"), &req(), Duration::from_millis(100)).unwrap_err();
        a.join().unwrap();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.msg.contains("default/web"), "{e}");
        assert!(e.msg.contains("the API has no Pod default/web yet"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn no_agent_and_a_silent_agent_are_errors_that_say_so() {
        let d = tmp("none");
        let e = ask(&d.join("agent.sock"), &req(), Duration::from_millis(100)).unwrap_err();
        assert!(e.msg.contains("not running"), "{e}");
        let _a = agent(&d, None);
        let t = std::time::Instant::now();
        let e = ask(&d.join("agent.sock"), &req(), Duration::from_millis(100)).unwrap_err();
        assert!(e.msg.contains("did not answer within 0.1 s"), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "bounded: {:?}",
            t.elapsed()
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
