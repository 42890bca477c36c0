//! The Ingress controller a cluster gets when its manifests have Ingresses: podnet's edge
//! proxy as the Deployment `podnet-system/podnet-ingress`, behind the LoadBalancer Service of
//! the same name (ports 80 and 443), with the IngressClass `podnet` marked default, as
//! ingress-nginx installs itself (`ingress-nginx/ingress-nginx-controller`, class `nginx`).
//! In the lab, `podnet ingress watch` runs in these pods.

use std::net::IpAddr;

use crate::model::{Cluster, PodInfo};

pub const INGRESS_NAMESPACE: &str = "podnet-system";
pub const INGRESS_SERVICE: &str = "podnet-ingress";
pub const INGRESS_DEPLOYMENT: &str = "podnet-ingress";
pub const INGRESS_CLASS: &str = "podnet";
/// podnet's Ingress controller name, in IngressClass `spec.controller`.
pub const INGRESS_CONTROLLER: &str = "podnet.dev/ingress";
/// The port of the controller's /healthz, /readyz and /metrics.
pub const INGRESS_ADMIN_PORT: u16 = 10254;

/// The built-in controller's objects.
pub fn builtin_manifests(has_class: bool) -> String {
    let class = if has_class {
        String::new()
    } else {
        format!(
            r#"---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {INGRESS_CLASS}
  annotations: {{ingressclass.kubernetes.io/is-default-class: "true"}}
spec:
  controller: {INGRESS_CONTROLLER}
"#
        )
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {INGRESS_NAMESPACE}
---
apiVersion: v1
kind: Service
metadata:
  name: {INGRESS_SERVICE}
  namespace: {INGRESS_NAMESPACE}
  labels: {{app.kubernetes.io/name: podnet-ingress}}
spec:
  type: LoadBalancer
  # Both families where the cluster has them (one on a single-stack cluster).
  ipFamilyPolicy: PreferDualStack
  # The client's own address reaches the controller (X-Forwarded-For, X-Real-IP), as
  # ingress-nginx's cloud manifests set it.
  externalTrafficPolicy: Local
  selector: {{app.kubernetes.io/name: podnet-ingress}}
  ports:
  - {{name: http, port: 80, protocol: TCP, targetPort: http}}
  - {{name: https, port: 443, protocol: TCP, targetPort: https}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {INGRESS_DEPLOYMENT}
  namespace: {INGRESS_NAMESPACE}
  labels: {{app.kubernetes.io/name: podnet-ingress}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: podnet-ingress}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: podnet-ingress}}
    spec:
      containers:
      - name: controller
        image: podnet/podnet
        args: [ingress, watch]
        ports:
        - {{name: http, containerPort: 80, protocol: TCP}}
        - {{name: https, containerPort: 443, protocol: TCP}}
        - {{name: admin, containerPort: {INGRESS_ADMIN_PORT}, protocol: TCP}}
{class}"#
    )
}

/// Whether `pod` is one of the built-in Ingress controller's pods.
pub fn is_builtin_ingress_pod(c: &Cluster, pod: &PodInfo) -> bool {
    c.service(INGRESS_NAMESPACE, INGRESS_SERVICE)
        .is_some_and(|s| {
            s.builtin
                && pod.namespace == INGRESS_NAMESPACE
                && s.selector
                    .as_ref()
                    .is_some_and(|sel| crate::model::selector_matches(sel, &pod.labels))
        })
}

/// The controller's addresses, for the Ingresses' `status.loadBalancer.ingress`: those of
/// the `podnet-system/podnet-ingress` Service (its load-balancer addresses, else its external
/// IPs), as ingress-nginx publishes its Service's.
pub fn controller_addresses(c: &Cluster) -> Vec<IpAddr> {
    published_addresses(c, INGRESS_NAMESPACE, INGRESS_SERVICE).unwrap_or_default()
}

/// The addresses a Service publishes outside the cluster: its load balancer's, else its
/// external IPs (None: no such Service), as ingress-nginx's `--publish-service` reads them.
pub fn published_addresses(c: &Cluster, namespace: &str, name: &str) -> Option<Vec<IpAddr>> {
    let s = c.service(namespace, name)?;
    Some(if s.load_balancer_ips.is_empty() {
        s.external_ips.clone()
    } else {
        s.load_balancer_ips.clone()
    })
}
