//! The lab's nodes run `podnet agent` (issue 12): an agent killed with SIGKILL is started
//! again and no connection through a Service fails meanwhile; with the API unreachable for
//! 10 s the dataplane keeps serving, and the agents catch up on what changed meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{can_run, ok, podnet, write_manifest, Lab};

/// The agents of a lab, by node: their pids.
fn agents(lab: &str) -> Vec<(String, i32)> {
    let dir = format!("/run/podnet/{lab}/agents");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("agent") && args.contains(&dir) {
            let node = args
                .windows(2)
                .find(|w| w[0] == "--node")
                .map(|w| w[1].clone())
                .unwrap();
            out.push((node, pid));
        }
    }
    out.sort();
    out
}

/// Connections through my-service from a frontend pod (the seeds' policies allow them),
/// one every 10 ms for `n` tries; returns (ok, failed).
fn prober(lab: &Lab, n: usize) -> std::thread::JoinHandle<(usize, usize)> {
    let name = lab.name.clone();
    let frontend = format!("default/{}", lab.pod_name("frontend-"));
    std::thread::spawn(move || {
        let script = format!(
            "import socket, time\nok = bad = 0\nfor _ in range({n}):\n    try:\n        s = socket.create_connection(('my-service', 80), timeout=1); s.close(); ok += 1\n    except OSError:\n        bad += 1\n    time.sleep(0.01)\nprint(ok, bad)\n"
        );
        let o = podnet(&[
            "lab", "exec", "--name", &name, &frontend, "--", "python3", "-c", &script,
        ]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let v: Vec<usize> = out
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(v.len(), 2, "{out} {}", String::from_utf8_lossy(&o.stderr));
        (v[0], v[1])
    })
}

fn scaled(lab: &str, replicas: usize) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(super::root_dir().join("examples/seeds/workloads.yaml")).unwrap();
    let docs: Vec<String> = text
        .split("\n---")
        .map(|d| {
            if d.contains("name: my-app\n") && d.contains("kind: Deployment") {
                d.replacen("replicas: 3", &format!("replicas: {replicas}"), 1)
            } else {
                d.to_string()
            }
        })
        .collect();
    write_manifest(&format!("{lab}-workloads-{replicas}"), &docs.join("\n---"))
}

fn apply_scaled(lab: &Lab, replicas: usize) -> String {
    let w = scaled(&lab.name, replicas);
    let out = ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        w.to_str().unwrap(),
        "-f",
        "examples/seeds/service.yaml",
        "-f",
        "examples/seeds/network-policy.yaml",
        "-f",
        "examples/seeds/network-policy-frontend.yaml",
    ]);
    std::fs::remove_file(w).unwrap();
    out
}

#[test]
fn an_agent_killed_is_started_again_and_no_connection_fails() {
    if !can_run() {
        return;
    }
    let lab = Lab::up(
        "agkill",
        &[
            "examples/seeds/workloads.yaml",
            "examples/seeds/service.yaml",
            "examples/seeds/network-policy.yaml",
            "examples/seeds/network-policy-frontend.yaml",
        ],
        &[],
    );
    let before = agents(&lab.name);
    assert_eq!(before.len(), 3, "{before:?}");
    let probe = prober(&lab, 300);
    std::thread::sleep(Duration::from_millis(500));
    for (_, pid) in &before {
        assert!(Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success());
    }
    // Started again, as the kubelet would.
    let start = Instant::now();
    let mut now = agents(&lab.name);
    while !(now.len() == 3 && now.iter().all(|a| !before.contains(a))) {
        assert!(start.elapsed() < Duration::from_secs(10), "{now:?}");
        std::thread::sleep(Duration::from_millis(20));
        now = agents(&lab.name);
    }
    let (good, bad) = probe.join().unwrap();
    assert_eq!(
        (good, bad),
        (300, 0),
        "connections failed while the agents restarted"
    );
    // The agents that came back program what changes next.
    let out = apply_scaled(&lab, 4);
    assert!(out.contains("1 created"), "{out}");
}

#[test]
fn with_the_api_unreachable_the_dataplane_serves_and_the_agents_catch_up() {
    if !can_run() {
        return;
    }
    let lab = Lab::up(
        "agapi",
        &[
            "examples/seeds/workloads.yaml",
            "examples/seeds/service.yaml",
            "examples/seeds/network-policy.yaml",
            "examples/seeds/network-policy-frontend.yaml",
        ],
        &[],
    );
    let api_ns = format!("podnet-{}.api", lab.name);
    let link = |state: &str| {
        let st = Command::new("ip")
            .args(["netns", "exec", &api_ns, "ip", "link", "set", "eth0", state])
            .status()
            .unwrap();
        assert!(st.success());
    };
    link("down");
    let cut = Instant::now();
    let probe = prober(&lab, 400);
    // A change while the agents cannot see it: `lab apply` waits for them.
    let lab_name = lab.name.clone();
    let restore = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let st = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("podnet-{lab_name}.api"),
                "ip",
                "link",
                "set",
                "eth0",
                "up",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    });
    let out = apply_scaled(&lab, 4);
    assert!(out.contains("1 created"), "{out}");
    assert!(
        cut.elapsed() >= Duration::from_secs(10),
        "the agents could not have seen it"
    );
    restore.join().unwrap();
    let (good, bad) = probe.join().unwrap();
    assert_eq!(
        bad, 0,
        "connections failed while the API was unreachable ({good} ok)"
    );
    let _ = link;
}
