//! The map of a cluster, for a person to look at: one self-contained HTML page (no asset
//! from anywhere else) that draws the nodes and their pods, the Services and the pods behind
//! them, the Ingresses and Gateways and the Services their routes send to, and the
//! NetworkPolicy matrix of every pod to every pod, each cell saying why (as `podnet explain`
//! does). Live (`podnet lab ui`), the page also draws the flows as they happen, allowed and
//! dropped in different colours, from the server's `/flows` stream.
//!
//! [`View`] is the data (pure, from the model); [`page`] puts it in the page.

use std::collections::{BTreeMap, BTreeSet};

use podnet_model::netpol::{Direction, End, Policies, Side};
use podnet_model::{Cluster, Protocol};
use serde::Serialize;

/// The page's script and styles, with the data put in its place.
const TEMPLATE: &str = include_str!("../assets/map.html");

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub nodes: Vec<NodeView>,
    pub pods: Vec<PodView>,
    pub services: Vec<ServiceView>,
    /// Ingresses and Gateways, each with the Services its routes send to.
    pub edges: Vec<EdgeView>,
    /// The NetworkPolicies, namespace/name.
    pub policies: Vec<String>,
    /// The rules that allow connections (`NetworkPolicy ns/name spec.ingress[0]`), indexed
    /// by the matrices' cells.
    pub rules: Vec<String>,
    /// One matrix per port.
    pub matrices: Vec<Matrix>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub ips: Vec<String>,
    pub pod_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    /// namespace/name.
    pub key: String,
    pub node: Option<String>,
    pub ips: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub host_network: bool,
    /// The policies that isolate it for ingress, for egress.
    pub ingress_by: Vec<String>,
    pub egress_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub key: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub cluster_ips: Vec<String>,
    /// `80/TCP`.
    pub ports: Vec<String>,
    /// The pods behind it (namespace/name), ready or not.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    /// `Ingress` or `Gateway`.
    pub kind: String,
    pub key: String,
    /// Each route: what it matches (`host/path`) and the Service it sends to (namespace/name).
    pub routes: Vec<(String, String)>,
}

/// Who may reach whom on one port: `cells[i][j]` from `pods[i]` to `pods[j]` (the view's pod
/// order, the pods that have an address), each side as a number: -1 not isolated, -2
/// isolated and denied, k >= 0 allowed by `rules[k]`; `[egress of i, ingress of j]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matrix {
    pub port: u16,
    pub protocol: Protocol,
    /// Indices into the view's pods.
    pub pods: Vec<usize>,
    pub cells: Vec<Vec<[i32; 2]>>,
}

/// How many ports get a matrix: the pods' most common container ports.
const PORTS: usize = 4;

impl View {
    pub fn of(cluster: &Cluster) -> View {
        let policies = Policies::of(cluster);
        let names = |v: Vec<podnet_model::NsName>| v.iter().map(ToString::to_string).collect();
        let pods: Vec<PodView> = cluster
            .pods
            .iter()
            .map(|p| PodView {
                key: p.key().to_string(),
                node: p.node.clone(),
                ips: p.ips.iter().map(ToString::to_string).collect(),
                labels: p.labels.clone().into_iter().collect(),
                ready: p.ready,
                host_network: p.host_network,
                ingress_by: names(policies.selecting(p, Direction::Ingress)),
                egress_by: names(policies.selecting(p, Direction::Egress)),
            })
            .collect();
        let index: BTreeMap<std::net::IpAddr, usize> = cluster
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.host_network)
            .flat_map(|(i, p)| p.ips.iter().map(move |ip| (*ip, i)))
            .collect();
        let services = cluster
            .services
            .iter()
            .map(|s| ServiceView {
                key: format!("{}/{}", s.namespace, s.name),
                service_type: format!("{:?}", s.service_type),
                cluster_ips: s.cluster_ips.iter().map(ToString::to_string).collect(),
                ports: s
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.port, p.protocol))
                    .collect(),
                endpoints: s
                    .endpoints()
                    .flat_map(|(_, e)| e.addresses.iter())
                    .filter_map(|ip| index.get(ip))
                    .map(|&i| pods[i].key.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            })
            .collect();
        let mut rules = Vec::new();
        let matrices = ports(cluster)
            .into_iter()
            .map(|(port, protocol)| matrix(cluster, &policies, port, protocol, &mut rules))
            .collect();
        View {
            nodes: cluster
                .nodes
                .iter()
                .map(|n| NodeView {
                    name: n.name.clone(),
                    ips: n.internal_ips().iter().map(ToString::to_string).collect(),
                    pod_cidrs: n.pod_cidrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            pods,
            services,
            edges: edges(cluster),
            policies: cluster
                .network_policies
                .iter()
                .map(|p| {
                    let m = &p.obj.metadata;
                    format!(
                        "{}/{}",
                        m.namespace.as_deref().unwrap_or("default"),
                        m.name.as_deref().unwrap_or_default()
                    )
                })
                .collect(),
            rules,
            matrices,
        }
    }
}

