//! The model's rules, one test each. All integration tests of the crate live in this binary.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use podnet_emulator::build;
use podnet_model::{
    parse_documents, Cluster, ConfigOverrides, ModelError, NsName, ServiceType, TargetPort,
};

mod dns;
mod dual_stack;
mod errors;
mod netpol;
#[allow(dead_code)] // shared with the policy and lab tests, which read all of it
mod netpol_rules;
mod props;
mod robustness;

fn cluster(yaml: &str) -> Cluster {
    cluster_with(yaml, &ConfigOverrides::default())
}

fn cluster_with(yaml: &str, o: &ConfigOverrides) -> Cluster {
    let docs = parse_documents("test.yaml", yaml).expect("parses");
    match build(&docs, o) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn build_err(yaml: &str) -> ModelError {
    let docs = parse_documents("test.yaml", yaml).expect("parses");
    build(&docs, &ConfigOverrides::default()).expect_err("must fail")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: x
        ports: [{name: http, containerPort: 8080}]
"#;

#[test]
fn deployment_pods_are_named_like_the_controller() {
    let c = cluster(DEPLOY);
    let pods: Vec<_> = c
        .pods
        .iter()
        .filter(|p| {
            p.namespace == "default" && p.owner.as_ref().is_some_and(|o| o.kind == "ReplicaSet")
        })
        .collect();
    assert_eq!(pods.len(), 4);
    let hash = pods[0].labels["pod-template-hash"].clone();
    for p in &pods {
        let rest = p
            .name
            .strip_prefix(&format!("web-{hash}-"))
            .expect("web-<hash>-<suffix>");
        assert_eq!(rest.len(), 5);
        assert_eq!(p.owner.as_ref().unwrap().name, format!("web-{hash}"));
        assert_eq!(p.labels["app"], "web");
    }
    // Deterministic: the same input gives the same names.
    let again = cluster(DEPLOY);
    assert_eq!(
        c.pods.iter().map(|p| &p.name).collect::<Vec<_>>(),
        again.pods.iter().map(|p| &p.name).collect::<Vec<_>>()
    );
    // A changed template gives a new hash.
    let changed = cluster(&DEPLOY.replace("image: x", "image: y"));
    let web = |c: &podnet_model::Cluster| {
        c.pods
            .iter()
            .find(|p| p.namespace == "default")
            .unwrap()
            .labels["pod-template-hash"]
            .clone()
    };
    assert_ne!(web(&changed), hash);
}

#[test]
fn pods_spread_over_nodes_and_get_ips_from_their_node() {
    let c = cluster(DEPLOY);
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in &c.pods {
        let node = c.node(p.node.as_deref().unwrap()).unwrap();
        assert!(
            node.pod_cidrs[0].contains(&p.ips[0]),
            "{} {:?} in {}",
            p.name,
            p.ips,
            node.pod_cidrs[0]
        );
        assert_ne!(p.ips[0], node.pod_cidrs[0].network());
        *per_node.entry(node.name.as_str()).or_default() += 1;
    }
    // 4 web pods and the 2 built-in cluster DNS pods.
    let mut counts: Vec<_> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [2, 2, 2]);
    let all: std::collections::BTreeSet<_> = c.pods.iter().map(|p| p.ips[0]).collect();
    assert_eq!(all.len(), c.pods.len(), "pod IPs are unique");
}

#[test]
fn nodes_default_to_three_with_slash_24s() {
    let c = cluster("");
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.nodes[1].pod_cidrs[0].to_string(), "10.244.1.0/24");
    assert_eq!(c.nodes[2].labels["kubernetes.io/hostname"], "node-2");
    let c = cluster_with(
        "",
        &ConfigOverrides {
            nodes: Some(5),
            node_cidr_mask_size: Some(26),
            ..Default::default()
        },
    );
    assert_eq!(c.nodes.len(), 5);
    assert_eq!(c.nodes[4].pod_cidrs[0].to_string(), "10.244.1.0/26");
}

