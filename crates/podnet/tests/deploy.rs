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

/// The port a pod template says Prometheus scrapes (`prometheus.io/scrape: "true"`,
/// `prometheus.io/port`, `prometheus.io/path: /metrics`).
fn scrape_port(t: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    let a = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .expect("scrape annotations");
    assert_eq!(
        a.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        a.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );
    a["prometheus.io/port"].clone()
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
                let scrape = scrape_port(&ds.spec.template);
                let spec = ds.spec.template.spec.unwrap();
                assert_eq!(spec.host_network, Some(true));
                let agent = spec.containers.iter().find(|c| c.name == "agent").unwrap();
                agent_args = agent.args.clone().unwrap();
                assert!(
                    agent_args.contains(&format!("--metrics-addr=0.0.0.0:{scrape}")),
                    "the agent is scraped at {scrape}: {agent_args:?}"
                );
            }
            "Deployment" => {
                let d = decode::<Deployment>(v);
                let name = d.metadata.name.clone().unwrap();
                let spec = d.spec.template.spec.clone().unwrap();
                let args = spec.containers[0].args.clone().unwrap();
                match name.as_str() {
                    "podnet-dns" => {
                        assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
                        let scrape = scrape_port(&d.spec.template);
                        assert!(
                            args.contains(&format!("--metrics-addr=0.0.0.0:{scrape}")),
                            "the DNS server is scraped at {scrape}: {args:?}"
                        );
                        dns_args = args;
                    }
                    "podnet-ingress" => {
                        let scrape = scrape_port(&d.spec.template);
                        assert!(
                            args.contains(&format!("--admin=0.0.0.0:{scrape}")),
                            "the Ingress controller is scraped at {scrape}: {args:?}"
                        );
                        ingress_args = args
                    }
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

/// `deploy/grafana/podnet.json`: a dashboard whose every query names metrics podnet exports
/// (the agent's, the edge proxy's, the DNS server's, as their `/metrics` render them).
#[test]
fn the_dashboard_queries_only_metrics_podnet_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("deploy/grafana/podnet.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    // A sample in each labelled family (an empty one is not rendered).
    let agent = podnet_agent::metrics::Metrics::default();
    agent.verified(
        std::time::Duration::from_millis(1),
        &[podnet_node::verify::Drift {
            table: "policy",
            what: String::new(),
        }],
        false,
    );
    let peer = podnet_flow::record::Peer {
        ip: "10.0.0.1".parse().unwrap(),
        port: 1,
        pod: None,
    };
    agent.flow(podnet_flow::record::Flow {
        time: String::new(),
        node: String::new(),
        verdict: podnet_flow::Verdict::Dropped,
        reason: podnet_flow::Reason::PolicyIngress,
        summary: String::new(),
        protocol: "TCP".into(),
        source: peer.clone(),
        destination: peer,
        service: None,
        policies: vec![],
    });
    let edge = podnet_ingress::metrics::Metrics::new();
    edge.errors
        .get_or_create(&podnet_ingress::metrics::ReasonLabels {
            reason: "connect".into(),
        })
        .inc();
    let exported = [
        agent.render(),
        edge.encode(),
        podnet_dns::metrics::Metrics::default().render(),
    ]
    .join("\n");
    // The metric families, as `# TYPE name kind` lines name them.
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut queried = 0;
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("podnet_"))
            {
                let family = ["_bucket", "_sum", "_count", "_total"]
                    .iter()
                    .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(
                    families.contains(&family),
                    "panel {:?} queries {name}, which podnet does not export",
                    p["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried > 20, "{queried} metrics queried");
}

/// The Gateway proxies' role lets them watch every kind they follow (`GATEWAY_KINDS`) and
/// write the status of those whose status the Gateway controller writes.
#[test]
fn the_gateway_role_covers_every_kind_the_proxy_watches_and_the_status_it_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("deploy/podnet.yaml")).unwrap();
    let role: ClusterRole = objects("deploy/podnet.yaml", &text)
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "podnet-gateway")
        .map(decode)
        .expect("ClusterRole podnet-gateway");
    let allows = |group: &str, resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for kind in podnet_model::api::GATEWAY_KINDS {
        for verb in ["get", "list", "watch"] {
            assert!(
                allows(kind.group(), kind.plural(), verb),
                "podnet-gateway may not {verb} {}",
                kind.plural()
            );
        }
        if kind.status_by_controllers() && kind != podnet_model::Kind::Ingress {
            assert!(
                allows(kind.group(), &format!("{}/status", kind.plural()), "patch"),
                "podnet-gateway may not patch {}/status",
                kind.plural()
            );
        }
    }
}
