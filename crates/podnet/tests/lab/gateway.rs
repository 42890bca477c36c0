//! Gateway API in the lab (issue 14): the GATEWAY-HTTP profile's core conformance scenarios
//! (HTTPRoute's, and those of Gateways' own status), each applied over shared objects as
//! upstream's suite does, with status read
//! through the lab's Kubernetes API and requests sent from `external` to each Gateway's own
//! address; a summary in the shape of upstream's ConformanceReport; the seeds' Ingress written
//! as a Gateway and an HTTPRoute, answering exactly as the Ingress does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::kubectl_ok;
use super::ingress::{certificate, two_certificates, Answer};
use super::{can_run, ok, root_dir, write_manifest, Lab, Load};

const NAMESPACES: [(&str, &str); 3] = [
    ("infra/", "gateway-conformance-infra/"),
    ("web/", "gateway-conformance-web-backend/"),
    ("app/", "gateway-conformance-app-backend/"),
];

/// `infra/x` → (`gateway-conformance-infra`, `x`).
fn ns_name(short: &str) -> (String, String) {
    let mut full = short.to_string();
    for (s, l) in NAMESPACES {
        if let Some(rest) = short.strip_prefix(s) {
            full = format!("{l}{rest}");
        }
    }
    let (ns, name) = full.split_once('/').expect("namespace/name");
    (ns.to_string(), name.to_string())
}

impl Lab {
    fn get(&self, kind: &str, ns: &str, name: &str) -> Value {
        serde_json::from_str(&kubectl_ok(
            &self.kubeconfig(),
            &["get", kind, "-n", ns, name, "-o", "json"],
        ))
        .unwrap()
    }

    /// A Gateway's address, from its status.
    pub(super) fn gateway_address(&self, gateway: &str) -> Option<String> {
        let (ns, name) = ns_name(gateway);
        self.get("gateway", &ns, &name)["status"]["addresses"][0]["value"]
            .as_str()
            .map(str::to_string)
    }
}

/// The IPs of the pods of a Deployment, as an EndpointSlice's `endpoints`.
fn endpoints_of(lab: &Lab, deployment: &str) -> String {
    let st = lab.status();
    let eps: Vec<Value> = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{deployment}-"))
        })
        .map(|p| json!({"addresses": [p["ip"]]}))
        .collect();
    serde_json::to_string(&eps).unwrap()
}

/// The status entry of a route for a parent Gateway.
fn parent_status(route: &Value, gateway: &str) -> Option<Value> {
    let (gns, gname) = ns_name(gateway);
    let rns = route["metadata"]["namespace"].as_str().unwrap_or_default();
    route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| {
            let r = &p["parentRef"];
            r["name"] == gname.as_str() && r["namespace"].as_str().unwrap_or(rns) == gns
        })
        .cloned()
}

fn condition<'a>(conds: &'a Value, type_: &str) -> Option<&'a Value> {
    conds.as_array()?.iter().find(|c| c["type"] == type_)
}

