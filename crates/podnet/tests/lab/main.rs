//! The lab for real: real namespaces, real packets. Needs root; without it each test says why
//! it skips, and under `CI=true` a skip is a failure. Every test uses its own lab name and
//! tears its lab down, even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod agent;
mod api;
mod dns;
mod gateway;
mod hostile;
mod ingress;
mod netpol;
mod readme;
mod robust;
mod soak;

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn podnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .current_dir(root_dir())
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = podnet(args);
    assert!(
        o.status.success(),
        "podnet {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn can_run() -> bool {
    let uid_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let tools = ["ip", "nsenter", "bridge"].iter().all(|t| {
        Command::new(t).arg("-V").output().is_ok()
            || Command::new(t).arg("--version").output().is_ok()
    });
    if uid_root && tools {
        return true;
    }
    let why = if uid_root {
        "iproute2 or nsenter is missing (scripts/install-deps.sh installs them)"
    } else {
        "the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("skipped under CI=true: {why}");
    }
    eprintln!("SKIP: {why}");
    false
}

/// A lab that is torn down when dropped.
struct Lab {
    name: String,
}

impl Lab {
    fn up(name: &str, files: &[&str], extra: &[&str]) -> Lab {
        let name = format!("t{}-{name}", std::process::id() % 100_000);
        let mut args = vec!["lab", "up", "--name", &name];
        for f in files {
            args.extend(["-f", f]);
        }
        args.extend(extra);
        let lab = Lab { name: name.clone() };
        ok(&args);
        lab
    }

    fn exec(&self, target: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["lab", "exec", "--name", &self.name, target, "--"];
        args.extend(cmd);
        podnet(&args)
    }

    fn status(&self) -> Value {
        serde_json::from_str(&ok(&["lab", "status", "--name", &self.name, "-o", "json"])).unwrap()
    }

    /// `lab probe`, which must agree with the static answer (policies and servers' ports).
    fn probe(&self, port: u16, proto: &str) -> Value {
        let m = self.probe_raw(port, proto);
        assert_eq!(m["disagreements"], serde_json::json!([]), "{m}");
        m
    }

    fn probe_raw(&self, port: u16, proto: &str) -> Value {
        serde_json::from_str(&ok(&[
            "lab",
            "probe",
            "--name",
            &self.name,
            "--port",
            &port.to_string(),
            "--protocol",
            proto,
            "-o",
            "json",
        ]))
        .unwrap()
    }

