//! `deploy/podnet.yaml`: every object decodes as the API's own type (k8s-openapi), every flag
//! the DaemonSet passes to `podnet agent` and the DNS Deployment to `podnet dns watch` is one
//! they take, and the Helm chart (`deploy/helm/podnet`) renders exactly these objects with its
//! default values.

use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
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
    let mut dns_args: Vec<String> = Vec::new();
    let mut ingress_args: Vec<String> = Vec::new();
    let mut gateway_args: Vec<String> = Vec::new();
    for d in &docs {
        let v = &d.value;
        let kind = v["kind"].as_str().unwrap().to_string();
        match kind.as_str() {
            "Namespace" => drop(decode::<Namespace>(v)),
            "ServiceAccount" => drop(decode::<ServiceAccount>(v)),
            "ClusterRole" => drop(decode::<ClusterRole>(v)),
            "ClusterRoleBinding" => drop(decode::<ClusterRoleBinding>(v)),
            "Role" => drop(decode::<k8s_openapi::api::rbac::v1::Role>(v)),
            "RoleBinding" => drop(decode::<k8s_openapi::api::rbac::v1::RoleBinding>(v)),
            "GatewayClass" => {
                let c = decode::<podnet_model::gateway_api::GatewayClass>(v);
                assert_eq!(
                    c.spec.controller_name,
                    podnet_model::gateway::GATEWAY_CONTROLLER
                );
            }
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
            "Deployment" => {
                let d = decode::<Deployment>(v);
                let name = d.metadata.name.clone().unwrap();
                let spec = d.spec.template.spec.unwrap();
                let args = spec.containers[0].args.clone().unwrap();
                match name.as_str() {
                    "podnet-dns" => {
                        assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
                        dns_args = args;
                    }
                    "podnet-ingress" => ingress_args = args,
                    "podnet-gateway" => gateway_args = args,
                    other => panic!("unexpected Deployment {other}"),
                }
            }
            "Service" => {
                let s = decode::<Service>(v);
                let spec = s.spec.unwrap();
                match s.metadata.name.as_deref() {
                    Some("kube-dns") => assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10")),
                    Some("podnet-ingress") => {
                        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
                        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
                    }
                    other => panic!("unexpected Service {other:?}"),
                }
            }
            "IngressClass" => {
                let c = decode::<IngressClass>(v);
                assert_eq!(
                    c.spec.unwrap().controller.as_deref(),
                    Some(podnet_model::edge::INGRESS_CONTROLLER)
                );
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
            "DaemonSet",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "IngressClass",
            "Deployment",
            "Service",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "GatewayClass",
            "Deployment"
        ]
    );
    assert_eq!(&gateway_args[..2], ["gateway", "provision"]);
    takes(&["gateway", "provision"], &gateway_args[2..]);
    assert_eq!(agent_args.first().map(String::as_str), Some("agent"));
    assert_eq!(&dns_args[..2], ["dns", "watch"]);
    takes(&["agent"], &agent_args[1..]);
    takes(&["dns", "watch"], &dns_args[2..]);
    assert_eq!(&ingress_args[..2], ["ingress", "watch"]);
    takes(&["ingress", "watch"], &ingress_args[2..]);
}

/// Every one of `args` is a flag of the podnet command `cmd`.
fn takes(cmd: &[&str], args: &[String]) {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(cmd)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for a in args {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag} <")),
            "{flag} is not a flag of podnet {}:\n{help}",
            cmd.join(" ")
        );
    }
}

/// The objects of a YAML stream, as JSON, in a stable order (kind, namespace, name).
fn objects(file: &str, text: &str) -> Vec<Value> {
    let mut v: Vec<Value> = podnet_model::parse_documents(file, text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .filter(|v| !v.is_null())
        .collect();
    v.sort_by_key(|o| {
        (
            o["kind"].as_str().unwrap_or("").to_string(),
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    v
}

/// `helm template` of the chart with its default values gives exactly the plain manifests.
#[test]
fn the_helm_chart_renders_the_plain_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let helm = std::env::var_os("PODNET_HELM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/helm"));
    if !helm.exists() {
        let why = format!(
            "SKIPPED: no helm at {} (scripts/install-deps.sh fetches it)",
            helm.display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return;
    }
    let out = std::process::Command::new(&helm)
        .args(["template", "podnet"])
        .arg(root.join("deploy/helm/podnet"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = objects("helm template", &String::from_utf8(out.stdout).unwrap());
    let plain = objects(
        "deploy/podnet.yaml",
        &std::fs::read_to_string(root.join("deploy/podnet.yaml")).unwrap(),
    );
    assert_eq!(rendered.len(), plain.len());
    for (r, p) in rendered.iter().zip(&plain) {
        assert_eq!(r, p, "{} {}", p["kind"], p["metadata"]["name"]);
    }
    // Values change what they name: the cluster's CIDRs reach the agent's and the DNS's
    // settings.
    let out = std::process::Command::new(&helm)
        .args(["template", "podnet"])
        .arg(root.join("deploy/helm/podnet"))
        .args([
            "--set",
            "podCIDR=10.32.0.0/12,dns.clusterIP=10.96.0.53,ingress.replicas=3",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"podCIDR\": \"10.32.0.0/12\""), "{text}");
    assert!(text.contains("--pod-cidr=10.32.0.0/12"));
    assert!(text.contains("clusterIP: 10.96.0.53"));
    assert!(text.contains("replicas: 3"));
}

/// The chart's settings take dual-stack ranges as the control plane's flags do: comma
/// separated, the primary first; the agent's settings file reads them as the cluster's
/// families.
#[test]
fn the_settings_file_takes_dual_stack_ranges() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/podnet.yaml"),
    )
    .unwrap();
    let start = text.find("config.json: |").unwrap();
    let json_start = start + text[start..].find('{').unwrap();
    let json_end = json_start + text[json_start..].find("\n    }").unwrap() + 6;
    let mut v: serde_json::Value = serde_json::from_str(&text[json_start..json_end]).unwrap();
    v["podCIDR"] = "10.244.0.0/16,fd00:10:244::/56".into();
    v["serviceCIDR"] = "10.96.0.0/12,fd00:10:96::/112".into();
    let o: podnet_model::ConfigOverrides = serde_json::from_value(v).unwrap();
    let mut c = podnet_model::ClusterConfig::default();
    c.apply(&o).unwrap();
    assert_eq!(c.ip_family, podnet_model::config::ClusterFamily::Dual);
    assert_eq!(c.node_cidr_mask_size_ipv6, 64);
}