/// The checks of one step of a case: conditions, listeners, generation, requests, weights.
fn check_step(lab: &Lab, step: &Value, ca: &Path) -> Result<(), String> {
    let long = format!("gateway-name-maximum-length-{}", "a".repeat(253 - 28));
    let step: Value = serde_json::from_str(&step.to_string().replace("LONG_NAME", &long)).unwrap();
    let step = &step;
    for c in step["conditions"].as_array().into_iter().flatten() {
        let c: Vec<&str> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let (rns, rname) = ns_name(c[0]);
        let route = lab.get("httproute", &rns, &rname);
        let Some(p) = parent_status(&route, c[1]) else {
            return Err(format!(
                "{}: no status for parent {}: {}",
                c[0], c[1], route["status"]
            ));
        };
        let Some(got) = condition(&p["conditions"], c[2]) else {
            return Err(format!("{}: no {} condition for {}: {p}", c[0], c[2], c[1]));
        };
        if got["status"] != c[3] || c.get(4).is_some_and(|r| got["reason"] != *r) {
            return Err(format!(
                "{} on {}: {} is {got}, not {:?}",
                c[0],
                c[1],
                c[2],
                &c[3..]
            ));
        }
    }
    for l in step["listeners"].as_array().into_iter().flatten() {
        let (gns, gname) = ns_name(l[0].as_str().unwrap());
        let gw = lab.get("gateway", &gns, &gname);
        let Some(ls) = gw["status"]["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|x| x["name"] == l[1]))
        else {
            return Err(format!("{gname}: no status for listener {}", l[1]));
        };
        if ls["attachedRoutes"] != l[2] {
            return Err(format!(
                "{gname}/{}: attachedRoutes {} != {}",
                l[1], ls["attachedRoutes"], l[2]
            ));
        }
        // supportedKinds: the row's fifth entry, else HTTPRoute; each listed (others may be
        // too, as upstream's suite compares: GRPCRoute on HTTP listeners), or none when the
        // row lists none.
        let kinds: Vec<Value> = ls["supportedKinds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k["kind"].clone())
            .collect();
        let want_kinds: Vec<Value> = match l.get(4) {
            Some(k) => k.as_array().unwrap().clone(),
            None => vec![json!("HTTPRoute")],
        };
        let listed = if want_kinds.is_empty() {
            kinds.is_empty()
        } else {
            want_kinds.iter().all(|k| kinds.contains(k))
        };
        if !listed {
            return Err(format!(
                "{gname}/{}: supportedKinds {}, not {want_kinds:?}",
                l[1], ls["supportedKinds"]
            ));
        }
        for (t, want) in l[3].as_object().unwrap() {
            let got = condition(&ls["conditions"], t).map(|c| &c["status"]);
            if got != Some(want) {
                return Err(format!("{gname}/{}: {t} is {got:?}, not {want}", l[1]));
            }
        }
    }
    for g in step["generations"].as_array().into_iter().flatten() {
        let kind = g[0].as_str().unwrap();
        let name = g[1].as_str().unwrap();
        let obj = match name.contains('/') {
            true => {
                let (ns, n) = ns_name(name);
                lab.get(kind, &ns, &n)
            }
            false => serde_json::from_str(&kubectl_ok(
                &lab.kubeconfig(),
                &["get", kind, name, "-o", "json"],
            ))
            .unwrap(),
        };
        if obj["metadata"]["generation"] != g[2] {
            return Err(format!(
                "{kind} {name}: generation {} != {}",
                obj["metadata"]["generation"], g[2]
            ));
        }
        // Every condition of the status (the object's own, its listeners', its parents').
        let st = &obj["status"];
        let mut conds: Vec<&Value> = st["conditions"].as_array().into_iter().flatten().collect();
        for l in st["listeners"].as_array().into_iter().flatten() {
            conds.extend(l["conditions"].as_array().into_iter().flatten());
        }
        for p in st["parents"].as_array().into_iter().flatten() {
            conds.extend(p["conditions"].as_array().into_iter().flatten());
        }
        if conds.is_empty() {
            return Err(format!("{kind} {name}: no conditions: {st}"));
        }
        if let Some(c) = conds.iter().find(|c| c["observedGeneration"] != g[2]) {
            return Err(format!(
                "{kind} {name}: a condition observed generation {}: {c}",
                c["observedGeneration"]
            ));
        }
    }
    for c in step["gateway_conditions"].as_array().into_iter().flatten() {
        let (gns, gname) = ns_name(c[0].as_str().unwrap());
        let gw = lab.get("gateway", &gns, &gname);
        let got = condition(&gw["status"]["conditions"], c[1].as_str().unwrap());
        let ok =
            got.is_some_and(|x| x["status"] == c[2] && c.get(3).is_none_or(|r| x["reason"] == *r));
        if !ok {
            return Err(format!("Gateway {gname}: {} is {got:?}, not {c}", c[1]));
        }
    }
    for r in step["listener_reasons"].as_array().into_iter().flatten() {
        let (gns, gname) = ns_name(r[0].as_str().unwrap());
        let gw = lab.get("gateway", &gns, &gname);
        let ls = gw["status"]["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|x| x["name"] == r[1]));
        let got = ls.and_then(|l| condition(&l["conditions"], r[2].as_str().unwrap()));
        if got.map(|x| &x["reason"]) != Some(&r[3]) {
            return Err(format!(
                "Gateway {gname}/{}: {} is {got:?}, not reason {}",
                r[1], r[2], r[3]
            ));
        }
    }
    for n in step["listener_count"].as_array().into_iter().flatten() {
        let (gns, gname) = ns_name(n[0].as_str().unwrap());
        let gw = lab.get("gateway", &gns, &gname);
        let count = gw["status"]["listeners"].as_array().map_or(0, Vec::len);
        if Some(count as u64) != n[1].as_u64() {
            return Err(format!(
                "Gateway {gname}: {count} listeners in its status, not {}",
                n[1]
            ));
        }
    }
    for r in step["requests"].as_array().into_iter().flatten() {
        request(lab, r, ca)?;
    }
    if let Some(w) = step["weights"].as_object() {
        weights(lab, w)?;
    }
    Ok(())
}

/// Sends a request as the upstream suite does and checks what the backend saw.
fn request(lab: &Lab, r: &Value, ca: &Path) -> Result<(), String> {
    let gw = r["gateway"].as_str().unwrap();
    let addr = lab
        .gateway_address(gw)
        .ok_or_else(|| format!("{gw} has no address"))?;
    let path = r["path"].as_str().unwrap();
    let mut args: Vec<String> = vec!["-X".into(), r["method"].as_str().unwrap_or("GET").into()];
    for (k, v) in r["headers"].as_object().into_iter().flatten() {
        args.extend(["-H".into(), format!("{k}: {}", v.as_str().unwrap())]);
    }
    let url = if r["https"] == true {
        let host = r["host"].as_str().unwrap();
        args.extend([
            "--resolve".into(),
            format!("{host}:443:{addr}"),
            "--cacert".into(),
            ca.display().to_string(),
        ]);
        format!("https://{host}{path}")
    } else {
        if let Some(h) = r["host"].as_str() {
            args.extend(["-H".into(), format!("Host: {h}")]);
        }
        format!("http://{addr}{path}")
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a: Answer = lab.curl(&args, &url);
    let fail = |what: String| Err(format!("{gw} {} {path}: {what}: {a:?}", r["host"]));
    let backend = r["backend"].as_str();
    let want_status = r["status"].as_u64().unwrap_or(200);
    if u64::from(a.status) != want_status {
        return fail(format!("status {} != {want_status}", a.status));
    }
    if let Some(loc) = r["location"].as_str() {
        if a.headers.get("location").map(String::as_str) != Some(loc) {
            return fail(format!("location != {loc}"));
        }
    }
    let Some(backend) = backend else {
        return Ok(());
    };
    let v = a.json();
    if !v["pod"]
        .as_str()
        .is_some_and(|p| p.starts_with(&format!("{backend}-")))
    {
        return fail(format!("served by {} not {backend}", v["pod"]));
    }
    let ns = r["namespace"]
        .as_str()
        .unwrap_or("gateway-conformance-infra");
    if v["namespace"] != ns {
        return fail(format!("namespace {} != {ns}", v["namespace"]));
    }
    if v["path"] != path {
        return fail(format!("the backend saw path {}", v["path"]));
    }
    let seen = |name: &str| super::gateway_extended::seen_header(&v, name);
    for (k, want) in r["request_headers"].as_object().into_iter().flatten() {
        if seen(k).as_deref() != want.as_str() {
            return fail(format!("the backend saw {k}: {:?}, not {want}", seen(k)));
        }
    }
    for k in r["absent"].as_array().into_iter().flatten() {
        if let Some(got) = seen(k.as_str().unwrap()) {
            return fail(format!("the backend saw {k}: {got}"));
        }
    }
    Ok(())
}

/// Sends `requests` requests and checks that each backend's share lies in the binomial
/// distribution's 99.99% interval for its weight (normal approximation: p ± 3.891·σ; a weight
/// of 0 gets none). It was the 99% interval, which a correct proxy leaves once in a hundred
/// runs per backend: CI failed so once (infra-backend-v1: 741 of 1000 against 663..737), and
/// the proxy's counters showed no request sent again to another backend (retries 0) in the
/// runs after; three runs gave 741, 728 and 688 for 700 expected. At 99.99% chance fails a
/// run once in 5,000; a bias of 6 points at 1,000 requests is still caught.
fn weights(lab: &Lab, w: &serde_json::Map<String, Value>) -> Result<(), String> {
    let addr = lab
        .gateway_address(w["gateway"].as_str().unwrap())
        .ok_or("no address")?;
    let n = w["requests"].as_u64().unwrap();
    let path = w["path"].as_str().unwrap();
    let script =
        format!("for i in $(seq {n}); do curl -sS --max-time 10 http://{addr}{path}; echo; done");
    let o = lab.exec("external", &["sh", "-c", &script]);
    let out = String::from_utf8_lossy(&o.stdout);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
        answered += 1;
        let pod = v["pod"].as_str().unwrap_or_default();
        for b in w["expect"].as_object().unwrap().keys() {
            if pod.starts_with(&format!("{b}-")) {
                *counts.entry(b.clone()).or_default() += 1;
            }
        }
    }
    if answered != n {
        return Err(format!("{answered} of {n} requests answered by a backend"));
    }
    for (b, p) in w["expect"].as_object().unwrap() {
        let p = p.as_f64().unwrap();
        let got = counts.get(b).copied().unwrap_or(0);
        let mean = p * n as f64;
        let half = 3.891 * (n as f64 * p * (1.0 - p)).sqrt();
        let (lo, hi) = (mean - half, mean + half);
        eprintln!("weights: {b}: {got} of {n} (99.99% interval {lo:.0}..{hi:.0})");
        if (got as f64) < lo.floor() || (got as f64) > hi.ceil() {
            // Chance, or the proxy sending a request again to another backend after a failed
            // connection: its counters say.
            return Err(format!(
                "{b}: {got} of {n}, outside {lo:.1}..{hi:.1}; every backend: {counts:?}; the \
                 Gateway's proxies said:\n{}",
                proxy_counters(lab)
            ));
        }
    }
    Ok(())
}

/// The retry and error counters of every Gateway proxy pod of the lab (their admin port).
fn proxy_counters(lab: &Lab) -> String {
    let st = lab.status();
    let mut out = String::new();
    for p in st["pods"].as_array().into_iter().flatten() {
        let key = format!(
            "{}/{}",
            p["namespace"].as_str().unwrap_or_default(),
            p["name"].as_str().unwrap_or_default()
        );
        let o = lab.exec(
            &key,
            &[
                "curl",
                "-s",
                "--max-time",
                "2",
                "http://127.0.0.1:10255/metrics",
            ],
        );
        let text = String::from_utf8_lossy(&o.stdout);
        for l in text.lines().filter(|l| {
            l.starts_with("podnet_ingress_retries") || l.starts_with("podnet_ingress_errors")
        }) {
            out += &format!("  {key}: {l}\n");
        }
    }
    out
}

#[test]
fn the_gateway_api_core_conformance_scenarios_pass_through_the_lab() {
    if !can_run() {
        return;
    }
    let dir = root_dir().join("crates/podnet/tests/lab/gateway");
    let tmp = std::env::temp_dir().join(format!("podnet-gateway-conf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (crt, key) = certificate(
        &tmp,
        &[
            "example.org",
            "second-example.org",
            "unknown-example.org",
            "*.wildcard.org",
        ],
    );
    let ca = tmp.join("tls.crt");
    let base = std::fs::read_to_string(dir.join("base.yaml"))
        .unwrap()
        .replace("CERT", &serde_json::to_string(&crt).unwrap())
        .replace("KEY", &serde_json::to_string(&key).unwrap());
    let base = write_manifest("gateway-conformance-base", &base);
    let base = base.to_str().unwrap();
    let cases_text = std::fs::read_to_string(dir.join("cases.yaml")).unwrap();
    let cases = podnet_model::parse_documents("cases.yaml", &cases_text).unwrap()[0].value["cases"]
        .as_array()
        .unwrap()
        .clone();
    let lab = Lab::up("gw-conf", &[base], &[]);
    let (mut passed, mut failed): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for case in &cases {
        let name = case["name"].as_str().unwrap().to_string();
        let mut step = case.clone();
        let outcome = loop {
            let long = format!("gateway-name-maximum-length-{}", "a".repeat(253 - 28));
            let mut text = step["manifests"]
                .as_str()
                .unwrap()
                .replace("CERT", &serde_json::to_string(&crt).unwrap())
                .replace("KEY", &serde_json::to_string(&key).unwrap())
                .replace("LONG_NAME", &long);
            if text.contains("ENDPOINTS(infra-backend-v1)") {
                text = text.replace(
                    "ENDPOINTS(infra-backend-v1)",
                    &endpoints_of(&lab, "infra-backend-v1"),
                );
            }
            let file = write_manifest(&format!("gateway-case-{name}"), &text);
            let o = super::podnet(&[
                "lab",
                "apply",
                "--name",
                &lab.name,
                "-f",
                base,
                "-f",
                file.to_str().unwrap(),
            ]);
            if !o.status.success() {
                break Err(format!("lab apply: {}", String::from_utf8_lossy(&o.stderr)));
            }
            let outcome = check_step(&lab, &step, &ca);
            if outcome.is_err() || step["then"].is_null() {
                break outcome;
            }
            step = step["then"].clone();
        };
        match outcome {
            Ok(()) => passed.push(name),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    // Back to the shared objects alone: every case's Gateways and their proxies go.
    ok(&["lab", "apply", "--name", &lab.name, "-f", base]);
    let report = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "implementation": {
            "organization": "podnet",
            "project": "podnet",
            "url": "https://github.com/podnet/podnet",
            "version": env!("CARGO_PKG_VERSION"),
            "contact": [],
        },
        "gatewayAPIVersion": "standard channel, scenarios of kubernetes-sigs/gateway-api@4564255 (../shared/conformance/gateway/list.md)",
        "gatewayAPIChannel": "standard",
        "mode": "default",
        "profiles": [{
            "name": "GATEWAY-HTTP",
            "summary": format!("Core tests {} ({} passed, {} failed)", if failed.is_empty() { "succeeded" } else { "failed" }, passed.len(), failed.len()),
            "core": {
                "result": if failed.is_empty() { "success" } else { "failure" },
                "statistics": {"Passed": passed.len(), "Failed": failed.len(), "Skipped": 0},
                "failedTests": failed.iter().map(|f| f.split(':').next().unwrap()).collect::<Vec<_>>(),
            },
            "extended": {"result": "skipped", "statistics": {"Passed": 0, "Failed": 0, "Skipped": 0},
                "note": "the extended cases run in gateway_extended.rs"},
        }],
        "succeededTests": passed,
    });
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(passed.len(), 38, "{passed:?}");
}

/// What an answer says for comparing two proxies: status, the backend (its Deployment), the
/// path and scheme the backend saw, the redirect's target, the HTTP version.
fn gist(a: &Answer) -> Value {
    let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    let pod = v["pod"].as_str().unwrap_or_default();
    // `my-api-<hash>-<id>`: the Deployment.
    let deployment: Vec<&str> = pod.rsplitn(3, '-').collect();
    json!({
        "status": a.status,
        "version": a.version,
        "backend": deployment.last(),
        "path": v["path"],
        "proto": v["headers"]["X-Forwarded-Proto"],
        "location": a.headers.get("location"),
        "server": a.headers.get("server"),
    })
}

/// A lab of the seeds and their Ingress as a Gateway: the lab, the Ingress's address and the
/// Gateway's.
pub(super) fn seeds_with_gateway(name: &str) -> (Lab, String, String) {
    let lab = Lab::up(name, &["examples/seeds", "examples/gateway"], &[]);
    let ingress = lab
        .ingress_address("default", "my-ingress")
        .expect("the Ingress's address");
    let gateway = lab
        .gateway_address("default/my-gateway")
        .expect("the Gateway's address");
    (lab, ingress, gateway)
}

#[test]
fn the_seeds_ingress_as_a_gateway_and_an_httproute_answers_as_the_ingress_does() {
    if !can_run() {
        return;
    }
    let (lab, ingress, gateway) = seeds_with_gateway("gw-seeds");
    assert_ne!(ingress, gateway, "each has its own address");
    // `podnet check` computes the same address and routes the proxy serves.
    let check: Value = serde_json::from_str(&ok(&[
        "check",
        "-f",
        "examples/seeds",
        "-f",
        "examples/gateway",
        "-o",
        "json",
    ]))
    .unwrap();
    let in_check = check["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "my-gateway")
        .unwrap()["status"]["addresses"][0]["value"]
        .clone();
    assert_eq!(in_check, json!(gateway));
    let served_file = std::fs::read_dir(format!("/run/podnet/{}/agents", lab.name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("gateway-podnet-system-") && n.ends_with(".json")
        })
        .expect("the Gateway's proxy records what it serves");
    let served: Value = serde_json::from_slice(&std::fs::read(served_file).unwrap()).unwrap();
    assert_eq!(served, check["gatewayRoutes"]["default/my-gateway"]);
    let ca_file = super::ingress::seeds_ca();
    let ca = ca_file.to_str().unwrap();
    let host = "my-app.example.com";
    // Each request, and the status both must answer.
    let requests: Vec<(Vec<String>, String, u16)> = vec![
        (vec![], format!("https://{host}/api"), 200),
        (vec![], format!("https://{host}/web"), 200),
        (vec![], format!("https://{host}/api/v1/x"), 200),
        (vec![], format!("https://{host}/other"), 404),
        (vec!["--http2".into()], format!("https://{host}/web"), 200),
        (vec![], format!("http://{host}/api?x=1"), 308),
        (vec!["-L".into()], format!("http://{host}/web"), 200),
        (
            vec!["-k".into()],
            "https://other.example.com/api".to_string(),
            404,
        ),
    ];
    for (extra, url, status) in requests {
        let answer = |addr: &str| {
            let mut args: Vec<String> = vec!["--cacert".into(), ca.into()];
            for name in [host, "other.example.com"] {
                for port in [80, 443] {
                    args.extend(["--resolve".into(), format!("{name}:{port}:{addr}")]);
                }
            }
            args.extend(extra.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gist(&lab.curl(&args, &url))
        };
        let (i, g) = (answer(&ingress), answer(&gateway));
        assert_eq!(i, g, "{url}: the Ingress answered {i}, the Gateway {g}");
        assert_eq!(g["status"], status, "{url}: {g}");
        if status == 200 {
            let want = if url.contains("/api") {
                "my-api"
            } else {
                "my-web"
            };
            assert_eq!(g["backend"], want, "{url}: {g}");
            assert_eq!(g["proto"][0], "https", "{url}: {g}");
        }
    }
}

/// A Gateway (HTTP and HTTPS on live.example.com, and a second HTTP listener when `listener`)
/// with a route to `live` (`replicas` pods); `split` sends half of `/` to `other`; `extra`
/// adds a rule for `/extra`; `extended` gives `/`'s rule timeouts, retries, a CORS filter and
/// a mirror to `other` (issue 26's kinds). Always, for live.example.com: a TLS Passthrough
/// listener on 8443 whose TLSRoute sends connections to `secure` (HTTPS echo servers with
/// `first`, a certificate `ca` signed), and half of them to `secure2` too when `split`; an
/// HTTP listener on 8091 whose HTTPRoute sends to `secure` over TLS (a BackendTLSPolicy
/// trusting `ca` from the ConfigMap `live-ca-a`, or `live-ca-b` when `extended`); an HTTP
/// listener on 8090 whose GRPCRoute sends gRPC calls to `grpc`, and half of them to `grpc2`
/// too when `split`.
fn live_manifests(
    replicas: u32,
    crt: &(String, String),
    first: &(String, String),
    ca: &str,
    extra: bool,
    split: bool,
    listener: bool,
) -> String {
    live_manifests_with(replicas, crt, first, ca, extra, split, listener, false)
}

#[allow(clippy::too_many_arguments)]
fn live_manifests_with(
    replicas: u32,
    crt: &(String, String),
    first: &(String, String),
    ca: &str,
    extra: bool,
    split: bool,
    listener: bool,
    extended: bool,
) -> String {
    let mut listeners = vec![
        json!({"name": "http", "port": 80, "protocol": "HTTP", "hostname": "live.example.com"}),
        json!({"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "live.example.com",
               "tls": {"certificateRefs": [{"name": "live-tls"}]}}),
    ];
    if listener {
        listeners.push(json!({"name": "alt", "port": 8080, "protocol": "HTTP"}));
    }
    listeners.push(json!({"name": "tls", "port": 8443, "protocol": "TLS",
        "hostname": "live.example.com", "tls": {"mode": "Passthrough"}}));
    listeners.push(json!({"name": "grpc", "port": 8090, "protocol": "HTTP",
        "hostname": "live.example.com"}));
    listeners.push(
        json!({"name": "reencrypt", "port": 8091, "protocol": "HTTP",
        "hostname": "live.example.com"}),
    );
    let mut grpc_backends = vec![json!({"name": "grpc", "port": 8080})];
    if split {
        grpc_backends.push(json!({"name": "grpc2", "port": 8080}));
    }
    let mut secure = vec![json!({"name": "secure", "port": 443})];
    if split {
        secure.push(json!({"name": "secure2", "port": 443}));
    }
    let mut backends = vec![json!({"name": "live", "port": 80, "weight": 1})];
    if split {
        backends.push(json!({"name": "other", "port": 80, "weight": 1}));
    }
    let mut root = json!({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": backends});
    if extended {
        root["timeouts"] = json!({"request": "10s", "backendRequest": "5s"});
        root["retry"] = json!({"codes": [502, 503], "attempts": 2, "backoff": "10ms"});
        root["filters"] = json!([
            {"type": "CORS", "cors": {"allowOrigins": ["https://app.example.com"], "allowMethods": ["GET"]}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "other", "port": 80}, "percent": 50}},
        ]);
    }
    let mut rules = vec![root];
    if extra {
        rules.push(
            json!({"matches": [{"path": {"type": "PathPrefix", "value": "/extra"}}],
                          "backendRefs": [{"name": "other", "port": 80}]}),
        );
    }
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "live-tls"}, "stringData": {"tls.crt": crt.0, "tls.key": crt.1}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "live"},
               "spec": {"gatewayClassName": "podnet", "listeners": listeners}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "live"},
               "spec": {"parentRefs": [{"name": "live"}], "rules": rules}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
               "metadata": {"name": "live"},
               "spec": {"parentRefs": [{"name": "live", "sectionName": "tls"}],
                        "hostnames": ["live.example.com"], "rules": [{"backendRefs": secure}]}}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "secure-tls"}, "stringData": {"tls.crt": first.0, "tls.key": first.1}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
               "metadata": {"name": "live"},
               "spec": {"parentRefs": [{"name": "live", "sectionName": "grpc"}],
                        "rules": [{"matches": [{"method": {"service": podnet_lab::serve::grpcecho::SERVICE}}],
                                   "backendRefs": grpc_backends}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "reencrypt"},
               "spec": {"parentRefs": [{"name": "live", "sectionName": "reencrypt"}],
                        "rules": [{"backendRefs": [{"name": "secure", "port": 443}]}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
               "metadata": {"name": "secure"},
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
                        "validation": {"hostname": "live.example.com", "caCertificateRefs": [
                            {"group": "", "kind": "ConfigMap",
                             "name": if extended { "live-ca-b" } else { "live-ca-a" }}]}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live-ca-a"},
               "data": {"ca.crt": ca}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live-ca-b"},
               "data": {"ca.crt": ca}}),
    ];
    // gRPC echo servers (upstream's echo server with GRPC_ECHO_SERVER).
    for (name, n) in [("grpc", 2), ("grpc2", 1)] {
        docs.push(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "echo", "image": "echo-basic",
                  "env": [{"name": "GRPC_ECHO_SERVER", "value": "1"}]}]}}}}),
        );
        docs.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 8080, "targetPort": 3000}]}}),
        );
    }
    // HTTPS echo servers (upstream's echo server with a certificate serves HTTPS on 8443).
    // Their pods stay: a pod that goes takes the connections passed through to it along.
    for (name, n) in [("secure", 2), ("secure2", 1)] {
        docs.push(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}},
                "spec": {"volumes": [{"name": "tls", "secret": {"secretName": "secure-tls"}}],
                  "containers": [{"name": "echo", "image": "echo-basic",
                  "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}],
                  "env": [{"name": "TLS_SERVER_CERT", "value": "/etc/tls/tls.crt"},
                          {"name": "TLS_SERVER_PRIVKEY", "value": "/etc/tls/tls.key"}]}]}}}}),
        );
        docs.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        );
    }
    for (name, n) in [("live", replicas), ("other", 1)] {
        docs.push(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "echo", "image": "echoserver",
                  "ports": [{"name": "http", "containerPort": 3000}]}]}}}}),
        );
        docs.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]}}),
        );
    }
    docs.iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The certificates of the live Gateway's tests, in `dir`: the listener's two (self-signed),
