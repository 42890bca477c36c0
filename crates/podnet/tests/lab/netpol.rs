//! Every case of `../shared/conformance/netpol/cases.yaml` with real packets, as upstream runs
//! them: the 9 pods x/a … z/c with a Service each in a lab, the steps applied in order with
//! `lab apply`, and at every probe step each pod connecting to every Service's ClusterIP (on any
//! difference the whole matrix is probed once more, as upstream does, and that try counts). Every
//! non-loopback cell must equal upstream's expectation and `podnet check --reach` for the same
//! state. SCTP: this kernel has no SCTP sockets, so an SCTP probe is an INIT sent through a raw
//! socket, which reached the pod when the pod's kernel answers protocol unreachable
//! ([`podnet_node::sctp`]): the same allowed-or-denied question, without a server.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{can_run, ok, write_manifest, Lab};

use podnet_testkit::netpol_cases;

/// The script each source pod runs: connect to every target at once, one line per target
/// (`1` connected, `0` not), TCP by connecting, UDP by asking and hearing an answer.
const PROBE: &str = r#"
import socket, sys, threading
proto, port, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out = ["0"] * len(targets)
def probe(i, ip):
    try:
        if proto == "TCP":
            s = socket.create_connection((ip, port), timeout=1); s.close()
        else:
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
            s.sendto(b"hostname", (ip, port)); s.recv(100)
        out[i] = "1"
    except OSError:
        pass
ts = [threading.Thread(target=probe, args=(i, ip)) for i, ip in enumerate(targets)]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join(out))
"#;

/// Each node's links, routes, nftables tables and its agent's last words.
fn node_state(lab: &str) -> String {
    let mut out = String::new();
    for n in ["node-0", "node-1", "node-2"] {
        let ns = format!("podnet-{lab}.n.{n}");
        for cmd in [
            vec!["ip", "-br", "link"],
            vec!["ip", "route"],
            vec!["nft", "list", "tables"],
        ] {
            let o = std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(&cmd)
                .output()
                .unwrap();
            out += &format!(
                "{n}$ {}\n{}",
                cmd.join(" "),
                String::from_utf8_lossy(&o.stdout)
            );
        }
        let log = std::fs::read_to_string(format!("/run/podnet/{lab}/agents/{n}.log"))
            .unwrap_or_default();
        out += &format!("{n} agent log:\n{log}\n");
    }
    out
}

/// One source pod's SCTP probes of every Service address, from the pod's namespace.
fn sctp_row(lab: &str, from: &str, vips: &[String], port: u16) -> Vec<bool> {
    let (ns, name) = from.split_once('/').unwrap();
    let netns = podnet_lab::plan::pod_ns(lab, &podnet_model::NsName::new(ns, name));
    let probes: Vec<podnet_node::sctp::Probe> = vips
        .iter()
        .map(|v| podnet_node::sctp::Probe {
            from: None,
            to: std::net::SocketAddr::new(v.parse().unwrap(), port),
        })
        .collect();
    podnet_node::sys::in_netns(&podnet_node::sys::netns_path(&netns), || {
        podnet_node::sctp::reach_all(&probes, 40000, std::time::Duration::from_secs(1)).map_err(
            |source| podnet_node::NodeError::Io {
                what: format!("SCTP probes from {from}"),
                source,
            },
        )
    })
    .unwrap()
}

#[test]
fn every_upstream_case_with_real_packets() {
    upstream_cases(podnet_model::ConfigOverrides::default(), None, "np");
}

/// And in a dual-stack lab over its secondary family (IPv6): the Services of both families,
/// the placeholders the pods' IPv6 addresses, the probes to the IPv6 ClusterIPs, `check
/// --reach --family IPv6` the static answer.
#[test]
fn every_upstream_case_with_real_packets_over_ipv6_in_a_dual_stack_lab() {
    let dual = podnet_model::ConfigOverrides {
        ip_family: Some(podnet_model::config::ClusterFamily::Dual),
        ..Default::default()
    };
    upstream_cases(dual, Some(podnet_model::IpFamily::Ipv6), "npdual");
}

/// The same in an IPv6 lab, as upstream runs its NetworkPolicy e2e on IPv6 clusters too (the
/// placeholders' addresses and masks IPv6, SCTP probes over IPv6).
#[test]
fn every_upstream_case_with_real_packets_in_an_ipv6_lab() {
    let v6 = podnet_model::ConfigOverrides {
        ip_family: Some(podnet_model::config::ClusterFamily::Ipv6),
        ..Default::default()
    };
    upstream_cases(v6, None, "np6");
}

