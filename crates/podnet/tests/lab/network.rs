//! The pod network: a lab matches its plan, pods reach each other across nodes (TCP, UDP,
//! a full probe matrix), `lab apply` adds and removes pods and leaves the rest alone, and
//! `lab down` leaves the host exactly as it was (after a crash too).

use super::*;

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
    let out = lab.apply(&[m5.to_str().unwrap()]);
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
    let out = lab.apply(&[m1.to_str().unwrap()]);
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

/// Pods on two nodes, each serving 8080.
const TWO_NODES: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {nodeName: node-0, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort, selector: {app: a}, ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}\n";

#[test]
fn pods_cross_nodes_routed_natively_or_over_vxlan_as_asked() {
    if !can_run() {
        return;
    }
    let m = write_manifest("two-nodes", TWO_NODES);
    let file = m.to_str().unwrap();
    for (routing, route_dev, mtu) in [("native", "eth0", "1500"), ("vxlan", "vxlan0", "1450")] {
        let lab = Lab::up(
            &format!("rt-{routing}"),
            &[file],
            &["--nodes", "2", "--routing", routing],
        );
        let st = lab.status();
        let (a, b) = (pod_ip(&st, "a"), pod_ip(&st, "b"));
        // As `check` says: the other node reached natively or over VXLAN, and the pod MTU.
        let check = ok(&["check", "-f", file, "--nodes", "2", "--routing", routing]);
        let row = check.lines().find(|l| l.starts_with("node-0 ")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (native_to, vxlan_to) = if routing == "native" {
            ("node-1", "<none>")
        } else {
            ("<none>", "node-1")
        };
        assert_eq!(cols[3..], [native_to, vxlan_to, mtu], "{check}");
        // The node's route to the other node's pods, and the pod's MTU.
        let route = lab.exec("node/node-0", &["ip", "route", "show", "10.244.1.0/24"]);
        let route = String::from_utf8_lossy(&route.stdout).to_string();
        assert!(
            route.contains(&format!("dev {route_dev}")),
            "{routing}: {route}"
        );
        let link = lab.exec("default/a", &["cat", "/sys/class/net/eth0/mtu"]);
        assert_eq!(
            String::from_utf8_lossy(&link.stdout).trim(),
            mtu,
            "{routing}"
        );
        // A full-size packet crosses unfragmented in native routing; over VXLAN it does not
        // fit the pod's link.
        let ping = lab.exec(
            "default/a",
            &["ping", "-c1", "-W2", "-M", "do", "-s", "1472", &b],
        );
        assert_eq!(
            ping.status.success(),
            routing == "native",
            "{routing}: {ping:?}"
        );
        // What goes through the VXLAN device: nothing in native routing.
        let vxlan_tx = || -> u64 {
            let o = lab.exec("node/node-0", &["ip", "-s", "-j", "link", "show", "vxlan0"]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
        };
        let before = vxlan_tx();
        let big = "x".repeat(20_000);
        // Pod to pod, and node-1's NodePort to the pod on node-0 (masqueraded through node-1,
        // whichever way it crosses), from the outside client.
        assert_eq!(
            curl(
                &lab,
                "default/b",
                &format!("http://{a}:8080/echo?msg={big}")
            )
            .as_deref(),
            Some(big.as_str()),
            "{routing}"
        );
        let plan: Value =
            serde_json::from_str(&ok(&["check", "-f", file, "--nodes", "2", "-o", "json"]))
                .unwrap();
        let node1 = plan["nodes"][1]["internalIP"].as_str().unwrap().to_string();
        let np = 30080;
        assert_eq!(
            curl(&lab, "external", &format!("http://{node1}:{np}/hostname")).as_deref(),
            Some("a"),
            "{routing}"
        );
        let sent = vxlan_tx() - before;
        if routing == "native" {
            assert_eq!(sent, 0, "nothing encapsulated in native routing");
        } else {
            assert!(sent > 10, "{sent} packets over VXLAN");
        }
    }
    std::fs::remove_file(m).unwrap();
}