    /// The name of the first pod whose name starts with `prefix`.
    fn pod_name(&self, prefix: &str) -> String {
        self.status()["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .find(|n| n.starts_with(prefix))
            .unwrap()
    }

    fn pod_ip(&self, name_prefix: &str) -> String {
        let st = self.status();
        st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str().unwrap().starts_with(name_prefix))
            .unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let o = podnet(&["lab", "down", "--name", &self.name]);
        if !o.status.success() && !std::thread::panicking() {
            panic!("lab down: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// What the lab expects of `node` (after any apply, applied or rolled back) is what its agent
/// last read back from its kernel.
fn node_holds_what_the_lab_expects(lab: &str, node: &str) {
    let read = |f: &str| -> Value {
        let path = format!("/run/podnet/{lab}/agents/{node}.{f}.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    assert!(
        read("expected") == read("verified"),
        "{node}: the kernel holds what the lab expects"
    );
}

/// The seeds' workloads with one Deployment's replicas changed.
pub(crate) fn scaled(lab: &str, deployment: &str, from: u32, to: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root_dir().join("examples/seeds/workloads.yaml")).unwrap();
    let docs: Vec<String> = text
        .split("\n---")
        .map(|d| {
            if d.contains(&format!("name: {deployment}\n")) && d.contains("kind: Deployment") {
                d.replacen(&format!("replicas: {from}"), &format!("replicas: {to}"), 1)
            } else {
                d.to_string()
            }
        })
        .collect();
    write_manifest(&format!("{lab}-{deployment}-{to}"), &docs.join("\n---"))
}

fn write_manifest(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "podnet-lab-test-{}-{name}.yaml",
        std::process::id()
    ));
    std::fs::write(&p, text).unwrap();
    p
}

fn snapshot() -> (String, String, String) {
    let run = |args: &[&str]| {
        String::from_utf8(
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let links: String = run(&["ip", "-o", "link"])
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string() + "\n")
        .collect();
    (
        links,
        run(&["ip", "route"]),
        run(&["nft", "list", "ruleset"]),
    )
}

#[test]
fn the_seeds_lab_matches_the_plan_and_pods_reach_each_other_across_nodes() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("seeds", &["examples/seeds"], &[]);
    // The dataplane agrees with the model: every pod has the IP `podnet check` planned.
    let plan: Value =
        serde_json::from_str(&ok(&["check", "-f", "examples/seeds", "-o", "json"])).unwrap();
    let st = lab.status();
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3);
    for p in plan["pods"].as_array().unwrap() {
        let s = st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == p["name"])
            .unwrap();
        assert_eq!(s["ip"], p["ips"][0], "{}", p["name"]);
        assert_eq!(s["node"], p["node"]);
        assert_eq!(s["ready"], true);
    }
    // Every pod reaches every pod that serves 8080, on any node, where the seeds'
    // NetworkPolicies allow it (`podnet check --reach`), and no other.
    let reach: Vec<Value> = serde_json::from_str(&ok(&[
        "check",
        "-f",
        "examples/seeds",
        "--reach",
        "--port",
        "8080",
        "-o",
        "json",
    ]))
    .unwrap();
    let allowed = |from: &str, to: &str| {
        reach
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .unwrap_or_else(|| panic!("{from} -> {to}"))["allowed"]
            == true
    };
    assert!(
        reach.iter().any(|c| c["allowed"] == false),
        "the seeds' policies deny something"
    );
    let m = lab.probe(8080, "TCP");
    let pods: Vec<&str> = m["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let serves = |p: &str| {
        ["my-app", "my-api", "my-web"]
            .iter()
            .any(|s| p.starts_with(&format!("default/{s}-")))
    };
    for (i, row) in m["reachable"].as_array().unwrap().iter().enumerate() {
        for (j, cell) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                cell.as_bool().unwrap(),
                serves(pods[j]) && (i == j || allowed(pods[i], pods[j])),
                "{} -> {}",
                pods[i],
                pods[j]
            );
        }
    }
    // Across nodes, the server sees the client pod's own IP: no NAT.
    let client_ip = lab.pod_ip("client");
    let client_node = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "client")
        .unwrap()["node"]
        .clone();
    let far = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        // my-api: no policy isolates it (my-app's accept only trusted-app and frontend).
        .find(|p| p["name"].as_str().unwrap().starts_with("my-api-") && p["node"] != client_node)
        .unwrap();
    let out = lab.exec(
        "default/client",
        &[
            "curl",
            "-s",
            "--max-time",
            "3",
            &format!("http://{}:8080/clientip", far["ip"].as_str().unwrap()),
        ],
    );
    let seen = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        seen.rsplit_once(':').unwrap().0,
        client_ip,
        "the server saw {seen}"
    );
    let out = lab.exec(
        "default/client",
        &[
            "curl",
            "-s",
            "--max-time",
            "3",
            &format!("http://{}:8080/hostname", far["ip"].as_str().unwrap()),
        ],
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        far["name"].as_str().unwrap()
    );
    // The external client reaches every node IP, and no pod (nothing routes pods to it).
    for n in st["nodes"].as_array().unwrap() {
        let o = lab.exec(
            "external",
            &["ping", "-c1", "-W2", n["ip"].as_str().unwrap()],
        );
        assert!(o.status.success(), "external -> node {}", n["name"]);
    }
    let o = lab.exec("external", &["ping", "-c1", "-W1", &client_ip]);
    assert!(!o.status.success(), "the outside has no route to pod IPs");
    // Yet a pod reaches the outside: its traffic leaves with its node's address
    // (masquerade), which is what a server outside sees.
    let server = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 9999))\ns.listen()\ns.settimeout(20)\nc, a = s.accept()\nc.recv(1000)\nc.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n' + a[0].encode())\nc.close()\n";
    let o = lab.exec(
        "external",
        &[
            "sh",
            "-c",
            &format!("python3 -c \"{server}\" >/dev/null 2>&1 &"),
        ],
    );
    assert!(o.status.success());
    let client_node_ip = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == client_node)
        .unwrap()["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let ext_ip = "172.18.0.1";
    let seen = (0..20)
        .find_map(|_| {
            let o = lab.exec(
                "default/client",
                &[
                    "curl",
                    "-s",
                    "--max-time",
                    "2",
                    &format!("http://{ext_ip}:9999/"),
                ],
            );
            let got = String::from_utf8(o.stdout).unwrap();
            if got.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            } else {
                Some(got)
            }
        })
        .expect("a pod reaches a server outside the cluster");
    assert_eq!(seen, client_node_ip, "the outside sees the pod's node");
}

#[test]
fn udp_across_nodes_and_localhost_inside_a_pod() {
    if !can_run() {
        return;
    }
    let m = write_manifest(
        "udp",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns-like}
spec:
  replicas: 3
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - {name: udp, image: x, ports: [{containerPort: 5353, protocol: UDP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: two-containers}
spec:
  containers:
  - {name: web, image: x, ports: [{containerPort: 8080}]}
  - {name: sidecar, image: x, ports: [{containerPort: 9090}]}
"#,
    );
    let lab = Lab::up("udp", &[m.to_str().unwrap()], &[]);
    let probe = lab.probe(5353, "UDP");
    let pods: Vec<&str> = probe["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for (i, row) in probe["reachable"].as_array().unwrap().iter().enumerate() {
        for (j, cell) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                cell.as_bool().unwrap(),
                pods[j].starts_with("default/dns-like"),
                "{} -> {} over UDP",
                pods[i],
                pods[j]
            );
        }
    }
    // The containers of one pod share its namespace: the sidecar's port on localhost.
    let o = lab.exec(
        "default/two-containers",
        &[
            "curl",
            "-s",
            "--max-time",
            "3",
            "http://127.0.0.1:9090/hostname",
        ],
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "two-containers");
    std::fs::remove_file(m).unwrap();
}

#[test]
fn a_full_probe_matrix_of_3_nodes_and_30_pods() {
    if !can_run() {
        return;
    }
    let m = write_manifest("30", &web_deployment(30, 80));
    let lab = Lab::up("m30", &[m.to_str().unwrap()], &["--nodes", "3"]);
    let probe = lab.probe(80, "TCP");
    let rows = probe["reachable"].as_array().unwrap();
    assert_eq!(rows.len(), 30);
    let reached = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .filter(|c| c.as_bool().unwrap())
        .count();
    assert_eq!(reached, 900, "every pod reaches every pod");
    let table = ok(&["lab", "probe", "--name", &lab.name, "--port", "80"]);
    assert_eq!(
        table.lines().count(),
        32,
        "a header, 30 rows, and whether the static matrix agrees"
    );
    assert!(table.lines().nth(1).unwrap().ends_with("\t."));
    assert!(table.ends_with(
        "the static matrix agrees: every cell is what the policies and the servers' ports say\n"
    ));
    std::fs::remove_file(m).unwrap();
}

