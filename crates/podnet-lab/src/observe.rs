//! `podnet lab observe`: the flows of every node of a lab, from each node's agent (its
//! `/flows`, on the agent's metrics address inside the node's namespace), as `hubble observe`
//! shows a cluster's.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use podnet_flow::record::Flow;
use podnet_flow::Filter;

use crate::agents::METRICS_ADDR;
use crate::{load_state, LabError};

/// The query of `/flows` for this filter.
fn query(filter: &Filter, follow: bool) -> String {
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

/// A connection to the agent of the node whose namespace is `ns`, asking for its flows: the
/// response's lines, once past its headers.
fn ask(ns: &str, filter: &Filter, follow: bool) -> Result<BufReader<TcpStream>, LabError> {
    let io = |what: String| move |source| LabError::Io { what, source };
    let path = podnet_node::sys::netns_path(ns);
    // The socket is made in the node's namespace; it is read from here.
    let stream = podnet_node::sys::in_netns(&path, || {
        Ok(TcpStream::connect_timeout(
            &METRICS_ADDR.parse().expect("an address"),
            Duration::from_secs(2),
        ))
    })?
    .map_err(io(format!("{ns}: reaching the agent at {METRICS_ADDR}")))?;
    if !follow {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io(format!("{ns}: a read timeout")))?;
    }
    // HTTP/1.0: the response ends when the agent closes the connection, no chunks to read.
    let req = format!(
        "GET /flows?{} HTTP/1.0\r\nHost: podnet-agent\r\n\r\n",
        query(filter, follow)
    );
    (&stream)
        .write_all(req.as_bytes())
        .map_err(io(format!("{ns}: asking the agent for its flows")))?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status)
        .map_err(io(format!("{ns}: the agent's answer")))?;
    if !status.starts_with("HTTP/1.") || !status.contains(" 200 ") {
        return Err(LabError::Invalid(format!(
            "{ns}: the agent answered {:?} for its flows",
            status.trim()
        )));
    }
    loop {
        let mut h = String::new();
        let n = r
            .read_line(&mut h)
            .map_err(io(format!("{ns}: the agent's answer")))?;
        if n == 0 || h == "\r\n" || h == "\n" {
            return Ok(r);
        }
    }
}

/// One line of `/flows`.
fn flow(ns: &str, line: &str) -> Result<Flow, LabError> {
    serde_json::from_str(line).map_err(|source| LabError::Json {
        what: format!("{ns}: a flow the agent sent"),
        source,
    })
}

/// The flows every node of the lab `lab` holds that `filter` takes, oldest first; with
/// `follow`, then each new one as it comes, until `each` says stop (false) or an agent's
/// connection ends.
pub fn observe(
    lab: &str,
    filter: &Filter,
    follow: bool,
    mut each: impl FnMut(Flow) -> bool,
) -> Result<(), LabError> {
    let st = load_state(lab)?;
    let nodes: Vec<String> = st.plan.nodes.iter().map(|n| n.ns.clone()).collect();
    if !follow {
        let mut all = Vec::new();
        for ns in &nodes {
            for line in ask(ns, filter, false)?.lines() {
                let line = line.map_err(|source| LabError::Io {
                    what: format!("{ns}: reading the agent's flows"),
                    source,
                })?;
                all.push(flow(ns, &line)?);
            }
        }
        // RFC 3339 times of one clock sort as text.
        all.sort_by(|a, b| a.time.cmp(&b.time));
        for f in all {
            if !each(f) {
                break;
            }
        }
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Result<Flow, LabError>>();
    for ns in nodes {
        let reader = ask(&ns, filter, true)?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let got = line
                    .map_err(|source| LabError::Io {
                        what: format!("{ns}: reading the agent's flows"),
                        source,
                    })
                    .and_then(|l| flow(&ns, &l));
                if tx.send(got).is_err() {
                    return;
                }
            }
            let _ = tx.send(Err(LabError::Invalid(format!(
                "{ns}: the agent ended its flows (did it stop?)"
            ))));
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
