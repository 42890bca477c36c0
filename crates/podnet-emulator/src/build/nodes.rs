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

    /// `config.nodes` nodes, `node-<i>`, each with the i-th podCIDR of each family and the
    /// i-th node address(es).
    fn generated_nodes(&self) -> Vec<NodeInfo> {
        let v6 = self.config.pod_cidr_of(IpFamily::Ipv6).is_some();
        (0..self.config.nodes)
            .map(|i| NodeInfo {
                name: format!("node-{i}"),
                labels: Labels::new(),
                pod_cidrs: self
                    .config
                    .pod_cidrs
                    .iter()
                    .map(|c| node_cidr(u128::from(i), c, &self.config).expect("checked by config"))
                    .collect(),
                internal_ip: nth_address(&self.config.node_network, u128::from(i) + 2)
                    .expect("node network holds the nodes"),
                internal_ipv6: v6
                    .then(|| nth_address(&self.config.node_network_ipv6, u128::from(i) + 2))
                    .flatten(),
            })
            .collect()
    }

    /// The given Node objects, by name: first what each states (its podCIDRs, its addresses),
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

    /// A Node as it states itself: its podCIDRs (`spec.podCIDRs`, else `spec.podCIDR`) when
    /// valid and free (else an error), its InternalIPs.
    fn stated_node(
        &mut self,
        n: &Sourced<k8s_openapi::api::core::v1::Node>,
        used_cidrs: &mut BTreeSet<IpNet>,
        used_ips: &mut BTreeSet<IpAddr>,
    ) -> NodeInfo {
        let name = n.obj.metadata.name.clone().unwrap_or_default();
        let oref = ObjectRef::new("Node", None, &name);
        let spec = n.obj.spec.as_ref();
        let (raw, field): (Vec<&str>, &str) = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(l) if !l.is_empty() => (l.iter().map(String::as_str).collect(), "spec.podCIDRs"),
            _ => (
                spec.and_then(|s| s.pod_cidr.as_deref())
                    .into_iter()
                    .collect(),
                "spec.podCIDR",
            ),
        };
        let mut cidrs = Vec::new();
        for (i, raw) in raw.iter().enumerate() {
            let at = if field == "spec.podCIDRs" {
                format!("{field}[{i}]")
            } else {
                field.to_string()
            };
            let net = raw.parse::<IpNet>().ok();
            let cluster = net.and_then(|net| self.config.pod_cidr_of(IpFamily::of_net(&net)));
            match (net, cluster) {
                (Some(net), Some(cluster))
                    if cluster.contains(&net)
                        && net.prefix_len() == self.config.node_mask(IpFamily::of_net(&net))
                        && !cidrs
                            .iter()
                            .any(|c: &IpNet| IpFamily::of_net(c) == IpFamily::of_net(&net))
                        && used_cidrs.insert(net) =>
                {
                    cidrs.push(net)
                }
                _ => {
                    let inside: Vec<String> = self
                        .config
                        .pod_cidrs
                        .iter()
                        .map(|c| {
                            format!(
                                "a /{} inside {c}",
                                self.config.node_mask(IpFamily::of_net(c))
                            )
                        })
                        .collect();
                    self.diags.push(
                        Diagnostic::error(n.locate(&at), format!("Invalid value: {raw:?}: must be a free range of the cluster's podCIDRs, one per family: {}", inside.join(" or ")))
                            .with_object(oref.clone())
                            .with_field(at),
                    );
                }
            }
        }
        // In the cluster's family order.
        cidrs.sort_by_key(|c| {
            self.config
                .families()
                .iter()
                .position(|f| *f == IpFamily::of_net(c))
        });
        let internal: Vec<IpAddr> = n
            .obj
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .collect();
        used_ips.extend(internal.iter().copied());
        NodeInfo {
            name,
            labels: n.obj.metadata.labels.clone().unwrap_or_default(),
            pod_cidrs: cidrs,
            internal_ip: internal
                .iter()
                .find(|ip| ip.is_ipv4())
                .copied()
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            internal_ipv6: internal.iter().find(|ip| ip.is_ipv6()).copied(),
        }
    }

    /// Free podCIDRs of each family and node addresses, in order, for the nodes that stated
    /// none.
    fn fill_nodes(
        &self,
        nodes: &mut [NodeInfo],
        used_cidrs: &mut BTreeSet<IpNet>,
        used_ips: &mut BTreeSet<IpAddr>,
    ) {
        for (slot, cluster) in self.config.pod_cidrs.iter().enumerate() {
            let family = IpFamily::of_net(cluster);
            let cidr_slots =
                1u128 << (self.config.node_mask(family) - cluster.prefix_len()).min(100);
            let mut next_cidr = 0u128;
            for n in nodes.iter_mut() {
                if n.pod_cidrs.iter().any(|c| IpFamily::of_net(c) == family) {
                    continue;
                }
                while next_cidr < cidr_slots {
                    let c = node_cidr(next_cidr, cluster, &self.config).expect("inside podCIDR");
                    next_cidr += 1;
                    if used_cidrs.insert(c) {
                        n.pod_cidrs.insert(slot.min(n.pod_cidrs.len()), c);
                        break;
                    }
                }
            }
        }
        let v6 = self.config.pod_cidr_of(IpFamily::Ipv6).is_some();
        let (mut next_ip, mut next_ip6) = (2u128, 2u128);
        for n in nodes.iter_mut() {
            if n.internal_ip.is_unspecified() {
                while let Some(ip) = nth_address(&self.config.node_network, next_ip) {
                    next_ip += 1;
                    if used_ips.insert(ip) {
                        n.internal_ip = ip;
                        break;
                    }
                }
            }
            if v6 && n.internal_ipv6.is_none() {
                while let Some(ip) = nth_address(&self.config.node_network_ipv6, next_ip6) {
                    next_ip6 += 1;
                    if used_ips.insert(ip) {
                        n.internal_ipv6 = Some(ip);
                        break;
                    }
                }
            }
        }
    }
}

/// The i-th node range of one of the cluster's pod CIDRs.
fn node_cidr(i: u128, cluster: &IpNet, c: &ClusterConfig) -> Option<IpNet> {
    let family = IpFamily::of_net(cluster);
    let mask = c.node_mask(family);
    let size = 1u128.checked_shl(u32::from(family.bits() - mask))?;
    let base = ip_to_u128(cluster.network()) + i * size;
    IpNet::new(u128_to_ip(base, family == IpFamily::Ipv4), mask).ok()
}