/// the HTTPS echo servers' (signed by a CA the BackendTLSPolicy trusts, PEM of the CA too),
/// and a bundle of all the CAs its clients trust (the passthrough listener's included).
#[allow(clippy::type_complexity)]
fn live_certificates(
    dir: &Path,
) -> (
    (String, String),
    (String, String),
    (String, String),
    String,
    std::path::PathBuf,
) {
    let (c1, c2, bundle) = two_certificates(dir, "live.example.com");
    let ca = dir.join("live-ca.crt");
    let secure = super::gateway_extended::signed(dir, &ca, &["live.example.com"]);
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let all = dir.join("all.pem");
    let text = std::fs::read_to_string(&bundle).unwrap() + &ca_pem;
    std::fs::write(&all, text).unwrap();
    (c1, c2, secure, ca_pem, all)
}

#[test]
fn a_gateways_routes_listeners_endpoints_certificate_extended_filters_tls_grpc_routes_and_backend_tls_change_under_load_without_a_failed_request(
) {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("podnet-gateway-live-{}", std::process::id()));
    let (c1, c2, secure, ca_pem, bundle) = live_certificates(&dir);
    let file = write_manifest(
        "gateway-live",
        &live_manifests(2, &c1, &secure, &ca_pem, false, false, false),
    );
    let f = file.to_str().unwrap();
    let lab = Lab::up("gw-live", &[f], &[]);
    let addr = lab.gateway_address("default/live").unwrap();
    // Three clients: HTTPS over HTTP/1.1 and HTTP/2, and plain HTTP.
    let load = Load::start(
        &lab,
        &dir,
        "live.example.com",
        &addr,
        &bundle,
        &[
            ("h1", "--http1.1", "https", 443),
            ("h2", "--http2", "https", 443),
            ("http", "--http1.1", "http", 80),
            // Through the TLS listener, passed through to the HTTPS echo servers.
            ("passthrough", "--http1.1", "https", 8443),
            // Plain HTTP to the Gateway, TLS from it to the HTTPS echo servers.
            ("reencrypt", "--http1.1", "http", 8091),
            // gRPC calls through the GRPCRoute.
            ("grpc", "", "grpc", 8090),
        ],
    );
    let apply = |text: String| lab.apply_timed(&file, text);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let took = [
        (
            "endpoints 2 → 3",
            apply(live_manifests(3, &c1, &secure, &ca_pem, false, false, false)),
        ),
        (
            "a rule added",
            apply(live_manifests(3, &c1, &secure, &ca_pem, true, false, false)),
        ),
        (
            "a backend added by weight (to the HTTPRoute, the TLSRoute and the GRPCRoute)",
            apply(live_manifests(3, &c1, &secure, &ca_pem, true, true, false)),
        ),
        (
            "a listener added",
            apply(live_manifests(3, &c1, &secure, &ca_pem, true, true, true)),
        ),
        (
            "timeouts, retries, CORS and a mirror added; the BackendTLSPolicy's CA moved to another ConfigMap",
            apply(live_manifests_with(3, &c1, &secure, &ca_pem, true, true, true, true)),
        ),
        (
            "the certificate replaced",
            apply(live_manifests_with(3, &c2, &secure, &ca_pem, true, true, true, true)),
        ),
        (
            "timeouts, retries, CORS and the mirror removed; the BackendTLSPolicy's CA moved back",
            apply(live_manifests(3, &c2, &secure, &ca_pem, true, true, true)),
        ),
        (
            "endpoints 3 → 1",
            apply(live_manifests(1, &c2, &secure, &ca_pem, true, true, true)),
        ),
        (
            "the listener removed",
            apply(live_manifests(1, &c2, &secure, &ca_pem, true, true, false)),
        ),
        (
            "the rule and the backends removed",
            apply(live_manifests(1, &c2, &secure, &ca_pem, false, false, false)),
        ),
    ];
    std::thread::sleep(std::time::Duration::from_millis(500));
    for (what, t) in &took {
        eprintln!("lab apply ({what}): served after {t:?}");
    }
    let a = lab.curl(
        &[
            "--resolve",
            &format!("live.example.com:443:{addr}"),
            "--cacert",
            dir.join("2/tls.crt").to_str().unwrap(),
        ],
        "https://live.example.com/",
    );
    assert_eq!(a.status, 200, "the new certificate is served: {a:?}");
    load.finish(&lab);
    let _ = std::fs::remove_dir_all(dir);
}

