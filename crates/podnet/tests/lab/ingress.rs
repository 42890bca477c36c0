//! The Ingress controller in the lab (issue 13): the seeds' Ingress over HTTPS with the
//! certificate verified and the redirect from HTTP; the upstream conformance scenarios run as
//! the upstream harness runs them (echo backends behind NodePort Services, requests to the
//! address in the Ingress's status, with the scenario's Host); host rules, TLS by SNI and load
//! balancing as the Ingress spec defines them; live changes under load without a failed
//! request. Every request comes from `external`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::api::kubectl_ok;
use super::{can_run, ok, root_dir, write_manifest, Lab, Load};

/// What curl saw: status, HTTP version, response headers (lower case), body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) version: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: String,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Lab {
    pub(super) fn kubeconfig(&self) -> String {
        ok(&["lab", "kubeconfig", "--name", &self.name])
            .trim()
            .to_string()
    }

    /// The Ingress's `status.loadBalancer.ingress[0].ip`, as the lab's API serves it.
    pub(super) fn ingress_address(&self, ns: &str, name: &str) -> Option<String> {
        let v: Value = serde_json::from_str(&kubectl_ok(
            &self.kubeconfig(),
            &["get", "ingress", "-n", ns, name, "-o", "json"],
        ))
        .unwrap();
        v["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    }

    /// curl from `external`; `extra` goes before the URL.
    pub(super) fn curl(&self, extra: &[&str], url: &str) -> Answer {
        let mut cmd = vec![
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-D",
            "/dev/stderr",
            "-w",
            "\n%{http_code} %{http_version}",
        ];
        cmd.extend(extra);
        cmd.push(url);
        let o = self.exec("external", &cmd);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "curl {extra:?} {url}: {out}{err}");
        let (body, tail) = out.rsplit_once('\n').unwrap();
        let (status, version) = tail.split_once(' ').unwrap();
        let headers = err
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status: status.parse().unwrap(),
            version: version.to_string(),
            headers,
            body: body.to_string(),
        }
    }
}

/// The seeds' self-signed certificate for my-app.example.com, as a file curl can trust: one
/// file per call, removed when dropped (the tests of one process run at once: a file shared
/// between them was removed by one while another's curl read it, "error setting certificate
/// file", exit 77).
pub(super) struct SeedsCa(PathBuf);

impl std::ops::Deref for SeedsCa {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SeedsCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn seeds_ca() -> SeedsCa {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let text = std::fs::read_to_string(root_dir().join("examples/seeds/tls-secret.yaml")).unwrap();
    let docs = podnet_model::parse_documents("tls-secret.yaml", &text).unwrap();
    let b64 = docs[0].value["data"]["tls.crt"]
        .as_str()
        .unwrap()
        .to_string();
    let pem = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap()
        .stdout;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("podnet-seeds-ca-{}-{n}.pem", std::process::id()));
    std::fs::write(&p, pem).unwrap();
    SeedsCa(p)
}

