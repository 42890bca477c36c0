//! Every ClusterNetworkPolicy conformance case ([`podnet_testkit::cnp_cases`]: the shared
//! subset and the upstream tests written beside it) with real packets, as upstream's suite
//! probes: its fixture (five namespaces, two pods each, the last two on their nodes' network)
//! in a lab, each step's policies applied with `lab apply`, and each probe a connection from
//! the source pod to the destination's address (a host-network pod's is its node's) on the
//! probed protocol and port. An allowed probe must connect (TCP), be answered (UDP) or reach
//! the destination's kernel (SCTP: an INIT through a raw socket, answered "protocol
//! unreachable" on this kernel without SCTP sockets); a denied one must time out: dropped, not
//! refused. Each probe's real result must equal upstream's expectation, the model's answer
//! (`check --reach` for pod destinations) and the compiled tables' (their simulation).
//! `lab apply` returns once every agent holds what the lab computed, so a probe is made once.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{can_run, ok, write_manifest, Lab};

use podnet_model::netpol::{End, Policies};
use podnet_model::Protocol;
use podnet_testkit::cnp_cases;

/// Connects to every target at once; one word per target: `ok`, `timeout`, or what else
/// happened (`refused`, an error). TCP connects; UDP asks and hears an answer.
const PROBE: &str = r#"
import socket, sys, threading
timeout, targets = float(sys.argv[1]), sys.argv[2:]
out = ["?"] * len(targets)
def probe(i, t):
    proto, ip, port = t.split(",")
    port = int(port)
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        if proto == "TCP":
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(timeout)
            s.connect((ip, port)); s.close()
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
            s.connect((ip, port)); s.send(b"hostname"); s.recv(100)
        out[i] = "ok"
    except socket.timeout:
        out[i] = "timeout"
    except ConnectionRefusedError:
        out[i] = "refused"
    except OSError as e:
        out[i] = "error:" + type(e).__name__ + ":" + str(e.errno)
ts = [threading.Thread(target=probe, args=(i, t)) for i, t in enumerate(targets)]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join(out))
"#;

/// How long a denied probe waits (upstream's `agnhost connect --timeout=3s`; 2 s here, which
/// an allowed connection inside one machine never comes near).
const TIMEOUT_S: f64 = 2.0;

struct Pending {
    what: String,
    from: String,
    to_ip: std::net::IpAddr,
    protocol: Protocol,
    port: u16,
    allowed: bool,
    /// The model's and the compiled tables' answers.
    model: bool,
    compiled: bool,
    decided_by: String,
}