#[test]
fn node_objects_define_the_nodes() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Node
metadata: {name: worker-b, labels: {disk: ssd}}
spec: {podCIDR: 10.244.7.0/24}
status: {addresses: [{type: InternalIP, address: 172.18.0.9}]}
---
apiVersion: v1
kind: Node
metadata: {name: worker-a}
"#,
    );
    assert_eq!(
        c.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["worker-a", "worker-b"]
    );
    let b = c.node("worker-b").unwrap();
    assert_eq!(b.pod_cidrs[0].to_string(), "10.244.7.0/24");
    assert_eq!(b.internal_ip, ip("172.18.0.9"));
    assert_eq!(b.labels["disk"], "ssd");
    let a = c.node("worker-a").unwrap();
    assert_eq!(a.pod_cidrs[0].to_string(), "10.244.0.0/24");
    assert_eq!(a.internal_ip, ip("172.18.0.2"));
}

#[test]
fn placement_honours_node_name_and_node_selector() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-0}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {gpu: "yes"}}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ml}
spec:
  replicas: 3
  selector: {matchLabels: {app: ml}}
  template:
    metadata: {labels: {app: ml}}
    spec:
      nodeSelector: {gpu: "yes"}
      containers: [{name: c, image: x}]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec: {nodeSelector: {gpu: "no"}, containers: [{name: c, image: x}]}
"#,
    );
    assert_eq!(
        c.pod("default", "pinned").unwrap().node.as_deref(),
        Some("node-2")
    );
    for p in c
        .pods
        .iter()
        .filter(|p| p.labels.get("app").map(String::as_str) == Some("ml"))
    {
        assert_eq!(p.node.as_deref(), Some("node-1"));
    }
    let nowhere = c.pod("default", "nowhere").unwrap();
    assert_eq!(nowhere.node, None);
    assert_eq!(nowhere.phase, "Pending");
    assert!(nowhere.ips.is_empty());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("nowhere") && w.message.contains("Pending")));
}

#[test]
fn statefulset_pods_have_ordinals_hostname_and_subdomain() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{name: pg, port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: x}]}
"#,
    );
    for i in 0..3 {
        let p = c.pod("default", &format!("db-{i}")).expect("db-<ordinal>");
        assert_eq!(p.hostname.as_deref(), Some(format!("db-{i}").as_str()));
        assert_eq!(p.subdomain.as_deref(), Some("db"));
        assert_eq!(
            p.labels["statefulset.kubernetes.io/pod-name"],
            format!("db-{i}")
        );
    }
    let svc = c.service("default", "db").unwrap();
    assert!(svc.headless);
    assert!(svc.cluster_ips.is_empty());
    let mut hostnames: Vec<_> = svc
        .endpoints()
        .map(|(_, e)| e.hostname.clone().unwrap())
        .collect();
    hostnames.sort();
    assert_eq!(hostnames, ["db-0", "db-1", "db-2"]);
}

#[test]
fn daemonset_puts_one_pod_on_each_matching_node() {
    let c = cluster(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {name: agent}}
  template:
    metadata: {labels: {name: agent}}
    spec: {containers: [{name: c, image: x}]}
"#,
    );
    let mut nodes: Vec<_> = c
        .pods
        .iter()
        .filter(|p| p.namespace == "kube-system" && !p.labels.contains_key("k8s-app"))
        .map(|p| p.node.clone().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-0", "node-1", "node-2"]);
}

#[test]
fn namespaces_default_and_are_created_with_a_warning() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: team}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: declared, labels: {env: prod}}
"#,
    );
    assert!(c.pod("default", "a").is_some());
    assert!(c.pod("team", "b").is_some());
    assert!(!c.namespaces["team"].declared);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("\"team\" is used but not declared")));
    for (name, ns) in &c.namespaces {
        assert_eq!(&ns.labels["kubernetes.io/metadata.name"], name);
    }
    assert_eq!(c.namespaces["declared"].labels["env"], "prod");
    assert!(c.namespaces.contains_key("kube-system"));
}

