//! What the lab says about a pod that does not come up: where its packets to the lab's API go.
//!
//! When a pod that talks to the API (a DNS, Ingress or Gateway pod) does not serve in time,
//! `lab up` and `lab apply` name it and, with this, show why: one connection from the pod to
//! the API traced through its node with nftables' `nftrace` (every hook and rule it met, and
//! the verdict), the pod's and its node's routes and neighbours, the node's policy entries and
//! conntrack entries for the pod, and the API's listening socket. Nothing here changes what
//! the lab holds but a table `ip podnet-diag` in the node, which holds only the trace's marks
//! and is removed again.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_node::sys;

use crate::plan::{PodPlan, API_PORT};
use crate::LabState;

const TRACE_TABLE: &str = "podnet-diag";

/// The output of a command run in namespace `ns` (or what went wrong), at most `max` lines.
fn run_in(ns: &str, args: &[&str], max: usize) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    let out = match sys::in_netns(&sys::netns_path(ns), || sys::output(&mut cmd, None)) {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        }
        Err(e) => format!("({})", podnet_node::chain(&e)),
    };
    let lines: Vec<&str> = out.lines().collect();
    let mut shown: Vec<String> = lines.iter().take(max).map(|l| format!("    {l}")).collect();
    if lines.len() > max {
        shown.push(format!("    ... ({} more lines)", lines.len() - max));
    }
    format!("  $ {}\n{}\n", args.join(" "), shown.join("\n"))
}

/// One connection from the pod to the API, traced through the pod's node.
fn trace(node_ns: &str, pod_ns: &str, pod_ip: &str, api: &str) -> String {
    let t = TRACE_TABLE;
    // The family of the pod's address that talks to the API.
    let (f, tcp_api) = if api.contains(':') {
        ("ip6", format!("[{api}]"))
    } else {
        ("ip", api.to_string())
    };
    let setup = format!(
        "add table {f} {t}\n\
         delete table {f} {t}\n\
         add table {f} {t}\n\
         add chain {f} {t} pre {{ type filter hook prerouting priority -350; }}\n\
         add rule {f} {t} pre {f} saddr {pod_ip} meta nftrace set 1\n\
         add rule {f} {t} pre {f} saddr {api} tcp sport {API_PORT} meta nftrace set 1\n\
         add chain {f} {t} out {{ type filter hook output priority -350; }}\n\
         add rule {f} {t} out {f} daddr {pod_ip} meta nftrace set 1\n"
    );
    let node = sys::netns_path(node_ns);
    if let Err(e) = sys::run_in(
        &node,
        Command::new("nft").args(["-f", "-"]),
        Some(setup.as_bytes()),
    ) {
        return format!("  (no trace: {})\n", podnet_node::chain(&e));
    }
    let monitor = sys::in_netns(&node, || {
        Command::new("nft")
            .args(["monitor", "trace"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| podnet_node::NodeError::Spawn {
                cmd: "nft monitor trace".into(),
                source,
            })
    });
    std::thread::sleep(Duration::from_millis(200));
    let connect = run_in(
        pod_ns,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            &format!("</dev/tcp/{tcp_api}/{API_PORT} && echo connected || echo failed"),
        ],
        4,
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut traced = String::new();
    match monitor {
        Ok(mut child) => {
            let _ = child.kill();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_string(&mut traced);
            }
            let _ = child.wait();
        }
        Err(e) => traced = format!("({})", podnet_node::chain(&e)),
    }
    let _ = sys::run_in(
        &node,
        Command::new("nft").args(["delete", "table", f, t]),
        None,
    );
    let lines: Vec<&str> = traced.lines().collect();
    let shown: Vec<String> = lines.iter().take(60).map(|l| format!("    {l}")).collect();
    format!(
        "{connect}  nftrace in the node:\n{}{}\n",
        shown.join("\n"),
        if lines.len() > 60 {
            format!("\n    ... ({} more lines)", lines.len() - 60)
        } else {
            String::new()
        }
    )
}

/// What the lab can see of a pod that does not reach the API: see the module's text.
pub fn pod(st: &LabState, p: &PodPlan) -> String {
    let Some(node) = st.plan.node(&p.node) else {
        return format!("{}: no node {}\n", p.key(), p.node);
    };
    let ip = st
        .pod_ips_of(&p.key())
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let api_ip = st.plan.api_client_ip();
    let api = api_ip.to_string();
    // The pod's address of the family it reaches the API by.
    let traced_ip = st
        .pod_ips_of(&p.key())
        .iter()
        .find(|a| a.is_ipv4() == api_ip.is_ipv4())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut s = format!(
        "diagnosis of {} ({ip}) on {} (namespace {}):\n",
        p.key(),
        p.node,
        p.netns
    );
    s.push_str(&trace(&node.ns, &p.netns, &traced_ip, &api));
    s.push_str("  the pod:\n");
    s.push_str(&run_in(&p.netns, &["ip", "-o", "addr"], 10));
    s.push_str(&run_in(&p.netns, &["ip", "route"], 10));
    s.push_str(&run_in(&p.netns, &["ip", "neigh"], 10));
    s.push_str(&run_in(&p.netns, &["ss", "-tn"], 20));
    s.push_str("  its node:\n");
    s.push_str(&run_in(
        &node.ns,
        &["ip", "route", "get", &api, "from", &ip],
        4,
    ));
    s.push_str(&run_in(&node.ns, &["ip", "route", "show", &ip], 4));
    s.push_str(&run_in(&node.ns, &["ip", "neigh", "show", &ip], 4));
    s.push_str(&run_in(&node.ns, &["ip", "-s", "-o", "link"], 40));
    s.push_str(&run_in(&node.ns, &["conntrack", "-L", "-s", &ip], 30));
    s.push_str(&run_in(&node.ns, &["nft", "list", "tables"], 10));
    s.push_str(&run_in(
        &node.ns,
        &["nft", "list", "set", "ip", "podnet-policy", "local"],
        12,
    ));
    s.push_str(&run_in(
        &node.ns,
        &["nft", "list", "map", "ip", "podnet-policy", "egress"],
        30,
    ));
    s.push_str(&run_in(
        &node.ns,
        &["nft", "list", "table", "ip", "podnet-masq"],
        20,
    ));
    s.push_str("  the API:\n");
    s.push_str(&run_in(&st.plan.api.ns, &["ss", "-ltn"], 6));
    s.push_str(&run_in(&st.plan.api.ns, &["ss", "-tn"], 80));
    s.push_str(&run_in(
        &st.plan.api.ns,
        &["nstat", "-az", "TcpExtListenDrops", "TcpExtListenOverflows"],
        6,
    ));
    s
}
