//! The API-to-model translation: a cluster projected into the API's objects (as the lab serves
//! them, and as JSON round-trips them) and read back gives every node the same dataplane,
//! policy table and DNS records as the cluster itself.

use podnet_model::{build, parse_documents, ConfigOverrides};
use podnet_node::dataplane::NodeDataplane;
use serde_json::Value;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: shop}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  externalIPs: [192.0.2.10]
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
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
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: shop}
spec: {ports: [{port: 9000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-1, namespace: shop, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
ports: [{port: 9000}]
endpoints: [{addresses: [172.18.0.200]}]
---
apiVersion: v1
kind: Pod
metadata: {name: leaving, namespace: shop, labels: {app: web}, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: starting, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, conditions: [{type: Ready, status: "False"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: shop}
spec: {hostNetwork: true, nodeName: node-1, containers: [{name: c, image: x, ports: [{containerPort: 9100}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.244.2.0/24]}}]
    ports: [{port: http}]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: also-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8080}]}]
"#;

/// The objects as a client would receive them: JSON text, parsed again.
fn through_json(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .map(|o| serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap())
        .collect()
}

#[test]
fn a_projected_cluster_read_back_gives_every_node_the_same_dataplane() {
    let o = ConfigOverrides::default();
    let c1 = build(&parse_documents("m.yaml", MANIFESTS).unwrap(), &o).unwrap();
    let mut api = podnet_api::store::Store::default();
    api.replace(podnet_api::project::project(&c1), "2026-01-01T00:00:00Z");
    let served: Vec<Value> = podnet_api::resources::RESOURCES
        .iter()
        .flat_map(|r| api.list(r, None))
        .map(|o| o.as_ref().clone())
        .collect();
    let c2 =
        podnet_agent::translate::model(&through_json(served), &o).unwrap_or_else(|e| panic!("{e}"));
    assert!(c2.warnings.is_empty(), "{:?}", c2.warnings);
    let (d1, d2) = (
        NodeDataplane::for_cluster(&c1, "eth0"),
        NodeDataplane::for_cluster(&c2, "eth0"),
    );
    assert_eq!(d1.len(), 3);
    for (a, b) in d1.iter().zip(&d2) {
        assert_eq!(a.proxy, b.proxy, "{}: proxy", a.node);
        assert_eq!(a.policy, b.policy, "{}: policy", a.node);
        assert_eq!(a, b, "{}", a.node);
    }
    // The pieces that made the tables: endpoints (recomputed by the model), the user slice.
    let svc = c2.service("shop", "outside").unwrap();
    assert_eq!(svc.endpoints().count(), 1);
    assert_eq!(
        podnet_model::dns::DnsZone::from_cluster(&c1).to_stored(),
        podnet_model::dns::DnsZone::from_cluster(&c2).to_stored()
    );
    for p in &c1.pods {
        let q = c2.pod(&p.namespace, &p.name).unwrap();
        assert_eq!((&p.node, &p.ips), (&q.node, &q.ips), "{}", p.key());
    }
}

/// An object the model refuses (an EndpointSlice with an invalid address) is left out and
/// said; everything else gives the same dataplane as without it.
#[test]
fn an_object_the_model_refuses_is_left_out_and_the_rest_is_programmed() {
    let o = ConfigOverrides::default();
    let c1 = build(&parse_documents("m.yaml", MANIFESTS).unwrap(), &o).unwrap();
    let mut objects = podnet_api::project::project(&c1);
    objects.push(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "broken", "namespace": "shop", "labels": {"kubernetes.io/service-name": "outside"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.999"]}],
        "ports": [{"port": 9000}]
    }));
    assert!(podnet_agent::translate::model(&objects, &o).is_err());
    let (c2, skipped) = podnet_agent::translate::model_skipping(&objects, &o).unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].object, "api:EndpointSlice/shop/broken");
    assert!(skipped[0].why.contains("10.0.0.999"), "{}", skipped[0].why);
    assert_eq!(
        NodeDataplane::for_cluster(&c1, "eth0"),
        NodeDataplane::for_cluster(&c2, "eth0")
    );
}
