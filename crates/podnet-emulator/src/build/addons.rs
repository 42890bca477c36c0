//! What a cluster with podnet installed has beside the user's objects, added when the
//! manifests need it and bring none: the cluster DNS (CoreDNS' Service and pods, served by
//! podnet's DNS server), the Ingress controller and its IngressClass, the GatewayClass, and
//! each Gateway's proxy (a Deployment and a LoadBalancer Service in `podnet-system`).

use super::*;

/// Which of the cluster's objects podnet added.
pub(super) struct Builtins {
    pub(super) dns: bool,
    ingress: bool,
    /// The names of the Gateways' proxies.
    gateway_infra: Vec<String>,
}

impl Builtins {
    /// Whether the Service is one podnet added.
    pub(super) fn owns(&self, s: &ServiceInfo) -> bool {
        (self.dns
            && s.namespace == podnet_model::dns::DNS_NAMESPACE
            && s.name == podnet_model::dns::DNS_SERVICE)
            || (self.ingress
                && s.namespace == podnet_model::edge::INGRESS_NAMESPACE
                && s.name == podnet_model::edge::INGRESS_SERVICE)
            || (s.namespace == podnet_model::gateway::GATEWAY_NAMESPACE
                && self.gateway_infra.contains(&s.name))
    }
}

/// Adds what the objects need of podnet's own.
pub(super) fn add(
    objects: &mut Vec<Object>,
    config: &ClusterConfig,
    diags: &mut Vec<Diagnostic>,
) -> Builtins {
    let dns = cluster_dns(objects, config, diags);
    let ingress = ingress_controller(objects, diags);
    gateway_class(objects, diags);
    let gateway_infra = gateway_proxies(objects, diags);
    Builtins {
        dns,
        ingress,
        gateway_infra,
    }
}

/// The cluster DNS, unless the manifests define `kube-system/kube-dns`.
fn cluster_dns(
    objects: &mut Vec<Object>,
    config: &ClusterConfig,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let builtin_dns = !objects.iter().any(|o| {
        matches!(o, Object::Service(_))
            && is_named(
                o,
                podnet_model::dns::DNS_NAMESPACE,
                podnet_model::dns::DNS_SERVICE,
            )
    });
    if builtin_dns {
        let docs = podnet_model::source::parse_documents(
            "<podnet: cluster DNS>",
            &podnet_model::dns::builtin_manifests(config),
        )
        .expect("the built-in cluster DNS manifests parse");
        decode_into(&docs, objects, diags);
    }
    builtin_dns
}

/// The Ingress controller, when Ingresses need one and the manifests bring none.
fn ingress_controller(objects: &mut Vec<Object>, diags: &mut Vec<Diagnostic>) -> bool {
    let builtin_ingress = objects.iter().any(|o| matches!(o, Object::Ingress(_)))
        && !objects.iter().any(|o| {
            matches!(o, Object::Service(_))
                && is_named(
                    o,
                    podnet_model::edge::INGRESS_NAMESPACE,
                    podnet_model::edge::INGRESS_SERVICE,
                )
        });
    if builtin_ingress {
        let has_class = objects.iter().any(|o| {
            matches!(o, Object::IngressClass(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(podnet_model::edge::INGRESS_CLASS)
        });
        let has_namespace = objects.iter().any(|o| {
            matches!(o, Object::Namespace(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(podnet_model::edge::INGRESS_NAMESPACE)
        });
        let text = podnet_model::edge::builtin_manifests(has_class);
        let docs = podnet_model::source::parse_documents("<podnet: Ingress controller>", &text)
            .expect("the built-in Ingress controller's manifests parse");
        let before = objects.len();
        decode_into(&docs, objects, diags);
        if has_namespace {
            // The user's own podnet-system Namespace stands (its labels, say).
            let mut i = before;
            while i < objects.len() {
                if matches!(objects[i], Object::Namespace(_)) {
                    objects.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
    builtin_ingress
}

/// podnet's GatewayClass, when the manifests have Gateways and no class of that name.
fn gateway_class(objects: &mut Vec<Object>, diags: &mut Vec<Diagnostic>) {
    let has_gateways = objects.iter().any(|o| matches!(o, Object::Gateway(_)));
    if has_gateways
        && !objects.iter().any(|o| {
            matches!(o, Object::GatewayClass(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(podnet_model::gateway::GATEWAY_CLASS)
        })
    {
        let docs = podnet_model::source::parse_documents(
            "<podnet: GatewayClass>",
            &podnet_model::gateway::class_manifest(),
        )
        .expect("the built-in GatewayClass parses");
        decode_into(&docs, objects, diags);
    }
}

/// Each Gateway of podnet's class: its proxy's Deployment and Service; their names.
fn gateway_proxies(objects: &mut Vec<Object>, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    let ours: Vec<String> = objects
        .iter()
        .filter_map(|o| match o {
            Object::GatewayClass(c)
                if c.obj.spec.controller_name == podnet_model::gateway::GATEWAY_CONTROLLER =>
            {
                c.obj.metadata.name.clone()
            }
            _ => None,
        })
        .collect();
    let mut gateway_infra = Vec::new();
    let infra_docs: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            // A Gateway without a valid port gets no proxy (and no address).
            // (A Gateway whose name is not valid is refused by the checks below.)
            Object::Gateway(g)
                if ours.contains(&g.obj.spec.gateway_class_name)
                    && !podnet_model::gateway::listener_ports(&g.obj).is_empty()
                    && g.obj.metadata.name.as_deref().is_some_and(|n| {
                        podnet_model::validation::dns1123_subdomain(n).is_ok()
                    })
                    && g.obj.metadata.namespace.as_deref().is_none_or(|n| {
                        n.is_empty() || podnet_model::validation::dns1123_label(n).is_ok()
                    }) =>
            {
                Some(g)
            }
            _ => None,
        })
        .map(|g| {
            let mut g = g.obj.clone();
            if g.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                g.metadata.namespace = Some("default".into());
            }
            gateway_infra.push(podnet_model::gateway::infra_name(
                &podnet_model::gateway::key(&g),
            ));
            podnet_model::source::parse_documents(
                "<podnet: a Gateway's proxy>",
                &podnet_model::gateway::infra_manifests(&g),
            )
            .expect("a Gateway's proxy's manifests parse")
        })
        .collect();
    if !infra_docs.is_empty() {
        for docs in infra_docs {
            decode_into(&docs, objects, diags);
        }
        if !objects.iter().any(|o| {
            matches!(o, Object::Namespace(_))
                && meta_of(o).and_then(|m| m.name.as_deref())
                    == Some(podnet_model::gateway::GATEWAY_NAMESPACE)
        }) {
            let docs = podnet_model::source::parse_documents(
                "<podnet: Gateway proxies>",
                &format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
                    podnet_model::gateway::GATEWAY_NAMESPACE
                ),
            )
            .expect("a Namespace parses");
            decode_into(&docs, objects, diags);
        }
    }
    gateway_infra
}
