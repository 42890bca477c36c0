//! What each Gateway of podnet's class gets, as the leading implementations provision it
//! (Envoy Gateway, Cilium, NGINX Gateway Fabric): a Deployment of podnet's edge proxy serving
//! that Gateway's listeners, behind a LoadBalancer Service of its own whose address becomes
//! the Gateway's `status.addresses`. Both live in `podnet-system`; their name is derived from
//! the Gateway's namespace and name. In the lab, `podnet gateway watch` runs in these pods.
//!
//! And, when manifests have Gateways but no GatewayClass named `podnet`, that class (as the
//! Ingress controller brings its IngressClass).

use std::hash::Hasher;

use crate::gateway_api::{Gateway, API_VERSION};
use crate::model::{Cluster, PodInfo};
use crate::NsName;

/// podnet's Gateway controller name, in GatewayClass `spec.controllerName`.
pub const GATEWAY_CONTROLLER: &str = "podnet.dev/gateway";
/// The GatewayClass podnet brings.
pub const GATEWAY_CLASS: &str = "podnet";
/// Where each Gateway's proxy runs.
pub const GATEWAY_NAMESPACE: &str = crate::edge::INGRESS_NAMESPACE;
/// The label that ties a Gateway's Service and pods together (its value: [`infra_name`]).
pub const GATEWAY_LABEL: &str = "podnet.dev/gateway";
/// The annotations naming the Gateway a Service serves.
pub const GATEWAY_NAME_ANNOTATION: &str = "gateway.networking.k8s.io/gateway-name";
pub const GATEWAY_NAMESPACE_ANNOTATION: &str = "gateway.networking.k8s.io/gateway-namespace";
/// The port of the proxies' /healthz, /readyz and /metrics.
pub const GATEWAY_ADMIN_PORT: u16 = 10255;

/// The name of a Gateway's Deployment and Service: `gw-<namespace>-<name>`, cut to fit a
/// DNS label, with a hash of the whole so that cut names stay apart.
pub fn infra_name(gateway: &NsName) -> String {
    let mut h = fnv::FnvHasher::default();
    h.write(gateway.namespace.as_bytes());
    h.write(b"/");
    h.write(gateway.name.as_bytes());
    let hash = format!("{:08x}", h.finish() as u32);
    let mut base: String = format!("gw-{}-{}", gateway.namespace, gateway.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    while base.ends_with('-') {
        base.pop();
    }
    format!("{base}-{hash}")
}

/// The distinct, valid listener ports of a Gateway.
pub fn listener_ports(g: &Gateway) -> Vec<u16> {
    let mut ports: Vec<u16> = g
        .spec
        .listeners
        .iter()
        .filter_map(|l| u16::try_from(l.port).ok().filter(|p| *p > 0))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The label the Gateway API gives the resources made for a Gateway (its name).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The Deployment and LoadBalancer Service of one Gateway. They, and the pods, carry the
/// Gateway's `spec.infrastructure` labels and annotations (podnet's own labels over them),
/// and the Gateway API's gateway-name label.
pub fn infra_manifests(g: &Gateway) -> String {
    let key = key(g);
    let name = infra_name(&key);
    let infra = g.spec.infrastructure.clone().unwrap_or_default();
    let mut labels = infra.labels.clone();
    // (A Gateway's name may be longer than a label's value can be: then only the annotation.)
    if key.name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.to_string(), key.name.clone());
    }
    labels.insert(GATEWAY_LABEL.to_string(), name.clone());
    let labels = serde_json::to_string(&labels).expect("a map of strings");
    let mut annotations = infra.annotations.clone();
    annotations.insert(GATEWAY_NAME_ANNOTATION.to_string(), key.name.clone());
    annotations.insert(
        GATEWAY_NAMESPACE_ANNOTATION.to_string(),
        key.namespace.clone(),
    );
    let service_annotations = serde_json::to_string(&annotations).expect("a map of strings");
    let annotations = serde_json::to_string(&infra.annotations).expect("a map of strings");
    let ports = listener_ports(g);
    let service_ports: String = ports
        .iter()
        .map(|p| format!("  - {{name: p{p}, port: {p}, protocol: TCP, targetPort: {p}}}\n"))
        .collect();
    let service_ports = if service_ports.is_empty() {
        " []\n".to_string()
    } else {
        format!("\n{service_ports}")
    };
    // An address the Gateway asks for (spec.addresses, GatewayStaticAddresses): the first,
    // asked of the load-balancer controller (MetalLB and the lab's take `loadBalancerIP`).
    let requested = g
        .spec
        .requested_ips()
        .first()
        .map(|ip| format!("  loadBalancerIP: \"{ip}\"\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {GATEWAY_NAMESPACE}
  labels: {labels}
  annotations: {service_annotations}
spec:
  type: LoadBalancer
  # Both families where the cluster has them: the Gateway's addresses are both.
  ipFamilyPolicy: PreferDualStack
  externalTrafficPolicy: Local
{requested}  selector: {{{GATEWAY_LABEL}: {name}}}
  ports:{service_ports}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {GATEWAY_NAMESPACE}
  labels: {labels}
  annotations: {annotations}
spec:
  replicas: 1
  selector:
    matchLabels: {{{GATEWAY_LABEL}: {name}}}
  template:
    metadata:
      labels: {labels}
      annotations: {annotations}
    spec:
      serviceAccountName: podnet-gateway
      containers:
      - name: proxy
        image: podnet/podnet
        args: [gateway, watch, --gateway, "{gns}/{gname}", --write-status]
        # The listeners' ports are not declared (a containerPort is informational): a
        # listener added or removed changes the Service only, and no pod is replaced.
        ports:
        - {{name: admin, containerPort: {GATEWAY_ADMIN_PORT}, protocol: TCP}}
"#,
        gname = key.name,
        gns = key.namespace,
    )
}

/// The GatewayClass podnet brings.
pub fn class_manifest() -> String {
    format!(
        "apiVersion: {API_VERSION}\nkind: GatewayClass\nmetadata:\n  name: {GATEWAY_CLASS}\nspec:\n  controllerName: {GATEWAY_CONTROLLER}\n"
    )
}

/// A Gateway's key.
pub fn key(g: &Gateway) -> NsName {
    NsName::new(
        g.metadata.namespace.as_deref().unwrap_or("default"),
        g.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The Gateway whose Deployment and Service are named `name` (in [`GATEWAY_NAMESPACE`]).
pub fn gateway_of_infra(c: &Cluster, name: &str) -> Option<NsName> {
    c.gateways
        .iter()
        .map(|g| key(&g.obj))
        .find(|k| infra_name(k) == name)
}

/// The Gateway whose proxy `pod` is, when it is one of the built-in proxies' pods.
pub fn gateway_of_pod(c: &Cluster, pod: &PodInfo) -> Option<NsName> {
    if pod.namespace != GATEWAY_NAMESPACE {
        return None;
    }
    let name = pod.labels.get(GATEWAY_LABEL)?;
    c.service(GATEWAY_NAMESPACE, name).filter(|s| s.builtin)?;
    gateway_of_infra(c, name)
}

/// A Gateway's addresses: its Service's load-balancer addresses.
pub fn addresses(c: &Cluster, gateway: &NsName) -> Vec<std::net::IpAddr> {
    c.service(GATEWAY_NAMESPACE, &infra_name(gateway))
        .map(|s| s.load_balancer_ips.clone())
        .unwrap_or_default()
}
