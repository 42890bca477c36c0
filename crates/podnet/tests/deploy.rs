//! `deploy/podnet.yaml`: every object decodes as the API's own type (k8s-openapi), and every
//! flag the DaemonSet passes to `podnet agent` is one the agent takes.

use std::path::Path;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::Value;

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

#[test]
fn the_manifests_are_the_apis_objects_and_the_agent_takes_their_flags() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("deploy/podnet.yaml")).unwrap();
    let docs = podnet_model::parse_documents("deploy/podnet.yaml", &text).unwrap();
    let mut kinds = Vec::new();
    let mut agent_args: Vec<String> = Vec::new();
    for d in &docs {
        let v = &d.value;
        let kind = v["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Namespace" => drop(decode::<Namespace>(v)),
            "ServiceAccount" => drop(decode::<ServiceAccount>(v)),
            "ClusterRole" => drop(decode::<ClusterRole>(v)),
            "ClusterRoleBinding" => drop(decode::<ClusterRoleBinding>(v)),
            "ConfigMap" => {
                let cm = decode::<ConfigMap>(v);
                // The settings are podnet's own.
                let json = &cm.data.unwrap()["config.json"];
                let _: podnet_model::ConfigOverrides = serde_json::from_str(json).unwrap();
            }
            "DaemonSet" => {
                let ds = decode::<DaemonSet>(v);
                let spec = ds.spec.template.spec.unwrap();
                assert_eq!(spec.host_network, Some(true));
                let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
                agent_args = agent.args.clone().unwrap();
            }
            other => panic!("unexpected kind {other}"),
        }
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet"
        ]
    );
    assert_eq!(agent_args.first().map(String::as_str), Some("agent"));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for a in &agent_args[1..] {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag} <")),
            "{flag} is not a flag of podnet agent:\n{help}"
        );
    }
}
