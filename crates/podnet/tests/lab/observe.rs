//! The flow log (`lab observe`), with real packets: a connection the seeds' policies deny
//! shows up within a second as DROPPED, with both pods, the port and the policies that
//! isolated the end that dropped it; a connection to a Service without endpoints as REJECTED
//! with the Service; with `--flow-sample 100`, an allowed one as FORWARDED; the agents'
//! counters move with them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{can_run, ok, podnet, write_manifest, Lab};

/// A Service whose selector matches no pod, at an address of its own.
const NO_ENDPOINTS: &str = "apiVersion: v1
kind: Service
metadata: {name: nobody-home, namespace: default}
spec:
  clusterIP: 10.96.123.45
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 80}]
";

/// Starts one TCP connection from `pod` (namespace/name) to `to:port` in the background.
fn connect(lab: &Lab, pod: &str, to: &str, port: u16) -> std::thread::JoinHandle<String> {
    let script = format!(
        "import socket\ntry:\n    socket.create_connection(('{to}', {port}), timeout=1).close(); print('open')\nexcept OSError as e:\n    print('failed', e)\n"
    );
    let (name, pod) = (lab.name.clone(), pod.to_string());
    std::thread::spawn(move || {
        let o = podnet(&[
            "lab", "exec", "--name", &name, &pod, "--", "python3", "-c", &script,
        ]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

/// The first pod whose name starts with `prefix`: (namespace/name, IP, node).
fn pod(status: &Value, prefix: &str) -> (String, String, String) {
    let p = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no pod {prefix}*: {status}"));
    (
        format!(
            "{}/{}",
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        ),
        p["ip"].as_str().unwrap().to_string(),
        p["node"].as_str().unwrap().to_string(),
    )
}

/// `lab observe --follow -o json` with `args`, read until a flow `wanted` takes comes (or 5 s
/// pass: the flows seen are in the failure), after `start` is called: the flow and how long
/// after `start` it came.
fn follow_until(
    lab: &Lab,
    args: &[&str],
    start: impl FnOnce(),
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args([
            "lab", "observe", "--name", &lab.name, "--follow", "-o", "json",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The flows held before (none of them is the one to come): once the first read is in.
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<String> = rx.try_iter().collect();
    let t = Instant::now();
    start();
    let mut seen = Vec::new();
    let found = loop {
        let left = Duration::from_secs(5).saturating_sub(t.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).unwrap();
                if wanted(&v) {
                    break Some((v, t.elapsed()));
                }
                seen.push(line);
            }
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    found.unwrap_or_else(|| {
        panic!(
            "no such flow within 5 s; before: {before:?}; seen: {seen:?}; observe said: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The agent's counter of flows on `node` with this verdict and reason.
fn told(lab: &Lab, node: &str, verdict: &str, reason: &str) -> f64 {
    super::agent::agent_metric(
        lab,
        node,
        &format!("podnet_agent_flows_total{{verdict=\"{verdict}\",reason=\"{reason}\"}}"),
    )
}

#[test]
fn denied_and_refused_connections_show_in_lab_observe_with_who_and_why() {
    if !can_run() {
        return;
    }
    let extra = write_manifest("nobody-home", NO_ENDPOINTS);
    // Every new connection let through is recorded too.
    let lab = Lab::seeds(
        "observe",
        &[extra.to_str().unwrap()],
        &["--flow-sample", "100"],
    );
    let st = lab.status();
    let (app, app_ip, app_node) = pod(&st, "my-app-");
    let (api, api_ip, api_node) = pod(&st, "my-api-");
    let before = told(&lab, &app_node, "DROPPED", "policy-ingress");

    // Ingress: my-api is neither trusted-app nor a frontend, and my-app is isolated for
    // ingress by both seeds' policies.
    let mut conn = None;
    let (f, took) = follow_until(
        &lab,
        &["--verdict", "DROPPED", "--pod", &app],
        || conn = Some(connect(&lab, &api, &app_ip, 80)),
        |f| f["reason"] == "policy-ingress" && f["source"]["ip"] == api_ip.as_str(),
    );
    assert_eq!(
        conn.unwrap().join().unwrap().split(' ').next(),
        Some("failed")
    );
    eprintln!("a denied connection in lab observe after {took:?}: {f}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(f["verdict"], "DROPPED");
    assert_eq!(f["node"], app_node.as_str());
    assert_eq!(f["protocol"], "TCP");
    assert_eq!(f["destination"]["port"], 80);
    assert_eq!(
        format!(
            "{}/{}",
            f["source"]["pod"]["namespace"].as_str().unwrap(),
            f["source"]["pod"]["name"].as_str().unwrap()
        ),
        api
    );
    assert_eq!(f["destination"]["pod"]["labels"]["app"], "my-app");
    assert_eq!(
        f["policies"],
        serde_json::json!(["default/allow-app-access", "default/my-network-policy"]),
        "{f}"
    );
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("isolated for ingress"),
        "{f}"
    );
    // Straight to the pod's address: no Service.
    assert_eq!(f["service"], Value::Null, "{f}");
    let after = told(&lab, &app_node, "DROPPED", "policy-ingress");
    assert!(after > before, "the counter stayed at {before}");

    // Egress: my-app may reach only external-service on 443.
    let mut conn = None;
    let (f, _) = follow_until(
        &lab,
        &["--pod", &app],
        || conn = Some(connect(&lab, &app, &api_ip, 8080)),
        |f| f["reason"] == "policy-egress" && f["destination"]["ip"] == api_ip.as_str(),
    );
    conn.unwrap().join().unwrap();
    assert_eq!(f["verdict"], "DROPPED");
    assert_eq!(
        f["policies"],
        serde_json::json!(["default/my-network-policy"]),
        "{f}"
    );
    assert_eq!(f["service"], Value::Null, "{f}");
    let _ = api_node;

    // The same, through my-service (80 to my-app's 8080): the flow names the Service. The
    // source's node translated the address (this kernel gives no original tuple with a
    // logged packet; the tables say it was translated, and the endpoint says whose).
    let vip = super::agent::my_service_vip();
    let mut conn = None;
    let (f, _) = follow_until(
        &lab,
        &["--verdict", "DROPPED", "--pod", &app],
        || conn = Some(connect(&lab, &app, &vip, 80)),
        |f| f["reason"] == "policy-egress" && f["destination"]["port"] == 8080,
    );
    conn.unwrap().join().unwrap();
    assert_eq!(f["service"]["name"], "my-service", "{f}");
    assert_eq!(f["service"]["ip"], vip.as_str(), "{f}");
    assert_eq!(f["service"]["port"], 80, "{f}");

    // A Service without endpoints: refused, and named.
    let mut conn = None;
    let (f, _) = follow_until(
        &lab,
        &["--verdict", "REJECTED"],
        || conn = Some(connect(&lab, &api, "10.96.123.45", 80)),
        |f| f["destination"]["ip"] == "10.96.123.45",
    );
    let said = conn.unwrap().join().unwrap();
    assert!(said.contains("refused"), "{said}");
    assert_eq!(f["reason"], "no-endpoints");
    assert_eq!(f["service"]["name"], "nobody-home", "{f}");
    assert!(told(&lab, &api_node, "REJECTED", "no-endpoints") >= 1.0);

    // Allowed (sampled, here at 100%): a frontend may reach my-app.
    let (front, _, _) = pod(&st, "frontend-");
    let mut conn = None;
    let (f, _) = follow_until(
        &lab,
        &["--verdict", "FORWARDED", "--pod", &app],
        || conn = Some(connect(&lab, &front, &app_ip, 80)),
        |f| f["source"]["pod"]["name"] == front.split('/').nth(1).unwrap(),
    );
    assert_eq!(conn.unwrap().join().unwrap(), "open");
    assert_eq!(f["reason"], "allowed", "{f}");
    assert!(told(&lab, &app_node, "FORWARDED", "allowed") >= 1.0);

    // Without --follow: what the nodes hold, filtered; and the table.
    let held = ok(&[
        "lab",
        "observe",
        "--name",
        &lab.name,
        "--verdict",
        "rejected",
        "-o",
        "json",
    ]);
    assert!(
        held.lines().all(|l| l.contains("\"verdict\":\"REJECTED\"")) && !held.is_empty(),
        "{held}"
    );
    let table = ok(&["lab", "observe", "--name", &lab.name, "--pod", &app]);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("DROPPED") && table.contains(&app), "{table}");
    std::fs::remove_file(extra).unwrap();
}

#[test]
fn lab_ui_draws_a_flow_on_the_map_within_two_seconds() {
    use podnet_testkit::browser::{chromium, Browser};
    if !can_run() {
        return;
    }
    let Some(chrome) = chromium() else { return };
    let lab = Lab::seeds("ui", &[], &[]);
    let st = lab.status();
    let (_, app_ip, app_node) = pod(&st, "my-app-");
    let (api, _, _) = pod(&st, "my-api-");
    let mut ui = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(["lab", "ui", "--name", &lab.name, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(ui.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("lab ui said {first:?}"))
        .to_string();
    let mut page = Browser::open(&chrome, &url);
    assert!(
        page.wait_for(
            "document.body && document.body.dataset.ready === 'true' && document.getElementById('live').textContent === 'live'",
            Duration::from_secs(10)
        )
        .is_some(),
        "the page did not load and follow the flows: {:?}",
        page.errors
    );
    for p in st["pods"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        );
        let there = page.eval(&format!(
            "!!document.querySelector('.pod[data-pod=\"{key}\"]')"
        ));
        assert_eq!(there, serde_json::json!(true), "pod {key} not on the page");
    }
    // A denied connection: on the page (listed, and drawn on the map) within 2 s.
    let t = std::time::Instant::now();
    let conn = connect(&lab, &api, &app_ip, 80);
    let on_page = format!(
        "document.querySelector('#flowlist li[data-verdict=\"DROPPED\"][data-from=\"{api}\"]') && document.querySelector('#flowlayer path.flow.DROPPED')"
    );
    let took = page
        .wait_for(&on_page, Duration::from_secs(5))
        .map(|_| t.elapsed());
    let shots = super::root_dir().join("target/ui-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    page.screenshot(&shots.join("lab-ui-live.png"));
    conn.join().unwrap();
    let Some(took) = took else {
        let _ = ui.kill();
        let o = ui.wait_with_output().unwrap();
        panic!(
            "the denied flow is not on the page after 5 s: {}\nlab ui said: {}",
            page.eval("document.getElementById('flows').innerText"),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    eprintln!("the denied flow was on the page {took:?} after the connection began");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The destination's agent killed (started again by the lab, as a kubelet would): the
    // server follows it again, and a denied connection once it reads its flow log again is
    // on the page as before, without reloading it.
    let dropped = "document.querySelectorAll('#flowlist li[data-verdict=\"DROPPED\"]').length";
    let shown = page.eval(dropped).as_u64().unwrap();
    let before = super::agent::agents(&lab.name);
    let pid = before.iter().find(|(n, _)| *n == app_node).unwrap().1;
    super::agent::kill_hard(pid);
    let t = std::time::Instant::now();
    while !super::agent::agents(&lab.name)
        .iter()
        .any(|(n, p)| *n == app_node && *p != pid)
        || super::agent::agent_metric(&lab, &app_node, "podnet_agent_flow_log_up") != 1.0
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{app_node}'s agent not back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let conn = connect(&lab, &api, &app_ip, 80);
    let again = page.wait_for(&format!("{dropped} > {shown}"), Duration::from_secs(5));
    conn.join().unwrap();
    let _ = ui.kill();
    let o = ui.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        again.is_some(),
        "after {app_node}'s agent was started again, no new denied flow on the page: {}\nlab ui said: {said}",
        page.eval("document.getElementById('flows').innerText"),
    );
    assert!(
        said.contains(&format!("{app_node}: followed again")),
        "{said}"
    );
    assert!(
        page.errors.is_empty(),
        "the console said: {:#?}",
        page.errors
    );
}

/// Sends `n` TCP SYNs from the pod `from` to `to:port` through a raw socket (a new source
/// port each), as fast as Python can: a flood of connections the policies deny.
fn syn_flood(lab: &Lab, from: &str, src: &str, to: &str, port: u16, n: usize) -> String {
    let script = format!(
        r#"
import socket, struct, time
src, dst, dport, n = "{src}", "{to}", {port}, {n}
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
t = time.time()
for i in range(n):
    sport = 1024 + i % 64000
    h = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x02, 64240, 0, 0)
    h = h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:]
    s.sendto(h, (dst, 0))
print("sent", n, "in", round(time.time() - t, 2), "s")
"#
    );
    let o = lab.exec(from, &["python3", "-c", &script]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The resident set of a process, in MB.
fn rss_mb(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

#[test]
fn a_flood_of_denied_syns_is_counted_and_bounded_and_the_agent_goes_on() {
    if !can_run() {
        return;
    }
    let lab = Lab::seeds("flood", &[], &[]);
    let st = lab.status();
    let (app, app_ip, app_node) = pod(&st, "my-app-");
    let (api, api_ip, _) = pod(&st, "my-api-");
    let (front, _, _) = pod(&st, "frontend-");
    let pid = super::agent::agents(&lab.name)
        .into_iter()
        .find(|(n, _)| *n == app_node)
        .map(|(_, p)| p)
        .unwrap();
    // One flow first: the reader and the store are in use before the measure.
    connect(&lab, &api, &app_ip, 80).join().unwrap();
    let before = rss_mb(pid);
    let sent = syn_flood(&lab, &api, &api_ip, &app_ip, 80, 100_000);
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_mb(pid);
    let told_n = told(&lab, &app_node, "DROPPED", "policy-ingress");
    let lost = super::agent::agent_metric(&lab, &app_node, "podnet_agent_flows_lost_total");
    eprintln!(
        "{sent}; the agent of {app_node}: RSS {before:.1} -> {after:.1} MB, {told_n} flows told, {lost} lost"
    );
    // Every SYN was logged: told or counted lost (an overflow of the socket counts once, so
    // the sum may be less than what was sent, never nothing).
    assert!(told_n > 1000.0, "{told_n} told");
    assert!(
        told_n + lost <= 100_001.0 + 10.0,
        "more flows than packets: {told_n} + {lost}"
    );
    // The store keeps 4,096 flows, the queue 8,192 packets: a flood does not grow the agent.
    assert!(after - before < 40.0, "RSS {before:.1} -> {after:.1} MB");
    // And the agent still answers: an allowed connection works, a denied one is told.
    assert_eq!(connect(&lab, &front, &app_ip, 80).join().unwrap(), "open");
    let n = told_n;
    connect(&lab, &api, &app_ip, 80).join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(told(&lab, &app_node, "DROPPED", "policy-ingress") > n);
    let _ = app;
}
