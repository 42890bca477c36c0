//! `podnet observe` against a Kubernetes API (podnet's own, on loopback) and an agent's
//! `/flows` (the agent's metrics server, in this process, holding flows put there): the
//! cluster's Nodes are listed, each node's agent asked at its InternalIP, filters applied,
//! and a flow that comes while following is printed. No root needed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use podnet_flow::record::{Flow, Peer};
use podnet_flow::Reason;
use serde_json::json;

fn flow(reason: Reason, port: u16) -> Flow {
    let peer = |ip: &str| Peer {
        ip: ip.parse().unwrap(),
        port,
        pod: None,
    };
    Flow {
        time: format!("2026-12-07T11:00:0{port}Z"),
        node: "node-0".into(),
        verdict: reason.verdict(),
        reason,
        summary: "test".into(),
        protocol: "TCP".into(),
        source: peer("10.244.1.2"),
        destination: peer("10.244.2.3"),
        service: None,
        policies: vec![],
    }
}

#[test]
fn podnet_observe_reads_every_nodes_agent_at_its_address() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The agent: its metrics server on a runtime of its own (to stop it as a dead agent
    // stops).
    let agent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(podnet_agent::metrics::Metrics::default());
    metrics.flow(flow(Reason::PolicyIngress, 1));
    metrics.flow(flow(Reason::Allowed, 2));
    let agent = agent_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = agent.local_addr().unwrap().port();
    agent_rt.spawn(podnet_agent::metrics::serve(metrics.clone(), agent));
    let api = podnet_api::server::Api::new();
    api.replace(vec![json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-0"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}
    })]);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(api.clone().serve(listener));
    let kubeconfig =
        std::env::temp_dir().join(format!("podnet-observe-{}.yaml", std::process::id()));
    std::fs::write(&kubeconfig, podnet_api::kubeconfig("t", &addr.to_string())).unwrap();
    let observe_at = |port: u16, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podnet"));
        c.arg("observe")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--port", &port.to_string()])
            .args(extra);
        c
    };
    let observe = |extra: &[&str]| observe_at(port, extra);

    let o = observe(&["--verdict", "DROPPED", "-o", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Flow> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, vec![flow(Reason::PolicyIngress, 1)]);

    let o = observe(&[]).output().unwrap();
    let table = String::from_utf8(o.stdout).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("FORWARDED") && table.contains("DROPPED"),
        "{table}"
    );

    // Following: the flows held, then one that comes.
    let mut child = observe(&["--follow", "-o", "json", "--verdict", "REJECTED"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    metrics.flow(flow(Reason::NoEndpoints, 3));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let got: Flow = serde_json::from_str(&line).unwrap();
    assert_eq!(got, flow(Reason::NoEndpoints, 3));

    // The agent dies (its server and every connection gone), and is started again on its
    // port, holding flows the follower already printed: it is followed again, said on stderr,
    // and only what is new is printed (asked since the last flow it had).
    agent_rt.shutdown_timeout(Duration::from_secs(1));
    let mut said = String::new();
    err.read_line(&mut said).unwrap();
    assert!(
        said.contains("node-0 (127.0.0.1:") && said.contains("the agent ended its flows"),
        "{said}"
    );
    std::thread::sleep(Duration::from_millis(600));
    let agent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let again = Arc::new(podnet_agent::metrics::Metrics::default());
    for f in [1, 2, 3] {
        again.flow(flow(
            if f == 3 {
                Reason::NoEndpoints
            } else {
                Reason::PolicyIngress
            },
            f,
        ));
    }
    let listener = agent_rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    agent_rt.spawn(podnet_agent::metrics::serve(again.clone(), listener));
    let mut said = String::new();
    err.read_line(&mut said).unwrap();
    assert!(said.contains("followed again"), "{said}");
    again.flow(flow(Reason::NoEndpoints, 4));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let got: Flow = serde_json::from_str(&line).unwrap();
    assert_eq!(got, flow(Reason::NoEndpoints, 4), "printed again: {line}");
    let _ = child.kill();
    let _ = child.wait();

    // Bad input: an unknown verdict is refused, by the agent and by the command, naming it.
    let answer = |req: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    let bad = answer("GET /flows?verdict=LOST&pod=%00%2F..%2F HTTP/1.0\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.0 400"), "{bad}");
    assert!(bad.contains("verdict=LOST: not a verdict"), "{bad}");
    let bad = answer("GET /flows?since=yesterday HTTP/1.0\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.0 400"), "{bad}");
    assert!(
        bad.contains("since=yesterday: not an RFC 3339 time"),
        "{bad}"
    );
    let odd = answer("GET /flows?pod=%00%2F..%2F%E2%80%AE HTTP/1.0\r\n\r\n");
    assert!(
        odd.starts_with("HTTP/1.0 200") && odd.ends_with("\r\n\r\n"),
        "{odd}"
    );
    let o = observe(&["--verdict", "LOST"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--verdict \"LOST\""));

    // An agent that cannot be reached is named.
    let o = observe_at(1, &[]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("node-0 (127.0.0.1:1): reaching the agent"),
        "{err}"
    );
    std::fs::remove_file(kubeconfig).unwrap();
}
