//! EndpointSlices given by the user, the EndpointSliceMirroring controller (v1 Endpoints to
//! slices), and the warnings a user wants about a Service's endpoints before deploying.

use super::*;

impl Builder {
    /// User EndpointSlices and mirrored Endpoints, by Service.
    pub(super) fn user_slices(
        &mut self,
        objects: &[Object],
        infos: &[ServiceInfo],
    ) -> Vec<(NsName, EndpointSliceInfo)> {
        let mut user = Vec::new();
        let by_key: BTreeMap<NsName, &ServiceInfo> = infos.iter().map(|s| (s.key(), s)).collect();
        for o in objects {
            match o {
                Object::EndpointSlice(es) => {
                    let ns = es.obj.metadata.namespace.clone().unwrap_or_default();
                    let svc_name = podnet_model::model::slice_service(&es.obj).cloned();
                    let Some(svc_name) = svc_name else {
                        self.diags.push(Diagnostic::warning(Some(es.start.clone()), "EndpointSlice has no kubernetes.io/service-name label; no Service uses it".into()).with_object(oref_of(o)));
                        continue;
                    };
                    let key = NsName::new(&ns, &svc_name);
                    // `default/kubernetes` is built in when the manifests do not define it.
                    if !by_key.contains_key(&key) && key != NsName::new("default", "kubernetes") {
                        self.diags.push(
                            Diagnostic::warning(
                                Some(es.start.clone()),
                                format!("EndpointSlice is for Service {key}, which does not exist"),
                            )
                            .with_object(oref_of(o)),
                        );
                    }
                    if es.obj.address_type == "FQDN" {
                        continue; // kube-proxy ignores FQDN slices.
                    }
                    user.push((key, user_slice(&es.obj)));
                }
                Object::Endpoints(ep) => {
                    let ns = ep.obj.metadata.namespace.clone().unwrap_or_default();
                    let name = ep.obj.metadata.name.clone().unwrap_or_default();
                    let key = NsName::new(&ns, &name);
                    match by_key.get(&key) {
                        // The mirroring controller skips Services with a selector.
                        Some(s) if s.selector.is_none() => user.extend(mirror_endpoints(&ep.obj).into_iter().map(|sl| (key.clone(), sl))),
                        Some(_) => self.diags.push(Diagnostic::warning(Some(ep.start.clone()), format!("Endpoints {key} is ignored: Service {key} has a selector, so its endpoints come from its pods")).with_object(oref_of(o))),
                        None => self.diags.push(Diagnostic::warning(Some(ep.start.clone()), format!("Endpoints {key} has no Service of the same name")).with_object(oref_of(o))),
                    }
                }
                _ => {}
            }
        }

        user
    }
}

/// The EndpointSliceMirroring controller: one slice per subset of a v1 Endpoints.
pub(super) fn mirror_endpoints(
    ep: &k8s_openapi::api::core::v1::Endpoints,
) -> Vec<EndpointSliceInfo> {
    let name = ep.metadata.name.clone().unwrap_or_default();
    ep.subsets
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ss)| {
            let mut endpoints = Vec::new();
            for (ready, list) in [(true, &ss.addresses), (false, &ss.not_ready_addresses)] {
                for a in list.iter().flatten() {
                    endpoints.push(EndpointInfo {
                        addresses: a.ip.parse().into_iter().collect(),
                        ready,
                        serving: ready,
                        terminating: false,
                        hostname: a.hostname.clone(),
                        node_name: a.node_name.clone(),
                        pod: a
                            .target_ref
                            .as_ref()
                            .filter(|r| r.kind.as_deref() == Some("Pod"))
                            .and_then(|r| r.name.clone()),
                    });
                }
            }
            EndpointSliceInfo {
                name: format!(
                    "{name}-{}",
                    suffix5(fnv64(&[name.as_bytes(), &(i as u64).to_le_bytes()]))
                ),
                address_type: "IPv4".into(),
                managed_by: podnet_model::model::MANAGED_BY_MIRRORING.into(),
                ports: ss
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| EndpointPortInfo {
                        name: p.name.clone().unwrap_or_default(),
                        port: p.port,
                        protocol: Protocol::of_checked(p.protocol.as_deref()),
                    })
                    .collect(),
                endpoints,
            }
        })
        .collect()
}

/// Warnings a user wants before deploying: Services that select nothing, named targetPorts
/// that a selected pod lacks.
pub(super) fn endpoint_warnings(
    cluster: &Cluster,
    objects: &[Object],
    diags: &mut Vec<Diagnostic>,
) {
    let srcs: HashMap<NsName, &Sourced<Service>> = objects
        .iter()
        .filter_map(|o| {
            if let Object::Service(s) = o {
                Some(s)
            } else {
                None
            }
        })
        .map(|s| {
            (
                NsName::new(
                    s.obj.metadata.namespace.as_deref().unwrap_or(""),
                    s.obj.metadata.name.as_deref().unwrap_or(""),
                ),
                s,
            )
        })
        .collect();
    let index = podnet_model::endpoints::LabelIndex::new(&cluster.pods);
    for svc in &cluster.services {
        let (Some(sel), Some(src)) = (&svc.selector, srcs.get(&svc.key())) else {
            continue;
        };
        if svc.service_type == ServiceType::ExternalName {
            continue;
        }
        let oref = ObjectRef::new("Service", Some(&svc.namespace), &svc.name);
        let selected: Vec<&PodInfo> = index
            .select(&cluster.pods, &svc.namespace, sel)
            .into_iter()
            .map(|i| &cluster.pods[i])
            .collect();
        if selected.is_empty() {
            let sel_str = sel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            diags.push(Diagnostic::warning(Some(src.locate("spec.selector")), format!("selector {sel_str} selects no pod in namespace {}; the Service has no endpoints", svc.namespace)).with_object(oref.clone()).with_field("spec.selector"));
            continue;
        }
        for (i, p) in svc.ports.iter().enumerate() {
            let TargetPort::Name(name) = &p.target_port else {
                continue;
            };
            let lacking: Vec<&str> = selected
                .iter()
                .filter(|pod| pod.find_port(name, p.protocol).is_none())
                .map(|pod| pod.name.as_str())
                .collect();
            if !lacking.is_empty() {
                let shown = lacking
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = if lacking.len() > 5 {
                    format!(" and {} more", lacking.len() - 5)
                } else {
                    String::new()
                };
                let field = format!("spec.ports[{i}].targetPort");
                diags.push(Diagnostic::warning(Some(src.locate(&field)), format!("targetPort {name:?} ({}) is not a named container port of pod(s) {shown}{more}; they get no endpoint for this port", p.protocol)).with_object(oref.clone()).with_field(field));
            }
        }
    }
}
