//! The map (`podnet check --html`) in a real headless browser (Chromium from Debian's
//! packages; without it the test says why it skips, and under `CI=true` a skip is a
//! failure): the page runs to its end with no error in the console, shows every pod and
//! Service, and the matrix's cell for a denied pair says why. Screenshots are kept in
//! `target/ui-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podnet_testkit::browser::{chromium, Browser};
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

/// Where the screenshots go.
fn artifacts() -> PathBuf {
    let d = root().join("target/ui-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
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
    let mut page = Browser::open(&chrome, &format!("file://{}", html.display()));
    assert!(
        page.wait_for(
            "document.body && document.body.dataset.ready === 'true'",
            Duration::from_secs(10)
        )
        .is_some(),
        "the page's script did not run to its end: {:?}",
        page.errors
    );
    let pods = plan["pods"].as_array().unwrap();
    assert!(pods.len() >= min_pods, "{} pods", pods.len());
    let keys = |v: &Value, what: &str| -> Vec<String> {
        v[what]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["namespace"].as_str().unwrap(),
                    o["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let mut shown = |attr: &str| -> Vec<String> {
        serde_json::from_value(page.eval(&format!(
            "[...document.querySelectorAll('[{attr}]')].map(e => e.getAttribute('{attr}'))"
        )))
        .unwrap()
    };
    let (on_page, svcs_on_page) = (shown("data-pod"), shown("data-service"));
    for key in keys(&plan, "pods") {
        assert!(on_page.contains(&key), "pod {key} not on the page");
    }
    for key in keys(&plan, "services") {
        assert!(svcs_on_page.contains(&key), "Service {key} not on the page");
    }
    // The matrix on port 80, and a click on the denied pair's cell: the page says why.
    page.eval(
        "(() => { const s = document.getElementById('port'); \
          s.value = [...s.options].find(o => o.textContent === '80/TCP').value; \
          s.dispatchEvent(new Event('change')); })()",
    );
    let at = page.eval(&format!(
        "(() => {{ const m = VIEW.matrices[current], n = m.pods.length; \
           const i = m.pods.findIndex(p => VIEW.pods[p].key === {from:?}); \
           const j = m.pods.findIndex(p => VIEW.pods[p].key === {to:?}); \
           const c = document.getElementById('grid'); c.scrollIntoView(); \
           const r = c.getBoundingClientRect(); \
           return [r.left + (j + 0.5) * r.width / n, r.top + (i + 0.5) * r.height / n]; }})()"
    ));
    page.click(at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    let why = page.eval("document.getElementById('why').innerText");
    let why = why.as_str().unwrap_or_default();
    assert!(
        why.starts_with(&format!("{from} → {to} TCP/80: denied")),
        "{why}"
    );
    assert!(why.contains("isolated by NetworkPolicy"), "{why}");
    page.screenshot(&out.join(format!("{name}.png")));
    assert!(
        page.errors.is_empty(),
        "the console said: {:#?}",
        page.errors
    );
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