const EXTRA_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extra}
spec:
  parentRefs: [{name: my-gateway, sectionName: https}]
  hostnames: [my-app.example.com]
  rules: [{matches: [{path: {type: PathPrefix, value: /extra}}], backendRefs: [{name: my-api-service, port: 80}]}]
";

/// Whether the route `default/extra` has its Accepted entry from `my-gateway`.
fn extra_accepted(lab: &Lab) -> bool {
    let r = lab.get("httproute", "default", "extra");
    parent_status(&r, "default/my-gateway")
        .and_then(|p| condition(&p["conditions"], "Accepted").cloned())
        .is_some_and(|c| c["status"] == "True")
}

/// The status the controllers write through the lab's API survives the API's faults as it
/// does on a cluster. With every write answered 500 for a while, an HTTPRoute added meanwhile
/// gets its status once writes work again, though nothing else changes (the Gateway's proxy
/// tries its failed writes again, with a backoff); when the lab's server (and its API) is
/// killed and starts again holding no status at all, the controllers write every status again
/// from their relisted watches.
#[test]
fn controllers_write_status_again_after_failed_writes_and_an_api_restart() {
    if !can_run() {
        return;
    }
    let (lab, ingress, gateway) = seeds_with_gateway("gw-stfault");
    let out = ok(&["lab", "fault", "--name", &lab.name, "--fail-writes", "3"]);
    assert!(out.contains("failWritesSecondsLeft"), "{out}");
    let extra = write_manifest("gw-stfault-extra", EXTRA_ROUTE);
    let start = Instant::now();
    // `lab apply` waits until the API holds the status the lab computes: here, until the
    // proxy's writes succeed again.
    let out = lab.apply(&[
        "examples/seeds",
        "examples/gateway",
        extra.to_str().unwrap(),
    ]);
    let took = start.elapsed();
    assert!(extra_accepted(&lab), "{out}");
    assert!(
        took >= Duration::from_secs(2),
        "applied in {took:?}: the writes cannot have failed"
    );
    let log = std::fs::read_dir(format!("/run/podnet/{}/agents", lab.name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("gateway-podnet-system-") && n.ends_with(".log")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(
        log.contains("500") && log.contains("trying the failed status writes again"),
        "the proxy's log:\n{log}"
    );

    // The API restarts without any status: every controller writes its own again.
    let (before, _, _) = super::agent::lab_processes(&lab.name);
    assert_eq!(before.len(), 1, "{before:?}");
    super::agent::kill_hard(before[0]);
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let now = super::agent::lab_processes(&lab.name).0;
        let back = now.len() == 1 && now != before;
        // Read only from a new server: the old one's answers would prove nothing.
        let all = back
            && lab.gateway_address("default/my-gateway").as_deref() == Some(gateway.as_str())
            && lab.ingress_address("default", "my-ingress").as_deref() == Some(ingress.as_str())
            && extra_accepted(&lab);
        if all {
            break;
        }
        seen.push(format!("{:?}: server back {back}", start.elapsed()));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the status did not come back:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let classes = kubectl_ok(&lab.kubeconfig(), &["get", "gatewayclasses"]);
    assert!(
        classes.contains("True"),
        "the class accepted again:\n{classes}"
    );
    std::fs::remove_file(extra).unwrap();
}

/// The pids of the `podnet gateway watch` processes of `lab` serving `gateway`.
fn gateway_proxies(lab: &Lab, gateway: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            continue;
        }
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args
            .iter()
            .any(|a| a.contains(&format!("/run/podnet/{}/", lab.name)));
        if ours
            && args.get(1..3) == Some(&["gateway".to_string(), "watch".to_string()][..])
            && args
                .windows(2)
                .any(|w| w[0] == "--gateway" && w[1] == gateway)
        {
            out.push(pid);
        }
    }
    out
}

