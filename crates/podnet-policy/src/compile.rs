//! The compiler: the model's policies and this node's pods into groups (pods isolated by
//! the same policies), each group's peers as points and disjoint ranges, kept from one
//! model to the next so that a change edits only what it touches.

use super::tiers::TierRules;
use super::*;

/// Namespace, the values of the labels policies read, container ports: pods with the same
/// key are judged alike, as peers and as targets.
pub(super) type ClassKey = (
    String,
    Vec<(String, String)>,
    Vec<podnet_model::ContainerPortInfo>,
);

/// Pods that policies cannot tell apart: the same namespace, the same values of the labels
/// policies select on, and the same container ports (replicas, mostly). Selectors are
/// evaluated once per class, not once per pod.
#[derive(Debug, Clone)]
pub(super) struct ClassPods {
    pub(super) key: ClassKey,
    /// One of them (any: the others are alike in all a policy reads), kept even when it
    /// has changed or gone since.
    pub(super) rep: PodInfo,
    /// Each pod's addresses, one per family.
    pub(super) ips: BTreeMap<NsName, Vec<IpAddr>>,
}

/// A class as the rules read it.
pub(super) struct Class<'a> {
    pub(super) rep: &'a PodInfo,
    pub(super) ips: Vec<IpAddr>,
}

#[derive(Debug, Clone)]
pub(super) struct GroupState {
    pub(super) id: GroupId,
    /// The local pods it judges.
    pub(super) users: usize,
    /// What its elements are computed from: a pod of it, the policies isolating it.
    pub(super) rep: PodInfo,
    pub(super) selecting: Vec<NsName>,
}

/// A local pod's entries in the maps.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub(super) ips: Vec<IpAddr>,
    pub(super) groups: [Option<String>; 2],
}

/// A node's policy table, kept up to date as pods change: a pod that comes, goes or changes
/// its labels re-places that pod alone, and recomputes the elements of the groups whose
/// rules take in its class (before or after), not the whole table. A change of policies,
/// namespaces or nodes starts again from scratch ([`Compiler::new`]).
#[derive(Debug, Clone)]
pub struct Compiler {
    pub(super) node: String,
    /// The label keys any policy reads.
    pub(super) read: BTreeSet<String>,
    /// The classes by number (an emptied one's number is used again: `free`).
    pub(super) classes: Vec<ClassPods>,
    pub(super) index: HashMap<ClassKey, usize>,
    pub(super) free: Vec<usize>,
    pub(super) class_of: HashMap<NsName, usize>,
    pub(super) groups: BTreeMap<String, GroupState>,
    pub(super) placed: HashMap<NsName, Placed>,
    /// The cluster's families: a rule without peers takes in every address of each.
    pub(super) families: Vec<IpFamily>,
}

pub(super) const DIRS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