#[test]
fn down_leaves_the_root_namespace_exactly_as_before_and_bad_input_creates_nothing() {
    if !can_run() {
        return;
    }
    let before = snapshot();
    {
        let lab = Lab::up("clean", &["examples/guestbook"], &[]);
        assert!(PathBuf::from(format!("/run/podnet/{}", lab.name)).exists());
    }
    assert_eq!(
        snapshot(),
        before,
        "links, routes and the nftables ruleset of the root namespace"
    );

    // A bad manifest: a clear error, and nothing is created.
    let m = write_manifest(
        "bad",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 0\n",
    );
    let name = format!("t{}-bad", std::process::id() % 100_000);
    let o = podnet(&["lab", "up", "--name", &name, "-f", m.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains(":6:11: error: Service/default/s: spec.ports[0].port"),
        "{err}"
    );
    assert!(err.contains("nothing was created"));
    let leftovers: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("podnet-{name}."))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty());
    assert!(!PathBuf::from(format!("/run/podnet/{name}")).exists());
    assert_eq!(snapshot(), before);
    std::fs::remove_file(m).unwrap();
}

#[test]
fn down_cleans_up_after_a_crash() {
    if !can_run() {
        return;
    }
    let name = format!("t{}-crash", std::process::id() % 100_000);
    // What a crash mid-way leaves: namespaces and a state directory, no state file.
    for ns in ["underlay", "n.node-0", "p.default.x"] {
        assert!(Command::new("ip")
            .args(["netns", "add", &format!("podnet-{name}.{ns}")])
            .status()
            .unwrap()
            .success());
    }
    std::fs::create_dir_all(format!("/run/podnet/{name}/bin")).unwrap();
    std::fs::create_dir_all(format!("/etc/netns/podnet-{name}.p.default.x")).unwrap();
    std::fs::write(
        format!("/etc/netns/podnet-{name}.p.default.x/resolv.conf"),
        "x",
    )
    .unwrap();
    let lab = Lab::up("crash", &["examples/seeds/service.yaml"], &[]);
    assert!(
        !Path::new(&format!("/etc/netns/podnet-{name}.p.default.x")).exists(),
        "up removed the leftover resolver files too"
    );
    assert_eq!(lab.name, name);
    assert!(
        !std::fs::read_dir("/run/netns")
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy()
                == format!("podnet-{name}.p.default.x")),
        "up removed the leftovers first"
    );
    // A lab that is up is not rebuilt behind the user's back.
    let o = podnet(&[
        "lab",
        "up",
        "--name",
        &name,
        "-f",
        "examples/seeds/service.yaml",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is already up"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(Path::new(&format!("/etc/netns/podnet-{name}.n.node-0/resolv.conf")).exists());
    drop(lab);
    // Down again: idempotent, and it says there is no such lab.
    assert!(ok(&["lab", "down", "--name", &name]).contains("there is no lab"));
    assert!(!std::fs::read_dir("/etc/netns")
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("podnet-{name}."))))
        .unwrap_or(false));
    assert!(!std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("podnet-{name}."))))
        .unwrap_or(false));
}

#[test]
fn apply_adds_and_removes_pods_and_leaves_the_rest_alone() {
    if !can_run() {
        return;
    }
    let deploy = |n: u32| {
        write_manifest(&format!("apply{n}"), &format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: 10.96.7.7, selector: {{app: web}}, ports: [{{port: 8080, targetPort: 80}}]}}\n{}", web_deployment(n, 80), client_pod()))
    };
    let (m3, m5, m1) = (deploy(3), deploy(5), deploy(1));
    let lab = Lab::up("apply", &[m3.to_str().unwrap()], &[]);
    let inodes = || -> std::collections::BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/run/netns")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("podnet-{}.p.default.", lab.name))
            })
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().ino(),
                )
            })
            .collect()
    };
    let before = inodes();
    let out = ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        m5.to_str().unwrap(),
    ]);
    // The 2 cluster DNS pods are unchanged too.
    assert!(out.contains("2 created, 0 deleted, 6 unchanged"), "{out}");
    let after = inodes();
    assert_eq!(after.len(), 6);
    for (k, ino) in &before {
        assert_eq!(after.get(k), Some(ino), "{k} was not touched");
    }
    let m = lab.probe(80, "TCP");
    let web_cols: Vec<bool> = m["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().starts_with("default/web-"))
        .collect();
    for row in m["reachable"].as_array().unwrap() {
        for (j, c) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                c.as_bool().unwrap(),
                web_cols[j],
                "new pods are served at once"
            );
        }
    }
    // The Service follows the scale: five backends now.
    let hosts = |lab: &Lab| -> std::collections::BTreeSet<String> {
        (0..100)
            .filter_map(|_| curl(lab, "default/client", "http://10.96.7.7:8080/hostname"))
            .collect()
    };
    assert_eq!(hosts(&lab).len(), 5);
    let out = ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        m1.to_str().unwrap(),
    ]);
    assert!(out.contains("0 created, 4 deleted, 4 unchanged"), "{out}");
    assert_eq!(inodes().len(), 2, "one web pod and the client");
    assert_eq!(
        lab.status()["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["namespace"] == "default")
            .count(),
        2
    );
    assert_eq!(hosts(&lab).len(), 1, "only the remaining pod gets traffic");
    for m in [m3, m5, m1] {
        std::fs::remove_file(m).unwrap();
    }
}