/// A Gateway's proxy killed (SIGKILL) while HTTPS, TLS passthrough, re-encrypted and gRPC
/// clients run: the lab starts it again, as a kubelet restarts a pod's container; it reads
/// its Gateway, routes, certificates, policies and CA ConfigMaps from the API again and
/// serves all of it: clients run after it is back have no failed request. (The connections
/// and calls in flight on the killed process, and those made while none listened, fail: one
/// replica is one process; the time until it serves again is printed.)
#[test]
fn a_gateways_proxy_killed_is_started_again_and_serves_all_it_served() {
    if !can_run() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("podnet-gateway-kill-{}", std::process::id()));
    let (c1, _, secure, ca_pem, bundle) = live_certificates(&dir);
    let file = write_manifest(
        "gateway-kill",
        &live_manifests_with(2, &c1, &secure, &ca_pem, true, true, true, true),
    );
    let lab = Lab::up("gw-kill", &[file.to_str().unwrap()], &[]);
    let addr = lab.gateway_address("default/live").unwrap();
    let clients = [
        ("h2", "--http2", "https", 443),
        ("passthrough", "--http1.1", "https", 8443),
        ("reencrypt", "--http1.1", "http", 8091),
        ("grpc", "", "grpc", 8090),
    ];
    // Before: every client served.
    let before_dir = dir.join("before");
    std::fs::create_dir_all(&before_dir).unwrap();
    let load = Load::start(
        &lab,
        &before_dir,
        "live.example.com",
        &addr,
        &bundle,
        &clients,
    );
    // (Long enough for 200 gRPC calls and more: the least a client must make.)
    std::thread::sleep(Duration::from_secs(4));
    load.finish(&lab);
    let pids = gateway_proxies(&lab, "default/live");
    assert_eq!(pids.len(), 1, "one proxy: {pids:?}");
    super::agent::kill_hard(pids[0]);
    let killed = Instant::now();
    // Started again: another process, then serving HTTPS again.
    let again = loop {
        let now = gateway_proxies(&lab, "default/live");
        if now.len() == 1 && now != pids {
            break now;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "not started again: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let serving = loop {
        let o = lab.exec(
            "external",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "--resolve",
                &format!("live.example.com:443:{addr}"),
                "--cacert",
                bundle.to_str().unwrap(),
                "https://live.example.com/x",
            ],
        );
        if String::from_utf8_lossy(&o.stdout) == "200" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "not serving again within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "the proxy {pids:?} killed; {again:?} started again; HTTPS served again after {serving:?}"
    );
    // After: every client served again, nothing failed.
    let after_dir = dir.join("after");
    std::fs::create_dir_all(&after_dir).unwrap();
    let load = Load::start(
        &lab,
        &after_dir,
        "live.example.com",
        &addr,
        &bundle,
        &clients,
    );
    std::thread::sleep(Duration::from_secs(4));
    load.finish(&lab);
    let log =
        std::fs::read_to_string(format!("/run/podnet/{}/serve.log", lab.name)).unwrap_or_default();
    eprintln!(
        "the lab's log of it: {:?}",
        log.lines()
            .filter(|l| l.contains("proxy of Gateway"))
            .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}