#[test]
fn the_seeds_ingress_over_https_with_its_certificate_and_the_redirect_from_http() {
    if !can_run() {
        return;
    }
    let lab = Lab::up("ingress-seeds", &["examples/seeds"], &[]);
    let addr = lab
        .ingress_address("default", "my-ingress")
        .expect("the Ingress has the controller's address");
    // The address is the LoadBalancer Service's, which `podnet check` shows too.
    let check = ok(&["check", "-f", "examples/seeds"]);
    assert!(check.contains(&addr), "{check}");
    let ca_file = seeds_ca();
    let ca = ca_file.to_str().unwrap();
    let resolve = format!("my-app.example.com:443:{addr}");
    for (path, pod) in [
        ("/api", "my-api-"),
        ("/web", "my-web-"),
        ("/api/v1/x", "my-api-"),
    ] {
        let a = lab.curl(
            &["--resolve", &resolve, "--cacert", ca],
            &format!("https://my-app.example.com{path}"),
        );
        assert_eq!(a.status, 200, "{path}: {a:?}");
        let v = a.json();
        assert!(v["pod"].as_str().unwrap().starts_with(pod), "{path}: {v}");
        assert_eq!(v["path"], path);
        assert_eq!(v["headers"]["X-Forwarded-Proto"][0], "https");
        assert_eq!(a.headers["server"], "podnet");
    }
    // HTTP/2 by ALPN.
    let a = lab.curl(
        &["--http2", "--resolve", &resolve, "--cacert", ca],
        "https://my-app.example.com/web",
    );
    assert_eq!((a.status, a.version.as_str()), (200, "2"), "{a:?}");
    // Neither /api nor /web: 404. Another host: 404, with the default certificate.
    let a = lab.curl(
        &["--resolve", &resolve, "--cacert", ca],
        "https://my-app.example.com/other",
    );
    assert_eq!(a.status, 404, "{a:?}");
    let a = lab.curl(
        &["-k", "--resolve", &format!("other.example.com:443:{addr}")],
        "https://other.example.com/api",
    );
    assert_eq!(a.status, 404, "{a:?}");
    let refused = lab.exec(
        "external",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca,
            "--resolve",
            &format!("other.example.com:443:{addr}"),
            "https://other.example.com/api",
        ],
    );
    assert!(
        !refused.status.success(),
        "the default certificate is not the Secret's"
    );
    // Plain HTTP to a host with TLS: 308 to HTTPS, as ingress-nginx does by default.
    let a = lab.curl(
        &["--resolve", &format!("my-app.example.com:80:{addr}")],
        "http://my-app.example.com/api?x=1",
    );
    assert_eq!(a.status, 308, "{a:?}");
    assert_eq!(a.headers["location"], "https://my-app.example.com/api?x=1");
    // And following it lands on the API.
    let a = lab.curl(
        &[
            "-L",
            "--resolve",
            &format!("my-app.example.com:80:{addr}"),
            "--resolve",
            &resolve,
            "--cacert",
            ca,
        ],
        "http://my-app.example.com/api",
    );
    assert_eq!(a.status, 200, "{a:?}");
}

/// The manifests of a conformance feature's setup (and its scenarios' own): its Ingresses in
/// namespace `ns` with the suite's class, and for each backend Service the suite's NodePort
/// Service and echo Deployment.
fn feature_manifests(feature: &Value, ns: &str) -> String {
    let mut docs = vec![
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": "conformance"},
               "spec": {"controller": "podnet.dev/ingress"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    ];
    let steps: Vec<&Value> = feature["setup"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            feature["scenarios"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["setup"].as_array().into_iter().flatten()),
        )
        .filter(|s| s["action"] == "create_ingress")
        .collect();
    let mut services = BTreeSet::new();
    for step in steps {
        let mut ing = step["ingress"].clone();
        ing["metadata"]["namespace"] = json!(ns);
        if ing["spec"]["ingressClassName"].is_null() {
            ing["spec"]["ingressClassName"] = json!("conformance");
        }
        let ingress_name = ing["metadata"]["name"].as_str().unwrap().to_string();
        docs.push(ing);
        for b in step["backend_services"].as_array().into_iter().flatten() {
            let name = b["name"].as_str().unwrap();
            if !services.insert(name.to_string()) {
                continue;
            }
            let app = b["selector"]["app"].as_str().unwrap();
            let mut port = json!({"port": b["port"], "targetPort": 3000, "protocol": "TCP"});
            if let Some(n) = b["port_name"].as_str().or(b["portName"].as_str()) {
                port["name"] = json!(n);
            }
            docs.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [port]}}));
            docs.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app, "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                  "template": {"metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "echo", "image": "echoserver",
                      "ports": [{"containerPort": 3000}],
                      "env": [{"name": "SERVICE_NAME", "value": name},
                              {"name": "INGRESS_NAME", "value": ingress_name}]}]}}}}));
        }
    }
    docs.iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Sends a scenario's request as the upstream suite does and checks its expectations.