impl Compiler {
    /// The table of `node` from scratch, and what follows its pods' changes.
    pub fn new(cluster: &Cluster, node: &str) -> (Compiler, PolicyPlan) {
        let policies = Policies::of(cluster);
        let families = cluster.config.families();
        let mut plan = PolicyPlan {
            local: cluster
                .node(node)
                .into_iter()
                .flat_map(|n| &n.pod_cidrs)
                .copied()
                .collect(),
            ipv6: families.contains(&IpFamily::Ipv6),
            sample: cluster.config.flow_sample,
            ..Default::default()
        };
        let mut c = Compiler {
            node: node.to_string(),
            read: selected_keys(cluster)
                .into_iter()
                .map(str::to_string)
                .collect(),
            classes: Vec::new(),
            index: HashMap::new(),
            free: Vec::new(),
            class_of: HashMap::new(),
            groups: BTreeMap::new(),
            placed: HashMap::new(),
            families,
        };
        for p in &cluster.pods {
            c.join(p);
        }
        let local: Vec<NsName> = cluster
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(node) && c.class_of.contains_key(&p.key()))
            .map(PodInfo::key)
            .collect();
        c.place(&policies, &local, &mut plan);
        (c, plan)
    }

    /// Brings `plan` (this compiler's) up to date with pods that came, went, or changed
    /// (labels, addresses, node, ports); `cluster` is as it is after. Policies, namespaces
    /// and nodes must be as they were. True if the table changed.
    pub fn pods_changed(
        &mut self,
        cluster: &Cluster,
        keys: &[NsName],
        plan: &mut PolicyPlan,
    ) -> bool {
        let before = plan.groups.len();
        let mut changed = false;
        let policies = Policies::of(cluster);
        // Each pod leaves its class, and joins the one it is in now.
        let mut touched: Vec<usize> = Vec::new();
        let mut local = Vec::new();
        for key in keys {
            if let Some(k) = self.class_of.remove(key) {
                self.classes[k].ips.remove(key);
                touched.push(k);
            }
            if let Some(p) = cluster.pod(&key.namespace, &key.name) {
                if let Some(k) = self.join(p) {
                    touched.push(k);
                }
            }
            local.push(key.clone());
        }
        // The groups whose elements take in a touched class's pods (their representatives
        // are kept: a class that emptied still says whom a rule took in).
        touched.sort_unstable();
        touched.dedup();
        let reps: Vec<&PodInfo> = touched.iter().map(|k| &self.classes[*k].rep).collect();
        let stale: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| reads_pods(&policies, g, &reps))
            .map(|(k, _)| k.clone())
            .collect();
        for k in touched {
            if self.classes[k].ips.is_empty() {
                self.index.remove(&self.classes[k].key);
                self.free.push(k);
            }
        }
        if !stale.is_empty() {
            let classes = class_list(&self.classes);
            for k in &stale {
                let g = &self.groups[k];
                let rects = group_rects(
                    &policies,
                    &classes,
                    &g.rep,
                    g.id.dir,
                    &g.selecting,
                    &self.families,
                );
                let elements = rects::group_elements(&rects);
                changed |= plan.groups.get(&g.id) != Some(&elements);
                plan.groups.insert(g.id, elements);
                changed |= set_tiers(&policies, &classes, g, &self.families, plan);
            }
        }
        // The pods' own entries, where they run here.
        let ips: BTreeSet<IpAddr> = local
            .iter()
            .filter_map(|k| self.placed.get(k).map(|p| p.ips.clone()))
            .chain(local.iter().filter_map(|k| {
                self.class_of
                    .get(k)
                    .map(|c| self.classes[*c].ips[k].clone())
            }))
            .flatten()
            .collect();
        let entries = |plan: &PolicyPlan| -> Vec<(Option<Target>, Option<Target>)> {
            ips.iter()
                .map(|ip| (plan.ingress.get(ip).copied(), plan.egress.get(ip).copied()))
                .collect()
        };
        let was = entries(plan);
        self.unplace(&local, plan);
        let here: Vec<NsName> = local
            .into_iter()
            .filter(|k| {
                self.class_of.contains_key(k)
                    && cluster
                        .pod(&k.namespace, &k.name)
                        .is_some_and(|p| p.node.as_deref() == Some(self.node.as_str()))
            })
            .collect();
        self.place(&policies, &here, plan);
        changed || entries(plan) != was || plan.groups.len() != before
    }

    /// Adds `p` to its class (a pod policies judge: not host-network, with an address).
    fn join(&mut self, p: &PodInfo) -> Option<usize> {
        if p.host_network || p.ips.is_empty() {
            return None;
        }
        let ips = p.ips.clone();
        let key: ClassKey = (
            p.namespace.clone(),
            p.labels
                .iter()
                .filter(|(k, _)| self.read.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            p.ports.clone(),
        );
        let k = match self.index.get(&key) {
            Some(k) => *k,
            None => {
                let class = ClassPods {
                    key: key.clone(),
                    rep: p.clone(),
                    ips: BTreeMap::new(),
                };
                let k = match self.free.pop() {
                    Some(k) => {
                        self.classes[k] = class;
                        k
                    }
                    None => {
                        self.classes.push(class);
                        self.classes.len() - 1
                    }
                };
                self.index.insert(key, k);
                k
            }
        };
        self.classes[k].ips.insert(p.key(), ips);
        self.class_of.insert(p.key(), k);
        Some(k)
    }

    /// Removes local pods' map entries, and the groups no pod uses any more.
    fn unplace(&mut self, keys: &[NsName], plan: &mut PolicyPlan) {
        for key in keys {
            let Some(old) = self.placed.remove(key) else {
                continue;
            };
            for (dir, g) in DIRS.iter().zip(old.groups) {
                for ip in &old.ips {
                    map_mut(plan, *dir).remove(ip);
                }
                if let Some(g) = g {
                    let state = self.groups.get_mut(&g).expect("a placed pod's group");
                    state.users -= 1;
                    if state.users == 0 {
                        plan.groups.remove(&state.id);
                        if let Some(layout) = plan.layouts.remove(&state.id) {
                            for (tier, _) in layout.tiers() {
                                plan.tiers.remove(&TierId {
                                    group: state.id,
                                    tier,
                                });
                            }
                        }
                        self.groups.remove(&g);
                    }
                }
            }
        }
    }

    /// Gives local pods (in their classes already) their map entries, creating their groups.
    fn place(&mut self, policies: &Policies<'_>, keys: &[NsName], plan: &mut PolicyPlan) {
        // Judged once per class.
        let mut judged: HashMap<usize, [Option<String>; 2]> = HashMap::new();
        let mut classes: Option<Vec<Class<'_>>> = None;
        let mut new_groups: Vec<(String, GroupState)> = Vec::new();
        let mut placed = Vec::new();
        for key in keys {
            let k = self.class_of[key];
            let class = &self.classes[k];
            let ips = class.ips[key].clone();
            let groups = judged
                .entry(k)
                .or_insert_with(|| {
                    DIRS.map(|dir| {
                        let selecting = policies.selecting(&class.rep, dir);
                        let tiers = TierRules::of(policies, &class.rep, dir, !selecting.is_empty());
                        if selecting.is_empty() && tiers.is_empty() {
                            return None;
                        }
                        let gk = group_key(policies, &class.rep, dir, &selecting, &tiers);
                        let known = self.groups.contains_key(&gk)
                            || new_groups.iter().any(|(k, _)| *k == gk);
                        if !known {
                            let ids = self
                                .groups
                                .values()
                                .chain(new_groups.iter().map(|(_, g)| g))
                                .map(|g| g.id);
                            let id = free_id(ids, &gk, dir);
                            let classes = classes.get_or_insert_with(|| class_list(&self.classes));
                            let rects = group_rects(
                                policies,
                                classes,
                                &class.rep,
                                dir,
                                &selecting,
                                &self.families,
                            );
                            plan.groups.insert(id, rects::group_elements(&rects));
                            let state = GroupState {
                                id,
                                users: 0,
                                rep: class.rep.clone(),
                                selecting,
                            };
                            if let Some(layout) = tiers.layout(!state.selecting.is_empty()) {
                                plan.layouts.insert(id, layout);
                                set_tiers(policies, classes, &state, &self.families, plan);
                            }
                            new_groups.push((gk.clone(), state));
                        }
                        Some(gk)
                    })
                })
                .clone();
            placed.push((key.clone(), Placed { ips, groups }));
        }
        drop(classes);
        self.groups.extend(new_groups);
        for (key, p) in placed {
            for (dir, g) in DIRS.iter().zip(&p.groups) {
                let target = match g {
                    None => Target::Open,
                    Some(g) => {
                        let state = self.groups.get_mut(g).expect("placed just above");
                        state.users += 1;
                        Target::Group(state.id)
                    }
                };
                for ip in &p.ips {
                    map_mut(plan, *dir).insert(*ip, target);
                }
            }
            self.placed.insert(key, p);
        }
    }
}

