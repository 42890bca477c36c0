//! Building the lab's network: namespaces, the underlay, pods through the CNI plugin, each
//! node's dataplane, the routes from outside.

use super::*;

pub(super) fn build(
    lab: &str,
    cluster: &Cluster,
    exe: &Path,
    agents: bool,
) -> Result<LabState, LabError> {
    let plan = LabPlan::new(lab, cluster);
    install_plugin(lab, exe)?;
    create_namespaces(&plan)?;
    wire_underlay(&plan)?;
    for node in &plan.nodes {
        write_conflist(lab, node, agents)?;
    }
    let pod_ips: BTreeMap<NsName, Vec<IpAddr>> = plan
        .pods
        .iter()
        .filter(|p| p.host_network)
        .filter_map(|p| Some((p.key(), plan.node(&p.node)?.ips())))
        .collect();
    let mut state = LabState::new(plan, pod_ips, agents);
    // The API's clients (agents, DNS and Ingress controller pods) read these.
    agents::prepare(lab, &state.plan, cluster)?;
    if agents {
        // As on a cluster: the nodes' agents run before any pod, whose CNI ADD returns only
        // once its node's agent has programmed it; until then the API shows it Pending,
        // with no address, and none of its processes runs.
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        state.serve_pid = Some(start_servers(lab, exe)?);
        agents::wait(lab, &mut state)?;
        let added = add_pods(lab, &state.plan, &state.plan.pods)?;
        state.pod_ips.extend(added);
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        reload_servers(lab, serve_pid(lab).or(state.serve_pid))?;
    } else {
        let added = add_pods(lab, &state.plan, &state.plan.pods)?;
        state.pod_ips.extend(added);
        program_nodes(&mut state, cluster, &mut change::RealHost { lab })?;
        save_state(lab, &state)?;
        state.serve_pid = Some(start_servers(lab, exe)?);
    }
    agents::wait(lab, &mut state)?;
    save_state(lab, &state)?;
    Ok(state)
}

/// The podnet binary as the lab's CNI plugin.
pub(super) fn install_plugin(lab: &str, exe: &Path) -> Result<(), LabError> {
    let bin = lab_dir(lab).join("bin");
    std::fs::create_dir_all(&bin).map_err(io("creating the lab directory"))?;
    std::os::unix::fs::symlink(exe, bin.join("podnet-cni")).map_err(io("linking the CNI plugin"))
}

/// Every namespace of the plan, with its `/etc/netns` files.
pub(super) fn create_namespaces(plan: &LabPlan) -> Result<(), LabError> {
    let node_resolv = node_resolv_conf_file();
    let host_files = [("resolv.conf", node_resolv.as_str())];
    let hosts = std::iter::once(&plan.underlay_ns)
        .chain([&plan.external.ns, &plan.api.ns])
        .chain(plan.nodes.iter().map(|n| &n.ns));
    for ns in hosts {
        net::netns_add(ns)?;
        if *ns != plan.underlay_ns {
            net::etc_write(ns, &host_files)?;
            // The underlay's links come up without duplicate address detection: the lab's
            // addresses are unique by construction (the global ones are added `nodad`), and
            // while a link's link-local address is tentative (a second or two) the kernel
            // sends no neighbour solicitation for a forwarded packet, so pods routed natively
            // over IPv6 would find the other nodes unreachable just after `lab up`. A device
            // moved into the namespace takes its settings from `default`.
            let mut fx = Linux::named(ns);
            for scope in ["default", "all"] {
                fx.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
            }
        }
    }
    for p in plan.pods.iter().filter(|p| !p.host_network) {
        create_pod_namespace(p)?;
    }
    Ok(())
}

pub(super) fn create_pod_namespace(p: &PodPlan) -> Result<(), LabError> {
    net::netns_add(&p.netns)?;
    net::etc_write(&p.netns, &pod_etc(p))
}

/// The underlay: its bridge, the nodes' and the external client's uplinks and addresses.
pub(super) fn wire_underlay(plan: &LabPlan) -> Result<(), LabError> {
    Linux::named(&plan.underlay_ns).net(&plan.underlay_ops())?;
    Linux::named(&plan.external.ns).net(&plan.external_ops())?;
    Linux::named(&plan.api.ns).net(&plan.api_ops())?;
    for node in &plan.nodes {
        Linux::named(&node.ns).net(&plan.node_ops(node))?;
    }
    Ok(())
}