/// Probes a state's probes, each source's at once; what differs from upstream's answers.
fn probe_all(lab: &Lab, script: &std::path::Path, probes: &[Pending]) -> Vec<String> {
    let mut by_source: BTreeMap<&str, Vec<&Pending>> = BTreeMap::new();
    for p in probes {
        by_source.entry(&p.from).or_default().push(p);
    }
    let results: Vec<(&Pending, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = by_source
            .into_iter()
            .map(|(from, list)| {
                s.spawn(move || {
                    let (sctp, other): (Vec<&Pending>, Vec<&Pending>) =
                        list.into_iter().partition(|p| p.protocol == Protocol::Sctp);
                    let mut out = Vec::new();
                    if !other.is_empty() {
                        let timeout = TIMEOUT_S.to_string();
                        let targets: Vec<String> = other
                            .iter()
                            .map(|p| format!("{},{},{}", p.protocol.as_str(), p.to_ip, p.port))
                            .collect();
                        let mut args = vec!["python3", script.to_str().unwrap(), &timeout];
                        args.extend(targets.iter().map(String::as_str));
                        let o = lab.exec(from, &args);
                        let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
                        let words: Vec<&str> = line.split(' ').collect();
                        assert_eq!(
                            words.len(),
                            other.len(),
                            "{from}: {line} {}",
                            String::from_utf8_lossy(&o.stderr)
                        );
                        out.extend(other.into_iter().zip(words.iter().map(|w| w.to_string())));
                    }
                    if !sctp.is_empty() {
                        let answered = sctp_probes(&lab.name, from, &sctp);
                        out.extend(
                            sctp.into_iter().zip(
                                answered
                                    .into_iter()
                                    .map(|a| if a { "ok" } else { "timeout" }.to_string()),
                            ),
                        );
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut wrong = Vec::new();
    for (p, got) in results {
        let real = match got.as_str() {
            "ok" => Some(true),
            "timeout" => Some(false),
            _ => None,
        };
        if real != Some(p.allowed) || p.model != p.allowed || p.compiled != p.allowed {
            wrong.push(format!(
                "{}: upstream {}, real {got}, model {}, compiled {} ({})",
                p.what,
                if p.allowed { "allowed" } else { "denied" },
                p.model,
                p.compiled,
                p.decided_by
            ));
        }
    }
    wrong
}

/// One source pod's SCTP probes (raw INITs), from the pod's namespace: whether each was
/// answered.
fn sctp_probes(lab: &str, from: &str, probes: &[&Pending]) -> Vec<bool> {
    let (ns, name) = from.split_once('/').unwrap();
    let netns = podnet_lab::plan::pod_ns(lab, &podnet_model::NsName::new(ns, name));
    let list: Vec<podnet_node::sctp::Probe> = probes
        .iter()
        .map(|p| podnet_node::sctp::Probe {
            from: None,
            to: std::net::SocketAddr::new(p.to_ip, p.port),
        })
        .collect();
    podnet_node::sys::in_netns(&podnet_node::sys::netns_path(&netns), || {
        podnet_node::sctp::reach_all(&list, 40000, std::time::Duration::from_secs_f64(TIMEOUT_S))
            .map_err(|source| podnet_node::NodeError::Io {
                what: format!("SCTP probes from {from}"),
                source,
            })
    })
    .unwrap()
}

#[test]
fn every_clusternetworkpolicy_case_with_real_packets() {
    if !can_run() {
        return;
    }
    let script = write_manifest("cnp-probe.py", PROBE);
    let fixture: String = cnp_cases::fixture(&BTreeMap::new())
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    let fixture = write_manifest("cnp-fixture", &fixture);
    let lab = Lab::up("cnp", &[fixture.to_str().unwrap()], &[]);
    let mut wrong = Vec::new();
    let mut current = String::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut plans = BTreeMap::new();
    let mut reach: BTreeMap<(u16, Protocol), Vec<Value>> = BTreeMap::new();
    let mut state_file = None;
    let mut states = 0;
    let ran = cnp_cases::run_cases(|p| {
        if p.manifests != current {
            // The probes of the state before, then the next state applied.
            wrong.extend(probe_all(&lab, &script, &pending));
            pending.clear();
            let m = write_manifest("cnp-state", &p.manifests);
            lab.apply(&[m.to_str().unwrap()]);
            state_file = Some(m);
            current = p.manifests.clone();
            plans = p
                .cluster
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.name.clone(),
                        podnet_policy::PolicyPlan::for_node(&p.cluster, &n.name),
                    )
                })
                .collect();
            reach.clear();
            states += 1;
        }
        let c = &p.cluster;
        let pod = |k: &str| {
            let (ns, name) = k.split_once('/').unwrap();
            c.pod(ns, name).unwrap_or_else(|| panic!("no pod {k}"))
        };
        let (from, to) = (pod(&p.from), pod(&p.to));
        let mut model = Policies::of(c)
            .judge(End::Pod(from), End::Pod(to), p.port, p.protocol)
            .allowed;
        if !to.host_network {
            // `check --reach` for the same state: the same answer.
            let cells = reach.entry((p.port, p.protocol)).or_insert_with(|| {
                serde_json::from_str(&ok(&[
                    "check",
                    "-f",
                    state_file.as_ref().unwrap().to_str().unwrap(),
                    "--reach",
                    "--port",
                    &p.port.to_string(),
                    "--protocol",
                    p.protocol.as_str(),
                    "-o",
                    "json",
                ]))
                .unwrap()
            });
            let cell = cells
                .iter()
                .find(|x| x["from"] == p.from.as_str() && x["to"] == p.to.as_str())
                .unwrap_or_else(|| panic!("check --reach has no cell {} -> {}", p.from, p.to));
            if cell["allowed"] != model {
                wrong.push(format!(
                    "{} step {}: {} -> {}: check --reach {} but the model {model}",
                    p.case, p.step, p.from, p.to, cell["allowed"]
                ));
                model = !model;
            }
        }
        pending.push(Pending {
            what: format!(
                "{} step {}: {} -> {} {}/{}",
                p.case, p.step, p.from, p.to, p.protocol, p.port
            ),
            from: p.from.clone(),
            to_ip: to.ips[0],
            protocol: p.protocol,
            port: p.port,
            allowed: p.allowed,
            model,
            compiled: podnet_policy::passes(
                &plans,
                from.ips[0],
                to.ips[0],
                podnet_policy::protocol_number(p.protocol),
                p.port,
            ),
            decided_by: p.decided_by.clone(),
        });
    });
    wrong.extend(probe_all(&lab, &script, &pending));
    drop(lab);
    let _ = std::fs::remove_file(script);
    let _ = std::fs::remove_file(fixture);
    if let Some(f) = state_file {
        let _ = std::fs::remove_file(f);
    }
    let Some((cases, probes)) = ran else { return };
    eprintln!("{cases} cases, {probes} probes in {states} states");
    // All of upstream's: 24 tests, 301 probes.
    assert!(
        cases == 24 && probes == 301,
        "{cases} cases, {probes} probes"
    );
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// No window of allow: a prober that no state ever allows connects to every server in a tight
/// loop while the three layers come and go: a Baseline floor first, then a NetworkPolicy, an
/// Admin tier Deny and an Admin tier Pass created, the Pass moved above the Deny and back by
/// priority, and the three deleted in every order (and made again between). Each state denies
/// the prober on its own; not one of its connections may succeed. An allowed client reaches
/// the servers before and after.
#[test]
fn no_window_of_allow_while_the_tiers_change() {
    if !can_run() {
        return;
    }
    let base = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: srv, namespace: app}
spec:
  replicas: 3
  selector: {matchLabels: {app: srv}}
  template:
    metadata: {labels: {app: srv}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, labels: {role: bad}}
spec: {nodeName: node-0, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: good, labels: {role: allowed}}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: floor}
spec:
  tier: Baseline
  priority: 100
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: srv}}}}
  ingress:
  - {name: good, action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: allowed}}}}]}
  - {name: rest, action: Deny, from: [{namespaces: {}}]}