#[test]
fn unused_kinds_are_skipped_with_their_location() {
    let c = cluster("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: y}\n");
    let w: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.message.contains("not used by podnet"))
        .collect();
    assert_eq!(w.len(), 2);
    assert_eq!(w[1].location.as_ref().unwrap().line, 5);
}

const SVCS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: fixed}
spec: {clusterIP: 10.96.5.5, selector: {app: web}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: auto}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: a, port: 80, nodePort: 30080}
  - {name: b, port: 81}
  - {name: c, port: 81, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 443, targetPort: 8443}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: example.com}
"#;

#[test]
fn cluster_ips_are_honoured_or_allocated() {
    let c = cluster(&format!("{DEPLOY}---{SVCS}"));
    let fixed = c.service("default", "fixed").unwrap();
    assert_eq!(fixed.cluster_ips, [ip("10.96.5.5")]);
    let auto = c.service("default", "auto").unwrap();
    assert!(c.config.service_cidr().contains(&auto.cluster_ips[0]));
    assert_ne!(
        auto.cluster_ips[0], c.config.dns_ip,
        "the DNS address is kept free"
    );
    let k = c.service("default", "kubernetes").unwrap();
    assert_eq!(k.cluster_ips, [ip("10.96.0.1")]);
    let ext = c.service("default", "ext").unwrap();
    assert_eq!(ext.service_type, ServiceType::ExternalName);
    assert!(ext.cluster_ips.is_empty());
    assert_eq!(ext.external_name.as_deref(), Some("example.com"));
    assert!(ext.endpoint_slices.is_empty());
}

#[test]
fn node_ports_are_honoured_allocated_and_shared_across_protocols() {
    let c = cluster(&format!("{DEPLOY}---{SVCS}"));
    let np = c.service("default", "np").unwrap();
    assert_eq!(np.ports[0].node_port, Some(30080));
    let b = np.ports[1].node_port.unwrap();
    assert!(c.config.node_port_range.contains(b));
    assert_eq!(
        np.ports[2].node_port,
        Some(b),
        "TCP and UDP on one port share the node port"
    );
    assert!(c.service("default", "fixed").unwrap().ports[0]
        .node_port
        .is_none());
}

#[test]
fn load_balancers_get_pool_addresses_and_health_check_ports() {
    let c = cluster(&format!("{DEPLOY}---{SVCS}"));
    let lb = c.service("default", "lb").unwrap();
    assert_eq!(lb.load_balancer_ips.len(), 1);
    assert!(c.config.load_balancer_pool[0].contains(lb.load_balancer_ips[0]));
    assert!(
        lb.ports[0].node_port.is_some(),
        "LoadBalancers get node ports by default"
    );
    assert!(
        lb.health_check_node_port.is_some(),
        "externalTrafficPolicy Local needs a health check port"
    );
    let plan = serde_json::to_value(c.plan()).unwrap();
    let svc = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "lb")
        .unwrap();
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        lb.load_balancer_ips[0].to_string()
    );
}

#[test]
fn requested_load_balancer_ip_and_exhaustion() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {type: LoadBalancer, loadBalancerIP: 172.18.255.201, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: c}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;
    let o = ConfigOverrides {
        load_balancer_pool: Some(vec!["172.18.255.200/31".parse().unwrap()]),
        ..Default::default()
    };
    let c = cluster_with(yaml, &o);
    assert_eq!(
        c.service("default", "a").unwrap().load_balancer_ips,
        [ip("172.18.255.201")]
    );
    let got: Vec<_> = ["b", "c"]
        .iter()
        .map(|n| c.service("default", n).unwrap().load_balancer_ips.clone())
        .collect();
    assert_eq!(
        got.iter()
            .filter(|v| v.as_slice() == [ip("172.18.255.200")])
            .count(),
        1
    );
    assert_eq!(
        got.iter().filter(|v| v.is_empty()).count(),
        1,
        "the pool is exhausted: one stays pending"
    );
    assert!(c.warnings.iter().any(|w| w.message.contains("exhausted")));
}

