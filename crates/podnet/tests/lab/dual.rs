//! Dual-stack and IPv6 labs, real packets: every case of
//! `../shared/conformance/dual-stack/cases.yaml` (upstream's `test/e2e/network/dual_stack.go`)
//! that this file names, the API rules through the lab's Kubernetes API (`kubectl`), and the
//! seeds' NetworkPolicies over each family of a dual-stack lab and of an IPv6 lab.
//!
//! Where upstream creates a ReplicationController, these make a Deployment of the same pods
//! (podnet reads no ReplicationController; what the cases check is the Service's families,
//! addresses and slices). Upstream dials through agnhost's `/dial`; here the client pod dials
//! itself (curl for HTTP, Python for UDP), with the same rule: the set of pods that answered
//! must become the set of endpoints within n² + 30 tries, and nothing else may answer.

use std::collections::BTreeSet;

use serde_json::Value;

use super::api::kubectl_ok;
use super::*;

/// The shared fixture of the Granular Checks (one netserver per node, the test and host-test
/// client pods, the two RequireDualStack NodePort Services), and the Service families cases'
/// Services with their pods, in a namespace of their own.
const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dual-e2e}
---
apiVersion: v1
kind: Pod
metadata: {name: netserver-0, namespace: dual-e2e, labels: {selector-dual: "true"}}
spec: {nodeName: node-0, containers: [{name: webserver, image: agnhost, ports: [{name: http, containerPort: 8083}, {name: udp, containerPort: 8081, protocol: UDP}, {name: sctp, containerPort: 8082, protocol: SCTP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: netserver-1, namespace: dual-e2e, labels: {selector-dual: "true"}}
spec: {nodeName: node-1, containers: [{name: webserver, image: agnhost, ports: [{name: http, containerPort: 8083}, {name: udp, containerPort: 8081, protocol: UDP}, {name: sctp, containerPort: 8082, protocol: SCTP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: netserver-2, namespace: dual-e2e, labels: {selector-dual: "true"}}
spec: {nodeName: node-2, containers: [{name: webserver, image: agnhost, ports: [{name: http, containerPort: 8083}, {name: udp, containerPort: 8081, protocol: UDP}, {name: sctp, containerPort: 8082, protocol: SCTP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: test-container-pod, namespace: dual-e2e}
spec: {nodeName: node-1, containers: [{name: webserver, image: agnhost, ports: [{containerPort: 9080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host-test-container-pod, namespace: dual-e2e}
spec: {nodeName: node-2, hostNetwork: true, containers: [{name: agnhost, image: agnhost}]}
---
apiVersion: v1
kind: Service
metadata: {name: node-port-service, namespace: dual-e2e}
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  selector: {selector-dual: "true"}
  ports: [{name: http, port: 80, targetPort: 8083}, {name: udp, port: 90, protocol: UDP, targetPort: 8081}, {name: sctp, port: 95, protocol: SCTP, targetPort: 8082}]
---
apiVersion: v1
kind: Service
metadata: {name: session-affinity-service, namespace: dual-e2e}
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  sessionAffinity: ClientIP
  selector: {selector-dual: "true"}
  ports: [{name: http, port: 80, targetPort: 8083}, {name: udp, port: 90, protocol: UDP, targetPort: 8081}, {name: sctp, port: 95, protocol: SCTP, targetPort: 8082}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: families, namespace: dual-e2e}
spec:
  replicas: 2
  selector: {matchLabels: {testid: families}}
  template:
    metadata: {labels: {testid: families}}
    spec: {containers: [{name: c, image: agnhost, ports: [{containerPort: 9376}, {containerPort: 9376, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: defaultclusterip, namespace: dual-e2e}
spec: {type: NodePort, selector: {testid: families}, ports: [{name: tcp-port, port: 53, protocol: TCP, targetPort: 9376}, {name: udp-port, port: 53, protocol: UDP, targetPort: 9376}]}
---
apiVersion: v1
kind: Service
metadata: {name: ipv4clusterip, namespace: dual-e2e}
spec: {type: NodePort, ipFamilies: [IPv4], selector: {testid: families}, ports: [{name: tcp-port, port: 53, protocol: TCP, targetPort: 9376}, {name: udp-port, port: 53, protocol: UDP, targetPort: 9376}]}
---
apiVersion: v1
kind: Service
metadata: {name: ipv6clusterip, namespace: dual-e2e}
spec: {type: NodePort, ipFamilies: [IPv6], selector: {testid: families}, ports: [{name: tcp-port, port: 53, protocol: TCP, targetPort: 9376}, {name: udp-port, port: 53, protocol: UDP, targetPort: 9376}]}
---
apiVersion: v1
kind: Service
metadata: {name: ipv4ipv6clusterip, namespace: dual-e2e}
spec: {type: NodePort, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], selector: {testid: families}, ports: [{name: tcp-port, port: 53, protocol: TCP, targetPort: 9376}, {name: udp-port, port: 53, protocol: UDP, targetPort: 9376}]}
---
apiVersion: v1
kind: Service
metadata: {name: ipv6ipv4clusterip, namespace: dual-e2e}
spec: {type: NodePort, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6, IPv4], selector: {testid: families}, ports: [{name: tcp-port, port: 53, protocol: TCP, targetPort: 9376}, {name: udp-port, port: 53, protocol: UDP, targetPort: 9376}]}
"#;

fn family(ip: &str) -> &'static str {
    if ip.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// `host:port` for a URL or a socket address: IPv6 in brackets.
fn hostport(ip: &str, port: u64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn get(kc: &str, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(kc, &args)).unwrap()
}

/// The addresses of a status list (`key` of each entry), which must be of both families.
fn addresses(list: &Value, key: &str) -> Vec<String> {
    let addrs: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[key].as_str().unwrap().to_string())
        .collect();
    let fams: BTreeSet<&str> = addrs.iter().map(|a| family(a)).collect();
    assert_eq!(fams.len(), 2, "{addrs:?}");
    addrs
}

/// The seeds' host over HTTPS from outside the cluster at each of an edge proxy's addresses:
/// a my-web pod answers, and the proxy keeps the client's own address, in its family, as
/// itself (never an IPv4-mapped IPv6 address).
fn answers_on_each(lab: &Lab, what: &str, addrs: &[String]) {
    for a in addrs {
        let resolve = format!(
            "my-app.example.com:443:{}",
            hostport(a, 0).trim_end_matches(":0")
        );
        let o = lab.exec(
            "external",
            &[
                "curl",
                "-sk",
                "--max-time",
                "5",
                "--resolve",
                &resolve,
                "https://my-app.example.com/web/hostname",
            ],
        );
        let v = echoed(&o, a);
        let pod = v["pod"].as_str().unwrap_or_default();
        assert!(pod.starts_with("my-web-"), "{what} over {a}: {v}");
        let xff = v["headers"]["X-Forwarded-For"][0].as_str().unwrap();
        assert_eq!(family(xff), family(a), "{what} over {a}: {v}");
        assert!(!xff.starts_with("::ffff:"), "{what} over {a}: {v}");
    }
}

/// The echo server's JSON answer in curl's output (what was asked over `a`).
fn echoed(o: &std::process::Output, a: &str) -> Value {
    let body = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!(
            "over {a}: {e}: {body:?} {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The node port of a Service's port named `name`.
fn node_port_of(svc: &Value, name: &str) -> u64 {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()["nodePort"]
        .as_u64()
        .unwrap()
}

/// One UDP exchange from `from`: `msg` to `ip:port`, the answer (empty on none).
fn udp(lab: &Lab, from: &str, ip: &str, port: u64, msg: &str) -> String {
    let af = if ip.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let py = format!(
        "import socket; s=socket.socket(socket.{af}, socket.SOCK_DGRAM); s.settimeout(2); s.connect(('{ip}', {port})); s.send({msg:?}.encode()); print(s.recv(4096).decode())"
    );
    let o = lab.exec(from, &["python3", "-c", &py]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// SCTP INITs from a pod to each target at once: whether each reached a kernel that answered.
fn sctp_from(lab: &Lab, from: &str, targets: &[(&str, u64)]) -> Vec<bool> {
    let (ns, name) = from.split_once('/').unwrap();
    let netns = podnet_lab::plan::pod_ns(&lab.name, &podnet_model::NsName::new(ns, name));
    let probes: Vec<podnet_node::sctp::Probe> = targets
        .iter()
        .map(|(ip, port)| podnet_node::sctp::Probe {
            from: None,
            to: std::net::SocketAddr::new(ip.parse().unwrap(), *port as u16),
        })
        .collect();
    podnet_node::sys::in_netns(&podnet_node::sys::netns_path(&netns), || {
        podnet_node::sctp::reach_all(&probes, 41000, std::time::Duration::from_secs(2)).map_err(
            |source| podnet_node::NodeError::Io {
                what: format!("SCTP probes from {from}"),
                source,
            },
        )
    })
    .unwrap()
}

/// Upstream's dial rule: tries until the pods that answered are exactly `want` (at most
/// n² + 30 tries); an answer from any other fails at once.
fn dial_until(what: &str, want: &BTreeSet<String>, mut once: impl FnMut() -> String) {
    let mut seen = BTreeSet::new();
    let tries = want.len() * want.len() + 30;
    for _ in 0..tries {
        let got = once();
        if got.is_empty() {
            continue;
        }
        assert!(
            want.contains(&got),
            "{what}: {got:?} answered, not one of {want:?}"
        );
        seen.insert(got);
        if seen == *want {
            return;
        }
    }
    panic!("{what}: after {tries} tries only {seen:?} of {want:?} answered");
}

#[test]
fn the_dual_stack_conformance_cases_with_real_packets() {
    if !can_run() {
        return;
    }
    let m = write_manifest("dual-e2e", FIXTURE);
    let lab = Lab::up("dual", &[m.to_str().unwrap()], &["--ip-family", "dual"]);
    let kc = ok(&["lab", "kubeconfig", "--name", &lab.name])
        .trim()
        .to_string();

    // should have ipv4 and ipv6 internal node ip.
    let nodes = get(&kc, &["nodes"]);
    let nodes = nodes["items"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let mut secondary_node_ip = None;
    for n in nodes {
        let internal: Vec<&str> = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "InternalIP")
            .map(|a| a["address"].as_str().unwrap())
            .collect();
        let families: BTreeSet<&str> = internal.iter().map(|ip| family(ip)).collect();
        assert_eq!(internal.len(), 2, "{internal:?}");
        assert_eq!(families.len(), 2, "{internal:?}");
        secondary_node_ip.get_or_insert(internal[1].to_string());
        assert_eq!(n["spec"]["podCIDRs"].as_array().unwrap().len(), 2);
    }
    let secondary_node_ip = secondary_node_ip.unwrap();
    assert_eq!(family(&secondary_node_ip), "IPv6");

    // should create pod, add ipv6 and ipv4 ip to pod ips / host ips.
    let pods = get(&kc, &["pods", "-n", "dual-e2e"]);
    for p in pods["items"].as_array().unwrap() {
        let name = p["metadata"]["name"].as_str().unwrap();
        let st = &p["status"];
        for (one, list) in [("podIP", "podIPs"), ("hostIP", "hostIPs")] {
            let ips: Vec<&str> = st[list]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no {list}"))
                .iter()
                .map(|x| x["ip"].as_str().unwrap())
                .collect();
            assert_eq!(ips.len(), 2, "{name} {list}: {ips:?}");
            assert_ne!(family(ips[0]), family(ips[1]), "{name} {list}: {ips:?}");
            assert_eq!(st[one].as_str(), Some(ips[0]), "{name}: {one} is {list}[0]");
        }
    }

    // should be able to reach pod on ipv4 and ipv6 ip: every pod of the fixture reaches
    // both addresses of every netserver, across nodes and on its own.
    let st = lab.status();
    let ips_of = |name: &str| -> Vec<String> {
        pod_of(&st, name)["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip.as_str().unwrap().to_string())
            .collect()
    };
    for server in ["netserver-0", "netserver-1", "netserver-2"] {
        for ip in ips_of(server) {
            for client in ["dual-e2e/test-container-pod", "dual-e2e/netserver-0"] {
                let url = format!("http://{}/hostname", hostport(&ip, 8083));
                assert_eq!(
                    curl(&lab, client, &url).as_deref(),
                    Some(server),
                    "{client} -> {url}"
                );
            }
        }
    }

    // The four Service family cases: families, policy, addresses in their order, one
    // EndpointSlice per family of the Service and none of another.
    let families_of = |svc: &Value| -> Vec<String> {
        svc["spec"]["ipFamilies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    for (name, policy, want) in [
        ("defaultclusterip", "SingleStack", vec!["IPv4"]),
        ("ipv4clusterip", "SingleStack", vec!["IPv4"]),
        ("ipv6clusterip", "SingleStack", vec!["IPv6"]),
        (
            "ipv4ipv6clusterip",
            "RequireDualStack",
            vec!["IPv4", "IPv6"],
        ),
        // Not in cases.yaml's subset: upstream's "should create service with ipv6,v4
        // cluster ip".
        (
            "ipv6ipv4clusterip",
            "RequireDualStack",
            vec!["IPv6", "IPv4"],
        ),
    ] {
        let svc = get(&kc, &["service", "-n", "dual-e2e", name]);
        assert_eq!(svc["spec"]["ipFamilyPolicy"], policy, "{name}");
        assert_eq!(families_of(&svc), want, "{name}");
        let ips: Vec<&str> = svc["spec"]["clusterIPs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        let fams: Vec<&str> = ips.iter().map(|ip| family(ip)).collect();
        assert_eq!(fams, want, "{name}: clusterIPs {ips:?}");
        assert_eq!(svc["spec"]["clusterIP"].as_str(), Some(ips[0]));
        assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
        let label = format!("kubernetes.io/service-name={name}");
        let slices = get(&kc, &["endpointslices", "-n", "dual-e2e", "-l", &label]);
        let mut types: Vec<&str> = slices["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["addressType"].as_str().unwrap())
            .collect();
        types.sort();
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(types, sorted, "{name}: exactly one slice per family");
        for s in slices["items"].as_array().unwrap() {
            for e in s["endpoints"].as_array().unwrap() {
                for a in e["addresses"].as_array().unwrap() {
                    assert_eq!(family(a.as_str().unwrap()), s["addressType"], "{name}");
                }
            }
        }
        // Each of its addresses answers over TCP and UDP (serve-hostname on 9376).
        for ip in &ips {
            let url = format!("http://{}/hostname", hostport(ip, 53));
            let who = curl(&lab, "dual-e2e/test-container-pod", &url).unwrap_or_default();
            assert!(who.starts_with("families-"), "{name} {url}: {who:?}");
            let who = udp(&lab, "dual-e2e/test-container-pod", ip, 53, "hostname");
            assert!(who.starts_with("families-"), "{name} UDP {ip}: {who:?}");
        }
    }

    // Granular Checks: Services Secondary IP Family.
    let nps = get(&kc, &["service", "-n", "dual-e2e", "node-port-service"]);
    let secondary = nps["spec"]["clusterIPs"][1].as_str().unwrap().to_string();
    assert_eq!(family(&secondary), "IPv6");
    let node_port = |name: &str| node_port_of(&nps, name);
    let (http_np, udp_np) = (node_port("http"), node_port("udp"));
    let all: BTreeSet<String> = ["netserver-0", "netserver-1", "netserver-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // pod-Service, node-Service (from the host network) and endpoint-Service (hairpin),
    // over http and udp, to the secondary ClusterIP and to the secondary node IP.
    for from in [
        "dual-e2e/test-container-pod",
        "node/node-2",
        "dual-e2e/netserver-0",
    ] {
        for (target, http_port, udp_port) in [
            (secondary.as_str(), 80, 90),
            (secondary_node_ip.as_str(), http_np, udp_np),
        ] {
            let url = format!("http://{}/hostname", hostport(target, http_port));
            dial_until(&format!("{from} http {url}"), &all, || {
                curl(&lab, from, &url).unwrap_or_default()
            });
            dial_until(&format!("{from} udp {target}:{udp_port}"), &all, || {
                udp(&lab, from, target, udp_port, "hostname")
            });
        }
    }
    // pod-Service: sctp. This kernel has no SCTP sockets, so no server can say its name: an
    // INIT to the secondary ClusterIP and to the secondary node IP's node port must reach an
    // endpoint's kernel, which answers it (ICMPv6 parameter problem, unrecognized next
    // header, quoting the INIT as sent: through the proxy's translation and back).
    let sctp_np = node_port("sctp");
    let reached = sctp_from(
        &lab,
        "dual-e2e/test-container-pod",
        &[
            (secondary.as_str(), 95),
            (secondary_node_ip.as_str(), sctp_np),
        ],
    );
    assert_eq!(
        reached,
        [true, true],
        "SCTP to {secondary}:95 and the node port {sctp_np}"
    );
    // should be able to handle large requests: 2000 bytes each way, over HTTP and UDP.
    let big = "x".repeat(2000);
    let url = format!("http://{}/echo?msg={big}", hostport(&secondary, 80));
    assert_eq!(
        curl(&lab, "dual-e2e/test-container-pod", &url).as_deref(),
        Some(big.as_str())
    );
    let echoed = udp(
        &lab,
        "dual-e2e/test-container-pod",
        &secondary,
        90,
        &format!("echo {big}"),
    );
    assert_eq!(echoed, big);
    // should function for client IP based session affinity: the secondary family's
    // ClusterIP sends one client to one endpoint.
    let sas = get(
        &kc,
        &["service", "-n", "dual-e2e", "session-affinity-service"],
    );
    let sticky = sas["spec"]["clusterIPs"][1].as_str().unwrap();
    assert_eq!(family(sticky), "IPv6");
    let url = format!("http://{}/hostname", hostport(sticky, 80));
    let answered: BTreeSet<String> = (0..20)
        .map(|_| curl(&lab, "dual-e2e/test-container-pod", &url).unwrap_or_default())
        .collect();
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(all.contains(answered.iter().next().unwrap()));
    // The same over UDP (upstream's "...session affinity: udp", not in cases.yaml's subset):
    // each datagram from a socket of its own, one endpoint answers them all.
    let answered: BTreeSet<String> = (0..20)
        .map(|_| udp(&lab, "dual-e2e/test-container-pod", sticky, 90, "hostname"))
        .collect();
    assert_eq!(answered.len(), 1, "UDP: {answered:?}");
    assert!(all.contains(answered.iter().next().unwrap()));

    // should update endpoints: netserver-0 deleted, the secondary family stops sending to
    // it (TCP and UDP).
    let without = write_manifest(
        "dual-e2e-without",
        &FIXTURE.replace(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: netserver-0,",
            "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: gone-netserver-0,",
        ),
    );
    lab.apply(&[without.to_str().unwrap()]);
    let rest: BTreeSet<String> = ["netserver-1", "netserver-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let url = format!("http://{}/hostname", hostport(&secondary, 80));
    dial_until("after the update, http", &rest, || {
        curl(&lab, "dual-e2e/test-container-pod", &url).unwrap_or_default()
    });
    for _ in 0..20 {
        let got = udp(
            &lab,
            "dual-e2e/test-container-pod",
            &secondary,
            90,
            "hostname",
        );
        assert!(rest.contains(&got), "UDP after the update: {got:?}");
    }
}

/// Upstream's "Granular Checks: Services Secondary IP Family should function for service
/// endpoints using hostNetwork" (not in cases.yaml's subset): the netservers use the host's
/// network, so their endpoints are the nodes' addresses of each family and their hostname is
/// their node's; pod-Service and node-Service over the secondary ClusterIP and the secondary
/// node IP's node port, HTTP and UDP, and large requests both ways.
#[test]
fn service_endpoints_using_host_network_over_the_secondary_family() {
    if !can_run() {
        return;
    }
    let mut fixture = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: dual-hn}\n");
    for i in 0..3 {
        fixture.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: netserver-{i}, namespace: dual-hn, labels: {{selector-hn: \"true\"}}}}\nspec: {{nodeName: node-{i}, hostNetwork: true, containers: [{{name: webserver, image: agnhost, ports: [{{name: http, containerPort: 8083}}, {{name: udp, containerPort: 8081, protocol: UDP}}]}}]}}\n"
        ));
    }
    fixture.push_str(
        r#"---
apiVersion: v1
kind: Pod
metadata: {name: test-container-pod, namespace: dual-hn}
spec: {nodeName: node-1, containers: [{name: webserver, image: agnhost, ports: [{containerPort: 9080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: node-port-service, namespace: dual-hn}
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  selector: {selector-hn: "true"}
  ports: [{name: http, port: 80, targetPort: 8083}, {name: udp, port: 90, protocol: UDP, targetPort: 8081}]
"#,
    );
    let m = write_manifest("dual-hn", &fixture);
    let lab = Lab::up("dualhn", &[m.to_str().unwrap()], &["--ip-family", "dual"]);
    let kc = ok(&["lab", "kubeconfig", "--name", &lab.name])
        .trim()
        .to_string();
    let nodes = get(&kc, &["nodes"]);
    let node_ip6: BTreeSet<String> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["status"]["addresses"].as_array().unwrap().clone())
        .filter(|a| a["type"] == "InternalIP")
        .map(|a| a["address"].as_str().unwrap().to_string())
        .filter(|ip| family(ip) == "IPv6")
        .collect();
    assert_eq!(node_ip6.len(), 3, "{nodes:#}");
    let secondary_node_ip = node_ip6.iter().next().unwrap().clone();
    let svc = get(&kc, &["service", "-n", "dual-hn", "node-port-service"]);
    let secondary = svc["spec"]["clusterIPs"][1].as_str().unwrap().to_string();
    assert_eq!(family(&secondary), "IPv6");
    // The IPv6 slice's endpoints are the nodes' IPv6 addresses.
    let slices = get(
        &kc,
        &[
            "endpointslices",
            "-n",
            "dual-hn",
            "-l",
            "kubernetes.io/service-name=node-port-service",
        ],
    );
    let v6: BTreeSet<String> = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["addressType"] == "IPv6")
        .flat_map(|s| s["endpoints"].as_array().unwrap().clone())
        .flat_map(|e| e["addresses"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(v6, node_ip6, "the IPv6 slice holds the nodes' addresses");
    let (http_np, udp_np) = (node_port_of(&svc, "http"), node_port_of(&svc, "udp"));
    let all: BTreeSet<String> = ["node-0", "node-1", "node-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // pod-Service(hostNetwork): http; node-Service(hostNetwork): http and udp. And UDP from
    // the pod too (a connected socket, which takes only the answer from the address it sent
    // to): the endpoint on the pod's own node answers from the address the datagram was
    // translated to, not from the node's address in its pod range.
    for (from, udp_too) in [("dual-hn/test-container-pod", true), ("node/node-2", true)] {
        for (target, http_port, udp_port) in [
            (secondary.as_str(), 80, 90),
            (secondary_node_ip.as_str(), http_np, udp_np),
        ] {
            let url = format!("http://{}/hostname", hostport(target, http_port));
            dial_until(&format!("{from} http {url}"), &all, || {
                curl(&lab, from, &url).unwrap_or_default()
            });
            if udp_too {
                dial_until(&format!("{from} udp {target}:{udp_port}"), &all, || {
                    udp(&lab, from, target, udp_port, "hostname")
                });
            }
        }
    }
    // handle large requests: http and udp (hostNetwork).
    let big = "42".repeat(1000);
    let url = format!("http://{}/echo?msg={big}", hostport(&secondary, 80));
    assert_eq!(
        curl(&lab, "dual-hn/test-container-pod", &url).as_deref(),
        Some(big.as_str())
    );
    // The pod's datagram to another node's address is masqueraded to its own node's, so the
    // answer comes back over the underlay (MTU 1500) in fragments that, joined and translated
    // back on the pod's node, are too big for the pod's link (1450): IPv6 routers do not
    // fragment, so the node drops the first such answer with a Packet Too Big, and the
    // server's kernel sends the next in smaller fragments (it keeps the path's MTU for ten
    // minutes). So each of the two other nodes' servers may lose one, and no more: upstream
    // dials up to MaxTries times; here the third try at the latest must be answered.
    let big = format!("n{}", "o".repeat(1999));
    let mut tries = Vec::new();
    for _ in 0..3 {
        let echoed = udp(
            &lab,
            "dual-hn/test-container-pod",
            &secondary,
            90,
            &format!("echo {big}"),
        );
        tries.push(echoed.len());
        if echoed == big {
            break;
        }
        // Which endpoint the try went to: the flows of the pod's node to the ClusterIP.
        let o = lab.exec(
            "node/node-1",
            &[
                "conntrack",
                "-L",
                "-f",
                "ipv6",
                "-p",
                "udp",
                "--orig-dst",
                &secondary,
            ],
        );
        eprintln!(
            "try {} unanswered; node-1's flows to {secondary}:\n{}",
            tries.len(),
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // What each node's IPv6 stack counted: Packet Too Big sent and received, fragments that
    // could not be sent or joined, and the path MTUs the servers' kernels keep.
    let counters = || -> String {
        let mut out = String::new();
        for node in ["node-0", "node-1", "node-2"] {
            let o = lab.exec(&format!("node/{node}"), &["nstat", "-az"]);
            let want = [
                "Icmp6OutPktTooBigs",
                "Icmp6InPktTooBigs",
                "Ip6FragFails",
                "Ip6InTooBigErrors",
                "Ip6ReasmFails",
                "Ip6ReasmTimeout",
                "Ip6InDiscards",
                "Ip6OutDiscards",
            ];
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 2 && want.contains(&f[0]) && f[1] != "0" {
                    out.push_str(&format!("{node} {} {}\n", f[0], f[1]));
                }
            }
            let o = lab.exec(
                &format!("node/{node}"),
                &["ip", "-6", "route", "show", "cache"],
            );
            out.push_str(&format!(
                "{node} cache: {}\n",
                String::from_utf8_lossy(&o.stdout).trim()
            ));
        }
        out
    };
    assert_eq!(
        tries.last(),
        Some(&big.len()),
        "a large UDP request over IPv6 to a hostNetwork endpoint: the answers' lengths {tries:?}\n{}",
        counters()
    );
}

/// The seeds' policies over each family: the probe matrices of a dual-stack lab over IPv4 and
/// over IPv6, and of an IPv6 lab, equal the static answer (the nodes' tables, which the model
/// computes) on every cell, and the two families of the dual lab equal each other.
#[test]
fn the_seeds_policies_hold_over_both_families_and_in_an_ipv6_lab() {
    if !can_run() {
        return;
    }
    let rows = |m: &Value| m["reachable"].clone();
    let dual = Lab::up(
        "dualseeds",
        &["examples/seeds", "examples/gateway"],
        &["--ip-family", "dual"],
    );
    let v4 = dual.probe_family(8080, "TCP", "IPv4");
    let v6 = dual.probe_family(8080, "TCP", "IPv6");
    assert_eq!(rows(&v4), rows(&v6), "the same verdicts over both families");
    // The Ingress controller's Service is of both families: the Ingress's status lists both
    // of its addresses, and each answers from outside the cluster.
    let kc = ok(&["lab", "kubeconfig", "--name", &dual.name])
        .trim()
        .to_string();
    let ing = get(&kc, &["ingress", "-n", "default", "my-ingress"]);
    let addrs = addresses(&ing["status"]["loadBalancer"]["ingress"], "ip");
    answers_on_each(&dual, "Ingress", &addrs);
    // A Gateway's addresses are both families' too, and each answers.
    let gw = get(&kc, &["gateways", "-n", "default", "my-gateway"]);
    let addrs = addresses(&gw["status"]["addresses"], "value");
    answers_on_each(&dual, "Gateway", &addrs);
    drop(dual);
    let six = Lab::up(
        "v6seeds",
        &["examples/seeds", "examples/gateway"],
        &["--ip-family", "ipv6"],
    );
    let m = six.probe_family(8080, "TCP", "IPv6");
    assert_eq!(
        rows(&m),
        rows(&v4),
        "an IPv6 lab's verdicts are the IPv4 lab's"
    );
    let st = six.status();
    assert!(st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hostNetwork"] == false)
        .all(|p| p["ip"].as_str().is_some_and(|ip| ip.contains(':'))));
}
