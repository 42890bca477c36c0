//! The lab for real: real namespaces, real packets. Needs root; without it each test says why
//! it skips, and under `CI=true` a skip is a failure. Every test uses its own lab name and
//! tears its lab down, even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod agent;
mod api;
mod cnp;
mod dns;
mod dual;
mod gateway;
mod gateway_extended;
mod hostile;
mod ingress;
mod netpol;
mod network;
mod observe;
mod readme;
mod robust;
mod services;
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
        // The suite runs in each routing mode (scripts/test.sh runs it again with
        // PODNET_LAB_ROUTING=vxlan); a test that asks for one keeps it.
        let routing = std::env::var("PODNET_LAB_ROUTING").ok();
        if let Some(r) = routing.as_deref().filter(|_| !extra.contains(&"--routing")) {
            args.extend(["--routing", r]);
        }
        let lab = Lab { name: name.clone() };
        ok(&args);
        lab
    }

    /// A lab of the seeds' workloads, Services and both NetworkPolicies, with `more` manifests
    /// and `extra` arguments.
    fn seeds(name: &str, more: &[&str], extra: &[&str]) -> Lab {
        let mut files = vec![
            "examples/seeds/workloads.yaml",
            "examples/seeds/service.yaml",
            "examples/seeds/network-policy.yaml",
            "examples/seeds/network-policy-frontend.yaml",
        ];
        files.extend(more);
        Lab::up(name, &files, extra)
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

    /// `lab probe --family`, which must agree with the static answer.
    fn probe_family(&self, port: u16, proto: &str, family: &str) -> Value {
        let m = self.probe_over(port, proto, &["--family", family]);
        assert_eq!(m["disagreements"], serde_json::json!([]), "{family}: {m}");
        m
    }

    fn probe_raw(&self, port: u16, proto: &str) -> Value {
        self.probe_over(port, proto, &[])
    }

    /// `lab probe -o json` with `extra` arguments.
    fn probe_over(&self, port: u16, proto: &str, extra: &[&str]) -> Value {
        let port = port.to_string();
        let mut args = vec![
            "lab",
            "probe",
            "--name",
            &self.name,
            "--port",
            &port,
            "--protocol",
            proto,
            "-o",
            "json",
        ];
        args.extend(extra);
        serde_json::from_str(&ok(&args)).unwrap()
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

/// A Deployment `web` of `replicas` pods, labelled `app: web`, serving `port`.
fn web_deployment(replicas: u32, port: u16) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: {port}}}]}}]}}\n")
}

/// A pod `client` with no port of its own.
fn client_pod() -> String {
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec: {containers: [{name: c, image: x}]}\n".to_string()
}

/// A pod of `lab status -o json`, by name.
fn pod_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pod {name} in the lab's status"))
}

/// A pod's (primary) address, from `lab status -o json`.
fn pod_ip(status: &Value, name: &str) -> String {
    pod_of(status, name)["ip"].as_str().unwrap().to_string()
}

fn curl(lab: &Lab, from: &str, url: &str) -> Option<String> {
    let o = lab.exec(from, &["curl", "-s", "--max-time", "3", url]);
    o.status
        .success()
        .then(|| String::from_utf8(o.stdout).unwrap())
}

/// Clients in `external` sending keep-alive requests until stopped (loops of curl runs of 50
/// requests each), recording every status code: what a live change must not fail.
struct Load {
    stop: PathBuf,
    clients: Vec<(PathBuf, std::process::Child)>,
}

impl Load {
    /// One client per `(label, curl options, scheme, port)`, to `https?://{host}/x` at `addr`,
    /// trusting `ca`; their files go in `dir`. Scheme `grpc`: gRPC calls (upstream's echo
    /// `Echo`) over cleartext HTTP/2, one curl each (curl 7.88 fails a second request on a
    /// connection by prior knowledge), four callers at once, each call recorded as `grpc-` and
    /// its `grpc-status`.
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
                let at = match (*scheme, *port) {
                    ("http", 80) | ("https", 443) => String::new(),
                    (_, p) => format!(":{p}"),
                };
                let urls = vec![format!("-o /dev/null {scheme}://{host}{at}/x"); 50].join(" ");
                let script = if *scheme == "grpc" {
                    let empty = dir.join("grpc-empty-message");
                    std::fs::write(&empty, [0u8; 5]).unwrap();
                    // Four callers at once (a process per call is slow).
                    format!(
                        "for j in 1 2 3 4; do (while [ ! -e {stop} ]; do curl -sS --max-time 30 --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @{empty} --resolve {host}:{port}:{addr} -o /dev/null -w 'grpc-%header{{grpc-status}}\n' http://{host}{at}/{service}/Echo >> {out}.$j 2>&1; done) & done; wait; cat {out}.1 {out}.2 {out}.3 {out}.4 > {out}",
                        stop = stop.display(),
                        empty = empty.display(),
                        out = out.display(),
                        service = podnet_lab::serve::grpcecho::SERVICE,
                    )
                } else {
                    format!(
                    "while [ ! -e {stop} ]; do curl -sS --max-time 30 {extra} --resolve {host}:{port}:{addr} --cacert {ca} -w '%{{http_code}}\\n' {urls} >> {out} 2>&1; done",
                    stop = stop.display(),
                    ca = ca.display(),
                    out = out.display(),
                    )
                };
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
            let bad: Vec<&str> = codes
                .iter()
                .copied()
                .filter(|c| *c != "200" && *c != "grpc-0")
                .collect();
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

impl Lab {
    /// `podnet lab apply` of `files` (each after `-f`); its output. Fails the test when the
    /// apply fails.
    fn apply(&self, files: &[&str]) -> String {
        let mut args = vec!["lab", "apply", "--name", &self.name];
        for f in files {
            args.extend(["-f", f]);
        }
        ok(&args)
    }

    /// Writes `text` to `file` and runs `lab apply -f file`; how long the apply took (its
    /// start is logged with the wall clock, to read beside the lab's logs).
    fn apply_timed(&self, file: &Path, text: String) -> std::time::Duration {
        std::fs::write(file, text).unwrap();
        let start = std::time::Instant::now();
        let unix = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
        eprintln!("lab apply at {unix:.3}");
        self.apply(&[file.to_str().unwrap()]);
        start.elapsed()
    }
}
