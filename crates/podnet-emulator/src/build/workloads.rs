//! The workload controllers: pods from Deployments (through their ReplicaSets), ReplicaSets,
//! StatefulSets and DaemonSets, with the names those controllers give them.

use super::*;

impl Builder {
    /// Pods from bare Pods and from workloads, named as their controllers name them.
    pub(super) fn pod_sources(&mut self, objects: &[Object], nodes: &[NodeInfo]) -> Vec<PodSource> {
        // Names of bare pods are taken first so that generated names avoid them.
        for o in objects {
            if let Object::Pod(p) = o {
                if let Some(n) = p.obj.metadata.name.as_deref().filter(|n| !n.is_empty()) {
                    self.used_names.insert(NsName::new(
                        p.obj.metadata.namespace.as_deref().unwrap_or("default"),
                        n,
                    ));
                }
            }
        }
        let mut sorted: Vec<&Object> = objects.iter().collect();
        // The built-in cluster DNS pods are placed first, as kind's sit on its control plane:
        // they keep their nodes and addresses whatever the user's workloads do.
        let builtin_dns = self.builtin_dns;
        sorted.sort_by_cached_key(|o| {
            let dns = builtin_dns
                && matches!(o, Object::Deployment(_))
                && is_named(
                    o,
                    podnet_model::dns::DNS_NAMESPACE,
                    podnet_model::dns::DNS_DEPLOYMENT,
                );
            (!dns, kind_order(o), oref_of(o))
        });
        let mut out = Vec::new();
        for o in sorted {
            let ns = meta_of(o)
                .and_then(|m| m.namespace.clone())
                .unwrap_or_default();
            let name = meta_of(o).and_then(|m| m.name.clone()).unwrap_or_default();
            match o {
                Object::Pod(p) => out.push(self.bare_pod(p, &ns)),
                Object::Deployment(d) => {
                    let spec = &d.obj.spec;
                    let hash =
                        template_hash(&serde_json::to_string(&spec.template).expect("serializes"));
                    let rs = format!("{name}-{hash}");
                    self.replicas(
                        &ns,
                        &rs,
                        &spec.template,
                        spec.replicas.unwrap_or(1),
                        Some(&hash),
                        &mut out,
                    );
                }
                Object::ReplicaSet(r) => {
                    let spec = &r.obj.spec;
                    let t = spec.template.clone().unwrap_or_default();
                    self.replicas(&ns, &name, &t, spec.replicas.unwrap_or(1), None, &mut out);
                }
                Object::StatefulSet(s) => self.stateful_set(s, &ns, &name, &mut out),
                Object::DaemonSet(d) => self.daemon_set(d, &ns, &name, nodes, &mut out),
                _ => {}
            }
        }
        out
    }

    /// A StatefulSet's pods: `<name>-<i>`, each its own hostname under the governing Service.
    fn stateful_set(
        &mut self,
        s: &Sourced<k8s_openapi::api::apps::v1::StatefulSet>,
        ns: &str,
        name: &str,
        out: &mut Vec<PodSource>,
    ) {
        let spec = &s.obj.spec;
        let rev = format!(
            "{name}-{}",
            template_hash(&serde_json::to_string(&spec.template).expect("serializes"))
        );
        let shared = Arc::new(spec.template.spec.clone().unwrap_or_default());
        for i in 0..spec.replicas.unwrap_or(1).max(0) {
            let pod_name = format!("{name}-{i}");
            self.used_names.insert(NsName::new(ns, &pod_name));
            let mut src = PodSource::from_template(
                ns,
                pod_name.clone(),
                &spec.template,
                shared.clone(),
                OwnerInfo {
                    kind: "StatefulSet".into(),
                    name: name.to_string(),
                },
            );
            src.labels.insert(
                "statefulset.kubernetes.io/pod-name".into(),
                pod_name.clone(),
            );
            src.labels
                .insert("apps.kubernetes.io/pod-index".into(), i.to_string());
            src.labels
                .insert("controller-revision-hash".into(), rev.clone());
            src.hostname = Some(pod_name);
            src.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
            out.push(src);
        }
    }

