//! The scheduler and the CNI plugin's IPAM: each new pod placed on a node, given an address
//! from its node's podCIDR; a running pod keeps both.

use super::*;

impl Builder {
    /// Scheduling (nodeName, nodeSelector, otherwise least-loaded node) and pod IPs.
    pub(super) fn place_and_address(
        &mut self,
        sources: Vec<PodSource>,
        nodes: &[NodeInfo],
    ) -> Vec<PodInfo> {
        let mut load: Vec<usize> = vec![0; nodes.len()];
        let mut placed: Vec<(PodSource, Option<usize>)> = Vec::with_capacity(sources.len());
        for src in sources {
            let node = self.pick_node(&src, nodes, &load);
            if let Some(i) = node {
                load[i] += 1;
            }
            placed.push((src, node));
        }
        // Pod IPs from each node's podCIDRs, one per family in the cluster's order: the first
        // address of each is the node's gateway, pods get the next ones. Addresses the
        // manifests fix (status.podIP) are taken first, then those of running pods.
        let mut taken = self.claim_fixed_ips(&placed, nodes);
        let kept = self.keep_running_ips(&placed, nodes, &mut taken);
        let mut next: Vec<Vec<u128>> = nodes.iter().map(|n| vec![2; n.pod_cidrs.len()]).collect();
        let mut pods = Vec::with_capacity(placed.len());
        for (src, node) in placed {
            let key = NsName::new(&src.namespace, &src.name);
            let ips = match node {
                None => Vec::new(),
                Some(i) if src.spec.host_network.unwrap_or(false) => {
                    host_ips(&nodes[i], &self.config.families())
                }
                Some(i) => {
                    let mut ips = Vec::new();
                    for (slot, cidr) in nodes[i].pod_cidrs.iter().enumerate() {
                        let of_family = |ip: &IpAddr| cidr.contains(ip);
                        let fixed = src.fixed_ip.as_ref().map(|f| f.0).filter(of_family);
                        let kept = kept
                            .get(&key)
                            .and_then(|k| k.iter().copied().find(of_family));
                        let ip = fixed.or(kept).or_else(|| {
                            self.next_pod_ip(&nodes[i], *cidr, &mut next[i][slot], &mut taken, &src)
                        });
                        ips.extend(ip);
                    }
                    ips
                }
            };
            pods.push(pod_info(src, node.map(|i| nodes[i].name.clone()), ips));
        }
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// The scheduler's choice: `nodeName`, else the node whose podCIDR holds a fixed pod IP,
    /// else the least loaded node that matches the `nodeSelector`.
    pub(super) fn pick_node(
        &mut self,
        src: &PodSource,
        nodes: &[NodeInfo],
        load: &[usize],
    ) -> Option<usize> {
        let named = src.spec.node_name.as_deref().filter(|n| !n.is_empty());
        let running = self
            .running
            .get(&NsName::new(&src.namespace, &src.name))
            .and_then(|p| nodes.iter().position(|n| n.name == p.node));
        if let (Some(i), None) = (running, named) {
            return Some(i);
        }
        if let Some(n) = src.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            let idx = nodes.iter().position(|x| x.name == n);
            if idx.is_none() {
                self.diags.push(Diagnostic::warning(
                    None,
                    format!(
                        "pod {}/{} names node {n:?}, which does not exist; it stays Pending",
                        src.namespace, src.name
                    ),
                ));
            }
            idx
        } else if let Some((ip, _)) = src
            .fixed_ip
            .as_ref()
            .filter(|_| !src.spec.host_network.unwrap_or(false))
        {
            nodes
                .iter()
                .position(|n| n.pod_cidrs.iter().any(|c| c.contains(ip)))
        } else {
            let sel = src.spec.node_selector.clone().unwrap_or_default();
            let best = (0..nodes.len())
                .filter(|&i| selector_matches(&sel, &nodes[i].labels))
                .min_by_key(|&i| (load[i], i));
            if best.is_none() {
                self.diags.push(Diagnostic::warning(
                    None,
                    format!(
                        "pod {}/{}: no node matches its nodeSelector; it stays Pending",
                        src.namespace, src.name
                    ),
                ));
            }
            best
        }
    }