/// A node's CNI configuration; with agents, its ADD waits for the node's agent.
pub(super) fn write_conflist(
    lab: &str,
    node: &plan::NodePlan,
    agents: bool,
) -> Result<(), LabError> {
    let dir = node_dir(lab, &node.name);
    let netd = dir.join("net.d");
    std::fs::create_dir_all(&netd).map_err(io(netd.display()))?;
    let socket = agents.then(|| agents::socket(lab, &node.name));
    let list = runtime::conflist(node, &dir.join("ipam"), socket.as_deref());
    let path = netd.join(runtime::CONFLIST);
    std::fs::write(&path, serde_json::to_vec_pretty(&list).expect("serializes"))
        .map_err(io(path.display()))
}

pub(super) fn runtime_for(lab: &str, plan: &LabPlan, p: &PodPlan) -> Runtime {
    let node = plan.node(&p.node).expect("pods are on planned nodes");
    Runtime {
        cni_path: lab_dir(lab).join("bin"),
        conf_dir: node_dir(lab, &node.name).join("net.d"),
        node_ns: node.ns.clone(),
    }
}

pub(super) fn result_file(lab: &str, p: &PodPlan) -> PathBuf {
    node_dir(lab, &p.node).join(format!("{}.result.json", p.container_id))
}

/// CNI ADD for one pod, whose namespace exists; its result is kept for DEL.
pub(super) fn add_pod(lab: &str, plan: &LabPlan, pod: &PodPlan) -> Result<Vec<IpAddr>, LabError> {
    let res = runtime_for(lab, plan, pod)
        .run(Op::Add, pod, None)?
        .unwrap_or_default();
    let ip = runtime::result_ips(&res);
    if ip.is_empty() {
        return Err(LabError::Cni {
            pod: pod.key(),
            op: "ADD",
            msg: "the result has no IP".into(),
        });
    }
    let path = result_file(lab, pod);
    std::fs::write(&path, serde_json::to_vec(&res).expect("serializes"))
        .map_err(io(path.display()))?;
    Ok(ip)
}

