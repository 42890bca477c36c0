//! Cluster DNS in the lab: the built-in kube-dns behind the service proxy, each pod's
//! resolv.conf from its dnsPolicy, names from inside pods with getent, curl and dig (UDP and
//! TCP), `check --dns` against the server's answers, and live changes after `lab apply`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{can_run, ok, pod_ip, write_manifest, Lab};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: x, ports: [{name: pg, containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: www.example.com}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shopper, namespace: shop}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec: {dnsPolicy: Default, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: custom}
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [shop.svc.cluster.local]
    options: [{name: ndots, value: "2"}, {name: edns0}]
  containers: [{name: c, image: x}]
"#;

fn out(lab: &Lab, pod: &str, cmd: &[&str]) -> (bool, String) {
    let o = lab.exec(pod, cmd);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

fn plan(file: &str) -> Value {
    serde_json::from_str(&ok(&["check", "-f", file, "-o", "json"])).unwrap()
}

fn cluster_ip(plan: &Value, ns: &str, name: &str) -> String {
    plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"] == ns && s["name"] == name)
        .unwrap()["clusterIPs"][0]
        .as_str()
        .unwrap()
        .to_string()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// A pod's resolv.conf as its programs see it: the lines but comments, sorted.
fn resolv_conf(lab: &Lab, pod: &str) -> Vec<String> {
    let (_, rc) = out(lab, pod, &["cat", "/etc/resolv.conf"]);
    lines(&rc)
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .collect()
}

#[test]
fn pods_find_services_by_name_through_kube_dns() {
    if !can_run() {
        return;
    }
    let m = write_manifest("dns-app", APP);
    let m = m.to_str().unwrap();
    let plan = plan(m);
    let lab = Lab::up("dns", &[m], &[]);
    let web = cluster_ip(&plan, "shop", "web");
    let st = lab.status();
    let ip_of = |name: &str| pod_ip(&st, name);

    // ClusterFirst: the kubelet's resolv.conf.
    assert_eq!(
        resolv_conf(&lab, "default/client"),
        [
            "nameserver 10.96.0.10",
            "options ndots:5",
            "search default.svc.cluster.local svc.cluster.local cluster.local"
        ]
    );
    // A short name works from the same namespace, not from another.
    let (good, got) = out(&lab, "shop/shopper", &["getent", "hosts", "web"]);
    assert!(good && got.starts_with(&web), "{got}");
    let (good, _) = out(&lab, "default/client", &["getent", "hosts", "web"]);
    assert!(!good, "web is not in default");
    let (good, got) = out(&lab, "default/client", &["getent", "hosts", "web.shop"]);
    assert!(good && got.starts_with(&web), "{got}");
    // Through the name to the Service to a pod.
    let (good, got) = out(
        &lab,
        "default/client",
        &["curl", "-s", "--max-time", "3", "http://web.shop/hostname"],
    );
    assert!(good && got.starts_with("web-"), "{got}");
    // FQDNs with dig, over UDP and TCP.
    for tcp in ["+notcp", "+tcp"] {
        let (_, got) = out(
            &lab,
            "default/client",
            &["dig", tcp, "+short", "db-0.db.shop.svc.cluster.local"],
        );
        assert_eq!(got, ip_of("db-0"), "{tcp}");
        let (_, got) = out(
            &lab,
            "default/client",
            &["dig", tcp, "+short", "db.shop.svc.cluster.local"],
        );
        assert_eq!(
            lines(&got),
            lines(&format!("{}\n{}", ip_of("db-0"), ip_of("db-1"))),
            "{tcp}"
        );
        let (_, got) = out(
            &lab,
            "default/client",
            &[
                "dig",
                tcp,
                "+short",
                "_http._tcp.web.shop.svc.cluster.local",
                "SRV",
            ],
        );
        assert_eq!(got, "0 100 80 web.shop.svc.cluster.local.");
    }
    let (_, got) = out(&lab, "default/client", &["dig", "+short", "-x", &web]);
    assert_eq!(got, "web.shop.svc.cluster.local.");
    let (_, got) = out(
        &lab,
        "default/client",
        &["dig", "+short", "ext.shop.svc.cluster.local", "CNAME"],
    );
    assert_eq!(got, "www.example.com.");
    let client = ip_of("client");
    let (_, got) = out(
        &lab,
        "default/client",
        &[
            "dig",
            "+short",
            &format!("{}.default.pod.cluster.local", client.replace('.', "-")),
        ],
    );
    assert_eq!(got, client);
    // The StatefulSet pod's own hosts file (kubelet-managed).
    let (_, hosts) = out(&lab, "shop/db-0", &["cat", "/etc/hosts"]);
    assert!(
        lines(&hosts).contains(&format!(
            "{} db-0.db.shop.svc.cluster.local db-0",
            ip_of("db-0")
        )),
        "{hosts}"
    );
    // Names outside the cluster: refused at once (the lab has no upstream).
    let (_, got) = out(&lab, "default/client", &["dig", "example.com"]);
    assert!(got.contains("status: REFUSED"), "{got}");
    let (good, _) = out(&lab, "default/client", &["getent", "hosts", "example.com"]);
    assert!(!good);

    // dnsPolicy None with dnsConfig.
    assert_eq!(
        resolv_conf(&lab, "default/custom"),
        [
            "nameserver 10.96.0.10",
            "options ndots:2 edns0",
            "search shop.svc.cluster.local"
        ]
    );
    let (good, got) = out(&lab, "default/custom", &["getent", "hosts", "web"]);
    assert!(good && got.starts_with(&web), "{got}");
    // dnsPolicy Default: the node's configuration, which in the lab has no nameserver.
    let (_, rc) = out(&lab, "default/plain", &["cat", "/etc/resolv.conf"]);
    assert!(!rc.contains("nameserver"), "{rc}");
    let (good, _) = out(
        &lab,
        "default/plain",
        &["getent", "hosts", "web.shop.svc.cluster.local"],
    );
    assert!(!good);
}

/// Every record `podnet check --dns` prints is what the lab's kube-dns answers, and nothing
/// more: one query per (name, type) of the zone, sent with dig from a pod to 10.96.0.10.
#[test]
fn check_dns_equals_what_the_server_answers() {
    zone_equals_the_answers("dnscheck", APP, &[]);
}

/// The same in an IPv6 lab (AAAA records, `ip6.arpa` names, the DNS Service's IPv6 address
/// in every resolv.conf) and in a dual-stack one whose Services are of both families (A and
/// AAAA for each, PTR under both trees).
#[test]
fn check_dns_equals_what_the_server_answers_in_ipv6_and_dual_stack_labs() {
    zone_equals_the_answers("dns6", APP, &["--ip-family", "ipv6"]);
    let dual = APP.replace(
        "spec:\n  selector: {app: web}",
        "spec:\n  ipFamilyPolicy: PreferDualStack\n  selector: {app: web}",
    );
    let dual = dual.replace(
        "  clusterIP: None\n",
        "  clusterIP: None\n  ipFamilyPolicy: PreferDualStack\n",
    );
    assert_ne!(dual, APP);
    zone_equals_the_answers("dnsdual", &dual, &["--ip-family", "dual"]);
}

fn zone_equals_the_answers(name: &str, manifests: &str, flags: &[&str]) {
    if !can_run() {
        return;
    }
    let m = write_manifest(name, manifests);
    let m = m.to_str().unwrap();
    let mut args = vec!["check", "-f", m, "--dns", "-o", "json"];
    args.extend(flags);
    let zone: Value = serde_json::from_str(&ok(&args)).unwrap();
    let records = zone["records"].as_array().unwrap();
    assert!(records.len() > 15, "{zone}");
    let want: BTreeSet<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} IN {} {}",
                r["name"].as_str().unwrap(),
                r["ttl"],
                r["type"].as_str().unwrap(),
                r["data"].as_str().unwrap()
            )
        })
        .collect();
    let questions: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The families asked for: AAAA (and ip6.arpa) records in an IPv6 or dual-stack lab.
    let aaaa = records.iter().any(|r| r["type"] == "AAAA");
    let a = records.iter().any(|r| r["type"] == "A");
    match flags {
        [] => assert!(a && !aaaa),
        [_, "ipv6"] => assert!(aaaa && !a, "{zone}"),
        _ => assert!(a && aaaa, "{zone}"),
    }
    let lab = Lab::up(name, &[m], flags);
    for transport in ["+notcp", "+tcp"] {
        let batch =
            // Named after the lab too: the tests of several families run at once.
            std::env::temp_dir().join(format!(
                "podnet-dig-{}-{name}-{transport}",
                std::process::id()
            ));
        let text: String = questions
            .iter()
            .map(|(n, t)| format!("{n} {t} {transport} +noall +answer +nocookie\n"))
            .collect();
        std::fs::write(&batch, text).unwrap();
        let (good, got) = out(
            &lab,
            "default/client",
            &["dig", "-f", batch.to_str().unwrap()],
        );
        assert!(good);
        let got = lines(&got);
        assert_eq!(
            got, want,
            "{transport}: the server's answers differ from check --dns"
        );
    }
}

