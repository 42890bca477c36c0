//! The `podnet` command as a user runs it. All CLI integration tests live in this binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn podnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `podnet check -o json` on each example equals its golden file. `UPDATE_GOLDEN=1` rewrites them.
#[test]
fn golden_check_json() {
    for example in ["seeds", "guestbook"] {
        let out = podnet(&["check", "-f", &format!("examples/{example}"), "-o", "json"]);
        assert!(out.status.success(), "{example}: {}", stderr(&out));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let golden = root().join(format!("tests/golden/{example}.json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
        assert!(
            got == want,
            "{example}: the plan differs from {}; run with UPDATE_GOLDEN=1 and review the diff",
            golden.display()
        );
    }
}

#[test]
fn yaml_output_is_the_same_plan() {
    let json: serde_json::Value = serde_json::from_slice(
        &podnet(&["check", "-f", "examples/guestbook", "-o", "json"]).stdout,
    )
    .unwrap();
    let yaml = stdout(&podnet(&[
        "check",
        "-f",
        "examples/guestbook",
        "-o",
        "yaml",
    ]));
    let back = podnet_model::parse_documents("plan.yaml", &yaml).unwrap();
    assert_eq!(back[0].value, json);
}

#[test]
fn the_seed_service_is_planned() {
    let out = podnet(&["check", "-f", "examples/seeds"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    let line = s
        .lines()
        .find(|l| l.contains("my-service"))
        .expect("my-service in the table");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[..3], ["default", "my-service", "ClusterIP"]);
    assert!(cols[3].starts_with("10.96."));
    assert_eq!(cols[5], "80/TCP");
    assert_eq!(cols[6], "8080");
    assert_eq!(
        cols[7].matches(":8080").count(),
        3,
        "three my-app endpoints on 8080: {line}"
    );
    for header in ["NODES", "PODS", "SERVICES"] {
        assert!(s.contains(header));
    }
}

#[test]
fn reads_standard_input_and_single_files() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args([
            "check",
            "-f",
            "-",
            "-f",
            "examples/seeds/service.yaml",
            "-o",
            "json",
        ])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: v1\nkind: Pod\nmetadata: {name: from-stdin, labels: {app: my-app}}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let svc = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-service")
        .unwrap();
    assert_eq!(
        svc["endpointSlices"][0]["endpoints"][0]["pod"],
        "from-stdin"
    );
}

#[test]
fn bad_input_fails_with_file_line_and_field_and_prints_no_plan() {
    let dir = tempdir();
    std::fs::write(
        dir.join("good.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {ports: [{port: 80}]}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/bad.yml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports:\n  - port: 0\n",
    )
    .unwrap();
    std::fs::write(dir.join("ignored.txt"), "not a manifest").unwrap();
    let out = podnet(&["check", "-f", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing is planned half-way");
    let err = stderr(&out);
    let want = format!(
        "{}:6:11: error: Service/default/bad: spec.ports[0].port: Invalid value: 0",
        dir.join("sub/bad.yml").display()
    );
    assert!(err.contains(&want), "{err}\nwanted: {want}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn warnings_go_to_stderr_and_do_not_fail() {
    let out = podnet(&["check", "-f", "-"]);
    // Empty standard input is a valid, empty cluster.
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempdir();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n",
    )
    .unwrap();
    let out = podnet(&["check", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(
            "warning: PersistentVolumeClaim/default/c: kind PersistentVolumeClaim (v1) is not used by podnet; skipped"
        ),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn flags_override_settings_and_bad_flags_are_errors() {
    let out = podnet(&[
        "check",
        "-f",
        "examples/seeds/service.yaml",
        "-o",
        "json",
        "--nodes",
        "5",
        "--service-cidr",
        "10.50.0.0/24",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 5);
    assert_eq!(plan["cluster"]["dnsIP"], "10.50.0.10");
    let out = podnet(&["check", "-f", "examples/seeds/service.yaml", "--nodes", "0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--nodes: 0: must be between 1 and 256"),
        "{}",
        stderr(&out)
    );
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "podnet-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_shows_what_a_nodes_proxy_programs() {
    let out = podnet(&["check", "-f", "examples/guestbook", "--proxy", "node-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = stdout(&out);
    let row = t
        .lines()
        .find(|l| l.contains("web/frontend-debug") && l.starts_with("10.96."))
        .expect("the ClusterIP row");
    assert!(row.contains("ClientIP 10800s"), "{row}");
    assert!(t
        .lines()
        .any(|l| l.contains("default/kubernetes") && l.contains("reject (no endpoints)")));
    let json: serde_json::Value = serde_json::from_slice(
        &podnet(&[
            "check",
            "-f",
            "examples/guestbook",
            "--proxy",
            "node-1",
            "-o",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert!(json["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().ends_with(": goto svc_tcp_aff10800_ep3")));
    let out = podnet(&["check", "-f", "examples/guestbook", "--proxy", "node-9"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no node \"node-9\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_dns_prints_the_zone_as_text_json_and_yaml() {
    let out = podnet(&["check", "-f", "examples/seeds", "--dns"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let plan: serde_json::Value =
        serde_json::from_slice(&podnet(&["check", "-f", "examples/seeds", "-o", "json"]).stdout)
            .unwrap();
    let vip = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-service")
        .unwrap()["clusterIPs"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.lines()
            .any(|l| l == format!("my-service.default.svc.cluster.local. 30 IN A {vip}")),
        "{text}"
    );
    assert!(text.contains("dns-version.cluster.local. 30 IN TXT \"1.1.0\""));
    assert!(text.contains("kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"));
    let json: serde_json::Value = serde_json::from_slice(
        &podnet(&["check", "-f", "examples/seeds", "--dns", "-o", "json"]).stdout,
    )
    .unwrap();
    let records = json["records"].as_array().unwrap();
    // Every record of the text form is one of the JSON form.
    let zone_lines = text.lines().filter(|l| !l.starts_with(';')).count();
    assert_eq!(records.len(), zone_lines);
    let yaml = stdout(&podnet(&[
        "check",
        "-f",
        "examples/seeds",
        "--dns",
        "-o",
        "yaml",
    ]));
    assert!(yaml.contains(&format!("data: {vip}")), "{yaml}");
}

/// A loopback port free for both UDP and TCP (a DNS server binds both): one free for UDP
/// alone was once taken for TCP ("Address already in use"), and the server exited.
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A stand-in upstream on loopback: answers every query with one A record, 192.0.2.1.
fn fake_upstream() -> std::net::SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
            let name = m.queries[0].name().clone();
            m.metadata.message_type = hickory_proto::op::MessageType::Response;
            m.answers.push(hickory_proto::rr::Record::from_rdata(
                name,
                60,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
            ));
            let _ = s.send_to(&m.to_vec().unwrap(), from);
        }
    });
    addr
}

/// One UDP query to `server`: the response code and the answer's addresses.
fn ask(server: std::net::SocketAddr, name: &str) -> (String, Vec<String>) {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.send_to(&m.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 4242);
    let ips = r
        .answers
        .iter()
        .filter_map(|a| a.data.ip_addr().map(|ip| ip.to_string()))
        .collect();
    (r.metadata.response_code.to_string(), ips)
}

/// `podnet dns serve`: answers from the manifests, forwards the rest to the nameservers of a
/// resolv.conf and to `--upstream`, reloads on SIGHUP. Loopback only; no root needed.
#[test]
fn dns_serve_answers_forwards_and_reloads() {
    let dir = tempdir();
    let manifest = dir.join("svc.yaml");
    let svc = |name: &str, ip: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n")
    };
    std::fs::write(&manifest, svc("web", "10.96.0.50")).unwrap();
    // resolv.conf nameservers are on port 53: one that is this server itself is left out.
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_udp_and_tcp_port()));
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "search example.org\n").unwrap();
    let upstream = fake_upstream();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(["dns", "serve", "-f", manifest.to_str().unwrap()])
        .args(["--listen", &listen.to_string()])
        .args(["--upstream-resolv-conf", resolv.to_str().unwrap()])
        .args(["--upstream", &upstream.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    use std::io::BufRead;
    while err.read_line(&mut line).unwrap() > 0 {
        seen += &line;
        if line.contains("serving") {
            break;
        }
        line.clear();
    }
    assert!(
        seen.contains("no nameserver to forward to"),
        "a resolv.conf without nameservers is reported: {seen}"
    );
    assert!(seen.contains("serving"), "{seen}");
    let got = ask(listen, "web.shop.svc.cluster.local.");
    assert_eq!(
        got,
        ("No Error".to_string(), vec!["10.96.0.50".to_string()])
    );
    let got = ask(listen, "www.example.com.");
    assert_eq!(got.1, ["192.0.2.1"], "forwarded to the upstream");
    let got = ask(listen, "late.shop.svc.cluster.local.");
    assert_eq!(got.0, "Non-Existent Domain");

    std::fs::write(
        &manifest,
        svc("web", "10.96.0.50") + "---\n" + &svc("late", "10.96.0.51"),
    )
    .unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    line.clear();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("reloaded") {
        line.clear();
    }
    assert!(line.contains("reloaded"), "{line}");
    let got = ask(listen, "late.shop.svc.cluster.local.");
    assert_eq!(got.1, ["10.96.0.51"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 10, defect 4: a 40 KB manifest nested 20,000 deep crashed `check` (SIGABRT, a stack
/// overflow). It is an error at its line now, and nothing is planned.
#[test]
fn deep_yaml_is_an_error_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("podnet-cli-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("deep.yaml");
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nextra:\n{}x\n",
        "- ".repeat(20_000)
    );
    std::fs::write(&file, text).unwrap();
    let out = podnet(&["check", "-f", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deep.yaml:5:") && stderr(&out).contains("nesting deeper than 100"),
        "{}",
        stderr(&out)
    );
}

/// `check --reach`: the seeds' policies as a matrix (text and JSON cells), and `explain` for an
/// allowed and a denied connection, with the rule or the isolating policies.
#[test]
fn reach_and_explain_on_the_seeds() {
    let out = podnet(&[
        "check",
        "-f",
        "examples/seeds",
        "--reach",
        "--port",
        "80",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let cell = |from: &str, to: &str| {
        cells
            .iter()
            .find(|c| {
                c["from"].as_str().unwrap().starts_with(from)
                    && c["to"].as_str().unwrap().starts_with(to)
            })
            .unwrap_or_else(|| panic!("{from} -> {to}"))["allowed"]
            .as_bool()
            .unwrap()
    };
    // my-app accepts only trusted-app (and, by the second policy, role: frontend) on TCP 80.
    assert!(cell("default/trusted-app-", "default/my-app-"));
    assert!(cell("default/frontend-", "default/my-app-"));
    assert!(!cell("default/client", "default/my-app-"));
    // my-app may only reach external-service on 443.
    assert!(!cell("default/my-app-", "default/client"));
    assert!(cells
        .iter()
        .all(|c| c["port"] == 80 && c["protocol"] == "TCP"));
    let text = stdout(&podnet(&[
        "check",
        "-f",
        "examples/seeds",
        "--reach",
        "--port",
        "80",
    ]));
    assert!(text.starts_with("TCP/80\n-\t"), "{text}");

    let pods: Vec<String> = cells
        .iter()
        .map(|c| c["from"].as_str().unwrap().to_string())
        .collect();
    let named = |prefix: &str| pods.iter().find(|p| p.starts_with(prefix)).unwrap().clone();
    let (trusted, app, client) = (
        named("default/trusted-app-"),
        named("default/my-app-"),
        named("default/client"),
    );
    let ok = stdout(&podnet(&[
        "explain",
        "-f",
        "examples/seeds",
        &trusted,
        &format!("{app}:80"),
    ]));
    assert!(ok.contains(": allowed\n"), "{ok}");
    assert!(
        ok.contains("allowed by NetworkPolicy default/my-network-policy spec.ingress[0]"),
        "{ok}"
    );
    let no = stdout(&podnet(&[
        "explain",
        "-f",
        "examples/seeds",
        &client,
        &format!("{app}:80/TCP"),
    ]));
    assert!(no.contains(": denied\n"), "{no}");
    assert!(
        no.contains("isolated by NetworkPolicy default/allow-app-access, NetworkPolicy default/my-network-policy; no rule of theirs allows TCP/80"),
        "{no}"
    );
    // Through the Service: judged on each endpoint at its target port.
    let svc = stdout(&podnet(&[
        "explain",
        "-f",
        "examples/seeds",
        &trusted,
        "default/my-service:80",
    ]));
    assert_eq!(
        svc.matches("(via Service default/my-service) TCP/8080")
            .count(),
        3,
        "{svc}"
    );
    // Issue 21, item 6: the same Service by its ClusterIP said "allowed ... not isolated"
    // (judged as a bare address) where by name it said denied, as the lab's packets are.
    // An address the proxy translates is followed to the endpoints, as by name.
    let plan: serde_json::Value = serde_json::from_str(&stdout(&podnet(&[
        "check",
        "-f",
        "examples/seeds",
        "-o",
        "json",
    ])))
    .unwrap();
    let vip = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "my-service")
        .and_then(|s| s["clusterIPs"][0].as_str().or(s["clusterIP"].as_str()))
        .unwrap()
        .to_string();
    // (The seeds allow my-app's port 80 to trusted-app; the Service targets 8080: denied to
    // both, as the lab's packets are.)
    for (from, want) in [(&client, ": denied\n"), (&trusted, ": denied\n")] {
        let by_ip = stdout(&podnet(&[
            "explain",
            "-f",
            "examples/seeds",
            from,
            &format!("{vip}:80"),
        ]));
        let by_name = stdout(&podnet(&[
            "explain",
            "-f",
            "examples/seeds",
            from,
            "default/my-service:80",
        ]));
        assert_eq!(
            by_ip
                .matches(&format!(
                    "(via Service default/my-service at {vip}:80) TCP/8080"
                ))
                .count(),
            3,
            "{by_ip}"
        );
        assert_eq!(by_ip.matches(want).count(), 3, "{from}: {by_ip}");
        assert_eq!(
            by_ip.replace(&format!(" at {vip}:80"), ""),
            by_name,
            "by address as by name"
        );
    }
}

fn api_objects(replicas: usize, svc: &str) -> Vec<serde_json::Value> {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}}}\nspec: {{clusterIP: None, selector: {{app: web}}, ports: [{{port: 80}}]}}\n"
    );
    let c = podnet_emulator::build(
        &podnet_model::parse_documents("m.yaml", &text).unwrap(),
        &podnet_model::ConfigOverrides::default(),
    )
    .unwrap();
    podnet_api::project::project(&c)
}

/// `podnet dns watch`: the cluster DNS served from what the Kubernetes API holds (here the
/// lab's API, in this process), following its changes. Loopback only; no root needed.
#[test]
fn dns_watch_follows_the_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = podnet_api::server::Api::new();
    api.replace(api_objects(2, "web"));
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(api.clone().serve(l));
        addr
    });
    let dir = std::env::temp_dir().join(format!("podnet-dns-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, podnet_api::kubeconfig("test", &addr.to_string())).unwrap();
    let port = free_udp_and_tcp_port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    /// The server, killed however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _dns = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_podnet"))
            .args(["dns", "watch", "--kubeconfig"])
            .arg(&kc)
            .args(["--listen", &listen.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("dns.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Serving once the API's first lists are in.
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(dir.join("dns.log"))
        .unwrap_or_default()
        .contains("serving ")
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(15));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let wait_for = |name: &str, n: usize| {
        let start = std::time::Instant::now();
        loop {
            let mut got = ask(listen, name).1;
            got.sort();
            if got.len() == n {
                return got;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(15),
                "{name}: {got:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let two = wait_for("web.default.svc.cluster.local.", 2);
    // A third replica, and another Service: the zone follows.
    api.replace(api_objects(3, "web"));
    let three = wait_for("web.default.svc.cluster.local.", 3);
    assert!(two.iter().all(|ip| three.contains(ip)), "{two:?} {three:?}");
    api.replace(api_objects(3, "shop"));
    wait_for("shop.default.svc.cluster.local.", 3);
    wait_for("web.default.svc.cluster.local.", 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21, item 10: `lab probe --port 0` was accepted (an all-X matrix that "agreed"), `lab
/// apply` silently took `lab up`'s `--no-agents`, and the help named the namespaces
/// `podnet-<name>-*` (they are `podnet-<name>.`).
#[test]
fn lab_flags_that_cannot_mean_anything_are_refused_and_the_help_is_right() {
    let o = podnet(&["lab", "probe", "--name", "x", "--port", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--port"), "{}", stderr(&o));
    let o = podnet(&[
        "lab",
        "apply",
        "--name",
        "x",
        "--no-agents",
        "-f",
        "examples/seeds",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--no-agents is a `lab up` flag"),
        "{}",
        stderr(&o)
    );
    let help = stdout(&podnet(&["lab", "status", "--help"]));
    assert!(help.contains("podnet-<name>.*"), "{help}");
    assert!(!help.contains("podnet-<name>-*"), "{help}");
}

/// `explain` over each family of a dual-stack cluster: an ipBlock of one family takes in the
/// connections of that family only. By `--family`, or by the family of an address given.
#[test]
fn explain_judges_each_family_of_a_dual_stack_cluster() {
    let dir = tempdir();
    let m = dir.join("dual.yaml");
    std::fs::write(
        &m,
        r#"apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6-only}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{ipBlock: {cidr: "fd00:10:244::/56"}}]}]
"#,
    )
    .unwrap();
    let m = m.to_str().unwrap();
    let explain = |extra: &[&str], from: &str, to: &str| -> String {
        let mut args = vec!["explain", "-f", m, "--ip-family", "dual"];
        args.extend(extra);
        args.extend([from, to]);
        let o = podnet(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let v6 = explain(&["--family", "IPv6"], "default/client", "default/server:80");
    assert!(v6.contains(": allowed"), "{v6}");
    let v4 = explain(&["--family", "IPv4"], "default/client", "default/server:80");
    assert!(v4.contains(": denied"), "{v4}");
    // The default: each pod's primary address (IPv4 here).
    assert_eq!(explain(&[], "default/client", "default/server:80"), v4);
    // An address given says the family: the client by its IPv6 address.
    let plan: serde_json::Value = serde_json::from_str(&stdout(&podnet(&[
        "check",
        "-f",
        m,
        "--ip-family",
        "dual",
        "-o",
        "json",
    ])))
    .unwrap();
    let client6 = plan["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "client")
        .unwrap()["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .find(|x| x.contains(':'))
        .unwrap();
    let by_ip = explain(&[], &client6, "default/server:80");
    assert!(by_ip.contains(": allowed"), "{by_ip}");
    // Families that contradict each other are refused.
    let o = podnet(&[
        "explain",
        "-f",
        m,
        "--ip-family",
        "dual",
        "--family",
        "IPv4",
        &client6,
        "default/server:80",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--family IPv4 and an IPv6 address"),
        "{}",
        stderr(&o)
    );
}

/// ClusterNetworkPolicies (`examples/cluster-policy`): listed by `check` in evaluation order,
/// taken into account by `check --reach`, and `explain` names the layer and rule that decided.
#[test]
fn cluster_network_policies_in_check_reach_and_explain() {
    let out = podnet(&["check", "-f", "examples/cluster-policy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let table = text
        .split("CLUSTER NETWORK POLICIES\n")
        .nth(1)
        .expect("the table");
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["allow-dns", "protect-monitoring", "tenant-default-deny"],
        "{table}"
    );
    assert!(
        table.contains("Admin      10         namespaces kubernetes.io/metadata.name=monitoring   1      Accept,Deny"),
        "{table}"
    );
    let explain = |from: &str, to: &str| {
        let o = podnet(&["explain", "-f", "examples/cluster-policy", from, to]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    // The Admin tier: no NetworkPolicy can open the monitoring namespace.
    let t = explain("tenant-b/web", "monitoring/prometheus:9090");
    assert!(
        t.starts_with("tenant-b/web -> monitoring/prometheus TCP/9090: denied\n"),
        "{t}"
    );
    assert!(
        t.contains("ingress of monitoring/prometheus: denied by ClusterNetworkPolicy protect-monitoring (Admin, priority 10), rule 'deny-all' (spec.ingress[1], Deny)"),
        "{t}"
    );
    let t = explain("ops/grafana", "monitoring/prometheus:9090");
    assert!(t.contains(": allowed\n"), "{t}");
    assert!(
        t.contains("rule 'allow-ops' (spec.ingress[0], Accept)"),
        "{t}"
    );
    // The Baseline tier, and a NetworkPolicy overriding it.
    let t = explain("tenant-c/web", "tenant-a/web:8080");
    assert!(
        t.contains("denied by ClusterNetworkPolicy tenant-default-deny (Baseline, priority 50), rule 'deny-ingress'"),
        "{t}"
    );
    let t = explain("tenant-a/web", "tenant-b/web:8080");
    assert!(t.contains(": allowed\n"), "{t}");
    assert!(
        t.contains("allowed by NetworkPolicy tenant-b/from-tenant-a spec.ingress[0]"),
        "{t}"
    );
    // The DNS: the Admin tier's Accept, whatever the Baseline says.
    let out = podnet(&[
        "check",
        "-f",
        "examples/cluster-policy",
        "--reach",
        "--port",
        "53",
        "--protocol",
        "UDP",
        "-o",
        "json",
    ]);
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let to_dns: Vec<&serde_json::Value> = cells
        .iter()
        .filter(|c| {
            c["to"]
                .as_str()
                .unwrap()
                .starts_with("kube-system/coredns-")
        })
        .collect();
    assert_eq!(to_dns.len(), 7 * 2);
    assert!(to_dns.iter().all(|c| c["allowed"] == true), "{to_dns:?}");
    let out = podnet(&[
        "check",
        "-f",
        "examples/cluster-policy",
        "--reach",
        "--port",
        "8080",
        "-o",
        "json",
    ]);
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = |from: &str, to: &str| {
        cells
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .unwrap()["allowed"]
            == true
    };
    assert!(allowed("tenant-a/web", "tenant-b/web"));
    assert!(!allowed("tenant-c/web", "tenant-b/web"));
    assert!(!allowed("tenant-a/web", "tenant-c/web"));
    assert!(allowed("tenant-a/web", "ops/grafana"));
}

/// A ClusterNetworkPolicy the CRD refuses: each error at its file, line and field, nothing
/// planned; and what podnet warns of (equal priorities selecting one pod, domainNames).
#[test]
fn cluster_network_policy_errors_and_warnings() {
    let dir = tempdir();
    let bad = "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: bad}
spec:
  tier: Admin
  priority: 1001
  subject: {namespaces: {}}
  egress:
  - name: mixed
    action: Accept
    to:
    - networks: [10.0.0.0/8]
    protocols:
    - destinationNamedPort: web
  - action: Deny
    to:
    - pods: {podSelector: {}}
      networks: [10.0.0.0/33]
    protocols:
    - tcp: {destinationPort: {range: {start: 90, end: 80}}}
";
    std::fs::write(dir.join("bad.yaml"), bad).unwrap();
    let out = podnet(&["check", "-f", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing is planned half-way");
    let err = stderr(&out);
    let file = dir.join("bad.yaml").display().to_string();
    for want in [
        format!("{file}:6:13: error: ClusterNetworkPolicy/bad: spec.priority: Invalid value: 1001: must be between 0 and 1000, inclusive"),
        format!("{file}:9:5: error: ClusterNetworkPolicy/bad: spec.egress[0]: Invalid value: networks/nodes/domainNames peer cannot be set with namedPorts"),
        format!("{file}:17:7: error: ClusterNetworkPolicy/bad: spec.egress[1].to[0]: Invalid value: 2 fields set: exactly one of namespaces, pods, nodes, networks, domainNames must be set"),
        format!("{file}:18:18: error: ClusterNetworkPolicy/bad: spec.egress[1].to[0].networks[0]: Invalid value: \"10.0.0.0/33\": Invalid CIDR format provided"),
        format!("{file}:20:38: error: ClusterNetworkPolicy/bad: spec.egress[1].protocols[0].tcp.destinationPort.range: Invalid value: Start port must be less than End port"),
    ] {
        assert!(err.contains(&want), "{err}\nwanted: {want}");
    }
    // A tier the CRD's enum does not list: an error at its line.
    std::fs::write(
        dir.join("bad.yaml"),
        bad.replace("tier: Admin", "tier: Middle")
            .replace("priority: 1001", "priority: 1"),
    )
    .unwrap();
    let err = stderr(&podnet(&["check", "-f", dir.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "{file}:5:9: error: ClusterNetworkPolicy/bad: spec.tier: unknown variant `Middle`"
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Warnings: two Admin policies at one priority selecting one pod, and a domainNames peer.
    let dir = tempdir();
    std::fs::write(
        dir.join("warn.yaml"),
        "apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: one}
spec: {tier: Admin, priority: 3, subject: {namespaces: {}}, egress: [{action: Accept, to: [{domainNames: [example.com]}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: two}
spec: {tier: Admin, priority: 3, subject: {namespaces: {}}}
",
    )
    .unwrap();
    let out = podnet(&["check", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ClusterNetworkPolicies one and two are both in the Admin tier at priority 3 and both select default/a") && err.contains("podnet evaluates one first (name order)"),
        "{err}"
    );
    assert!(
        err.contains("ClusterNetworkPolicy one spec.egress[0]: domainNames peers (experimental) match no connection in podnet"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
