//! The soak: whole lab lives, one after another, with both cores kept busy by a load of their
//! own: `lab up` of the seeds, every pod probed against every pod and held against the static
//! answer (`check --reach`, which `lab probe` compares with), `lab apply` of a change (my-app
//! scaled, and a NetworkPolicy added that isolates the frontends), probed again, `lab down`.
//! 10 cycles here; `bench/soak.sh` runs the same with more (`PODNET_SOAK_CYCLES`) and records
//! the result in bench/RESULTS.md.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{can_run, ok, write_manifest, Lab};

/// A policy that isolates the frontends for ingress (they accept from nobody): a change of
/// the reachability matrix for the probe to agree with.
const ISOLATE_FRONTENDS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: soak-frontends}\nspec:\n  podSelector: {matchLabels: {role: frontend}}\n  policyTypes: [Ingress]\n";

/// Keeps every core busy until dropped: one spinning shell per core, at the lowest priority
/// (nice 19), so that the machine has no idle time yet the lab tests running beside this one
/// keep their share.
struct Load {
    spinners: Vec<std::process::Child>,
}

impl Load {
    fn start() -> Load {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = (0..cores)
            .map(|_| {
                std::process::Command::new("nice")
                    .args(["-n", "19", "sh", "-c", "while :; do :; done"])
                    .spawn()
                    .unwrap()
            })
            .collect();
        Load { spinners }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.spinners {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every pod to every pod on 8080, 500 ms for each connection (a connection within the lab
/// takes well under 1 ms; the policies' drops take the whole timeout).
fn probe(lab: &Lab) -> Value {
    serde_json::from_str(&ok(&[
        "lab",
        "probe",
        "--name",
        &lab.name,
        "--port",
        "8080",
        "--timeout-ms",
        "500",
        "-o",
        "json",
    ]))
    .unwrap()
}

/// The cells of a probe matrix that the packets and the static answer disagree on.
fn disagreements(m: &Value) -> usize {
    m["disagreements"].as_array().map_or(usize::MAX, Vec::len)
}

#[test]
fn soak_up_probe_apply_probe_down_under_load() {
    if !can_run() {
        return;
    }
    let cycles: usize = std::env::var("PODNET_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    let files = [
        "examples/seeds/workloads.yaml",
        "examples/seeds/service.yaml",
        "examples/seeds/network-policy.yaml",
        "examples/seeds/network-policy-frontend.yaml",
    ];
    let workloads = std::fs::read_to_string(super::root_dir().join(files[0])).unwrap();
    let changed = write_manifest(
        "soak-change",
        &format!(
            "{}\n---\n{ISOLATE_FRONTENDS}",
            workloads.replacen("replicas: 3", "replicas: 4", 1)
        ),
    );
    let load = Load::start();
    let start = Instant::now();
    let (mut cells, mut times) = (0usize, Vec::new());
    for cycle in 0..cycles {
        let t = Instant::now();
        let lab = Lab::up("soak", &files, &[]);
        let before = probe(&lab);
        let mut args = vec!["lab", "apply", "--name", &lab.name, "-f"];
        let changed = changed.to_str().unwrap();
        args.push(changed);
        for f in &files[1..] {
            args.extend(["-f", f]);
        }
        let out = ok(&args);
        assert!(out.contains("1 created"), "cycle {cycle}: {out}");
        let after = probe(&lab);
        assert_eq!(
            (disagreements(&before), disagreements(&after)),
            (0, 0),
            "cycle {cycle}"
        );
        let pods = |m: &Value| m["pods"].as_array().map_or(0, Vec::len);
        assert_eq!(
            pods(&after),
            pods(&before) + 1,
            "cycle {cycle}: the change shows"
        );
        for m in [&before, &after] {
            cells += m["reachable"].as_array().map_or(0, |rows| {
                rows.iter().map(|r| r.as_array().map_or(0, Vec::len)).sum()
            });
        }
        drop(lab);
        times.push(t.elapsed());
    }
    drop(load);
    std::fs::remove_file(changed).unwrap();
    times.sort();
    eprintln!(
        "soak: {cycles} cycles in {:.0} s under load, {cells} probed cells, 0 unexpected; a cycle p50 {:.1} s, worst {:.1} s",
        start.elapsed().as_secs_f64(),
        times[times.len() / 2].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    assert!(times.iter().all(|t| *t < Duration::from_secs(300)));
}
