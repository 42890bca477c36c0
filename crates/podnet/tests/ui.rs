//! The map (`podnet check --html`) in a real headless browser (Chromium from Debian's
//! packages; without it the test says why it skips, and under `CI=true` a skip is a
//! failure): the page runs to its end with no error in the console, shows every pod and
//! Service, and the matrix's cell for a denied pair says why. Screenshots are kept in
//! `target/ui-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn podnet(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "podnet {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Chromium, or None (saying why) where it is not installed.
pub fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new(name).arg("--version").output() {
            if o.status.success() {
                return Some(PathBuf::from(name));
            }
        }
    }
    let why = "no Chromium (scripts/install-deps.sh installs Debian's chromium)";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "skipped under CI=true: {why}"
    );
    eprintln!("SKIP: {why}");
    None
}

/// Where the screenshots go.
pub fn artifacts() -> PathBuf {
    let d = root().join("target/ui-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The page at `url` after its script ran: its DOM, and the console's lines (errors among
/// them) from Chromium's log.
pub fn load(chrome: &Path, url: &str, extra: &[&str]) -> (String, Vec<String>) {
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1600,1000",
        ])
        .args(extra)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    let console: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), console)
}

pub fn screenshot(chrome: &Path, url: &str, file: &Path) {
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1600,1000",
            "--hide-scrollbars",
        ])
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(file.exists(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The first pair (from, to) of different pods that the policies deny on `port`.
fn denied_pair(files: &[&str], port: u16) -> (String, String) {
    let mut args = vec!["check"];
    for f in files {
        args.extend(["-f", f]);
    }
    let p = port.to_string();
    args.extend(["--reach", "--port", &p, "-o", "json"]);
    let cells: Vec<Value> = serde_json::from_str(&podnet(&args)).unwrap();
    let c = cells
        .iter()
        .find(|c| c["allowed"] == false && c["from"] != c["to"])
        .expect("a denied pair");
    (
        c["from"].as_str().unwrap().to_string(),
        c["to"].as_str().unwrap().to_string(),
    )
}

fn check_page(name: &str, files: &[&str], min_pods: usize) {
    let Some(chrome) = chromium() else { return };
    let out = artifacts();
    let html = out.join(format!("{name}.html"));
    let mut args = vec!["check"];
    for f in files {
        args.extend(["-f", f]);
    }
    args.extend(["--html", html.to_str().unwrap()]);
    podnet(&args);
    let mut plan_args = vec!["check"];
    for f in files {
        plan_args.extend(["-f", f]);
    }
    plan_args.extend(["-o", "json"]);
    let plan: Value = serde_json::from_str(&podnet(&plan_args)).unwrap();
    let (from, to) = denied_pair(files, 80);
    let url = format!("file://{}#cell={from}>{to}&port=80", html.display());
    let (dom, console) = load(&chrome, &url, &[]);
    assert!(console.is_empty(), "the console said: {console:#?}");
    assert!(
        dom.contains("data-ready=\"true\""),
        "the script did not run to its end"
    );
    let pods = plan["pods"].as_array().unwrap();
    assert!(pods.len() >= min_pods, "{} pods", pods.len());
    for p in pods {
        let key = format!(
            "{}/{}",
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        );
        assert!(
            dom.contains(&format!("data-pod=\"{key}\"")),
            "pod {key} not on the page"
        );
    }
    for s in plan["services"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            s["namespace"].as_str().unwrap(),
            s["name"].as_str().unwrap()
        );
        assert!(
            dom.contains(&format!("data-service=\"{key}\"")),
            "Service {key} not on the page"
        );
    }
    // The cell for the denied pair, explained as a click explains it.
    let why = dom
        .split("id=\"why\"")
        .nth(1)
        .and_then(|s| s.split("</aside>").next())
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains(&format!("data-from=\"{from}\"")) && why.contains("data-allowed=\"false\""),
        "{why}"
    );
    assert!(why.contains("denied"), "{why}");
    assert!(why.contains("isolated by NetworkPolicy"), "{why}");
    screenshot(&chrome, &url, &out.join(format!("{name}.png")));
    eprintln!("screenshot: {}", out.join(format!("{name}.png")).display());
}

#[test]
fn the_seeds_map_shows_every_pod_and_service_and_why_a_pair_is_denied() {
    check_page("seeds", &["examples/seeds"], 10);
}

#[test]
fn a_200_pod_map_loads_and_explains() {
    let scaled = std::fs::read_to_string(root().join("examples/seeds/workloads.yaml"))
        .unwrap()
        .replacen("replicas: 3", "replicas: 190", 1);
    assert!(scaled.contains("replicas: 190"));
    let dir = std::env::temp_dir().join(format!("podnet-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "service.yaml",
        "network-policy.yaml",
        "network-policy-frontend.yaml",
    ] {
        std::fs::copy(root().join("examples/seeds").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("workloads.yaml"), scaled).unwrap();
    check_page("seeds-200", &[dir.to_str().unwrap()], 200);
    std::fs::remove_dir_all(dir).unwrap();
}
