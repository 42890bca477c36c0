//! The lab never loses or breaks what is running (issue 10): one regression test per defect,
//! reproducing it as it was reported.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{can_run, ok, podnet, write_manifest, Lab};

/// The namespaces whose names start with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn all_ready(st: &Value) -> bool {
    st["serversRunning"] == true
        && st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ready"] == true)
}

/// Defect 1: `lab down --name rp2` (a lab that never existed) deleted all of lab `rp2-x`'s
/// namespaces and left its server running, and said `lab "rp2" is down`.
#[test]
fn down_of_a_lab_whose_name_prefixes_another_touches_nothing_of_it() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("rp2-x", &["examples/seeds"], &[]);
    let short = lab.name.trim_end_matches("-x").to_string();
    let before = namespaces(&format!("podnet-{}", lab.name));
    assert!(before.len() > 5, "{before:?}");
    let out = ok(&["lab", "down", "--name", &short]);
    assert!(out.contains(&format!("there is no lab {short:?}")), "{out}");
    assert_eq!(namespaces(&format!("podnet-{}", lab.name)), before);
    assert!(all_ready(&lab.status()), "{}", lab.status());
    // And `lab up` of the shorter name builds beside it, not over it.
    let other = Lab {
        name: short.clone(),
    };
    ok(&[
        "lab",
        "up",
        "--name",
        &short,
        "-f",
        "examples/seeds/service.yaml",
    ]);
    assert_eq!(namespaces(&format!("podnet-{}", lab.name)), before);
    assert!(all_ready(&lab.status()));
    drop(other);
    assert_eq!(namespaces(&format!("podnet-{}", lab.name)), before);
}

/// Defect 9: `check` accepted what `lab up` could not build: pods `a/b-c` and `a-b/c` (one
/// namespace name), a 253-character pod name (over the kernel's limit), a Node named
/// `external` (the lab's external client).
#[test]
fn lab_up_builds_everything_check_accepts() {
    if !can_run() {
        return;
    }
    let long = format!("{}.{}", "p".repeat(126), "q".repeat(126));
    assert_eq!(long.len(), 253);
    let pod = |ns: &str, name: &str, node: &str| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: [{{containerPort: 8080}}]}}]}}\n")
    };
    let mut text = String::new();
    for n in ["external", "node-1"] {
        text += &format!("---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n");
    }
    text += &pod("a", "b-c", "external");
    text += &pod("a-b", "c", "node-1");
    text += &pod("default", &long, "node-1");
    let m = write_manifest("names", &text);
    let f = m.to_str().unwrap();
    ok(&["check", "-f", f]);
    let lab = Lab::up("names", &[f], &[]);
    let st = lab.status();
    assert!(all_ready(&st), "{st}");
    let ips: std::collections::BTreeSet<&str> = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["namespace"] != "kube-system")
        .map(|p| p["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 3, "{st}");
    // Every pod answers on its port, from the external node's pod.
    let m2 = lab.probe(8080, "TCP");
    assert!(
        m2["reachable"].as_array().unwrap().iter().all(|row| row
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c == true)),
        "{m2}"
    );
    std::fs::remove_file(m).unwrap();
}

/// Defect 6: if `lab up` died after starting `lab serve` but before saving its PID, neither
/// `lab up` nor `lab down` ever stopped it. Now the PID is written before the server serves,
/// and `down` also finds the lab's servers by their command line.
#[test]
fn down_stops_a_server_whose_pid_was_never_recorded() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("orphan", &["examples/seeds/service.yaml"], &[]);
    let dir = format!("/run/podnet/{}", lab.name);
    let pid: i32 = std::fs::read_to_string(format!("{dir}/serve.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // What the crash leaves: no PID in the state, no pid file.
    let state = format!("{dir}/state.json");
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    st["servePid"] = Value::Null;
    std::fs::write(&state, st.to_string()).unwrap();
    std::fs::remove_file(format!("{dir}/serve.pid")).unwrap();
    drop(lab);
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "the server {pid} is still running");
}

/// Defect 6, continued: a dead server (its keeper dead too, so nothing starts it again) is
/// reported at once, and `lab apply` refuses to change the lab, saying how to recover.
#[test]
fn a_dead_server_is_reported_and_apply_says_how_to_recover() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("dead", &["examples/seeds/service.yaml"], &[]);
    let pid = |file: &str| {
        std::fs::read_to_string(format!("/run/podnet/{}/{file}", lab.name))
            .unwrap()
            .trim()
            .to_string()
    };
    for file in ["keep.pid", "serve.pid"] {
        assert!(Command::new("kill")
            .args(["-KILL", &pid(file)])
            .status()
            .unwrap()
            .success());
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let st = lab.status();
    assert_eq!(st["serversRunning"], false, "{st}");
    let o = podnet(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        "examples/seeds/service.yaml",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not running") && err.contains("podnet lab down --name"),
        "{err}"
    );
}