"#;
    let np = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-good, namespace: app}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: allowed}}}]}]
"#;
    let deny = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-deny}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: app}}}
  ingress:
  - {name: good, action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: allowed}}}}]}
  - {name: rest, action: Deny, from: [{namespaces: {}}]}
"#;
    let pass = |priority: u32| {
        format!(
            r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {{name: admin-pass}}
spec:
  tier: Admin
  priority: {priority}
  subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: app}}}}}}
  ingress: [{{name: all, action: Pass, from: [{{namespaces: {{}}}}]}}]
"#
        )
    };
    let layers = |np_on: bool, deny_on: bool, pass_at: Option<u32>| {
        let mut docs = vec![base.to_string()];
        if np_on {
            docs.push(np.to_string());
        }
        if deny_on {
            docs.push(deny.to_string());
        }
        if let Some(p) = pass_at {
            docs.push(pass(p));
        }
        docs.join("\n---\n")
    };
    // The states, in order; each denies the prober by itself.
    let mut states = vec![
        layers(true, false, None),
        layers(true, true, None),
        layers(true, true, Some(20)),
        layers(true, true, Some(5)),
        layers(true, true, Some(15)),
    ];
    // The three layers deleted in every order, all three made again before each order.
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        states.push(layers(true, true, Some(5)));
        let mut on = [true, true, true];
        for layer in order {
            on[layer] = false;
            states.push(layers(on[0], on[1], on[2].then_some(5)));
        }
    }
    let state = write_manifest("cnp-window-state", &states[0]);
    let lab = Lab::up("cnpwin", &[state.to_str().unwrap()], &[]);
    let servers: Vec<String> = lab.status()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("srv-"))
        .map(|p| p["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(servers.len(), 3);
    let reach_all = |from: &str| {
        servers.iter().all(|ip| {
            lab.exec(
                from,
                &[
                    "curl",
                    "-s",
                    "-m",
                    "2",
                    &format!("http://{ip}:8080/hostname"),
                ],
            )
            .status
            .success()
        })
    };
    assert!(
        reach_all("default/good"),
        "the allowed client reaches the servers"
    );
    assert!(
        !reach_all("default/bad"),
        "the prober is denied before it starts"
    );
    // The prober: every server, port 8080, until told to stop (at most 300 s).
    let stop = std::env::temp_dir().join(format!("podnet-cnp-window-stop-{}", std::process::id()));
    let _ = std::fs::remove_file(&stop);
    let probe = format!(
        r#"
import os, select, socket, sys, time
targets = sys.argv[1:]
end = time.time() + 300
tries = ok = 0
while time.time() < end and not os.path.exists({stop:?}):
    for ip in targets:
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((ip, 8080)); tries += 1
        try:
            _, w, _ = select.select([], [s], [], 0.02)
            if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                ok += 1; print("CONNECTED", ip, time.time(), flush=True)
        finally:
            s.close()
print("tries", tries, "ok", ok, flush=True)
"#,
        stop = stop.to_str().unwrap()
    );
    let script = write_manifest("cnp-window-probe.py", &probe);
    let name = lab.name.clone();
    let path = script.to_str().unwrap().to_string();
    let targets = servers.clone();
    let prober = std::thread::spawn(move || {
        let mut args = vec![
            "lab",
            "exec",
            "--name",
            &name,
            "default/bad",
            "--",
            "python3",
            &path,
        ];
        args.extend(targets.iter().map(String::as_str));
        super::podnet(&args)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut applied = Vec::new();
    for (i, s) in states.iter().enumerate().skip(1) {
        let unix = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
        applied.push(format!("state {i} at {unix:.3}"));
        lab.apply_timed(&state, s.clone());
    }
    std::fs::write(&stop, "").unwrap();
    let out = prober.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let last = report.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("tries "),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tries: usize = last.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(tries > 500, "the prober kept probing: {last}");
    assert!(
        last.ends_with(" ok 0"),
        "the prober got through:\n{report}\nthe states applied:\n{}",
        applied.join("\n")
    );
    assert!(
        reach_all("default/good"),
        "and the allowed client still gets through"
    );
    eprintln!("{} states applied; the prober: {last}", states.len());
    for f in [state, script, stop] {
        let _ = std::fs::remove_file(f);
    }
}
