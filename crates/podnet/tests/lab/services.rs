//! Services through the nftables proxy, in the lab: ClusterIP, NodePort, LoadBalancer,
//! external IPs, session affinity, terminating endpoints and traffic policies, UDP flows, and
//! the programmed tables equal to the model's plan and to `podnet check`.

use super::*;

pub(super) fn svc<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
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
    lab.apply(&[one.to_str().unwrap()]);
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
    lab.apply(&[dir.to_str().unwrap()]);
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
    lab.apply(&[none.to_str().unwrap()]);
    assert!(hosts(&lab).len() >= 2, "None: spread again");
    lab.apply(&[sticky.to_str().unwrap()]);
    assert_eq!(hosts(&lab).len(), 1, "ClientIP again: sticky");
    // Deleted: no longer answers; recreated: served again.
    lab.apply(&[gone.to_str().unwrap()]);
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
    lab.apply(&[none.to_str().unwrap()]);
    assert!(hosts(&lab).len() >= 2, "the recreated Service is served");
    for m in [sticky, none, gone] {
        std::fs::remove_file(m).unwrap();
    }
}
