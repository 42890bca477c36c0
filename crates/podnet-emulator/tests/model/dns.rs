//! The DNS zone and the pods' resolver configuration, computed from manifests.

use podnet_model::dns::{DnsZone, Lookup, RData, RType, Rcode};
use podnet_model::resolv::{self, ResolvConf};

use crate::cluster;

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 81}]
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
kind: Pod
metadata: {name: a, namespace: shop}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: h, namespace: shop}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hc, namespace: shop}
spec: {hostNetwork: true, dnsPolicy: ClusterFirstWithHostNet, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: n, namespace: shop}
spec:
  dnsPolicy: ClusterFirst
  dnsConfig:
    nameservers: [1.1.1.1, 10.96.0.10, 2.2.2.2, 3.3.3.3]
    searches: [svc.cluster.local, x.example]
    options: [{name: ndots, value: "1"}, {name: rotate}]
  containers: [{name: c, image: x}]
"#;

fn answer(z: &DnsZone, name: &str, t: RType) -> (Rcode, Vec<String>) {
    match z.lookup(name, t) {
        Lookup::Answer { rcode, answer, .. } => (
            rcode,
            answer
                .iter()
                .map(|a| a.record(z).data.to_string())
                .collect(),
        ),
        Lookup::Outside => panic!("{name} is outside"),
    }
}

#[test]
fn the_zone_of_a_cluster() {
    let c = cluster(APP);
    let z = DnsZone::from_cluster(&c);
    let web = c.service("shop", "web").unwrap().cluster_ips[0].to_string();
    assert_eq!(
        answer(&z, "web.shop.svc.cluster.local.", RType::A),
        (Rcode::NoError, vec![web.clone()])
    );
    // Only the named port has an SRV record.
    assert_eq!(
        answer(&z, "_http._tcp.web.shop.svc.cluster.local.", RType::Srv).1,
        ["0 100 80 web.shop.svc.cluster.local."]
    );
    assert!(z
        .records
        .iter()
        .all(|r| !(r.name.contains("plain.shop") && r.data.rtype() == RType::Srv)));
    // The built-in kube-dns at the DNS address, and the zone's NS pointing at it.
    assert_eq!(
        answer(&z, "kube-dns.kube-system.svc.cluster.local.", RType::A).1,
        ["10.96.0.10"]
    );
    assert_eq!(
        answer(&z, "ns.dns.cluster.local.", RType::A).1,
        ["10.96.0.10"]
    );
    // StatefulSet pods by hostname, and their PTRs.
    let db0 = c.pod("shop", "db-0").unwrap().ips[0];
    assert_eq!(
        answer(&z, "db-0.db.shop.svc.cluster.local.", RType::A).1,
        [db0.to_string()]
    );
    assert_eq!(
        answer(&z, &podnet_model::dns::reverse_name(db0), RType::Ptr).1,
        ["db-0.db.shop.svc.cluster.local."]
    );
    // Two SRV records share the weight.
    let srv = answer(&z, "_pg._tcp.db.shop.svc.cluster.local.", RType::Srv).1;
    assert_eq!(srv.len(), 2);
    assert!(
        srv.iter().all(|s| s.starts_with("0 50 5432 db-")),
        "{srv:?}"
    );
    // Any case.
    assert_eq!(answer(&z, "WEB.Shop.svc.CLUSTER.local.", RType::A).1, [web]);
    // Names outside the zone are not ours.
    assert_eq!(z.lookup("example.com.", RType::A), Lookup::Outside);
    assert_eq!(
        z.lookup("cluster.local.example.", RType::A),
        Lookup::Outside
    );
    assert_eq!(z.lookup("xcluster.local.", RType::A), Lookup::Outside);
    // Stored and loaded again, the zone is the same.
    let again = DnsZone::from_stored(z.to_stored()).unwrap();
    assert_eq!(again, z);
    // The stored form written without a copy is the same document.
    let written = serde_json::to_string(&z.stored()).unwrap();
    let read: podnet_model::dns::StoredZone = serde_json::from_str(&written).unwrap();
    assert_eq!(read, z.to_stored());
    assert!(!read.empty_names.is_empty());
    assert_eq!(
        answer(&again, "shop.svc.cluster.local.", RType::A),
        (Rcode::NoError, vec![])
    );
    // The text form lists every record once.
    assert_eq!(
        z.to_text().lines().filter(|l| !l.starts_with(';')).count(),
        z.records.len()
    );
}

#[test]
fn reverse_names_follow_rfc_1035_and_3596() {
    assert_eq!(
        podnet_model::dns::reverse_name("10.3.0.1".parse().unwrap()),
        "1.0.3.10.in-addr.arpa."
    );
    assert_eq!(
        podnet_model::dns::reverse_name("2001:db8::1".parse().unwrap()),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    );
    assert_eq!(
        podnet_model::dns::dashed("fd00::5".parse().unwrap()),
        "fd00--5"
    );
}

#[test]
fn pod_records_for_well_formed_addresses() {
    let z = DnsZone::from_cluster(&cluster(""));
    let r = z.pod_record("10-244-1-5.any.pod.cluster.local.").unwrap();
    assert_eq!(r.data, RData::A("10.244.1.5".parse().unwrap()));
    assert!(z.pod_record("10-244-1.any.pod.cluster.local.").is_none());
    assert!(z.pod_record("10-244-1-5.pod.cluster.local.").is_none());
    assert!(z.pod_record("10-244-1-5.a.b.pod.cluster.local.").is_none());
    assert_eq!(
        answer(&z, "10-244-1-5.any.pod.cluster.local.", RType::Aaaa),
        (Rcode::NoError, vec![]),
        "NODATA for the other family"
    );
}

#[test]
fn resolv_conf_follows_dns_policy() {
    let c = cluster(APP);
    let node = ResolvConf::parse(
        "# node\nnameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n",
    );
    let conf = |name: &str| {
        resolv::for_pod(
            c.pod("shop", name).unwrap(),
            c.config.dns_ip,
            "cluster.local",
            &node,
        )
        .to_string()
    };
    assert_eq!(conf("a"), "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n");
    // ClusterFirst on the host's network falls back to Default.
    assert_eq!(
        conf("h"),
        "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n"
    );
    assert!(conf("hc").starts_with("nameserver 10.96.0.10\n"));
    // dnsConfig merges: nameservers appended without duplicates (3 at most), searches too,
    // options replace those of the same name.
    assert_eq!(conf("n"), "nameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 2.2.2.2\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example x.example\noptions ndots:1 rotate\n");
    // StatefulSet pods know their own FQDN.
    let db0 = c.pod("shop", "db-0").unwrap();
    let hosts = resolv::hosts_file(db0, "cluster.local");
    assert!(hosts.contains(&format!(
        "{}\tdb-0.db.shop.svc.cluster.local\tdb-0\n",
        db0.ips[0]
    )));
}
