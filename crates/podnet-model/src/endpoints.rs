//! Endpoints, as the EndpointSlice controller computes them.
//!
//! For a Service with a selector, every pod in its namespace whose labels match, that has an IP
//! and is not finished (Succeeded or Failed), becomes an endpoint with the conditions
//! (`pkg/controller/endpointslice`, `podToEndpoint`):
//! - `serving` = the pod is Ready;
//! - `terminating` = the pod has a deletionTimestamp;
//! - `ready` = `publishNotReadyAddresses || (serving && !terminating)`.
//!
//! Each Service port resolves its targetPort pod by pod: a number is used as is; a name is looked
//! up among the pod's container ports with the same protocol, and a pod without it gets no such
//! port. Endpoints with the same resolved ports share a slice, at most 100 per slice. An endpoint
//! gets a `hostname` when the pod sets `spec.hostname` and its `spec.subdomain` names the Service.
//!
//! Services without a selector take user EndpointSlices labelled
//! `kubernetes.io/service-name: <service>` (and mirrored v1 Endpoints) as they are; kube-proxy
//! also honours user slices beside the controller's.

use std::collections::{BTreeMap, HashMap};

use crate::model::{
    Cluster, EndpointInfo, EndpointPortInfo, EndpointSliceInfo, IpFamily, Labels, NsName, PodInfo,
    ServiceInfo, TargetPort, MANAGED_BY_CONTROLLER,
};
use crate::names::{fnv64, suffix5};

/// Maximum endpoints in one slice (kube-controller-manager's --max-endpoints-per-slice default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Per-namespace index: label (key, value) → pod positions.
pub struct LabelIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
    by_ns: HashMap<&'a str, Vec<usize>>,
}

