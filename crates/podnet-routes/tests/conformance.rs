//! The upstream Ingress conformance scenarios (`../shared/conformance/ingress/`), at the route
//! table: which backend serves each scenario's request, or none (404), and which Ingresses are
//! ours at all (an unknown class is left alone). What a request's answer looks like through a
//! real proxy (status line, headers, the echo server's JSON) is the lab's part, not this one's.

use std::path::Path;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use podnet_routes::routes::{ours, table, Served, CONTROLLER};
use serde_json::{json, Value};

const NAMESPACE: &str = "conformance-ns";

fn scenarios() -> Option<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/ingress/scenarios.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        let why = format!("SKIPPED: no {} (../shared beside the repo)", path.display());
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return None;
    };
    let docs = podnet_model::parse_documents("scenarios.yaml", &text).unwrap();
    Some(docs[0].value.clone())
}

/// The Ingresses a list of setup steps creates, in our namespace, with the suite's class.
fn ingresses(steps: &Value) -> Vec<Ingress> {
    steps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["action"] == "create_ingress")
        .map(|s| {
            let mut i = s["ingress"].clone();
            i["metadata"]["namespace"] = json!(NAMESPACE);
            if i["spec"]["ingressClassName"].is_null() {
                i["spec"]["ingressClassName"] = json!("conformance");
            }
            serde_json::from_value(i).unwrap()
        })
        .collect()
}

#[test]
fn every_scenario_routes_as_upstream_expects() {
    let Some(all) = scenarios() else { return };
    let classes: Vec<IngressClass> = vec![serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "conformance"},
        "spec": {"controller": CONTROLLER}
    }))
    .unwrap()];
    let (mut routed, mut left_alone) = (0, 0);
    for feature in all["features"].as_array().unwrap() {
        let shared = ingresses(&feature["setup"]);
        for s in feature["scenarios"].as_array().unwrap() {
            let mut objs = shared.clone();
            objs.extend(ingresses(&s["setup"]));
            let mine = ours(&objs, &classes);
            let id = s["id"].as_str().unwrap_or("?");
            if s["request"].is_null() {
                // No request: the Ingress is not ours, and gets nothing (no address).
                assert!(mine.is_empty(), "{id}: {objs:?}");
                left_alone += 1;
                continue;
            }
            let t = table(&mine);
            let req = &s["request"];
            // With an empty host, the suite's Host header is the controller's address.
            let host = req["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .unwrap_or("10.0.0.1");
            let path = req["path"].as_str().unwrap();
            let got = t.serve(host, path).map(|s| match s {
                Served::Route(r) => r.backends().next().unwrap().service.clone(),
                Served::Default(b, _) => b.service.clone(),
            });
            match s["expect"]["status"].as_i64() {
                Some(200) => {
                    let want = s["expect"]["served_by_service"].as_str().unwrap();
                    let got = got.unwrap_or_else(|| panic!("{id}: {host}{path} found no route"));
                    assert_eq!(
                        (got.namespace.as_str(), got.name.as_str()),
                        (NAMESPACE, want),
                        "{id}: {host}{path}"
                    );
                }
                Some(404) => assert_eq!(got, None, "{id}: {host}{path}"),
                other => panic!("{id}: unexpected status {other:?}"),
            }
            routed += 1;
        }
    }
    eprintln!("{routed} scenarios routed as expected, {left_alone} left alone as expected");
    assert!(routed >= 20 && left_alone >= 1, "{routed} {left_alone}");
}