#[test]
fn named_target_ports_resolve_pod_by_pod_and_warn_when_missing() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, labels: {app: web}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}
"#,
    );
    let svc = c.service("default", "web").unwrap();
    let mut got: Vec<(String, i32)> = svc
        .endpoint_slices
        .iter()
        .flat_map(|s| {
            s.endpoints
                .iter()
                .map(move |e| (e.pod.clone().unwrap(), s.ports[0].port))
        })
        .collect();
    got.sort();
    assert_eq!(got, [("a".to_string(), 8080), ("b".to_string(), 9090)]);
    let w = c
        .warnings
        .iter()
        .find(|w| w.field.as_deref() == Some("spec.ports[0].targetPort"))
        .expect("warning");
    assert!(w.message.contains("pod(s) c"), "{}", w.message);
    assert_eq!(
        w.location.as_ref().unwrap().line,
        20,
        "the spec line holds the flow-mapped targetPort"
    );
}

#[test]
fn a_service_that_selects_nothing_is_warned_about() {
    let c = cluster("apiVersion: v1\nkind: Service\nmetadata: {name: lonely}\nspec: {selector: {app: none}, ports: [{port: 80}]}\n");
    let w = c
        .warnings
        .iter()
        .find(|w| w.message.contains("selects no pod"))
        .expect("warning");
    assert_eq!(
        w.object.as_ref().unwrap().to_string(),
        "Service/default/lonely"
    );
    assert_eq!(w.location.as_ref().unwrap().line, 4);
    assert!(c
        .service("default", "lonely")
        .unwrap()
        .endpoint_slices
        .is_empty());
}

#[test]
fn readiness_terminating_and_publish_not_ready() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: web}}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: leaving, labels: {app: web}, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: done, labels: {app: web}}
spec: {containers: [{name: c, image: x}]}
status: {phase: Succeeded}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}], publishNotReadyAddresses: PNRA}
"#;
    let c = cluster(&yaml.replace("PNRA", "false"));
    let svc = c.service("default", "web").unwrap();
    let eps: HashMap<String, (bool, bool, bool)> = svc
        .endpoints()
        .map(|(_, e)| (e.pod.clone().unwrap(), (e.ready, e.serving, e.terminating)))
        .collect();
    assert_eq!(eps.len(), 2, "a Succeeded pod is no endpoint");
    assert_eq!(eps["unready"], (false, false, false));
    assert_eq!(eps["leaving"], (false, true, true));
    let c = cluster(&yaml.replace("PNRA", "true"));
    assert!(c
        .service("default", "web")
        .unwrap()
        .endpoints()
        .all(|(_, e)| e.ready));
}