    /// The pod IPs the manifests fix, each checked to be a free address of its node's podCIDR.
    pub(super) fn claim_fixed_ips(
        &mut self,
        placed: &[(PodSource, Option<usize>)],
        nodes: &[NodeInfo],
    ) -> BTreeSet<IpAddr> {
        let mut taken: BTreeSet<IpAddr> = BTreeSet::new();
        for (src, node) in placed {
            if let (Some((ip, loc)), Some(i)) = (&src.fixed_ip, node) {
                if src.spec.host_network.unwrap_or(false) {
                    continue;
                }
                let inside = nodes[*i]
                    .pod_cidrs
                    .iter()
                    .any(|c| c.contains(ip) && *ip != c.network() && *ip != c.broadcast());
                if !inside || !taken.insert(*ip) {
                    self.diags.push(
                        Diagnostic::error(
                            loc.clone(),
                            format!(
                                "Invalid value: {ip}: not a free address of node {}'s podCIDR {}",
                                nodes[*i].name,
                                nodes[*i]
                                    .pod_cidrs
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                        )
                        .with_object(ObjectRef::new("Pod", Some(&src.namespace), &src.name))
                        .with_field("status.podIP"),
                    );
                }
            }
        }
        taken
    }

    /// The addresses of running pods that stay on their node: kept where they still belong to
    /// the node's podCIDR and no fixed address took them.
    pub(super) fn keep_running_ips(
        &self,
        placed: &[(PodSource, Option<usize>)],
        nodes: &[NodeInfo],
        taken: &mut BTreeSet<IpAddr>,
    ) -> HashMap<NsName, Vec<IpAddr>> {
        let mut kept = HashMap::new();
        for (src, node) in placed {
            let (Some(i), None) = (node, &src.fixed_ip) else {
                continue;
            };
            if src.spec.host_network.unwrap_or(false) {
                continue;
            }
            let key = NsName::new(&src.namespace, &src.name);
            let Some(p) = self.running.get(&key) else {
                continue;
            };
            if p.node != nodes[*i].name {
                continue;
            }
            let mut ips = Vec::new();
            for &ip in &p.ips {
                let inside = nodes[*i]
                    .pod_cidrs
                    .iter()
                    .any(|c| c.contains(&ip) && ip != c.network() && ip != c.broadcast());
                if inside && taken.insert(ip) {
                    ips.push(ip);
                }
            }
            kept.insert(key, ips);
        }
        kept
    }

    /// The next free address of one of a node's podCIDRs.
    pub(super) fn next_pod_ip(
        &mut self,
        node: &NodeInfo,
        cidr: IpNet,
        next: &mut u128,
        taken: &mut BTreeSet<IpAddr>,
        src: &PodSource,
    ) -> Option<IpAddr> {
        let mut ip = None;
        while let Some(cand) = nth_address(&cidr, *next) {
            *next += 1;
            if (cand != cidr.broadcast() || cand.is_ipv6()) && taken.insert(cand) {
                ip = Some(cand);
                break;
            }
        }
        if ip.is_none() {
            self.diags.push(Diagnostic::global_error(
                format!("node {}'s podCIDR {cidr} is full: pod {}/{} gets no IP; use fewer pods per node or more nodes", node.name, src.namespace, src.name),
            ));
        }
        ip
    }
}

/// A host-network pod's addresses: its node's, one per family of the cluster, in their order.
pub(super) fn host_ips(node: &NodeInfo, families: &[IpFamily]) -> Vec<IpAddr> {
    families
        .iter()
        .filter_map(|f| match f {
            IpFamily::Ipv4 => Some(node.internal_ip),
            IpFamily::Ipv6 => node.internal_ipv6,
        })
        .collect()
}
