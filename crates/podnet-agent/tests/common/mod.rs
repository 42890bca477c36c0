//! What the agent's tests share: a cluster with every feature the dataplane reads.

#![allow(dead_code)]

use serde_json::Value;

/// Every kind the agent reads, and every Service feature the proxy programs.
pub const MANIFESTS: &str = r#"
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
pub fn through_json(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .map(|o| serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap())
        .collect()
}

/// The objects a cluster's API serves, as a client receives them.
pub fn served(c: &podnet_model::Cluster) -> Vec<Value> {
    let mut api = podnet_api::store::Store::default();
    api.replace(podnet_api::project::project(c), "2026-01-01T00:00:00Z");
    through_json(
        podnet_api::resources::RESOURCES
            .iter()
            .flat_map(|r| api.list(r, None))
            .map(|o| o.as_ref().clone())
            .collect(),
    )
}