/// CNI ADD for the pods that have a namespace of their own, a few at a time.
pub(super) fn add_pods(
    lab: &str,
    plan: &LabPlan,
    pods: &[PodPlan],
) -> Result<Vec<(NsName, Vec<IpAddr>)>, LabError> {
    let pods: Vec<&PodPlan> = pods.iter().filter(|p| !p.host_network).collect();
    let workers = 8.min(pods.len().max(1));
    type Added = Vec<(NsName, Vec<IpAddr>)>;
    let results: Vec<Result<Added, LabError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let chunk: Vec<&PodPlan> = pods.iter().skip(w).step_by(workers).copied().collect();
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|pod| Ok((pod.key(), add_pod(lab, plan, pod)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a CNI worker panicked"))
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Makes every node hold its dataplane, computed from the model with the pods' real IPs; then
/// routes LoadBalancer IPs and externalIPs from the external client to the nodes that serve
/// them. Every node is tried; every failure is reported. The state records what each node
/// holds either way.
pub fn program_nodes(
    st: &mut LabState,
    cluster: &Cluster,
    host: &mut dyn change::Host,
) -> Result<(), LabError> {
    let mut c = as_served(st, cluster);
    stamp_gateway_objects(st, &mut c);
    // What each Gateway's proxy will serve: the same function over the same objects.
    let gateways = podnet_gateway::compute(&c);
    st.gateways = st
        .plan
        .pods
        .iter()
        .filter_map(|p| p.gateway.clone())
        .map(|g| {
            let summary = gateways
                .configs
                .get(&g)
                .cloned()
                .unwrap_or_default()
                .summary();
            (g.to_string(), summary)
        })
        .collect();
    // The DNS zone from the same endpoints; the DNS pods load it when the servers reload.
    st.dns = Some(podnet_model::dns::DnsZone::from_cluster(&c).to_stored());
    // What the Ingress controller will serve: the same function over the same objects.
    st.ingress = st
        .plan
        .pods
        .iter()
        .any(|p| p.ingress_controller)
        .then(|| podnet_routes::edge::config(&c).summary());
    // And the API's objects, which the servers' process serves when it reloads (without the
    // status the controllers write: the lab waits for them to write it).
    st.api = podnet_api::project::project(&c);
    st.statuses = crate::statuses::expected(&c, st);
    let dataplanes = NodeDataplane::for_cluster(&c, plan::UPLINK);
    let mut failures = Vec::new();
    if st.agents {
        // The agents program the nodes from the API; the lab waits for them (agents::wait).
        st.expected = dataplanes
            .iter()
            .map(|d| (d.node.clone(), d.clone()))
            .collect();
    }
    for dp in dataplanes.iter().filter(|_| !st.agents) {
        let node = st
            .plan
            .node(&dp.node)
            .expect("the lab's nodes are the model's");
        let held = st.nodes.get(&dp.node).cloned().unwrap_or_default();
        let applied = podnet_node::apply(&held, dp, &mut *host.effects(&node.ns));
        st.nodes.insert(dp.node.clone(), applied.held);
        failures.extend(LabError::of_node(&dp.node, applied.failures));
    }
    st.health_checks = dataplanes
        .iter()
        .flat_map(|d| d.health_checks.iter().cloned())
        .collect();
    if let Err(e) = route_external(st, &c, &dataplanes, host) {
        failures.push(e);
    }
    LabError::all(failures)
}

/// Each external address is routed from the external client to the nodes that serve it (as
/// MetalLB announces); with no endpoint anywhere, to every node (which refuses the connection).
pub(super) fn route_external(
    st: &mut LabState,
    c: &Cluster,
    dataplanes: &[NodeDataplane],
    host: &mut dyn change::Host,
) -> Result<(), LabError> {
    // Through each node's address of the external address's family (IPv6 ones where the
    // nodes have them).
    let node_ip = |n: &crate::plan::NodePlan, v4: bool| if v4 { Some(n.ip) } else { n.ip6 };
    let want: BTreeMap<IpAddr, Vec<IpAddr>> = c
        .services
        .iter()
        .flat_map(|s| s.load_balancer_ips.iter().chain(&s.external_ips))
        .filter(|ip| ip.is_ipv4() || st.plan.node_network_ipv6.is_some())
        .map(|ip| {
            let v4 = ip.is_ipv4();
            let all: Vec<IpAddr> = st
                .plan
                .nodes
                .iter()
                .filter_map(|n| node_ip(n, v4))
                .collect();
            let serving: Vec<IpAddr> = dataplanes
                .iter()
                .filter(|d| d.serves_external.contains(ip))
                .filter_map(|d| st.plan.node(&d.node).and_then(|n| node_ip(n, v4)))
                .collect();
            let via = if serving.is_empty() { all } else { serving };
            (*ip, via)
        })
        .collect();
    let ops = route_changes(&st.external_routes, &want);
    if !ops.is_empty() {
        host.effects(&st.plan.external.ns).net(&ops)?;
    }
    st.external_routes = want;
    Ok(())
}

/// The route operations from one set of external routes to another.
pub(super) fn route_changes(
    from: &BTreeMap<IpAddr, Vec<IpAddr>>,
    to: &BTreeMap<IpAddr, Vec<IpAddr>>,
) -> Vec<NetOp> {
    let gone = from
        .keys()
        .filter(|ip| !to.contains_key(ip))
        .map(|ip| NetOp::DeleteRoute {
            dst: IpNet::from(*ip),
        });
    let changed = to
        .iter()
        .filter(|(ip, via)| from.get(ip) != Some(via))
        .map(|(ip, via)| NetOp::Route {
            dst: IpNet::from(*ip),
            via: via.clone(),
            dev: None,
            onlink: false,
        });
    gone.chain(changed).collect()
}

/// CNI DEL (with the pod's ADD result as prevResult), then its namespace.
pub(super) fn remove_pod(lab: &str, plan: &LabPlan, p: &PodPlan) -> Result<(), LabError> {
    if p.host_network {
        return Ok(());
    }
    let path = result_file(lab, p);
    let prev: Option<AddResult> = std::fs::read(&path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    runtime_for(lab, plan, p).run(Op::Del, p, prev.as_ref())?;
    let _ = std::fs::remove_file(&path);
    net::netns_del(&p.netns)
}