/// The lab's pods as `ns/name` → (node, ip).
fn placements(lab: &Lab) -> std::collections::BTreeMap<String, (String, String)> {
    lab.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["namespace"].as_str().unwrap(),
                    p["name"].as_str().unwrap()
                ),
                (
                    p["node"].as_str().unwrap().to_string(),
                    p["ip"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// Defect 3: the seeds' examples plus one bare Pod `aaa-new` moved every other pod (`13
/// created, 12 deleted`), and a request through a ClusterIP failed meanwhile. Now only the new
/// pod is created, nothing moves, and requests keep being answered through the apply.
#[test]
fn adding_a_pod_moves_nothing_and_traffic_keeps_flowing() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("stable", &["examples/seeds"], &[]);
    let before = placements(&lab);
    let extra = write_manifest(
        "aaa-new",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: aaa-new}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n",
    );
    // A prober through my-service's ClusterIP, from a frontend pod (the seeds' policies let
    // frontends reach my-app), during the apply.
    let name = lab.name.clone();
    let frontend = format!("default/{}", lab.pod_name("frontend-"));
    let prober = std::thread::spawn(move || {
        podnet(&[
            "lab", "exec", "--name", &name, &frontend, "--", "sh", "-c",
            "ok=0; bad=0; for i in $(seq 150); do if curl -s -m 1 -o /dev/null http://my-service/hostname; then ok=$((ok+1)); else bad=$((bad+1)); fi; sleep 0.01; done; echo $ok $bad",
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = lab.apply(&["examples/seeds", extra.to_str().unwrap()]);
    assert!(out.contains("1 created, 0 deleted"), "{out}");
    let probed = prober.join().unwrap();
    let counts = String::from_utf8_lossy(&probed.stdout).trim().to_string();
    assert!(
        counts.ends_with(" 0"),
        "requests failed during the apply (ok bad): {counts}"
    );
    let after = placements(&lab);
    for (pod, at) in &before {
        assert_eq!(after.get(pod), Some(at), "{pod} moved");
    }
    assert!(after.contains_key("default/aaa-new"));
    std::fs::remove_file(extra).unwrap();
}

/// Defect 13: `containerPort` is informational; a Service to a port the pod does not declare
/// (here UDP where the pod declares only TCP) got no answer, since the test servers listened
/// only on declared ports. They now listen on every port a Service targets too.
#[test]
fn a_service_to_an_undeclared_port_is_answered() {
    if !can_run() {
        return;
    }
    let m = write_manifest(
        "undeclared",
        r#"apiVersion: v1
kind: Pod
metadata: {name: srv, labels: {app: srv}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cli}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: both}
spec:
  selector: {app: srv}
  ports:
  - {name: tcp, port: 80, targetPort: 8080}
  - {name: udp, port: 53, protocol: UDP, targetPort: 8080}
  - {name: other, port: 81, targetPort: 9090}
"#,
    );
    let lab = Lab::up("undecl", &[m.to_str().unwrap()], &[]);
    let script = "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'hostname', ('both', 53)); print(s.recv(100).decode())\"; curl -s -m 2 http://both:81/hostname";
    let o = lab.exec("default/cli", &["sh", "-c", script]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.matches("srv").count() == 2,
        "UDP 53 → 8080/UDP and TCP 81 → 9090: {out}"
    );
    std::fs::remove_file(m).unwrap();
}

/// Defect 5: one slow client starved every pod and kube-dns: the test servers never closed
/// idle connections, all servers shared one file-descriptor budget, and a failing `accept`
/// spun at a full core. Here a client holds 1,500 idle connections to one pod; meanwhile
/// another pod, a Service by name (cluster DNS over UDP) and kube-dns over TCP all answer, and
/// the server closes the idle connections, each within its header timeout once accepted.
///
/// A server holds at most `PER_LISTENER` (512) connections; the others wait in the listen
/// queue (4,096 deep since a queue of 128 dropped SYNs of a burst in bench/flows.py), and are
/// accepted as the ones before are closed: 1,500 take three rounds of the header timeout.
/// With the queue of 128 the connections past about 640 failed to connect, so this test
/// waited for one round only; it failed so in CI (985 of 1,500 closed within 8 s) once the
/// queue grew.
#[test]
fn idle_connections_starve_no_one_and_are_closed() {
    if !can_run() {
        return;
    }
    let m = write_manifest(
        "idle",
        r#"apiVersion: v1
kind: Pod
metadata: {name: victim}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, labels: {app: other}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: other}
spec: {selector: {app: other}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cli}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
"#,
    );
    let lab = Lab::up("idle", &[m.to_str().unwrap()], &[]);
    let victim = lab.pod_ip("victim");
    let name = lab.name.clone();
    // The hog: 1,500 connections that send nothing; it reports how many the server closed
    // within a header timeout (5 s) per round of `PER_LISTENER` accepted, and 2 s more.
    let (per, timeout) = (
        podnet_lab::serve::http::PER_LISTENER,
        podnet_lab::serve::http::HEADER_READ_TIMEOUT.as_secs_f64(),
    );
    let hog_script = format!(
        r#"
import socket, time
socks = []
for _ in range(1500):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect(("{victim}", 8080)); socks.append(s)
    except OSError:
        s.close()
print("open", len(socks), flush=True)
time.sleep(1.5)
rounds = (len(socks) + {per} - 1) // {per}
deadline = time.time() + {timeout} * rounds + 2
closed = 0
for s in socks:
    s.settimeout(max(0.01, deadline - time.time()))
    try:
        if s.recv(1) == b"":
            closed += 1
    except OSError:
        pass
print("closed", closed, flush=True)
"#
    );
    let hog = std::thread::spawn(move || {
        podnet(&[
            "lab",
            "exec",
            "--name",
            &name,
            "default/hog",
            "--",
            "sh",
            "-c",
            &format!("ulimit -n 8192; python3 -c '{hog_script}'"),
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let start = std::time::Instant::now();
    let o = lab.exec(
        "default/cli",
        &[
            "sh",
            "-c",
            "curl -s -m 2 http://other/hostname; echo; dig +tcp +short +time=2 +tries=1 other.default.svc.cluster.local",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("other\n"),
        "another pod through its Service: {out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("10.96.")),
        "kube-dns over TCP: {out}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let h = hog.join().unwrap();
    let report = String::from_utf8_lossy(&h.stdout).to_string();
    let num = |k: &str| -> usize {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{report} {}", String::from_utf8_lossy(&h.stderr)))
    };
    let (open, closed) = (num("open"), num("closed"));
    assert!(open >= 500, "{report}");
    assert!(
        closed * 10 >= open * 9,
        "the server closes idle connections after its header timeout: {report}"
    );
    // The victim itself still answers once they are gone.
    let again = lab.exec(
        "default/cli",
        &[
            "curl",
            "-s",
            "-m",
            "2",
            &format!("http://{victim}:8080/hostname"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), "victim");
    std::fs::remove_file(m).unwrap();
}

/// Defect 2: a `lab apply` that failed half-way (then: a pod whose name made an invalid
/// namespace name) removed 12 of 14 pods, left an orphan namespace, and saved no state. Here a
/// real failure: node-1's CNI configuration is gone, so the new pods there cannot be added.
/// The apply fails, says so, and the lab is exactly as before; once the configuration is back
/// the same apply succeeds.
#[test]
fn a_failed_apply_leaves_the_lab_as_it_was() {
    if !can_run() {
        return;
    }
    let deploy = |n: u32| {
        write_manifest(
            &format!("rollback{n}"),
            &format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {n}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 8080}}]}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"),
        )
    };
    let (m2, m9) = (deploy(2), deploy(9));
    let lab = Lab::up("rollback", &[m2.to_str().unwrap()], &[]);
    let before = placements(&lab);
    let namespaces_before = namespaces(&format!("podnet-{}.", lab.name));
    let conf = format!(
        "/run/podnet/{}/nodes/node-1/net.d/10-podnet.conflist",
        lab.name
    );
    let saved = std::fs::read(&conf).unwrap();
    std::fs::remove_file(&conf).unwrap();
    let o = podnet(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        m9.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing was changed") && err.contains("the lab is as it was"),
        "{err}"
    );
    assert_eq!(placements(&lab), before);
    assert_eq!(
        namespaces(&format!("podnet-{}.", lab.name)),
        namespaces_before
    );
    assert!(all_ready(&lab.status()));
    // Issue 21, item 10: what the lab expects of each node is what it expected before, not
    // the rejected change's (and the nodes hold it).
    for node in ["node-0", "node-1", "node-2"] {
        super::node_holds_what_the_lab_expects(&lab.name, node);
    }
    std::fs::write(&conf, saved).unwrap();
    let out = lab.apply(&[m9.to_str().unwrap()]);
    assert!(out.contains("7 created, 0 deleted"), "{out}");
    assert!(all_ready(&lab.status()));
    for m in [m2, m9] {
        std::fs::remove_file(m).unwrap();
    }
}