const SERVICES: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: x
        ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, targetPort: dns, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {externalIPs: [203.0.113.10], selector: {app: web}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec: {selector: {app: solo}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: local-solo}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: solo}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {containers: [{name: c, image: x}]}
"#;

fn svc<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

fn curl(lab: &Lab, from: &str, url: &str) -> Option<String> {
    let o = lab.exec(from, &["curl", "-s", "--max-time", "3", url]);
    o.status
        .success()
        .then(|| String::from_utf8(o.stdout).unwrap())
}

#[test]
fn services_by_cluster_ip_node_port_and_load_balancer() {
    if !can_run() {
        return;
    }
    let m = write_manifest("services", SERVICES);
    let lab = Lab::up("svc", &[m.to_str().unwrap()], &[]);
    let plan: Value =
        serde_json::from_str(&ok(&["check", "-f", m.to_str().unwrap(), "-o", "json"])).unwrap();
    let web = svc(&plan, "web");
    let vip = web["clusterIPs"][0].as_str().unwrap();

    // ClusterIP from a pod: port 80 -> targetPort 8080, spread over the three pods.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let pod = curl(&lab, "default/client", &format!("http://{vip}/hostname"))
            .expect("ClusterIP answers");
        *seen.entry(pod).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "equal random: {seen:?}");
    // From a node, under strict reverse-path filtering (as many distributions set it): every
    // pod answers, those on other nodes too (the request goes through the overlay with the
    // overlay's address, so the reply comes back the same way and passes the filter).
    let o = lab.exec(
        "node/node-0",
        &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/rp_filter"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(
            curl(&lab, "node/node-0", &format!("http://{vip}/hostname"))
                .expect("ClusterIP answers a node"),
        );
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The server sees the client pod's own IP (no masquerade inside the cluster).
    let client_ip = lab.pod_ip("client");
    let clientip = curl(&lab, "default/client", &format!("http://{vip}/clientip")).unwrap();
    assert_eq!(clientip.rsplit_once(':').unwrap().0, client_ip);

    // UDP through the ClusterIP.
    let udp = format!("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect(('{vip}', 53)); s.send(b'hostname'); print(s.recv(100).decode())");
    let o = lab.exec("default/client", &["python3", "-c", &udp]);
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .trim()
            .starts_with("web-"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // No endpoints: refused at once, over TCP (reset) and UDP (ICMP port unreachable).
    let empty = svc(&plan, "empty")["clusterIPs"][0]
        .as_str()
        .unwrap()
        .to_string();
    let t = std::time::Instant::now();
    let o = lab.exec(
        "default/client",
        &["curl", "-s", "--max-time", "5", &format!("http://{empty}/")],
    );
    assert_eq!(o.status.code(), Some(7), "curl: connection refused");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "refused, not timed out"
    );
    let udp = format!("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect(('{empty}', 53)); s.send(b'x'); s.recv(10)");
    let o = lab.exec("default/client", &["python3", "-c", &udp]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ConnectionRefusedError"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // NodePort on every node, from outside.
    let np = web["ports"][0]["nodePort"].as_u64().unwrap();
    for n in lab.status()["nodes"].as_array().unwrap() {
        let got = curl(
            &lab,
            "external",
            &format!("http://{}:{np}/hostname", n["ip"].as_str().unwrap()),
        );
        assert!(
            got.is_some_and(|h| h.starts_with("web-")),
            "NodePort on {}",
            n["name"]
        );
    }
    // LoadBalancer from outside: reached, and masqueraded (externalTrafficPolicy Cluster).
    let lb = web["loadBalancerIPs"][0].as_str().unwrap();
    let got = curl(&lab, "external", &format!("http://{lb}/clientip"))
        .expect("the LoadBalancer IP answers from outside");
    assert_ne!(got.rsplit_once(':').unwrap().0, "172.18.0.1");
    // externalTrafficPolicy Local keeps the client's address.
    let local = svc(&plan, "local")["loadBalancerIPs"][0].as_str().unwrap();
    for _ in 0..5 {
        let got =
            curl(&lab, "external", &format!("http://{local}/clientip")).expect("ETP Local answers");
        assert_eq!(
            got.rsplit_once(':').unwrap().0,
            "172.18.0.1",
            "the client's own address"
        );
    }
    // externalIPs: from outside (routed to the nodes) and from a pod.
    for from in ["external", "default/client"] {
        assert!(
            curl(&lab, from, "http://203.0.113.10/hostname").is_some_and(|h| h.starts_with("web-")),
            "externalIP from {from}"
        );
    }
    // sessionAffinity ClientIP: one client keeps its pod, by ClusterIP and by NodePort.
    let sticky = svc(&plan, "sticky");
    let vip = sticky["clusterIPs"][0].as_str().unwrap();
    let by_vip: std::collections::BTreeSet<_> = (0..20)
        .filter_map(|_| curl(&lab, "default/client", &format!("http://{vip}/hostname")))
        .collect();
    assert_eq!(by_vip.len(), 1, "{by_vip:?}");
    let np = sticky["ports"][0]["nodePort"].as_u64().unwrap();
    let node_ip = lab.status()["nodes"][0]["ip"].as_str().unwrap().to_string();
    let by_np: std::collections::BTreeSet<_> = (0..20)
        .filter_map(|_| curl(&lab, "external", &format!("http://{node_ip}:{np}/hostname")))
        .collect();
    assert_eq!(by_np.len(), 1, "{by_np:?}");
    // healthCheckNodePort: 200 where the Service has a local endpoint, 503 elsewhere; and the
    // outside reaches its LoadBalancer IP, routed to that node only.
    let ls = svc(&plan, "local-solo");
    let hc = ls["healthCheckNodePort"]
        .as_u64()
        .expect("a health check port");
    let solo_node = lab.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "solo")
        .unwrap()["node"]
        .as_str()
        .unwrap()
        .to_string();
    for n in lab.status()["nodes"].as_array().unwrap() {
        let o = lab.exec(
            "external",
            &[
                "curl",
                "-s",
                "--max-time",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}:{hc}/healthz", n["ip"].as_str().unwrap()),
            ],
        );
        let code = String::from_utf8(o.stdout).unwrap();
        let want = if n["name"] == solo_node.as_str() {
            "200"
        } else {
            "503"
        };
        assert_eq!(code, want, "health check on {}", n["name"]);
    }
    let lsip = ls["loadBalancerIPs"][0].as_str().unwrap();
    for _ in 0..5 {
        let got = curl(&lab, "external", &format!("http://{lsip}/clientip"))
            .expect("routed to the node with the endpoint");
        assert_eq!(got.rsplit_once(':').unwrap().0, "172.18.0.1");
    }
    // Hairpin: a pod reaches itself through its own Service.
    let solo = svc(&plan, "solo")["clusterIPs"][0].as_str().unwrap();
    assert_eq!(
        curl(&lab, "default/solo", &format!("http://{solo}/hostname")).as_deref(),
        Some("solo")
    );
    std::fs::remove_file(m).unwrap();
}