fn upstream_cases(
    settings: podnet_model::ConfigOverrides,
    family: Option<podnet_model::IpFamily>,
    name: &str,
) {
    if !can_run() {
        return;
    }
    let mut lab: Option<Lab> = None;
    let mut current = String::new();
    let mut wrong = Vec::new();
    let mut probed = 0;
    // Files of its own: the variants (families) run at once.
    let script = write_manifest(&format!("{name}-probe.py"), PROBE);
    let ran = netpol_cases::run_cases_in(settings.clone(), family, |p| {
        // The case's state as manifests; a new lab when the case (its servers) changes.
        let c = &p.cluster;
        let m = write_manifest(&format!("{name}-state"), &p.manifests);
        if current != p.case {
            drop(lab.take());
            lab = Some(Lab::up(name, &[m.to_str().unwrap()], &[]));
            current = p.case.to_string();
        } else {
            ok(&[
                "lab",
                "apply",
                "--name",
                &lab.as_ref().unwrap().name,
                "-f",
                m.to_str().unwrap(),
            ]);
        }
        let lab = lab.as_ref().unwrap();
        probed += 1;
        let pods: Vec<String> = netpol_cases::NAMESPACES
            .iter()
            .flat_map(|ns| netpol_cases::PODS.iter().map(move |x| format!("{ns}/{x}")))
            .collect();
        let vips: Vec<String> = pods
            .iter()
            .map(|k| {
                let (ns, x) = k.split_once('/').unwrap();
                let ips = &c.service(ns, &format!("s-{ns}-{x}")).unwrap().cluster_ips;
                match family {
                    Some(f) => ips.iter().find(|ip| podnet_model::IpFamily::of(**ip) == f),
                    None => ips.first(),
                }
                .expect("a ClusterIP of the family")
                .to_string()
            })
            .collect();
        // The lab is of the family asked for.
        let v6 = settings.ip_family == Some(podnet_model::config::ClusterFamily::Ipv6)
            || family == Some(podnet_model::IpFamily::Ipv6);
        assert!(vips.iter().all(|v| v.contains(':') == v6), "{vips:?}");
        let family_flag: Vec<&str> = match family {
            Some(f) => vec!["--family", f.as_str()],
            None => Vec::new(),
        };
        let static_reach: Vec<Value> = serde_json::from_str(&ok(&[
            "check",
            "-f",
            m.to_str().unwrap(),
            "--reach",
            "--port",
            &p.port.to_string(),
            "--protocol",
            p.protocol.as_str(),
            "-o",
            "json",
        ]
        .into_iter()
        .chain(family_flag.iter().copied())
        .collect::<Vec<_>>()))
        .unwrap();
        // One try: the whole matrix, and what differs from upstream or from check --reach.
        let attempt = || -> Vec<String> {
            let mut problems = Vec::new();
            let rows: Vec<(String, Vec<bool>)> = std::thread::scope(|s| {
                let handles: Vec<_> = pods
                    .iter()
                    .map(|from| {
                        let (vips, script) = (&vips, &script);
                        let proto = p.protocol.as_str().to_string();
                        let port = p.port.to_string();
                        s.spawn(move || {
                            if p.protocol == podnet_model::Protocol::Sctp {
                                return (from.clone(), sctp_row(&lab.name, from, vips, p.port));
                            }
                            let mut args = vec!["python3", script.to_str().unwrap(), &proto, &port];
                            args.extend(vips.iter().map(String::as_str));
                            let o = lab.exec(from, &args);
                            let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
                            let cells: Vec<bool> = line.split(' ').map(|c| c == "1").collect();
                            assert_eq!(
                                cells.len(),
                                9,
                                "{from}: {line} {}",
                                String::from_utf8_lossy(&o.stderr)
                            );
                            (from.clone(), cells)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut denied = BTreeSet::new();
            for (from, cells) in &rows {
                for (j, to) in pods.iter().enumerate() {
                    if from == to {
                        continue;
                    }
                    let statically = static_reach
                        .iter()
                        .find(|x| x["from"] == from.as_str() && x["to"] == to.as_str())
                        .unwrap()["allowed"]
                        == true;
                    if cells[j] != statically {
                        problems.push(format!(
                            "{} {}/{}: {from} -> {to}: real {} but check --reach {statically}",
                            p.case, p.protocol, p.port, cells[j]
                        ));
                    }
                    if !cells[j] {
                        denied.insert(format!("{from}->{to}"));
                    }
                }
            }
            if denied != p.denied {
                problems.push(format!(
                    "{} {}/{}: denied but allowed upstream {:?}; allowed but denied upstream {:?}",
                    p.case,
                    p.protocol,
                    p.port,
                    denied.difference(&p.denied).collect::<Vec<_>>(),
                    p.denied.difference(&denied).collect::<Vec<_>>()
                ));
            }
            problems
        };
        // As upstream: on any difference, the whole matrix is probed once more, and only the
        // second try counts.
        let first = attempt();
        if !first.is_empty() {
            eprintln!(
                "{} {}/{}: re-probing after {} differences",
                p.case,
                p.protocol,
                p.port,
                first.len()
            );
            let second = attempt();
            if !second.is_empty() {
                // What the nodes hold, for whoever reads the failure.
                wrong.push(node_state(&lab.name));
            }
            wrong.extend(second);
        }
        std::fs::remove_file(m).unwrap();
    });
    drop(lab);
    std::fs::remove_file(script).unwrap();
    let Some((probes, listed)) = ran else { return };
    assert_eq!(probes, listed);
    assert_eq!(probed, probes);
    assert!(probed >= 35, "{probed} probe steps with packets");
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Never a window of allow (issue 11, point 4): a client the policies never allow probes every
/// pod address on the servers' port in a tight loop while servers are created, the policy is
/// replaced by another that does not allow it either, and a server's labels change; not one
/// connection may succeed. An allowed client reaches the servers before and after.
#[test]
fn no_window_of_allow_while_things_change() {
    if !can_run() {
        return;
    }
    let manifests = |replicas: u32, allowed_role: &str, tier: &str| {
        let policy = allowed_role.replace(": ", "-");
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: srv}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: srv}}}}
  template:
    metadata: {{labels: {{app: srv}}}}
    spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 8080}}]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: lone, labels: {{app: srv, tier: {tier}}}}}