/// The ports the matrices are of: the pods' most common container ports (TCP first, then by
/// how many pods open them), 80/TCP when none.
fn ports(cluster: &Cluster) -> Vec<(u16, Protocol)> {
    let mut count: BTreeMap<(u16, Protocol), usize> = BTreeMap::new();
    for p in &cluster.pods {
        for c in &p.ports {
            if let Ok(port) = u16::try_from(c.container_port) {
                *count.entry((port, c.protocol)).or_default() += 1;
            }
        }
    }
    let mut v: Vec<((u16, Protocol), usize)> = count.into_iter().collect();
    v.sort_by(|a, b| {
        (a.0 .1 != Protocol::Tcp, std::cmp::Reverse(a.1), a.0 .0).cmp(&(
            b.0 .1 != Protocol::Tcp,
            std::cmp::Reverse(b.1),
            b.0 .0,
        ))
    });
    let mut out: Vec<(u16, Protocol)> = v.into_iter().take(PORTS).map(|(k, _)| k).collect();
    if out.is_empty() {
        out.push((80, Protocol::Tcp));
    }
    out
}

fn matrix(
    cluster: &Cluster,
    policies: &Policies<'_>,
    port: u16,
    protocol: Protocol,
    rules: &mut Vec<String>,
) -> Matrix {
    let pods: Vec<usize> = cluster
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.host_network && !p.ips.is_empty())
        .map(|(i, _)| i)
        .collect();
    let mut rule_index: BTreeMap<String, i32> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.clone(), i as i32))
        .collect();
    let mut index = |text: String| -> i32 {
        *rule_index.entry(text.clone()).or_insert_with(|| {
            rules.push(text);
            rules.len() as i32 - 1
        })
    };
    let mut side = |s: &Side| -> i32 {
        match s {
            Side::NotIsolated => -1,
            Side::Denied { .. } => -2,
            Side::Allowed { rule, .. } => index(rule.to_string()),
            // A ClusterNetworkPolicy's rule: its index when it allows, -3 - its index when it
            // denies.
            Side::Cluster { rule, allowed } => {
                let i = index(rule.to_string());
                if *allowed {
                    i
                } else {
                    -3 - i
                }
            }
        }
    };
    let cells = pods
        .iter()
        .map(|&i| {
            pods.iter()
                .map(|&j| {
                    let (from, to) = (&cluster.pods[i], &cluster.pods[j]);
                    let v = policies.judge(End::Pod(from), End::Pod(to), port, protocol);
                    [side(&v.egress), side(&v.ingress)]
                })
                .collect()
        })
        .collect();
    Matrix {
        port,
        protocol,
        pods,
        cells,
    }
}

/// The Ingresses and Gateways, with the Services their routes send to.
fn edges(cluster: &Cluster) -> Vec<EdgeView> {
    let mut out = Vec::new();
    for i in &cluster.ingresses {
        let m = &i.obj.metadata;
        let ns = m.namespace.as_deref().unwrap_or("default");
        let mut routes = Vec::new();
        let spec = i.obj.spec.as_ref();
        if let Some(b) = spec
            .and_then(|s| s.default_backend.as_ref())
            .and_then(|b| b.service.as_ref())
        {
            routes.push(("(default)".to_string(), format!("{ns}/{}", b.name)));
        }
        for r in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
            let host = r.host.as_deref().unwrap_or("*");
            for p in r.http.iter().flat_map(|h| &h.paths) {
                if let Some(svc) = &p.backend.service {
                    let path = p.path.as_deref().unwrap_or("/");
                    routes.push((format!("{host}{path}"), format!("{ns}/{}", svc.name)));
                }
            }
        }
        out.push(EdgeView {
            kind: "Ingress".into(),
            key: format!("{ns}/{}", m.name.as_deref().unwrap_or_default()),
            routes,
        });
    }
    for g in &cluster.gateways {
        let gm = &g.obj.metadata;
        let gns = gm.namespace.as_deref().unwrap_or("default");
        let gname = gm.name.as_deref().unwrap_or_default();
        let mut routes = Vec::new();
        for r in &cluster.http_routes {
            let rm = &r.obj.metadata;
            let rns = rm.namespace.as_deref().unwrap_or("default");
            let attached = r
                .obj
                .spec
                .parent_refs
                .iter()
                .any(|p| p.name == gname && p.namespace.as_deref().unwrap_or(rns) == gns);
            if !attached {
                continue;
            }
            let hosts = if r.obj.spec.hostnames.is_empty() {
                "*".to_string()
            } else {
                r.obj.spec.hostnames.join(",")
            };
            for rule in r.obj.spec.rules.iter().flatten() {
                let path = rule
                    .matches
                    .iter()
                    .flatten()
                    .find_map(|m| m.path.as_ref().and_then(|p| p.value.clone()))
                    .unwrap_or_else(|| "/".into());
                for b in rule.backend_refs.iter().flatten() {
                    let bns = b.namespace.as_deref().unwrap_or(rns);
                    routes.push((format!("{hosts}{path}"), format!("{bns}/{}", b.name)));
                }
            }
        }
        out.push(EdgeView {
            kind: "Gateway".into(),
            key: format!("{gns}/{gname}"),
            routes,
        });
    }
    out
}

/// The page: the view's data in the template, and, live, the URL of the flows' stream
/// (server-sent events) it follows.
pub fn page(view: &View, title: &str, flows: Option<&str>) -> String {
    // `</` in the data cannot end the script element it sits in.
    let data = serde_json::to_string(view)
        .expect("a view is JSON")
        .replace("</", "<\\/");
    let flows = serde_json::to_string(&flows).expect("JSON");
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    TEMPLATE
        .replace("/*DATA*/null", &data)
        .replace("/*FLOWS*/null", &flows)
        .replace("<!--TITLE-->", &title)
}
