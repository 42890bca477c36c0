//! Reading agents' flows (`/flows`, as JSON lines) over HTTP/1.0, from connections the
//! caller opens (a lab opens them inside each node's namespace, `podnet observe` to each
//! node's address), and merging them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use crate::record::Flow;
use crate::Filter;

/// What can go wrong reading an agent's flows; each names the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{agent}: {what}")]
    Io {
        agent: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{agent}: the agent answered {status:?} for its flows")]
    Status { agent: String, status: String },
    #[error("{agent}: a flow that does not read")]
    Json {
        agent: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{agent}: the agent ended its flows (did it stop?)")]
    Ended { agent: String },
}

/// The query of `/flows` for this filter.
pub fn query(filter: &Filter, follow: bool) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for v in &filter.verdicts {
        q.append_pair("verdict", v.as_str());
    }
    if let Some(p) = &filter.pod {
        q.append_pair("pod", p);
    }
    if follow {
        q.append_pair("follow", "true");
    }
    q.finish()
}

/// Asks the agent at the other end of `stream` (called `agent` in errors) for its flows: the
/// response's lines, once past its headers.
pub fn ask(
    agent: &str,
    stream: TcpStream,
    filter: &Filter,
    follow: bool,
) -> Result<BufReader<TcpStream>, ClientError> {
    let io = |what: &'static str| {
        let agent = agent.to_string();
        move |source| ClientError::Io {
            agent,
            what,
            source,
        }
    };
    if !follow {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io("setting a read timeout"))?;
    }
    // HTTP/1.0: the response ends when the agent closes the connection, no chunks to read.
    let req = format!(
        "GET /flows?{} HTTP/1.0\r\nHost: podnet-agent\r\n\r\n",
        query(filter, follow)
    );
    (&stream)
        .write_all(req.as_bytes())
        .map_err(io("asking for its flows"))?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status).map_err(io("reading its answer"))?;
    if !status.starts_with("HTTP/1.") || !status.contains(" 200 ") {
        return Err(ClientError::Status {
            agent: agent.to_string(),
            status: status.trim().to_string(),
        });
    }
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h).map_err(io("reading its answer"))?;
        if n == 0 || h == "\r\n" || h == "\n" {
            return Ok(r);
        }
    }
}

fn flow(agent: &str, line: &str) -> Result<Flow, ClientError> {
    serde_json::from_str(line).map_err(|source| ClientError::Json {
        agent: agent.to_string(),
        source,
    })
}

/// The flows of every agent (name, connection) that `filter` takes, oldest first; with
/// `follow`, then each new one as it comes, until `each` says stop (false) or an agent's
/// connection ends.
pub fn observe(
    agents: Vec<(String, TcpStream)>,
    filter: &Filter,
    follow: bool,
    mut each: impl FnMut(Flow) -> bool,
) -> Result<(), ClientError> {
    if !follow {
        let mut all = Vec::new();
        for (agent, stream) in agents {
            for line in ask(&agent, stream, filter, false)?.lines() {
                let line = line.map_err(|source| ClientError::Io {
                    agent: agent.clone(),
                    what: "reading its flows",
                    source,
                })?;
                all.push(flow(&agent, &line)?);
            }
        }
        all.sort_by_key(Flow::at);
        for f in all {
            if !each(f) {
                break;
            }
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Result<Flow, ClientError>>();
    for (agent, stream) in agents {
        let reader = ask(&agent, stream, filter, true)?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let got = line
                    .map_err(|source| ClientError::Io {
                        agent: agent.clone(),
                        what: "reading its flows",
                        source,
                    })
                    .and_then(|l| flow(&agent, &l));
                if tx.send(got).is_err() {
                    return;
                }
            }
            let _ = tx.send(Err(ClientError::Ended { agent }));
        });
    }
    drop(tx);
    for got in rx {
        if !each(got?) {
            break;
        }
    }
    Ok(())
}
