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
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    .unwrap();
    let out = podnet(&["check", "-f", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains(
            "warning: ConfigMap/default/c: kind ConfigMap (v1) is not used by podnet; skipped"
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