pub(super) fn map_mut(p: &mut PolicyPlan, dir: Direction) -> &mut BTreeMap<IpAddr, Target> {
    match dir {
        Direction::Ingress => &mut p.ingress,
        Direction::Egress => &mut p.egress,
    }
}

pub(super) fn class_list(classes: &[ClassPods]) -> Vec<Class<'_>> {
    classes
        .iter()
        .filter(|c| !c.ips.is_empty())
        .map(|c| Class {
            rep: &c.rep,
            ips: c.ips.values().flatten().copied().collect(),
        })
        .collect()
}

/// Whether a group's elements depend on which pods are in the classes of `reps`: a rule of
/// its policies takes them in as peers by selector (ingress), or sends to them (egress: a
/// rule without peers too, for the named ports it resolves on each pod), or resolves named
/// ports on pods inside its ipBlocks (egress).
pub(super) fn reads_pods(policies: &Policies<'_>, g: &GroupState, reps: &[&PodInfo]) -> bool {
    let tiers = TierRules::of(policies, &g.rep, g.id.dir, !g.selecting.is_empty());
    if tiers.reads_pods(policies, reps) {
        return true;
    }
    g.selecting.iter().any(|key| {
        policies
            .rules(key, g.id.dir)
            .iter()
            .any(|rule| match g.id.dir {
                Direction::Ingress => {
                    rule.has_peers() && reps.iter().any(|p| policies.selects(rule, p))
                }
                Direction::Egress => {
                    (!rule.named_ports().is_empty() && !rule.ip_blocks().is_empty())
                        || reps.iter().any(|p| policies.selects(rule, p))
                }
            })
    })
}