    /// A DaemonSet's pods: one on each node its node selector matches.
    fn daemon_set(
        &mut self,
        d: &Sourced<k8s_openapi::api::apps::v1::DaemonSet>,
        ns: &str,
        name: &str,
        nodes: &[NodeInfo],
        out: &mut Vec<PodSource>,
    ) {
        let spec = &d.obj.spec;
        let hash = template_hash(&serde_json::to_string(&spec.template).expect("serializes"));
        let sel = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default();
        let shared = Arc::new(spec.template.spec.clone().unwrap_or_default());
        for node in nodes.iter().filter(|n| selector_matches(&sel, &n.labels)) {
            let pod_name = unique_name(&mut self.used_names, ns, |salt| {
                generate_name(
                    &format!("{name}-"),
                    fnv64(&[
                        ns.as_bytes(),
                        name.as_bytes(),
                        node.name.as_bytes(),
                        &salt.to_le_bytes(),
                    ]),
                )
            });
            let mut src = PodSource::from_template(
                ns,
                pod_name,
                &spec.template,
                shared.clone(),
                OwnerInfo {
                    kind: "DaemonSet".into(),
                    name: name.to_string(),
                },
            );
            src.labels
                .insert("controller-revision-hash".into(), hash.clone());
            src.labels
                .insert("pod-template-generation".into(), "1".into());
            Arc::make_mut(&mut src.spec).node_name = Some(node.name.clone());
            out.push(src);
        }
    }

    pub(super) fn replicas(
        &mut self,
        ns: &str,
        rs: &str,
        t: &k8s_openapi::api::core::v1::PodTemplateSpec,
        n: i32,
        hash: Option<&str>,
        out: &mut Vec<PodSource>,
    ) {
        let shared = Arc::new(t.spec.clone().unwrap_or_default());
        for i in 0..n.max(0) {
            let pod_name = unique_name(&mut self.used_names, ns, |salt| {
                generate_name(
                    &format!("{rs}-"),
                    fnv64(&[
                        ns.as_bytes(),
                        rs.as_bytes(),
                        &(i as u64).to_le_bytes(),
                        &salt.to_le_bytes(),
                    ]),
                )
            });
            let mut src = PodSource::from_template(
                ns,
                pod_name,
                t,
                shared.clone(),
                OwnerInfo {
                    kind: "ReplicaSet".into(),
                    name: rs.to_string(),
                },
            );
            if let Some(h) = hash {
                src.labels.insert("pod-template-hash".into(), h.to_string());
            }
            out.push(src);
        }
    }

    pub(super) fn bare_pod(
        &mut self,
        p: &Sourced<k8s_openapi::api::core::v1::Pod>,
        ns: &str,
    ) -> PodSource {
        let meta = &p.obj.metadata;
        let name = match meta.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let base = meta.generate_name.clone().unwrap_or_default();
                unique_name(&mut self.used_names, ns, |salt| {
                    generate_name(
                        &base,
                        fnv64(&[ns.as_bytes(), base.as_bytes(), &salt.to_le_bytes()]),
                    )
                })
            }
        };
        pod_source(p, ns, name)
    }
}

pub(super) fn kind_order(o: &Object) -> u8 {
    match o {
        Object::Pod(_) => 0,
        Object::StatefulSet(_) => 1,
        Object::Deployment(_) => 2,
        Object::ReplicaSet(_) => 3,
        Object::DaemonSet(_) => 4,
        _ => 9,
    }
}

/// The set of names already used in a namespace, to keep generated names unique.
pub(super) fn unique_name(
    used: &mut BTreeSet<NsName>,
    ns: &str,
    make: impl Fn(u64) -> String,
) -> String {
    let mut salt = 0u64;
    loop {
        let n = make(salt);
        if used.insert(NsName::new(ns, &n)) {
            return n;
        }
        salt += 1;
    }
}