#[test]
fn the_programmed_proxy_equals_the_models_plan() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("cons", &["examples/guestbook"], &[]);
    let plan: Value =
        serde_json::from_str(&ok(&["check", "-f", "examples/guestbook", "-o", "json"])).unwrap();
    for node in lab.status()["nodes"].as_array().unwrap() {
        let ns = format!("podnet-{}.n.{}", lab.name, node["name"].as_str().unwrap());
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "nft",
                "-j",
                "list",
                "map",
                "ip",
                "podnet-proxy",
                "services",
            ])
            .output()
            .unwrap();
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let elems = listed["nftables"][1]["map"]["elem"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let programmed: std::collections::BTreeSet<(String, u64, String)> = elems
            .iter()
            .map(|e| {
                let key = e[0]["concat"].as_array().unwrap();
                let verdict = e[1]["goto"]["target"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| e[1].as_object().and_then(|o| o.keys().next().cloned()))
                    .unwrap();
                (
                    key[0].as_str().unwrap().to_string(),
                    key[2].as_u64().unwrap(),
                    verdict,
                )
            })
            .collect();
        // The model: every ClusterIP port with ready endpoints jumps to svc_ep<number ready>
        // (svc_aff<timeout>_ep<number ready> with session affinity).
        let mut want = std::collections::BTreeSet::new();
        for s in plan["services"].as_array().unwrap() {
            for port in s["ports"].as_array().unwrap() {
                let ready = s["endpointSlices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sl| {
                        sl["ports"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| p["name"] == port["name"])
                    })
                    .flat_map(|sl| sl["endpoints"].as_array().unwrap().iter())
                    .filter(|e| e["ready"] == true)
                    .count();
                if ready == 0 {
                    continue;
                }
                for ip in s["clusterIPs"].as_array().unwrap() {
                    want.insert((
                        ip.as_str().unwrap().to_string(),
                        port["port"].as_u64().unwrap(),
                        match s["sessionAffinityTimeout"].as_u64() {
                            Some(t) => format!(
                                "svc_{}_aff{t}_ep{ready}",
                                port["protocol"].as_str().unwrap().to_lowercase()
                            ),
                            None => format!(
                                "svc_{}_ep{ready}",
                                port["protocol"].as_str().unwrap().to_lowercase()
                            ),
                        },
                    ));
                }
            }
        }
        assert!(
            want.len() >= 5,
            "the guestbook has ClusterIP ports with endpoints: {want:?}"
        );
        let programmed_cluster: std::collections::BTreeSet<_> = programmed
            .into_iter()
            .filter(|(ip, _, _)| ip.starts_with("10.96."))
            .collect();
        assert_eq!(programmed_cluster, want, "node {}", node["name"]);
    }
}

#[test]
fn udp_flows_to_a_removed_endpoint_move_to_another() {
    if !can_run() {
        return;
    }
    let pods = |names: &[&str]| {
        let mut y = String::from("apiVersion: v1\nkind: Service\nmetadata: {name: udp}\nspec: {clusterIP: 10.96.9.9, selector: {app: u}, ports: [{port: 53, targetPort: 5353, protocol: UDP}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec: {nodeName: node-0, containers: [{name: c, image: x}]}\n");
        for n in names {
            y += &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, labels: {{app: u}}}}\nspec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 5353, protocol: UDP}}]}}]}}\n");
        }
        y
    };
    let both = write_manifest("udp-both", &pods(&["u1", "u2"]));
    let lab = Lab::up("ct", &[both.to_str().unwrap()], &[]);
    // The same source port each time: the same flow, the same conntrack entry.
    let ask = "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 40000)); s.settimeout(3); s.sendto(b'hostname', ('10.96.9.9', 53)); print(s.recv(100).decode())";
    let first = String::from_utf8(lab.exec("default/client", &["python3", "-c", ask]).stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(first == "u1" || first == "u2", "{first:?}");
    let other = if first == "u1" { "u2" } else { "u1" };
    let one = write_manifest("udp-one", &pods(&[other]));
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        one.to_str().unwrap(),
    ]);
    let o = lab.exec("default/client", &["python3", "-c", ask]);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim(),
        other,
        "the flow moved at once: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for m in [both, one] {
        std::fs::remove_file(m).unwrap();
    }
}