impl<'a> LabelIndex<'a> {
    pub fn new(pods: &'a [PodInfo]) -> Self {
        let mut by_label: HashMap<_, Vec<usize>> = HashMap::new();
        let mut by_ns: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            by_ns.entry(p.namespace.as_str()).or_default().push(i);
            for (k, v) in &p.labels {
                by_label
                    .entry((p.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        LabelIndex { by_label, by_ns }
    }

    /// Positions of the pods in `ns` that a map selector selects. An empty selector selects all.
    pub fn select(&self, pods: &[PodInfo], ns: &str, selector: &Labels) -> Vec<usize> {
        let mut smallest: Option<&Vec<usize>> = None;
        for (k, v) in selector {
            match self.by_label.get(&(ns, k.as_str(), v.as_str())) {
                None => return Vec::new(),
                Some(list) => {
                    if smallest.is_none_or(|s| list.len() < s.len()) {
                        smallest = Some(list);
                    }
                }
            }
        }
        let candidates = match smallest {
            Some(l) => l,
            None => match self.by_ns.get(ns) {
                Some(l) => l,
                None => return Vec::new(),
            },
        };
        candidates
            .iter()
            .copied()
            .filter(|&i| crate::model::selector_matches(selector, &pods[i].labels))
            .collect()
    }
}

/// Recomputes the endpoint slices of every Service.
pub fn compute_all(cluster: &mut Cluster) {
    let index = LabelIndex::new(&cluster.pods);
    let mut user: HashMap<&NsName, Vec<&EndpointSliceInfo>> = HashMap::new();
    for (svc, slice) in &cluster.user_slices {
        user.entry(svc).or_default().push(slice);
    }
    let mut result = Vec::with_capacity(cluster.services.len());
    for svc in &cluster.services {
        let mut slices = match &svc.selector {
            Some(sel) if svc.external_name.is_none() => {
                let selected = index.select(&cluster.pods, &svc.namespace, sel);
                controller_slices(svc, selected.into_iter().map(|i| &cluster.pods[i]))
            }
            _ => Vec::new(),
        };
        if let Some(extra) = user.get(&svc.key()) {
            slices.extend(extra.iter().map(|s| (*s).clone()));
        }
        result.push(slices);
    }
    for (svc, slices) in cluster.services.iter_mut().zip(result) {
        svc.endpoint_slices = slices;
    }
}

/// The address types a Service's slices have (`getAddressTypesForService`): its
/// `ipFamilies`, else the families of its ClusterIPs, else IPv4.
pub fn address_types(svc: &ServiceInfo) -> Vec<IpFamily> {
    if !svc.ip_families.is_empty() {
        return svc.ip_families.clone();
    }
    let mut families: Vec<IpFamily> = Vec::new();
    for ip in &svc.cluster_ips {
        if !families.contains(&IpFamily::of(*ip)) {
            families.push(IpFamily::of(*ip));
        }
    }
    if families.is_empty() {
        families.push(IpFamily::Ipv4);
    }
    families
}

/// The slices the EndpointSlice controller makes for `svc` from the pods it selects: for
/// each of its address types, the pods' addresses of that family (a pod without one is no
/// endpoint of that type).
pub fn controller_slices<'a>(
    svc: &ServiceInfo,
    pods: impl Iterator<Item = &'a PodInfo> + Clone,
) -> Vec<EndpointSliceInfo> {
    let mut slices = Vec::new();
    for family in address_types(svc) {
        family_slices(svc, pods.clone(), family, &mut slices);
    }
    slices
}

fn family_slices<'a>(
    svc: &ServiceInfo,
    pods: impl Iterator<Item = &'a PodInfo>,
    family: IpFamily,
    slices: &mut Vec<EndpointSliceInfo>,
) {
    let mut groups: BTreeMap<Vec<EndpointPortInfo>, Vec<EndpointInfo>> = BTreeMap::new();
    for pod in pods {
        let Some(address) = pod
            .ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(*ip) == family)
        else {
            continue;
        };
        if pod.phase == "Succeeded" || pod.phase == "Failed" {
            continue;
        }
        let mut ports = Vec::with_capacity(svc.ports.len());
        for sp in &svc.ports {
            let port = match &sp.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => pod.find_port(name, sp.protocol),
            };
            if let Some(port) = port {
                ports.push(EndpointPortInfo {
                    name: sp.name.clone(),
                    port,
                    protocol: sp.protocol,
                });
            }
        }
        // A Service that has ports but none resolves in this pod gets no endpoint from it.
        if !svc.ports.is_empty() && ports.is_empty() {
            continue;
        }
        let serving = pod.ready;
        let ready = svc.publish_not_ready_addresses || (serving && !pod.terminating);
        let hostname = match (&pod.hostname, &pod.subdomain) {
            (Some(h), Some(sd)) if !h.is_empty() && *sd == svc.name => Some(h.clone()),
            _ => None,
        };
        groups.entry(ports).or_default().push(EndpointInfo {
            addresses: vec![address],
            ready,
            serving,
            terminating: pod.terminating,
            hostname,
            node_name: pod.node.clone(),
            pod: Some(pod.name.clone()),
        });
    }
    for (ports, eps) in groups {
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            let seed = fnv64(&[
                svc.namespace.as_bytes(),
                svc.name.as_bytes(),
                &(slices.len() as u64).to_le_bytes(),
            ]);
            slices.push(EndpointSliceInfo {
                name: format!("{}-{}", svc.name, suffix5(seed)),
                address_type: family.as_str().to_string(),
                managed_by: MANAGED_BY_CONTROLLER.to_string(),
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerPortInfo, ServicePortInfo, ServiceType};

    fn pod(name: &str, ip: &str, port_name: &str, port: i32) -> PodInfo {
        PodInfo {
            namespace: "default".into(),
            name: name.into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            node: Some("node-0".into()),
            ips: vec![ip.parse().unwrap()],
            phase: "Running".into(),
            ready: true,
            terminating: false,
            host_network: false,
            hostname: None,
            subdomain: None,
            containers: vec!["c".into()],
            ports: vec![ContainerPortInfo {
                container: "c".into(),
                name: Some(port_name.into()),
                container_port: port,
                protocol: crate::Protocol::Tcp,
            }],
            owner: None,
            spec: Default::default(),
        }
    }

    fn svc(target: TargetPort) -> ServiceInfo {
        ServiceInfo {
            namespace: "default".into(),
            name: "web".into(),
            service_type: ServiceType::ClusterIP,
            labels: Labels::new(),
            selector: Some([("app".to_string(), "web".to_string())].into()),
            cluster_ips: vec!["10.96.0.5".parse().unwrap()],
            ports: vec![ServicePortInfo {
                name: "http".into(),
                protocol: crate::Protocol::Tcp,
                port: 80,
                target_port: target,
                node_port: None,
                app_protocol: None,
            }],
            ..ServiceInfo::default()
        }
    }

    #[test]
    fn named_target_port_resolves_per_pod() {
        let pods = [
            pod("a", "10.244.0.2", "web", 8080),
            pod("b", "10.244.0.3", "web", 9090),
            pod("c", "10.244.0.4", "other", 1),
        ];
        let slices = controller_slices(&svc(TargetPort::Name("web".into())), pods.iter());
        assert_eq!(
            slices.len(),
            2,
            "two port mappings, two slices; pod c lacks the port"
        );
        let mut got: Vec<(i32, String)> = slices
            .iter()
            .map(|s| (s.ports[0].port, s.endpoints[0].pod.clone().unwrap()))
            .collect();
        got.sort();
        assert_eq!(got, [(8080, "a".to_string()), (9090, "b".to_string())]);
    }

    #[test]
    fn conditions_follow_the_controller() {
        let mut p = pod("a", "10.244.0.2", "web", 8080);
        p.ready = false;
        let mut t = pod("t", "10.244.0.3", "web", 8080);
        t.terminating = true;
        let mut s = svc(TargetPort::Number(8080));
        let sl = controller_slices(&s, [p.clone(), t.clone()].iter());
        let eps: Vec<_> = sl[0]
            .endpoints
            .iter()
            .map(|e| (e.ready, e.serving, e.terminating))
            .collect();
        assert_eq!(eps, [(false, false, false), (false, true, true)]);
        s.publish_not_ready_addresses = true;
        let sl = controller_slices(&s, [p, t].iter());
        assert!(sl[0].endpoints.iter().all(|e| e.ready));
    }

    #[test]
    fn hostname_needs_matching_subdomain() {
        let mut p = pod("web-0", "10.244.0.2", "web", 8080);
        p.hostname = Some("web-0".into());
        p.subdomain = Some("web".into());
        let mut q = pod("web-1", "10.244.0.3", "web", 8080);
        q.hostname = Some("web-1".into());
        q.subdomain = Some("other".into());
        let sl = controller_slices(&svc(TargetPort::Number(8080)), [p, q].iter());
        let hs: Vec<_> = sl[0].endpoints.iter().map(|e| e.hostname.clone()).collect();
        assert_eq!(hs, [Some("web-0".to_string()), None]);
    }

    #[test]
    fn slices_hold_at_most_100() {
        let pods: Vec<_> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.244.{}.{}", i / 200, 2 + i % 200),
                    "web",
                    80,
                )
            })
            .collect();
        let sl = controller_slices(&svc(TargetPort::Number(80)), pods.iter());
        assert_eq!(
            sl.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let names: std::collections::BTreeSet<_> = sl.iter().map(|s| &s.name).collect();
        assert_eq!(names.len(), 3);
    }
}