/// The pod label keys any policy's selectors read: other labels cannot tell pods apart.
pub(super) fn selected_keys(cluster: &Cluster) -> BTreeSet<&str> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    fn keys<'a>(sel: Option<&'a LabelSelector>, out: &mut BTreeSet<&'a str>) {
        let Some(sel) = sel else { return };
        out.extend(sel.match_labels.iter().flatten().map(|(k, _)| k.as_str()));
        out.extend(
            sel.match_expressions
                .iter()
                .flatten()
                .map(|e| e.key.as_str()),
        );
    }
    let mut out = BTreeSet::new();
    for p in &cluster.network_policies {
        let Some(spec) = p.obj.spec.as_ref() else {
            continue;
        };
        keys(spec.pod_selector.as_ref(), &mut out);
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten()),
            );
        for peer in peers {
            keys(peer.pod_selector.as_ref(), &mut out);
        }
    }
    // ClusterNetworkPolicies' pod selectors: the subject's and the peers'.
    for p in &cluster.cluster_network_policies {
        let spec = &p.obj.spec;
        let pods = spec
            .subject
            .pods
            .iter()
            .chain(
                spec.ingress
                    .iter()
                    .flat_map(|r| &r.from)
                    .filter_map(|p| p.pods.as_ref()),
            )
            .chain(
                spec.egress
                    .iter()
                    .flat_map(|r| &r.to)
                    .filter_map(|p| p.pods.as_ref()),
            );
        for np in pods {
            keys(Some(&np.pod_selector), &mut out);
        }
    }
    out
}

