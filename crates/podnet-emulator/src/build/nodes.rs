//! Namespaces, and nodes with their podCIDRs (the node IPAM controller).

use super::*;

impl Builder {
    pub(super) fn namespaces(&mut self, objects: &[Object]) -> BTreeMap<String, NamespaceInfo> {
        let mut out = BTreeMap::new();
        for n in SYSTEM_NAMESPACES {
            out.insert(
                n.to_string(),
                NamespaceInfo {
                    name: n.to_string(),
                    labels: Labels::new(),
                    declared: true,
                },
            );
        }
        for o in objects {
            if let Object::Namespace(ns) = o {
                let name = ns.obj.metadata.name.clone().unwrap_or_default();
                let labels = ns.obj.metadata.labels.clone().unwrap_or_default();
                out.insert(
                    name.clone(),
                    NamespaceInfo {
                        name,
                        labels,
                        declared: true,
                    },
                );
            }
        }
        for o in objects {
            let Some(ns) = meta_of(o).and_then(|m| m.namespace.as_deref()) else {
                continue;
            };
            if !out.contains_key(ns) {
                self.diags.push(
                    Diagnostic::warning(
                        Some(start_of(o)),
                        format!("namespace {ns:?} is used but not declared; it is created"),
                    )
                    .with_object(oref_of(o)),
                );
                out.insert(
                    ns.to_string(),
                    NamespaceInfo {
                        name: ns.to_string(),
                        labels: Labels::new(),
                        declared: false,
                    },
                );
            }
        }
        // The NamespaceDefaultLabelName admission: every namespace carries its own name.
        for (name, ns) in out.iter_mut() {
            ns.labels
                .insert("kubernetes.io/metadata.name".to_string(), name.clone());
        }
        out
    }

    /// Node objects if any are given, otherwise `config.nodes` generated nodes.
    pub(super) fn nodes(&mut self, objects: &[Object]) -> Vec<NodeInfo> {
        let given: Vec<_> = of_kind!(objects, Node).collect();
        let mut nodes = if given.is_empty() {
            self.generated_nodes()
        } else {
            self.given_nodes(given)
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        for n in nodes.iter_mut() {
            n.labels
                .entry("kubernetes.io/hostname".into())
                .or_insert_with(|| n.name.clone());
            n.labels
                .entry("kubernetes.io/os".into())
                .or_insert_with(|| "linux".into());
            n.labels
                .entry("kubernetes.io/arch".into())
                .or_insert_with(|| arch.into());
        }
        nodes
    }

    /// `config.nodes` nodes, `node-<i>`, each with the i-th podCIDR and node address.
    fn generated_nodes(&self) -> Vec<NodeInfo> {
        (0..self.config.nodes)
            .map(|i| NodeInfo {
                name: format!("node-{i}"),
                labels: Labels::new(),
                pod_cidrs: vec![node_cidr(u128::from(i), &self.config).expect("checked by config")],
                internal_ip: nth_address(&self.config.node_network, u128::from(i) + 2)
                    .expect("node network holds the nodes"),
            })
            .collect()
    }

    /// The given Node objects, by name: first what each states (its podCIDR, its address),
    /// then the free ranges and addresses for those that state none.
    fn given_nodes(
        &mut self,
        given: Vec<&Sourced<k8s_openapi::api::core::v1::Node>>,
    ) -> Vec<NodeInfo> {
        if given.len() as u32 != self.config.nodes
            && self.config.nodes != ClusterConfig::default().nodes
        {
            self.diags.push(Diagnostic::warning(
                Some(given[0].start.clone()),
                format!("{} Node objects are given; they are the nodes, and the node count {} is ignored", given.len(), self.config.nodes),
            ));
        }
        let mut sorted = given;
        sorted.sort_by(|a, b| a.obj.metadata.name.cmp(&b.obj.metadata.name));
        let mut used_cidrs = BTreeSet::new();
        let mut used_ips = BTreeSet::new();
        let mut nodes: Vec<NodeInfo> = sorted
            .iter()
            .map(|n| self.stated_node(n, &mut used_cidrs, &mut used_ips))
            .collect();
        self.fill_nodes(&mut nodes, &mut used_cidrs, &mut used_ips);
        nodes
    }

    /// A Node as it states itself: its podCIDR when valid and free (else an error), its
    /// InternalIP.
    fn stated_node(
        &mut self,
        n: &Sourced<k8s_openapi::api::core::v1::Node>,
        used_cidrs: &mut BTreeSet<IpNet>,
        used_ips: &mut BTreeSet<IpAddr>,
    ) -> NodeInfo {
        let name = n.obj.metadata.name.clone().unwrap_or_default();
        let oref = ObjectRef::new("Node", None, &name);
        let cidr = n
            .obj
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .map(|c| (c, c.parse::<IpNet>()));
        let cidr = match cidr {
            None => None,
            Some((_, Ok(net)))
                if self.config.pod_cidr.contains(&net)
                    && net.prefix_len() == self.config.node_cidr_mask_size
                    && used_cidrs.insert(net) =>
            {
                Some(net)
            }
            Some((raw, _)) => {
                self.diags.push(
                    Diagnostic::error(n.locate("spec.podCIDR"), format!("Invalid value: {raw:?}: must be a free /{} inside the cluster podCIDR {}", self.config.node_cidr_mask_size, self.config.pod_cidr))
                        .with_object(oref)
                        .with_field("spec.podCIDR"),
                );
                None
            }
        };
        let ip = n
            .obj
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<IpAddr>().ok());
        if let Some(ip) = ip {
            used_ips.insert(ip);
        }
        NodeInfo {
            name,
            labels: n.obj.metadata.labels.clone().unwrap_or_default(),
            pod_cidrs: cidr.into_iter().collect(),
            internal_ip: ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
        }
    }

    /// Free podCIDRs and node addresses, in order, for the nodes that stated none.
    fn fill_nodes(
        &self,
        nodes: &mut [NodeInfo],
        used_cidrs: &mut BTreeSet<IpNet>,
        used_ips: &mut BTreeSet<IpAddr>,
    ) {
        let cidr_slots =
            1u128 << (self.config.node_cidr_mask_size - self.config.pod_cidr.prefix_len()).min(100);
        let mut next_cidr = 0u128;
        let mut next_ip = 2u128;
        for n in nodes.iter_mut() {
            if n.pod_cidrs.is_empty() {
                while next_cidr < cidr_slots {
                    let c = node_cidr(next_cidr, &self.config).expect("inside podCIDR");
                    next_cidr += 1;
                    if used_cidrs.insert(c) {
                        n.pod_cidrs.push(c);
                        break;
                    }
                }
            }
            if n.internal_ip.is_unspecified() {
                while let Some(ip) = nth_address(&self.config.node_network, next_ip) {
                    next_ip += 1;
                    if used_ips.insert(ip) {
                        n.internal_ip = ip;
                        break;
                    }
                }
            }
        }
    }
}

/// The i-th node range of the cluster's podCIDR.
fn node_cidr(i: u128, c: &ClusterConfig) -> Option<IpNet> {
    let size =
        1u128 << ((if c.pod_cidr.addr().is_ipv4() { 32 } else { 128 }) - c.node_cidr_mask_size);
    let base = ip_to_u128(c.pod_cidr.network()) + i * size;
    IpNet::new(
        u128_to_ip(base, c.pod_cidr.addr().is_ipv4()),
        c.node_cidr_mask_size,
    )
    .ok()
}