fn run_scenario(lab: &Lab, addr: &str, s: &Value) -> Result<(), String> {
    let req = &s["request"];
    let host = req["host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .unwrap_or(addr);
    let method = req["method"].as_str().unwrap();
    let path = req["path"].as_str().unwrap();
    let url = format!("{}://{addr}{path}", req["scheme"].as_str().unwrap());
    let host_header = format!("Host: {host}");
    let a = lab.curl(
        &[
            "-X",
            method,
            "-H",
            &host_header,
            "-A",
            "Go-http-client/1.1",
            "--http1.1",
        ],
        &url,
    );
    let want = &s["expect"];
    let fail = |what: String| Err(format!("{what}: {a:?}"));
    if Some(a.status as i64) != want["status"].as_i64() {
        return fail(format!("status {} != {}", a.status, want["status"]));
    }
    if let Some(p) = want["response_proto"].as_str() {
        if format!("HTTP/{}", a.version) != p {
            return fail(format!("response proto HTTP/{} != {p}", a.version));
        }
    }
    for h in want["response_headers_present"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.to_ascii_lowercase())
    {
        if !a.headers.contains_key(&h) {
            return fail(format!("no {h} header"));
        }
    }
    let Some(svc) = want["served_by_service"].as_str() else {
        return Ok(());
    };
    let v = a.json();
    if v["service"] != svc {
        return fail(format!("served by {} not {svc}", v["service"]));
    }
    for (field, key) in [
        ("request_method", "method"),
        ("request_path", "path"),
        ("request_proto", "proto"),
        ("request_host", "host"),
    ] {
        if let Some(w) = want[field].as_str() {
            if v[key] != w {
                return fail(format!("{field}: {} != {w}", v[key]));
            }
        }
    }
    for (k, w) in want["request_headers_present"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let got = &v["headers"][k][0];
        if w != "*" && got != w {
            return fail(format!("request header {k}: {got} != {w}"));
        }
        if got.is_null() {
            return fail(format!("request header {k} missing"));
        }
    }
    Ok(())
}

fn conformance_data() -> Option<Value> {
    let path = root_dir().join("../shared/conformance/ingress/scenarios.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        let why = format!("SKIPPED: no {} (../shared beside the repo)", path.display());
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return None;
    };
    Some(
        podnet_model::parse_documents("scenarios.yaml", &text).unwrap()[0]
            .value
            .clone(),
    )
}

#[test]
fn the_upstream_ingress_conformance_scenarios_pass_through_the_lab() {
    if !can_run() {
        return;
    }
    let Some(all) = conformance_data() else {
        return;
    };
    let features = all["features"].as_array().unwrap();
    let mut lab: Option<Lab> = None;
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for (i, f) in features.iter().enumerate() {
        // Each feature in a namespace of its own, the previous one's objects gone (the suite
        // deletes its random namespace after each scenario).
        let ns = format!("conformance-{i}");
        let file = write_manifest(
            &format!("ingress-conformance-{i}"),
            &feature_manifests(f, &ns),
        );
        let file = file.to_str().unwrap();
        match &lab {
            None => lab = Some(Lab::up("ingress-conf", &[file], &[])),
            Some(l) => {
                ok(&["lab", "apply", "--name", &l.name, "-f", file]);
            }
        }
        let l = lab.as_ref().unwrap();
        for s in f["scenarios"].as_array().unwrap() {
            let id = s["id"].as_str().unwrap().to_string();
            let ingress_of = |steps: &Value| -> Option<String> {
                steps
                    .as_array()?
                    .iter()
                    .find(|st| st["action"] == "create_ingress")
                    .and_then(|st| st["ingress"]["metadata"]["name"].as_str())
                    .map(str::to_string)
            };
            let name = ingress_of(&s["setup"])
                .or_else(|| ingress_of(&f["setup"]))
                .unwrap();
            let addr = l.ingress_address(&ns, &name);
            if s["request"].is_null() {
                // An unknown class: no address, and the controller does not route it.
                match addr {
                    None => passed.push(id),
                    Some(a) => failed.push(format!("{id}: got an address {a}")),
                }
                continue;
            }
            let Some(addr) = addr else {
                failed.push(format!("{id}: no address in the Ingress's status"));
                continue;
            };
            match run_scenario(l, &addr, s) {
                Ok(()) => passed.push(id),
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
    }
    eprintln!(
        "ingress conformance: {} passed, {} failed",
        passed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(passed.len() >= 23, "{passed:?}");
}

/// A self-signed certificate and key for `names` (the first is the subject).
/// Two certificates for `host` (in `dir`/1 and `dir`/2) and a bundle trusting both (so that
/// a client trusts the old and the new while one replaces the other).
pub(super) fn two_certificates(
    dir: &Path,
    host: &str,
) -> ((String, String), (String, String), PathBuf) {
    let [c1, c2] = ["1", "2"].map(|d| {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        certificate(&dir.join(d), &[host])
    });
    let bundle = dir.join("both.pem");
    std::fs::write(&bundle, format!("{}{}", c1.0, c2.0)).unwrap();
    (c1, c2, bundle)
}

pub(super) fn certificate(dir: &Path, names: &[&str]) -> (String, String) {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let o = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={}", names[0]))
        .args(["-addext", &format!("subjectAltName={san}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        std::fs::read_to_string(crt).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

fn tls_secret(name: &str, crt: &str, key: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": name}, "stringData": {"tls.crt": crt, "tls.key": key}})
}

fn echo(name: &str, replicas: u32) -> Vec<Value> {
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "echo", "image": "echoserver",
                  "ports": [{"name": "http", "containerPort": 3000}],
                  "env": [{"name": "SERVICE_NAME", "value": name}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name},
              "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
    ]
}

fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Host rules (exact, one-label wildcard, none), TLS by SNI for two hosts, a backend port by
/// name, and load balancing over 10 endpoints: every one of them serves, in turn.
fn host_rules_manifests(dir: &Path) -> String {
    let (crt_a, key_a) = certificate(&dir.join("a"), &["foo.bar.com"]);
    let (crt_w, key_w) = certificate(&dir.join("w"), &["*.foo.com"]);
    let mut docs = vec![
        tls_secret("foo-bar", &crt_a, &key_a),
        tls_secret("wild-foo", &crt_w, &key_w),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "hosts",
              "annotations": {"podnet.dev/ssl-redirect": "false"}},
            "spec": {
              "tls": [{"hosts": ["foo.bar.com"], "secretName": "foo-bar"},
                      {"hosts": ["*.foo.com"], "secretName": "wild-foo"}],
              "rules": [
                {"host": "foo.bar.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": "exact", "port": {"name": "web"}}}}]}},
                {"host": "*.foo.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": "wild", "port": {"number": 80}}}}]}},
                {"http": {"paths": [{"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": "any", "port": {"number": 80}}}}]}}]}}),
    ];
    docs.extend(echo("exact", 1));
    docs.extend(echo("wild", 1));
    docs.extend(echo("any", 10));
    yaml(&docs)
}