/// A group's tiers' elements (none without a layout), recomputed; true if they changed.
pub(super) fn set_tiers(
    policies: &Policies<'_>,
    classes: &[Class<'_>],
    g: &GroupState,
    families: &[IpFamily],
    plan: &mut PolicyPlan,
) -> bool {
    if !plan.layouts.contains_key(&g.id) {
        return false;
    }
    let tiers = TierRules::of(policies, &g.rep, g.id.dir, !g.selecting.is_empty());
    let mut changed = false;
    for (tier, map) in tiers.elements(policies, classes, &g.rep, g.id.dir, families) {
        let id = TierId { group: g.id, tier };
        changed |= plan.tiers.get(&id) != Some(&map);
        plan.tiers.insert(id, map);
    }
    changed
}

/// What makes two pods' judgement the same: the policies, and for ingress the ports the
/// policies' names resolve to on the pod.
pub(super) fn group_key(
    policies: &Policies<'_>,
    pod: &PodInfo,
    dir: Direction,
    selecting: &[NsName],
    tiers: &TierRules<'_>,
) -> String {
    let mut key = format!("{dir:?}{}", tiers.key(pod, dir));
    for p in selecting {
        let _ = write!(key, "|{p}");
        if dir == Direction::Ingress {
            for rule in policies.rules(p, dir) {
                for (name, proto) in rule.named_ports() {
                    let _ = write!(key, ",{name}/{proto}={:?}", pod.find_port(&name, proto));
                }
            }
        }
    }
    key
}

/// A stable id from the key's hash, moved on past any other group's.
pub(super) fn free_id(
    taken: impl Iterator<Item = GroupId> + Clone,
    key: &str,
    dir: Direction,
) -> GroupId {
    let mut id = podnet_model::names::fnv64(&[key.as_bytes()]) as u32;
    while taken.clone().any(|g| g.dir == dir && g.id == id) {
        id = id.wrapping_add(1);
    }
    GroupId { dir, id }
}

/// A range of one family's addresses.
pub(super) type Addrs = (IpFamily, rects::Span<u128>);

/// Every address of each family.
pub(super) fn all_addresses(families: &[IpFamily]) -> Vec<Addrs> {
    families
        .iter()
        .map(|f| (*f, rects::all_addresses(*f)))
        .collect()
}

/// One address.
pub(super) fn point(ip: IpAddr) -> Addrs {
    let n = addr_number(ip);
    (IpFamily::of(ip), (n, n))
}

/// Every connection a group's pods may take in (ingress: from these addresses to this pod's
/// ports) or make (egress: to these addresses and ports).
pub(super) fn group_rects(
    policies: &Policies<'_>,
    classes: &[Class<'_>],
    pod: &PodInfo,
    dir: Direction,
    selecting: &[NsName],
    families: &[IpFamily],
) -> Vec<Rect> {
    let mut out = Vec::new();
    for key in selecting {
        for rule in policies.rules(key, dir) {
            match dir {
                Direction::Ingress => {
                    let ports = rule.ports(End::Pod(pod));
                    for addr in peer_ranges(policies, &rule, classes, families) {
                        push(&mut out, addr, &ports);
                    }
                }
                Direction::Egress => {
                    // Named ports resolve on each destination pod; towards other addresses
                    // only numbered ports count.
                    let numbered = rule.ports(End::Ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
                    if !rule.has_peers() {
                        for all in all_addresses(families) {
                            push(&mut out, all, &numbered);
                        }
                    }
                    let blocks: Vec<Addrs> = rule
                        .ip_blocks()
                        .into_iter()
                        .flat_map(|(net, except)| block_ranges(net, &except))
                        .collect();
                    for addr in &blocks {
                        push(&mut out, *addr, &numbered);
                    }
                    let in_blocks = |ip: IpAddr| {
                        let (f, (n, _)) = point(ip);
                        blocks
                            .iter()
                            .any(|(bf, (a, b))| *bf == f && (*a..=*b).contains(&n))
                    };
                    // A pod inside a block: its named ports count too.
                    if !rule.named_ports().is_empty() {
                        for class in classes {
                            let ports = rule.ports(End::Pod(class.rep));
                            for &ip in &class.ips {
                                if in_blocks(ip) {
                                    push(&mut out, point(ip), &ports);
                                }
                            }
                        }
                    }
                    for class in classes {
                        if policies.selects(&rule, class.rep) {
                            let ports = rule.ports(End::Pod(class.rep));
                            for &ip in &class.ips {
                                push(&mut out, point(ip), &ports);
                            }
                        }
                    }
                }
            }
        }
    }
    // A block of a family the cluster does not have: no table to hold it.
    out.retain(|r| families.contains(&r.family));
    out
}

/// The addresses a rule's peers take in: every address without peers, else the matching
/// pods' (each of their addresses) and the ipBlocks'.
pub(super) fn peer_ranges(
    policies: &Policies<'_>,
    rule: &RuleView<'_>,
    classes: &[Class<'_>],
    families: &[IpFamily],
) -> Vec<Addrs> {
    if !rule.has_peers() {
        return all_addresses(families);
    }
    let mut out: Vec<Addrs> = classes
        .iter()
        .filter(|c| policies.selects(rule, c.rep))
        .flat_map(|c| c.ips.iter().map(|ip| point(*ip)))
        .collect();
    for (net, except) in rule.ip_blocks() {
        out.extend(block_ranges(net, &except));
    }
    out
}

/// A block less its exceptions (those of its family), as ranges of its family.
pub(super) fn block_ranges(net: IpNet, except: &[IpNet]) -> Vec<Addrs> {
    let family = IpFamily::of_net(&net);
    let span = |n: &IpNet| (addr_number(n.network()), addr_number(n.broadcast()));
    let mut ranges = vec![span(&net)];
    for e in except.iter().filter(|e| IpFamily::of_net(e) == family) {
        let (a, b) = span(e);
        ranges = ranges
            .into_iter()
            .flat_map(|(lo, hi)| {
                let mut parts = Vec::new();
                if b < lo || a > hi {
                    parts.push((lo, hi));
                } else {
                    if a > lo {
                        parts.push((lo, a - 1));
                    }
                    if b < hi {
                        parts.push((b + 1, hi));
                    }
                }
                parts
            })
            .collect();
    }
    ranges.into_iter().map(|r| (family, r)).collect()
}

pub(super) fn push(out: &mut Vec<Rect>, (family, addr): Addrs, ports: &Ports) {
    match ports {
        Ports::Any => out.push(Rect {
            family,
            addr,
            proto: (0, 255),
            port: (0, u16::MAX),
        }),
        Ports::Some(list) => out.extend(list.iter().map(|(proto, lo, hi)| {
            let n = protocol_number(*proto);
            Rect {
                family,
                addr,
                proto: (n, n),
                port: (*lo, *hi),
            }
        })),
    }
}

/// The number the kernel sees for a protocol.
pub fn protocol_number(p: podnet_model::Protocol) -> u8 {
    match p {
        podnet_model::Protocol::Tcp => 6,
        podnet_model::Protocol::Udp => 17,
        podnet_model::Protocol::Sctp => 132,
    }
}