/// Upstream e2e's section D: terminating fallback (KEP-1669) and traffic policies.
#[test]
fn terminating_fallback_and_traffic_policies() {
    if !can_run() {
        return;
    }
    let m = write_manifest(
        "term",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: term, labels: {app: term}, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: live, labels: {app: live}}
spec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client0}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client1}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: term-cluster}
spec: {clusterIP: 10.96.20.1, selector: {app: term}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: term-local}
spec: {clusterIP: 10.96.20.2, internalTrafficPolicy: Local, selector: {app: term}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: term-lb}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: term}, ports: [{port: 80, targetPort: 8080, nodePort: 31080}], healthCheckNodePort: 31081}
---
apiVersion: v1
kind: Service
metadata: {name: term-np}
spec: {type: NodePort, selector: {app: term}, ports: [{port: 80, targetPort: 8080, nodePort: 31090}]}
---
apiVersion: v1
kind: Service
metadata: {name: live-local}
spec: {clusterIP: 10.96.20.3, internalTrafficPolicy: Local, selector: {app: live}, ports: [{port: 80, targetPort: 8080}]}
"#,
    );
    let lab = Lab::up("term", &[m.to_str().unwrap()], &[]);
    let node = |n: usize| lab.status()["nodes"][n]["ip"].as_str().unwrap().to_string();
    // Only a terminating endpoint: used, from both nodes (internalTrafficPolicy Cluster).
    for c in ["default/client0", "default/client1"] {
        assert_eq!(
            curl(&lab, c, "http://10.96.20.1/hostname").as_deref(),
            Some("term"),
            "{c}"
        );
    }
    // internalTrafficPolicy Local: the local terminating endpoint on node-0; none on node-1.
    assert_eq!(
        curl(&lab, "default/client0", "http://10.96.20.2/hostname").as_deref(),
        Some("term")
    );
    assert_eq!(
        curl(&lab, "default/client1", "http://10.96.20.2/hostname"),
        None
    );
    // externalTrafficPolicy Cluster through a NodePort: clients on both nodes reach node-0's.
    for c in ["default/client0", "default/client1"] {
        assert_eq!(
            curl(&lab, c, &format!("http://{}:31090/hostname", node(0))).as_deref(),
            Some("term"),
            "{c}"
        );
    }
    // Only terminating endpoints: the health check fails, yet node-0 still serves the NodePort.
    let o = lab.exec(
        "external",
        &[
            "curl",
            "-s",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}:31081/healthz", node(0)),
        ],
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "503");
    assert_eq!(
        curl(
            &lab,
            "external",
            &format!("http://{}:31080/hostname", node(0))
        )
        .as_deref(),
        Some("term")
    );
    // internalTrafficPolicy Local, pod to pod: node-0's client reaches it, node-1's does not.
    assert_eq!(
        curl(&lab, "default/client0", "http://10.96.20.3/hostname").as_deref(),
        Some("live")
    );
    for _ in 0..3 {
        assert_eq!(
            curl(&lab, "default/client1", "http://10.96.20.3/hostname"),
            None
        );
    }
    // The same from hostNetwork clients (the nodes' own namespaces).
    assert_eq!(
        curl(&lab, "node/node-0", "http://10.96.20.3/hostname").as_deref(),
        Some("live")
    );
    assert_eq!(
        curl(&lab, "node/node-1", "http://10.96.20.3/hostname"),
        None
    );
    assert_eq!(
        curl(&lab, "node/node-2", "http://10.96.20.1/hostname").as_deref(),
        Some("term"),
        "a node reaches a ClusterIP"
    );
    std::fs::remove_file(m).unwrap();
}