spec: {{nodeName: node-1, containers: [{{name: c, image: x, ports: [{{containerPort: 8080}}]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bad, labels: {{role: bad}}}}
spec: {{nodeName: node-0, containers: [{{name: c, image: x}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: good, labels: {{role: allowed, also: other}}}}
spec: {{nodeName: node-2, containers: [{{name: c, image: x}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: only-{policy}}}
spec:
  podSelector: {{matchLabels: {{app: srv}}}}
  ingress:
  - from:
    - podSelector:
        matchLabels: {{{allowed_role}}}
"#
        )
    };
    let steps = [
        manifests(1, "role: allowed", "a"),
        manifests(4, "role: allowed", "a"),
        manifests(4, "also: other", "a"),
        manifests(4, "also: other", "b"),
    ];
    let files: Vec<_> = steps
        .iter()
        .enumerate()
        .map(|(i, t)| write_manifest(&format!("window{i}"), t))
        .collect();
    let lab = Lab::up("window", &[files[0].to_str().unwrap()], &[]);
    let reach_all = |from: &str| {
        let st = lab.status();
        st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"].as_str().unwrap().starts_with("srv-") || p["name"] == "lone")
            .all(|p| {
                let o = lab.exec(
                    from,
                    &[
                        "curl",
                        "-s",
                        "-m",
                        "2",
                        &format!("http://{}:8080/hostname", p["ip"].as_str().unwrap()),
                    ],
                );
                o.status.success()
            })
    };
    assert!(
        reach_all("default/good"),
        "the allowed client reaches the servers"
    );
    // The prober: every address of the three pod CIDRs that a pod could get, port 8080.
    let probe = r#"
import socket, time
targets = ["10.244.%d.%d" % (n, h) for n in range(3) for h in range(2, 16)]
end = time.time() + 6
tries = ok = 0
while time.time() < end:
    for ip in targets:
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((ip, 8080)); tries += 1
        try:
            import select
            _, w, _ = select.select([], [s], [], 0.02)
            if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                ok += 1; print("CONNECTED", ip, flush=True)
        finally:
            s.close()
print("tries", tries, "ok", ok, flush=True)
"#;
    let script = write_manifest("window-probe.py", probe);
    let name = lab.name.clone();
    let path = script.to_str().unwrap().to_string();
    let prober = std::thread::spawn(move || {
        super::podnet(&[
            "lab",
            "exec",
            "--name",
            &name,
            "default/bad",
            "--",
            "python3",
            &path,
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    for f in &files[1..] {
        lab.apply(&[f.to_str().unwrap()]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = prober.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let last = report.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("tries "),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tries: usize = last.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(tries > 200, "the prober kept probing: {last}");
    assert!(
        last.ends_with(" ok 0"),
        "a denied client got through: {report}"
    );
    assert!(
        reach_all("default/good"),
        "and the allowed one still gets through"
    );
    for f in files.into_iter().chain([script]) {
        std::fs::remove_file(f).unwrap();
    }
}

/// A malformed policy is refused with its file, line and field, and nothing already enforced
/// changes: the denied client stays denied, the allowed one allowed.
#[test]
fn a_malformed_policy_changes_nothing() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("npbad", &["examples/seeds"], &[]);
    let before = lab.probe(8080, "TCP");
    let dir = std::env::temp_dir().join(format!("podnet-lab-test-{}-npbad", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(super::root_dir().join("examples/seeds")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.join("zz-bad.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n",
    )
    .unwrap();
    let o = super::podnet(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("zz-bad.yaml:8:") && err.contains("spec.ingress[0].from[0].ipBlock.except[0]"),
        "{err}"
    );
    assert_eq!(lab.probe(8080, "TCP")["reachable"], before["reachable"]);
    std::fs::remove_dir_all(dir).unwrap();
}
