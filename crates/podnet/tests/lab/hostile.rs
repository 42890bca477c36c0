//! Issue 21: defects found by trying the lab as a hostile user would; one regression test each,
//! reproducing the defect as it was reported.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::{can_run, ok, root_dir, write_manifest, Lab};

/// The seeds' workloads with one Deployment's replicas changed.
fn scaled(lab: &str, deployment: &str, from: u32, to: u32) -> std::path::PathBuf {
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

/// The pods whose names start with `prefix`, by `lab status`.
fn count(status: &Value, prefix: &str) -> usize {
    status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with(prefix))
        .count()
}

/// The pods the lab's API serves, as `namespace/name`.
fn api_pods(lab: &str) -> Vec<String> {
    let addr = std::fs::read_to_string(format!("/run/podnet/{lab}/api.addr")).unwrap();
    let o = Command::new("curl")
        .args(["-s", &format!("http://{}/api/v1/pods", addr.trim())])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut pods: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    pods.sort();
    pods
}

/// Item 1: two `lab apply` at once lost an update: both said "1 created", and one's new pod
/// was in neither `lab status` nor the API, though its namespace existed. Now the second
/// waits for the first (and says so): the lab ends as the last one says, and the saved state,
/// the API, the nodes and the machine's namespaces agree.
#[test]
fn two_applies_at_once_run_one_after_the_other_and_lose_nothing() {
    if !can_run() {
        return;
    }
    let lab = Lab::up(
        "twoapply",
        &[
            "examples/seeds/workloads.yaml",
            "examples/seeds/service.yaml",
        ],
        &[],
    );
    let a = scaled(&lab.name, "frontend", 2, 3);
    let b = scaled(&lab.name, "trusted-app", 1, 2);
    let spawn = |f: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_podnet"))
            .args(["lab", "apply", "--name", &lab.name, "-f"])
            .arg(f)
            .args(["-f", "examples/seeds/service.yaml"])
            .current_dir(root_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(oa.status.success(), "{}", text(&oa));
    assert!(ob.status.success(), "{}", text(&ob));
    assert!(
        text(&oa).contains("waiting for it to finish")
            || text(&ob).contains("waiting for it to finish"),
        "one waited for the other: {} / {}",
        text(&oa),
        text(&ob)
    );
    // The last one's manifests, whole: (frontend, trusted-app) = (3, 1) or (2, 2).
    let st = lab.status();
    let got = (count(&st, "frontend-"), count(&st, "trusted-app-"));
    assert!(got == (3, 1) || got == (2, 2), "{got:?}: {st}");
    // The state, the API and the machine agree.
    let mut status_pods: Vec<String> = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect();
    status_pods.sort();
    assert_eq!(api_pods(&lab.name), status_pods);
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("podnet-{}.p.", lab.name)))
        .collect();
    assert_eq!(netns.len(), status_pods.len(), "{netns:?} {status_pods:?}");
    for node in ["node-0", "node-1", "node-2"] {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/run/podnet/{}/agents/{node}.{f}.json", lab.name))
                .unwrap()
        };
        let (want, held): (Value, Value) = (
            serde_json::from_str(&read("expected")).unwrap(),
            serde_json::from_str(&read("verified")).unwrap(),
        );
        assert!(
            want == held,
            "{node}: the kernel holds what the lab expects"
        );
    }
    lab.probe(80, "TCP");
    // And the next change works.
    ok(&[
        "lab",
        "apply",
        "--name",
        &lab.name,
        "-f",
        "examples/seeds/workloads.yaml",
        "-f",
        "examples/seeds/service.yaml",
    ]);
    let st = lab.status();
    assert_eq!(
        (count(&st, "frontend-"), count(&st, "trusted-app-")),
        (2, 1)
    );
}