/// The seeds' Service example: `my-service`, port 80 -> targetPort 8080, by ClusterIP from a
/// pod; then, changed to type LoadBalancer, by its LoadBalancer IP and its NodePort from outside.
#[test]
fn the_seeds_service_by_cluster_ip_then_load_balancer_and_node_port() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("seedsvc", &["examples/seeds"], &[]);
    let plan: Value =
        serde_json::from_str(&ok(&["check", "-f", "examples/seeds", "-o", "json"])).unwrap();
    let vip = svc(&plan, "my-service")["clusterIPs"][0]
        .as_str()
        .unwrap()
        .to_string();
    // From a frontend pod: the seeds' policies let role: frontend reach my-app.
    let frontend = format!("default/{}", lab.pod_name("frontend-"));
    let seen: std::collections::BTreeSet<_> = (0..30)
        .filter_map(|_| curl(&lab, &frontend, &format!("http://{vip}/hostname")))
        .collect();
    assert_eq!(seen.len(), 3, "the three my-app pods: {seen:?}");
    assert!(
        curl(&lab, "default/client", &format!("http://{vip}/hostname")).is_none(),
        "and the client, which they do not allow, gets nothing"
    );
    assert!(seen.iter().all(|p| p.starts_with("my-app-")));

    let dir = std::env::temp_dir().join(format!("podnet-lab-test-{}-seeds-lb", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(root_dir().join("examples/seeds")).unwrap() {
        let f = f.unwrap().path();
        // Without the policies: from outside, through a LoadBalancer, the source is the node's
        // address or the client's, which my-app's policies do not allow.
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if f.extension().is_some_and(|e| e == "yaml") && !name.starts_with("network-policy") {
            let text = std::fs::read_to_string(&f)
                .unwrap()
                .replace("  type: ClusterIP", "  type: LoadBalancer");
            std::fs::write(dir.join(f.file_name().unwrap()), text).unwrap();
        }
    }
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        dir.to_str().unwrap(),
    ]);
    let plan: Value =
        serde_json::from_str(&ok(&["check", "-f", dir.to_str().unwrap(), "-o", "json"])).unwrap();
    let my = svc(&plan, "my-service");
    assert_eq!(my["type"], "LoadBalancer");
    let lb = my["loadBalancerIPs"][0].as_str().unwrap();
    assert!(curl(&lab, "external", &format!("http://{lb}/hostname"))
        .is_some_and(|h| h.starts_with("my-app-")));
    let np = my["ports"][0]["nodePort"].as_u64().unwrap();
    for n in lab.status()["nodes"].as_array().unwrap() {
        assert!(curl(
            &lab,
            "external",
            &format!("http://{}:{np}/hostname", n["ip"].as_str().unwrap())
        )
        .is_some_and(|h| h.starts_with("my-app-")));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Session affinity lasts `timeoutSeconds` after the last connection, then a client is spread
/// again (upstream: sleep past the timeout between requests, expect at least two pods).
#[test]
fn session_affinity_expires_after_its_timeout() {
    if !can_run() {
        return;
    }
    let m = write_manifest(
        "aff",
        &format!("{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: 10.96.30.1, sessionAffinity: ClientIP, sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 1}}}}, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n{}", web_deployment(3, 8080), client_pod()),
    );
    let lab = Lab::up("affto", &[m.to_str().unwrap()], &[]);
    // Inside the timeout: one pod.
    let close: std::collections::BTreeSet<_> = (0..10)
        .filter_map(|_| curl(&lab, "default/client", "http://10.96.30.1/hostname"))
        .collect();
    assert_eq!(close.len(), 1, "{close:?}");
    // Past it, every time: the choice is drawn again.
    let mut apart = std::collections::BTreeSet::new();
    for _ in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(1600));
        apart.extend(curl(&lab, "default/client", "http://10.96.30.1/hostname"));
    }
    assert!(apart.len() >= 2, "{apart:?}");
    std::fs::remove_file(m).unwrap();
}

/// `podnet check --proxy NODE` and the nftables a lab node really holds never disagree: the
/// services map element by element, and every other map and set by size.
#[test]
fn check_proxy_equals_the_programmed_tables() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("chk", &["examples/guestbook"], &[]);
    for node in lab.status()["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let want: Value = serde_json::from_str(&ok(&[
            "check",
            "-f",
            "examples/guestbook",
            "--proxy",
            name,
            "-o",
            "json",
        ]))
        .unwrap();
        let ns = format!("podnet-{}.n.{name}", lab.name);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "nft",
                "-j",
                "list",
                "table",
                "ip",
                "podnet-proxy",
            ])
            .output()
            .unwrap();
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut sizes = std::collections::BTreeMap::new();
        let mut services = std::collections::BTreeSet::new();
        for item in listed["nftables"].as_array().unwrap() {
            let set = item.get("map").or_else(|| item.get("set"));
            let Some(set) = set else { continue };
            let elems = set["elem"].as_array().cloned().unwrap_or_default();
            sizes.insert(set["name"].as_str().unwrap().to_string(), elems.len());
            if set["name"] == "services" {
                for e in &elems {
                    let k = e[0]["concat"].as_array().unwrap();
                    let v = match e[1].get("goto") {
                        Some(g) => format!("goto {}", g["target"].as_str().unwrap()),
                        None => e[1].as_object().unwrap().keys().next().unwrap().clone(),
                    };
                    services.insert(format!(
                        "{} . {} . {} : {v}",
                        k[0].as_str().unwrap(),
                        k[1].as_str().unwrap(),
                        k[2]
                    ));
                }
            }
        }
        let want_services: std::collections::BTreeSet<String> = want["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(
            want_services.len() >= 6,
            "the guestbook has frontends: {want_services:?}"
        );
        assert_eq!(services, want_services, "services map on {name}");
        for field in ["node_ports", "no_endpoints", "no_endpoint_ports", "hairpin"] {
            assert_eq!(
                sizes.get(field).copied().unwrap_or(0),
                want[field].as_array().unwrap().len(),
                "{field} on {name}"
            );
        }
        for (map, elems) in want["backends"].as_object().unwrap() {
            assert_eq!(
                sizes.get(map).copied().unwrap_or(0),
                elems.as_array().unwrap().len(),
                "{map} on {name}"
            );
        }
    }
}

