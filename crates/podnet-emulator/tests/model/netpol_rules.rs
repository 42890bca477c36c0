//! NetworkPolicy's rules, each on a small cluster (were `netpol.rs`' unit tests).

use podnet_emulator::build;
use podnet_model::netpol::*;
use podnet_model::{parse_documents, Cluster, ConfigOverrides, NsName, Protocol};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec: {containers: [{name: c, image: x, ports: [{name: web, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
"#;

fn cluster(policy: &str) -> Cluster {
    let docs = parse_documents("t.yaml", &format!("{PODS}---\n{policy}")).unwrap();
    build(&docs, &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn allowed(c: &Cluster, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let p = Policies::of(c);
    let (f, t) = (
        c.pod("default", from).unwrap(),
        c.pod("default", to).unwrap(),
    );
    p.judge(End::Pod(f), End::Pod(t), port, proto).allowed
}

fn policy(spec: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec: {spec}\n")
}

#[test]
fn ports_by_range_and_by_name_on_the_destination() {
    let c = cluster(&policy("{podSelector: {matchLabels: {app: server}}, ingress: [{ports: [{port: 8000, endPort: 8100}, {port: dns, protocol: UDP}]}]}"));
    assert!(allowed(&c, "client", "server", 8080, Protocol::Tcp));
    assert!(!allowed(&c, "client", "server", 8101, Protocol::Tcp));
    assert!(
        allowed(&c, "client", "server", 53, Protocol::Udp),
        "the named port resolves on the server"
    );
    assert!(
        !allowed(&c, "client", "server", 53, Protocol::Tcp),
        "named UDP, not TCP"
    );
    assert!(!allowed(&c, "client", "server", 8080, Protocol::Sctp));
}

#[test]
fn ip_blocks_match_pod_addresses_less_their_exceptions() {
    let c = cluster("");
    let ip = c.pod("default", "client").unwrap().ips[0];
    let spec = format!("{{podSelector: {{matchLabels: {{app: server}}}}, ingress: [{{from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{ip}/32]}}}}]}}]}}");
    let c = cluster(&policy(&spec));
    assert!(!allowed(&c, "client", "server", 8080, Protocol::Tcp));
    let spec = format!("{{podSelector: {{matchLabels: {{app: server}}}}, ingress: [{{from: [{{ipBlock: {{cidr: {ip}/32}}}}]}}]}}");
    let c = cluster(&policy(&spec));
    assert!(allowed(&c, "client", "server", 8080, Protocol::Tcp));
}

#[test]
fn policy_types_default_from_the_rules() {
    // Egress rules make it an Egress policy too; an empty egress list does not.
    let c = cluster(&policy(
        "{podSelector: {matchLabels: {app: client}}, egress: [{ports: [{port: 443}]}]}",
    ));
    assert!(!allowed(&c, "client", "server", 8080, Protocol::Tcp));
    assert!(
        !allowed(&c, "server", "client", 8080, Protocol::Tcp),
        "and Ingress: the client is isolated"
    );
    let c = cluster(&policy(
        "{podSelector: {matchLabels: {app: client}}, egress: []}",
    ));
    assert!(
        allowed(&c, "client", "server", 8080, Protocol::Tcp),
        "an Ingress policy only"
    );
    // `ingress: [{}]` allows everything; `ingress: []` nothing.
    let c = cluster(&policy("{podSelector: {}, ingress: [{}]}"));
    assert!(allowed(&c, "client", "server", 1, Protocol::Udp));
    let c = cluster(&policy("{podSelector: {}, ingress: []}"));
    assert!(!allowed(&c, "client", "server", 1, Protocol::Udp));
}

#[test]
fn host_network_pods_are_never_isolated_and_explain_names_the_policy() {
    let c = cluster(&policy("{podSelector: {}, policyTypes: [Ingress, Egress]}"));
    let p = Policies::of(&c);
    let host = c.pod("default", "host").unwrap();
    let server = c.pod("default", "server").unwrap();
    let v = p.judge(End::Pod(host), End::Pod(server), 8080, Protocol::Tcp);
    assert_eq!(v.egress, Side::NotIsolated);
    assert_eq!(
        v.ingress,
        Side::Denied {
            isolated_by: vec![NsName::new("default", "p")]
        }
    );
    let v = p.judge(End::Pod(server), End::Pod(host), 8080, Protocol::Tcp);
    assert!(!v.allowed, "the server's egress is isolated");
    assert_eq!(v.ingress, Side::NotIsolated);
}
