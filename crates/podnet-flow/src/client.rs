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
    if let Some(t) = &filter.since {
        q.append_pair("since", &t.to_string());
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

/// One agent to read: its name (in errors and events), and how to open a connection to it,
/// again after it went away.
pub struct Agent {
    pub name: String,
    pub connect: Box<dyn FnMut() -> std::io::Result<TcpStream> + Send>,
}

impl Agent {
    pub fn new(
        name: impl Into<String>,
        connect: impl FnMut() -> std::io::Result<TcpStream> + Send + 'static,
    ) -> Agent {
        Agent {
            name: name.into(),
            connect: Box::new(connect),
        }
    }

    fn ask(&mut self, filter: &Filter, follow: bool) -> Result<BufReader<TcpStream>, ClientError> {
        let stream = (self.connect)().map_err(|source| ClientError::Io {
            agent: self.name.clone(),
            what: "reaching the agent",
            source,
        })?;
        ask(&self.name, stream, filter, follow)
    }
}

/// What a follower reads.
#[derive(Debug)]
pub enum Event {
    Flow(Box<Flow>),
    /// The agent's connection ended (the agent stopped, or the way to it broke); the follower
    /// tries again every [`RETRY`] until it is back.
    Gone {
        agent: String,
        why: String,
    },
    /// The agent answers again; the follower asked for the flows after the last it had
    /// (an agent started again holds none from before: those of the time it was away were
    /// not read by anyone, and are not known).
    Back {
        agent: String,
    },
}

/// How often a follower tries an agent that went away.
pub const RETRY: Duration = Duration::from_millis(250);

/// The flows of every agent that `filter` takes, oldest first; with `follow`, then each new
/// one as it comes, and an agent that goes away is followed again when it is back ([`Event`]),
/// until `each` says stop (false). Each agent must answer at first.
pub fn observe(
    agents: Vec<Agent>,
    filter: &Filter,
    follow: bool,
    mut each: impl FnMut(Event) -> bool,
) -> Result<(), ClientError> {
    if !follow {
        let mut all = Vec::new();
        for mut agent in agents {
            for line in agent.ask(filter, false)?.lines() {
                let line = line.map_err(|source| ClientError::Io {
                    agent: agent.name.clone(),
                    what: "reading its flows",
                    source,
                })?;
                all.push(Box::new(flow(&agent.name, &line)?));
            }
        }
        all.sort_by_key(|f| f.at());
        for f in all {
            if !each(Event::Flow(f)) {
                break;
            }
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Event>();
    for mut agent in agents {
        let mut reader = agent.ask(filter, true)?;
        let tx = tx.clone();
        let mut filter = filter.clone();
        std::thread::spawn(move || loop {
            let why = loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => break "the agent ended its flows".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("reading its flows: {e}"),
                }
                let f = match flow(&agent.name, line.trim_end()) {
                    Ok(f) => f,
                    Err(e) => break crate::chain(&e),
                };
                // Asked again, the agent sends what came after this one.
                if let Some(t) = f.at() {
                    filter.since = Some(t);
                }
                if tx.send(Event::Flow(Box::new(f))).is_err() {
                    return;
                }
            };
            let gone = Event::Gone {
                agent: agent.name.clone(),
                why,
            };
            if tx.send(gone).is_err() {
                return;
            }
            reader = loop {
                std::thread::sleep(RETRY);
                if let Ok(r) = agent.ask(&filter, true) {
                    break r;
                }
            };
            if tx
                .send(Event::Back {
                    agent: agent.name.clone(),
                })
                .is_err()
            {
                return;
            }
        });
    }
    drop(tx);
    for got in rx {
        if !each(got) {
            break;
        }
    }
    Ok(())
}