/// Switching session affinity off and on, and a Service deleted then recreated, with lab apply.
#[test]
fn affinity_switches_and_a_recreated_service_works() {
    if !can_run() {
        return;
    }
    let manifest = |svc: &str| format!("{}{}{svc}", web_deployment(3, 8080), client_pod());
    let svc = |aff: &str| {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: 10.96.40.1, sessionAffinity: {aff}, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n")
    };
    let sticky = write_manifest("sw-sticky", &manifest(&svc("ClientIP")));
    let none = write_manifest("sw-none", &manifest(&svc("None")));
    let gone = write_manifest("sw-gone", &manifest(""));
    let lab = Lab::up("switch", &[sticky.to_str().unwrap()], &[]);
    let hosts = |lab: &Lab| -> std::collections::BTreeSet<String> {
        (0..20)
            .filter_map(|_| curl(lab, "default/client", "http://10.96.40.1/hostname"))
            .collect()
    };
    assert_eq!(hosts(&lab).len(), 1, "ClientIP: sticky");
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        none.to_str().unwrap(),
    ]);
    assert!(hosts(&lab).len() >= 2, "None: spread again");
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        sticky.to_str().unwrap(),
    ]);
    assert_eq!(hosts(&lab).len(), 1, "ClientIP again: sticky");
    // Deleted: no longer answers; recreated: served again.
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        gone.to_str().unwrap(),
    ]);
    let o = lab.exec(
        "default/client",
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://10.96.40.1/hostname",
        ],
    );
    assert!(!o.status.success(), "a deleted Service no longer answers");
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        none.to_str().unwrap(),
    ]);
    assert!(hosts(&lab).len() >= 2, "the recreated Service is served");
    for m in [sticky, none, gone] {
        std::fs::remove_file(m).unwrap();
    }
}

/// A Deployment `web` of `replicas` pods, labelled `app: web`, serving `port`.
fn web_deployment(replicas: u32, port: u16) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: {port}}}]}}]}}\n")
}

/// A pod `client` with no port of its own.
fn client_pod() -> String {
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec: {containers: [{name: c, image: x}]}\n".to_string()
}

impl Lab {
    /// Writes `text` to `file` and runs `lab apply -f file`; how long the apply took (its
    /// start is logged with the wall clock, to read beside the lab's logs).
    fn apply_timed(&self, file: &Path, text: String) -> std::time::Duration {
        std::fs::write(file, text).unwrap();
        let start = std::time::Instant::now();
        let unix = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
        eprintln!("lab apply at {unix:.3}");
        ok(&[
            "lab",
            "apply",
            "--name",
            &self.name,
            "-f",
            file.to_str().unwrap(),
        ]);
        start.elapsed()
    }
}

/// Clients in `external` sending keep-alive requests until stopped (loops of curl runs of 50
/// requests each), recording every status code: what a live change must not fail.
struct Load {
    stop: PathBuf,
    clients: Vec<(PathBuf, std::process::Child)>,
}

impl Load {
    /// One client per `(label, curl options, scheme, port)`, to `https?://{host}/x` at `addr`,
    /// trusting `ca`; their files go in `dir`.
    fn start(
        lab: &Lab,
        dir: &Path,
        host: &str,
        addr: &str,
        ca: &Path,
        clients: &[(&str, &str, &str, u16)],
    ) -> Load {
        let stop = dir.join("stop");
        let clients = clients
            .iter()
            .map(|(label, extra, scheme, port)| {
                let out = dir.join(format!("{label}.out"));
                let urls = vec![format!("-o /dev/null {scheme}://{host}/x"); 50].join(" ");
                let script = format!(
                    "while [ ! -e {stop} ]; do curl -sS --max-time 30 {extra} --resolve {host}:{port}:{addr} --cacert {ca} -w '%{{http_code}}\\n' {urls} >> {out} 2>&1; done",
                    stop = stop.display(),
                    ca = ca.display(),
                    out = out.display(),
                );
                let child = Command::new(env!("CARGO_BIN_EXE_podnet"))
                    .args(["lab", "exec", "--name", &lab.name, "external", "--", "sh", "-c"])
                    .arg(script)
                    .spawn()
                    .unwrap();
                (out, child)
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; every request they made must have been answered 200 (and there
    /// must be at least 200 of them each). A failure shows what the lab's proxies logged of
    /// the requests they did not answer 200, and their warnings.
    fn finish(mut self, lab: &Lab) {
        std::fs::write(&self.stop, "").unwrap();
        for (_, c) in &mut self.clients {
            c.wait().unwrap();
        }
        let mut failed = Vec::new();
        for (out, _) in &self.clients {
            let text = std::fs::read_to_string(out).unwrap();
            let codes: Vec<&str> = text.lines().collect();
            let bad: Vec<&str> = codes.iter().copied().filter(|c| *c != "200").collect();
            eprintln!(
                "{}: {} requests, {} failed",
                out.display(),
                codes.len(),
                bad.len()
            );
            assert!(codes.len() >= 200, "too few requests: {}", codes.len());
            if !bad.is_empty() {
                failed.push(format!("{}: {:?}", out.display(), &bad[..bad.len().min(5)]));
            }
        }
        // What the proxies logged of requests not answered 200, and their warnings (a retry
        // on the next endpoint is one): shown with the failures, or with --nocapture.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let agents = Path::new("/run/podnet").join(&lab.name).join("agents");
        for entry in std::fs::read_dir(&agents).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("ingress-") || name.starts_with("gateway-"))
                || !name.ends_with(".log")
            {
                continue;
            }
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in log.lines() {
                let status = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["status"].as_u64());
                if status.is_some_and(|s| s != 200) || (status.is_none() && line.contains("WARN")) {
                    eprintln!("{name}: {line}");
                }
            }
        }
        assert!(failed.is_empty(), "failed requests: {}", failed.join("; "));
    }
}