#[test]
fn selectorless_services_use_user_slices_and_mirrored_endpoints() {
    let c = cluster(
        r#"
apiVersion: v1
kind: Service
metadata: {name: external-db}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: external-db-1, labels: {kubernetes.io/service-name: external-db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [192.0.2.10]
- addresses: [192.0.2.11]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy}
subsets:
- addresses: [{ip: 192.0.2.20}]
  notReadyAddresses: [{ip: 192.0.2.21}]
  ports: [{port: 8080}]
"#,
    );
    let db = c.service("default", "external-db").unwrap();
    let eps: Vec<_> = db
        .endpoints()
        .map(|(_, e)| (e.addresses[0].to_string(), e.ready))
        .collect();
    assert_eq!(
        eps,
        [
            ("192.0.2.10".to_string(), true),
            ("192.0.2.11".to_string(), false)
        ]
    );
    let legacy = c.service("default", "legacy").unwrap();
    assert_eq!(legacy.endpoint_slices.len(), 1);
    assert_eq!(
        legacy.endpoint_slices[0].managed_by,
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(legacy.endpoint_slices[0].ports[0].port, 8080);
    assert_eq!(
        legacy.endpoint_slices[0]
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .count(),
        1
    );
}

#[test]
fn actual_pod_ips_are_taken_back_in() {
    let mut c = cluster(&format!("{DEPLOY}---{SVCS}"));
    let p = c.pods[0].key();
    let mut actual = HashMap::new();
    actual.insert(p.clone(), vec![ip("10.244.0.77")]);
    c.set_pod_ips(&actual);
    assert_eq!(
        c.pod(&p.namespace, &p.name).unwrap().ips,
        [ip("10.244.0.77")]
    );
    let auto = c.service("default", "auto").unwrap();
    assert!(auto
        .endpoints()
        .any(|(_, e)| e.addresses == [ip("10.244.0.77")]));
    assert_eq!(auto.endpoints().count(), 4);
}

#[test]
fn pod_ips_from_status_are_honoured() {
    let c = cluster("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.1.50}\n");
    let p = c.pod("default", "a").unwrap();
    assert_eq!(p.ips, [ip("10.244.1.50")]);
    assert_eq!(
        p.node.as_deref(),
        Some("node-1"),
        "the node whose podCIDR holds the IP"
    );
    let e = build_err("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: node-0, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.1.50}\n");
    let d = &e.diagnostics()[0];
    assert_eq!(d.field.as_deref(), Some("status.podIP"));
    assert_eq!(d.location.as_ref().unwrap().line, 5);
}

#[test]
fn host_network_pods_use_the_node_ip() {
    let c = cluster("apiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec: {hostNetwork: true, nodeName: node-1, containers: [{name: c, image: x}]}\n");
    assert_eq!(
        c.pod("default", "h").unwrap().ips,
        [c.node("node-1").unwrap().internal_ip]
    );
}

#[test]
fn the_order_of_the_manifests_does_not_change_the_plan() {
    let docs = format!("{DEPLOY}---{SVCS}");
    let parts: Vec<&str> = docs.split("\n---").collect();
    let reversed = parts
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("\n---\n");
    let a = serde_json::to_value(cluster(&docs).plan()).unwrap();
    let b = serde_json::to_value(cluster(&reversed).plan()).unwrap();
    assert_eq!(a["pods"], b["pods"]);
    assert_eq!(a["services"], b["services"]);
}

#[test]
fn adding_a_service_does_not_move_the_others() {
    let before = cluster(SVCS);
    let after = cluster(&format!("{SVCS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: zzz-new}}\nspec: {{type: NodePort, ports: [{{port: 80}}]}}\n"));
    for s in &before.services {
        let t = after.service(&s.namespace, &s.name).unwrap();
        assert_eq!(s.cluster_ips, t.cluster_ips, "{}", s.name);
        assert_eq!(s.ports, t.ports, "{}", s.name);
    }
}

#[test]
fn config_document_and_flags_override_defaults() {
    let yaml = "apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\nnodes: 2\nserviceCIDR: 10.100.0.0/16\nclusterDomain: example.internal\n";
    let c = cluster(yaml);
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.config.dns_ip, ip("10.100.0.10"));
    assert_eq!(c.config.cluster_domain, "example.internal");
    let c = cluster_with(
        yaml,
        &ConfigOverrides {
            nodes: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(c.nodes.len(), 4, "a flag beats the document");
    let e = build_err(
        "apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\nnodes: 2\npodCidr: 10.0.0.0/8\n",
    );
    assert!(e.diagnostics()[0].message.contains("unknown field"), "{e}");
}

#[test]
fn target_port_defaults_to_port() {
    let c = cluster("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}, {name: x, port: 81, targetPort: \"9000\"}]}\n".replace("{port: 80}", "{name: w, port: 80}").as_str());
    let s = c.service("default", "s").unwrap();
    assert_eq!(s.ports[0].target_port, TargetPort::Number(80));
    assert_eq!(s.ports[1].target_port, TargetPort::Number(9000));
    assert_eq!(s.key(), NsName::new("default", "s"));
}