/// After `lab apply` returns, the first query already sees the change: no retry loop here.
#[test]
fn dns_follows_lab_apply() {
    if !can_run() {
        return;
    }
    let m = write_manifest("dns-apply", APP);
    let lab = Lab::up("dnsapply", &[m.to_str().unwrap()], &[]);
    let late = "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 8080, targetPort: http}]\n";
    let changed = APP.replace(
        "serviceName: db\n  replicas: 2",
        "serviceName: db\n  replicas: 3",
    ) + late;
    let m2 = write_manifest("dns-apply2", &changed);
    let m2 = m2.to_str().unwrap();
    let (_, before) = out(
        &lab,
        "default/client",
        &["dig", "+short", "late.shop.svc.cluster.local"],
    );
    assert_eq!(before, "");
    ok(&["lab", "apply", "--name", &lab.name, "-f", m2]);
    let plan = plan(m2);
    let (_, got) = out(
        &lab,
        "default/client",
        &["dig", "+short", "late.shop.svc.cluster.local"],
    );
    assert_eq!(got, cluster_ip(&plan, "shop", "late"));
    let (_, got) = out(
        &lab,
        "default/client",
        &["dig", "+short", "db-2.db.shop.svc.cluster.local"],
    );
    assert!(!got.is_empty(), "the new StatefulSet pod has its record");
    // And removed again.
    lab.apply(&[m.to_str().unwrap()]);
    let (_, got) = out(
        &lab,
        "default/client",
        &["dig", "late.shop.svc.cluster.local"],
    );
    assert!(got.contains("status: NXDOMAIN"), "{got}");
    let (_, got) = out(
        &lab,
        "default/client",
        &["dig", "+short", "db-2.db.shop.svc.cluster.local"],
    );
    assert_eq!(got, "");
}