#[test]
fn host_rules_tls_by_sni_and_load_balancing_as_the_ingress_spec_defines_them() {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("podnet-ingress-hosts-{}", std::process::id()));
    for d in ["a", "w"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let file = write_manifest("ingress-hosts", &host_rules_manifests(&dir));
    let lab = Lab::up("ingress-hosts", &[file.to_str().unwrap()], &[]);
    let addr = lab.ingress_address("default", "hosts").unwrap();
    let served_by = |host: &str| -> String {
        let a = lab.curl(
            &["-H", &format!("Host: {host}")],
            &format!("http://{addr}/x"),
        );
        assert_eq!(a.status, 200, "{host}: {a:?}");
        a.json()["service"].as_str().unwrap().to_string()
    };
    assert_eq!(served_by("foo.bar.com"), "exact");
    assert_eq!(
        served_by("FOO.bar.com:80"),
        "exact",
        "case and port do not count"
    );
    assert_eq!(served_by("bar.foo.com"), "wild");
    assert_eq!(
        served_by("baz.bar.foo.com"),
        "any",
        "a wildcard is one label"
    );
    assert_eq!(served_by("foo.com"), "any");
    assert_eq!(served_by("other"), "any");
    // TLS: each host's certificate by SNI, verified.
    for (host, ca) in [("foo.bar.com", "a"), ("x.foo.com", "w")] {
        let ca = dir.join(ca).join("tls.crt");
        let a = lab.curl(
            &[
                "--resolve",
                &format!("{host}:443:{addr}"),
                "--cacert",
                ca.to_str().unwrap(),
            ],
            &format!("https://{host}/"),
        );
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    // Load balancing: 100 requests over 10 ready endpoints, every one serves.
    let mut pods = BTreeMap::new();
    let urls: Vec<String> = (0..100).map(|_| format!("http://{addr}/lb")).collect();
    let mut cmd = vec!["curl", "-sS", "--max-time", "20", "-H", "Host: lb.example"];
    for u in &urls {
        cmd.extend(["-w", "\n", u.as_str()]);
    }
    let o = lab.exec("external", &cmd);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for line in String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["service"], "any", "{v}");
        *pods
            .entry(v["pod"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(pods.values().sum::<i32>(), 100, "{pods:?}");
    assert_eq!(pods.len(), 10, "{pods:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The live test's objects: `svc` with `replicas` pods, a TLS Secret (`crt`), and an Ingress
/// with `/` and, when `extra`, `/extra` too.
fn live_manifests(replicas: u32, crt: &(String, String), extra: bool) -> String {
    let mut paths = vec![json!({"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "live", "port": {"number": 80}}}})];
    if extra {
        paths.push(json!({"path": "/extra", "pathType": "Prefix",
            "backend": {"service": {"name": "other", "port": {"number": 80}}}}));
    }
    let mut docs = vec![
        tls_secret("live-tls", &crt.0, &crt.1),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "live"},
            "spec": {"tls": [{"hosts": ["live.example.com"], "secretName": "live-tls"}],
              "rules": [{"host": "live.example.com", "http": {"paths": paths}}]}}),
    ];
    docs.extend(echo("live", replicas));
    docs.extend(echo("other", 1));
    yaml(&docs)
}

#[test]
fn routes_endpoints_and_certificates_change_under_load_without_a_failed_request() {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("podnet-ingress-live-{}", std::process::id()));
    let (c1, c2, bundle) = two_certificates(&dir, "live.example.com");
    let file = write_manifest("ingress-live", &live_manifests(2, &c1, false));
    let f = file.to_str().unwrap();
    let lab = Lab::up("ingress-live", &[f], &[]);
    let addr = lab.ingress_address("default", "live").unwrap();
    // Two clients: HTTPS over HTTP/1.1 and over HTTP/2.
    let load = Load::start(
        &lab,
        &dir,
        "live.example.com",
        &addr,
        &bundle,
        &[
            ("h1", "--http1.1", "https", 443),
            ("h2", "--http2", "https", 443),
        ],
    );
    let apply = |text: String| lab.apply_timed(&file, text);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let took = [
        ("endpoints 2 → 3", apply(live_manifests(3, &c1, false))),
        ("a route added", apply(live_manifests(3, &c1, true))),
        (
            "the certificate replaced",
            apply(live_manifests(3, &c2, true)),
        ),
        ("endpoints 3 → 1", apply(live_manifests(1, &c2, true))),
        ("a route removed", apply(live_manifests(1, &c2, false))),
        ("endpoints 1 → 2", apply(live_manifests(2, &c2, false))),
    ];
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (what, t) in &took {
        eprintln!("lab apply ({what}): served after {t:?}");
    }
    // The served certificate is the new one: trusted alone, it verifies.
    let a = lab.curl(
        &[
            "--resolve",
            &format!("live.example.com:443:{addr}"),
            "--cacert",
            dir.join("2/tls.crt").to_str().unwrap(),
        ],
        "https://live.example.com/",
    );
    assert_eq!(a.status, 200, "{a:?}");
    load.finish(&lab);
    let _ = std::fs::remove_dir_all(dir);
}
