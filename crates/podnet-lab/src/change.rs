//! Changing a running lab, all or nothing.
//!
//! Everything that can be checked is checked before anything is touched (the plan, the nodes,
//! the server process). Then each step is recorded as it succeeds; if a later one fails, the
//! recorded steps are undone in reverse (a removed pod is created again with its address, an
//! added one removed, the nodes' dataplanes brought back to what they held), and the state
//! always describes what runs, step by step, whatever happens.
//!
//! The lab's effects on the machine go through [`Host`]: [`RealHost`] for real, and a fake in
//! the tests that fails each call in turn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use podnet_model::{Cluster, NsName};
use podnet_node::effects::{Effects, Linux};
use podnet_node::Held;

use crate::plan::{LabPlan, PodPlan};
use crate::{program_nodes, route_changes, LabError, LabState};

/// What changing a lab does to the machine.
pub trait Host {
    /// Creates a pod's namespace and runs CNI ADD (for its planned address, if any); returns
    /// the address it got. On failure nothing of the pod is left.
    fn create_pod(&mut self, plan: &LabPlan, pod: &PodPlan) -> Result<Vec<IpAddr>, LabError>;
    /// CNI DEL, then the pod's namespace.
    fn remove_pod(&mut self, plan: &LabPlan, pod: &PodPlan) -> Result<(), LabError>;
    /// The effects inside a namespace of the lab (a node's, the external client's).
    fn effects(&mut self, netns: &str) -> Box<dyn Effects + '_>;
    /// Waits until what `st` now says is served (the API's objects, and the agents, DNS and
    /// Ingress controller pods that follow them): pods that leave go only after, as a pod
    /// leaves its Service's endpoints before it is killed.
    fn settle(&mut self, _st: &mut LabState) -> Result<(), LabError> {
        Ok(())
    }
}

/// The machine itself.
pub struct RealHost<'a> {
    pub lab: &'a str,
}

impl Host for RealHost<'_> {
    fn settle(&mut self, st: &mut LabState) -> Result<(), LabError> {
        if st.serve_pid.is_none() {
            return Ok(());
        }
        crate::save_state(self.lab, st)?;
        crate::reload_servers(self.lab, crate::serve_pid(self.lab).or(st.serve_pid))?;
        crate::agents::wait(self.lab, st)
    }

    fn create_pod(&mut self, plan: &LabPlan, pod: &PodPlan) -> Result<Vec<IpAddr>, LabError> {
        if pod.host_network {
            return plan.node(&pod.node).map(|n| n.ips()).ok_or_else(|| {
                LabError::Invalid(format!("pod {}: no node {}", pod.key(), pod.node))
            });
        }
        crate::create_pod_namespace(pod)?;
        crate::add_pod(self.lab, plan, pod).inspect_err(|_| {
            let _ = crate::net::netns_del(&pod.netns);
        })
    }

    fn remove_pod(&mut self, plan: &LabPlan, pod: &PodPlan) -> Result<(), LabError> {
        crate::remove_pod(self.lab, plan, pod)
    }

    fn effects(&mut self, netns: &str) -> Box<dyn Effects + '_> {
        Box::new(Linux::named(netns))
    }
}

/// What `apply` changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub added: Vec<NsName>,
    pub removed: Vec<NsName>,
    pub unchanged: usize,
    /// How long each new pod's namespace and CNI ADD took (with agents, the ADD's wait for the
    /// node's agent), in milliseconds.
    pub cni_add_ms: Vec<(NsName, f64)>,
}

/// The pods to create and to delete to go from `old` to `new`: a pod is the same when
/// everything but its planned IP and its Service-targeted ports is.
pub fn pod_changes(old: &LabPlan, new: &LabPlan) -> (Vec<PodPlan>, Vec<PodPlan>) {
    // Neither the address nor the ports Services target make another pod.
    let unplanned = |p: &PodPlan| PodPlan {
        planned_ips: Vec::new(),
        service_ports: Vec::new(),
        ..p.clone()
    };
    let index = |plan: &LabPlan| -> BTreeMap<NsName, PodPlan> {
        plan.pods.iter().map(|p| (p.key(), unplanned(p))).collect()
    };
    let (o, n) = (index(old), index(new));
    // Those only in `a`, or different there.
    let only = |a: &BTreeMap<NsName, PodPlan>, b: &BTreeMap<NsName, PodPlan>, full: &LabPlan| {
        full.pods
            .iter()
            .filter(|p| b.get(&p.key()) != a.get(&p.key()))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut removed = only(&o, &n, old);
    let mut added = only(&n, &o, new);
    removed.sort_by_key(PodPlan::key);
    added.sort_by_key(PodPlan::key);
    (added, removed)
}

/// A step that succeeded, to undo if a later one fails.
enum Done {
    /// A pod was removed; it had these addresses.
    Removed(PodPlan, Vec<IpAddr>),
    Added(PodPlan),
    /// The nodes were programmed; what they held before, and the external routes.
    Programmed {
        nodes: BTreeMap<String, Held>,
        external_routes: BTreeMap<IpAddr, Vec<IpAddr>>,
    },
}

/// Changes the lab in `st` to `next` (the plan of `cluster`), all or nothing: on failure every
/// step done is undone and the error says what failed. `st` describes what runs throughout.
/// The order keeps traffic flowing: new pods first, then the nodes' dataplanes (which stop
/// sending to the pods that leave), then the pods that leave.
pub fn apply_with(
    st: &mut LabState,
    cluster: &Cluster,
    next: LabPlan,
    host: &mut dyn Host,
) -> Result<ApplyReport, LabError> {
    if next.nodes != st.plan.nodes {
        return Err(LabError::Invalid(
            "the nodes changed; nodes cannot change in a running lab: lab down, then lab up".into(),
        ));
    }
    let before = st.clone();
    let (added, removed) = pod_changes(&st.plan, &next);
    let staying: BTreeSet<NsName> = next.pods.iter().map(PodPlan::key).collect();
    let (replaced, leaving): (Vec<PodPlan>, Vec<PodPlan>) = removed
        .iter()
        .cloned()
        .partition(|p| staying.contains(&p.key()));
    let mut done = Vec::new();
    let mut cni_add_ms = Vec::new();
    let outcome = steps(
        st,
        cluster,
        host,
        &mut done,
        &mut cni_add_ms,
        [&replaced, &added, &leaving],
    );
    if let Err(cause) = outcome {
        let failures = undo(st, host, done, &before);
        if failures.is_empty() {
            // Back as it was, pod for pod: the plan as before, with what really runs.
            let now = std::mem::replace(st, before);
            st.pod_ips = now.pod_ips;
            st.nodes = now.nodes;
            st.external_routes = now.external_routes;
            for p in st.plan.pods.iter_mut() {
                p.planned_ips = st.pod_ips.get(&p.key()).cloned().unwrap_or_default();
            }
        }
        return Err(LabError::NotApplied {
            cause: Box::new(cause),
            rollback: failures,
        });
    }
    st.plan = next;
    for p in st.plan.pods.iter_mut() {
        p.planned_ips = st.pod_ips.get(&p.key()).cloned().unwrap_or_default();
    }
    Ok(ApplyReport {
        unchanged: st.plan.pods.len() - added.len(),
        added: added.iter().map(PodPlan::key).collect(),
        removed: removed.iter().map(PodPlan::key).collect(),
        cni_add_ms,
    })
}

/// The steps of a change, each recorded in `done` as it succeeds.
fn steps(
    st: &mut LabState,
    cluster: &Cluster,
    host: &mut dyn Host,
    done: &mut Vec<Done>,
    cni_add_ms: &mut Vec<(NsName, f64)>,
    [replaced, added, leaving]: [&Vec<PodPlan>; 3],
) -> Result<(), LabError> {
    // 1. A pod that changed is replaced: its old namespace and address go first.
    for p in replaced {
        remove(st, host, p, done)?;
    }
    // 2. With agents, each new pod's CNI ADD waits for its node's agent, which reads the pod
    // from the API: the API shows the new pods first, Pending with no address (as a pod is
    // before its kubelet has run it), the pods that leave still running.
    if st.agents && !added.is_empty() {
        done.push(Done::Programmed {
            nodes: st.nodes.clone(),
            external_routes: st.external_routes.clone(),
        });
        program_nodes(st, &served_as(cluster, &st.api, leaving, false), host)?;
        host.settle(st)?;
    }
    // New pods, at their planned address unless a pod that stays already has it.
    for p in added {
        let mut p = p.clone();
        if p.planned_ips
            .iter()
            .any(|ip| st.pod_ips.values().any(|v| v.contains(ip)))
        {
            p.planned_ips.clear();
        }
        let started = std::time::Instant::now();
        create(st, host, &p)?;
        cni_add_ms.push((p.key(), started.elapsed().as_secs_f64() * 1e3));
        done.push(Done::Added(p));
    }
    // 3. The nodes' dataplanes, which no longer send to the pods that leave.
    done.push(Done::Programmed {
        nodes: st.nodes.clone(),
        external_routes: st.external_routes.clone(),
    });
    // A new pod is programmed (its policy entries on its node, its servers bound, its DNS
    // name) before any Service sends to it, as a pod is Ready only once it runs: first the
    // lab with the new pods' endpoints not ready yet, then (below) ready.
    if !added.is_empty() {
        let new: BTreeSet<NsName> = added.iter().map(PodPlan::key).collect();
        program_nodes(st, &not_ready_yet(cluster, &new), host)?;
        host.settle(st)?;
    }
    // The pods that leave are not in `cluster`, so no endpoint, zone or policy takes their
    // addresses in: they stay in `st.pod_ips`, which says what runs, until they are gone.
    if leaving.is_empty() {
        return program_nodes(st, cluster, host);
    }
    // The pods that leave are Terminating first, as on a cluster: still in the API with their
    // addresses (their nodes keep their policy entries, as the agents see them), out of every
    // Service's endpoints; so no node ever sends to a pod that its own node no longer knows,
    // whichever watch an agent hears first.
    program_nodes(st, &served_as(cluster, &st.api, leaving, true), host)?;
    host.settle(st)?;
    // 4. The pods that leave.
    for p in leaving {
        remove(st, host, p, done)?;
    }
    program_nodes(st, cluster, host)
}

/// `cluster` with `leaving`'s pods in it as they were (read back from what the API served);
/// when `terminating`, Terminating and not ready, their endpoints out.
fn served_as(
    cluster: &Cluster,
    served: &[serde_json::Value],
    leaving: &[PodPlan],
    terminating: bool,
) -> Cluster {
    let keys: BTreeSet<NsName> = leaving.iter().map(PodPlan::key).collect();
    let pods = served.iter().filter(|o| {
        o["kind"] == "Pod"
            && keys.contains(&NsName::new(
                o["metadata"]["namespace"].as_str().unwrap_or("default"),
                o["metadata"]["name"].as_str().unwrap_or(""),
            ))
    });
    let mut c = cluster.clone();
    let settings = cluster.config.overrides();
    let Ok((m, _)) = podnet_model::ApiModel::of_objects(pods, &settings) else {
        return c;
    };
    for p in &m.cluster().pods {
        let mut p = p.clone();
        // The model keeps only the spec fields it reads; these pods go back to the API whole.
        if let Some(spec) = served
            .iter()
            .find(|o| {
                o["kind"] == "Pod"
                    && o["metadata"]["name"] == p.name.as_str()
                    && o["metadata"]["namespace"].as_str().unwrap_or("default") == p.namespace
            })
            .and_then(|o| serde_json::from_value(o["spec"].clone()).ok())
        {
            p.spec = std::sync::Arc::new(spec);
        }
        if terminating {
            p.terminating = true;
            p.ready = false;
        }
        if let Err(at) = c.pods.binary_search_by(|q| {
            (q.namespace.as_str(), q.name.as_str()).cmp(&(&p.namespace, &p.name))
        }) {
            c.pods.insert(at, p);
        }
    }
    c
}

/// The cluster with the pods at `ips` not ready yet, and so their endpoints not ready (nor
/// serving): no Service sends to them. The pods themselves: [`program_nodes`] computes the
/// EndpointSlices again from the pods' readiness (marking the slices alone was undone there,
/// and a new endpoint went out ready with its pod, before the pod's node could know it).
fn not_ready_yet(cluster: &Cluster, pods: &BTreeSet<NsName>) -> Cluster {
    let mut c = cluster.clone();
    for p in &mut c.pods {
        if pods.contains(&p.key()) {
            p.ready = false;
        }
    }
    c
}

fn remove(
    st: &mut LabState,
    host: &mut dyn Host,
    p: &PodPlan,
    done: &mut Vec<Done>,
) -> Result<(), LabError> {
    host.remove_pod(&st.plan, p)?;
    st.plan.pods.retain(|q| q.key() != p.key());
    let ips = st.pod_ips.remove(&p.key()).unwrap_or_default();
    done.push(Done::Removed(p.clone(), ips));
    Ok(())
}

fn create(st: &mut LabState, host: &mut dyn Host, p: &PodPlan) -> Result<(), LabError> {
    let ips = host.create_pod(&st.plan, p)?;
    st.plan.pods.push(PodPlan {
        planned_ips: ips.clone(),
        ..p.clone()
    });
    st.pod_ips.insert(p.key(), ips);
    Ok(())
}

/// Undoes `done` in reverse; returns what could not be undone (the state says what runs).
fn undo(
    st: &mut LabState,
    host: &mut dyn Host,
    done: Vec<Done>,
    before: &LabState,
) -> Vec<LabError> {
    let mut failures = Vec::new();
    for step in done.into_iter().rev() {
        let result = match step {
            Done::Removed(p, ips) => create(
                st,
                host,
                &PodPlan {
                    planned_ips: ips,
                    ..p
                },
            ),
            Done::Added(p) => host.remove_pod(&st.plan, &p).map(|()| {
                st.plan.pods.retain(|q| q.key() != p.key());
                st.pod_ips.remove(&p.key());
            }),
            Done::Programmed {
                nodes,
                external_routes,
            } => restore_nodes(st, host, &nodes, &external_routes).map(|()| {
                st.health_checks = before.health_checks.clone();
                st.dns = before.dns.clone();
                st.ingress = before.ingress.clone();
                st.statuses = before.statuses.clone();
            }),
        };
        if let Err(e) = result {
            failures.push(e);
        }
    }
    failures
}

/// Brings every node back to what it held, and the external routes back to what they were.
fn restore_nodes(
    st: &mut LabState,
    host: &mut dyn Host,
    nodes: &BTreeMap<String, Held>,
    routes: &BTreeMap<IpAddr, Vec<IpAddr>>,
) -> Result<(), LabError> {
    let mut failures = Vec::new();
    for node in st.plan.nodes.clone() {
        let (Some(now), Some(was)) = (st.nodes.get(&node.name), nodes.get(&node.name)) else {
            continue;
        };
        let applied = podnet_node::restore(now, was, &node.name, &mut *host.effects(&node.ns));
        st.nodes.insert(node.name.clone(), applied.held);
        failures.extend(LabError::of_node(&node.name, applied.failures));
    }
    let ops = route_changes(&st.external_routes, routes);
    if !ops.is_empty() {
        match host.effects(&st.plan.external.ns).net(&ops) {
            Ok(()) => st.external_routes = routes.clone(),
            Err(e) => failures.push(e.into()),
        }
    }
    LabError::all(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_emulator::{build, build_with};
    use podnet_model::{parse_documents, ConfigOverrides};
    use podnet_node::effects::Recording;
    use podnet_proxy::nft::StaleUdpFlow;

    /// A fake machine: pods by key, and a recording fake per namespace. Call number `fail_at`
    /// (counting every call) fails, once.
    #[derive(Clone, Default)]
    struct FakeHost {
        calls: usize,
        fail_at: Option<usize>,
        /// The API's objects at each settle.
        settled: Vec<Vec<serde_json::Value>>,
        pods: BTreeMap<NsName, IpAddr>,
        next: u32,
        netns: BTreeMap<String, Recording>,
    }

    fn tick(calls: &mut usize, fail_at: Option<usize>) -> Result<(), LabError> {
        let n = *calls;
        *calls += 1;
        if fail_at == Some(n) {
            return Err(LabError::Invalid(format!("call {n} failed on purpose")));
        }
        Ok(())
    }

    impl Host for FakeHost {
        fn settle(&mut self, st: &mut LabState) -> Result<(), LabError> {
            self.settled.push(st.api.clone());
            Ok(())
        }

        fn create_pod(&mut self, plan: &LabPlan, pod: &PodPlan) -> Result<Vec<IpAddr>, LabError> {
            tick(&mut self.calls, self.fail_at)?;
            if pod.host_network {
                return Ok(plan.node(&pod.node).unwrap().ips());
            }
            assert!(
                !self.pods.contains_key(&pod.key()),
                "{} created twice",
                pod.key()
            );
            let ip = match pod.planned_ips.first() {
                Some(ip) if !self.pods.values().any(|v| v == ip) => *ip,
                _ => {
                    self.next += 1;
                    IpAddr::from([10, 250, (self.next >> 8) as u8, self.next as u8])
                }
            };
            self.pods.insert(pod.key(), ip);
            Ok(vec![ip])
        }

        fn remove_pod(&mut self, _: &LabPlan, pod: &PodPlan) -> Result<(), LabError> {
            tick(&mut self.calls, self.fail_at)?;
            if !pod.host_network {
                assert!(
                    self.pods.remove(&pod.key()).is_some(),
                    "{} is not there",
                    pod.key()
                );
            }
            Ok(())
        }

        fn effects(&mut self, netns: &str) -> Box<dyn Effects + '_> {
            Box::new(Counting {
                calls: &mut self.calls,
                fail_at: self.fail_at,
                inner: self.netns.entry(netns.to_string()).or_default(),
            })
        }
    }

    struct Counting<'a> {
        calls: &'a mut usize,
        fail_at: Option<usize>,
        inner: &'a mut Recording,
    }

    impl Effects for Counting<'_> {
        fn nft(
            &mut self,
            tx: &podnet_proxy::nft::Transaction,
        ) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.nft(tx)
        }
        fn nft_policy(
            &mut self,
            tx: &podnet_policy::Transaction,
        ) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.nft_policy(tx)
        }
        fn nft_masquerade(
            &mut self,
            m: &podnet_node::dataplane::Masquerade,
        ) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.nft_masquerade(m)
        }
        fn net(&mut self, ops: &[podnet_node::net::NetOp]) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.net(ops)
        }
        fn forget_udp_flow(&mut self, f: &StaleUdpFlow) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.forget_udp_flow(f)
        }
        fn sysctl(&mut self, k: &str, v: &str) -> Result<(), podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.sysctl(k, v)
        }
        fn observe(
            &mut self,
            want: &podnet_node::NodeDataplane,
        ) -> Result<podnet_node::verify::Observed, podnet_node::NodeError> {
            tick(self.calls, self.fail_at).map_err(failed)?;
            self.inner.observe(want)
        }
    }

    fn failed(e: LabError) -> podnet_node::NodeError {
        podnet_node::NodeError::Command {
            cmd: "fake".into(),
            status: Some(1),
            stderr: e.to_string(),
        }
    }

    /// What the fake machine holds: pods with addresses, and per namespace its proxy table,
    /// routes, neighbours and FDB entries.
    type World = (BTreeMap<NsName, IpAddr>, BTreeMap<String, String>);

    fn world(h: &FakeHost) -> World {
        let tables = h
            .netns
            .iter()
            .map(|(ns, r)| {
                (
                    ns.clone(),
                    format!(
                        "{:?} {:?} {:?} {:?}",
                        r.table, r.routes, r.neighbours, r.fdb
                    ),
                )
            })
            .collect();
        (h.pods.clone(), tables)
    }

    const BEFORE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Pod
metadata: {name: leaving, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: changing}
spec: {containers: [{name: c, image: x}]}
"#;

    const AFTER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: web}, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: more}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 8080, targetPort: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: changing, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
"#;

    /// A lab of `BEFORE` on the fake machine.
    fn lab() -> (LabState, FakeHost) {
        let c1 = build(
            &parse_documents("b.yaml", BEFORE).unwrap(),
            &ConfigOverrides::default(),
        )
        .unwrap();
        let plan = LabPlan::new("t", &c1);
        let mut host = FakeHost::default();
        let mut st = LabState::new(plan.clone(), BTreeMap::new(), false);
        for p in &plan.pods {
            let ip = host.create_pod(&plan, p).unwrap();
            st.pod_ips.insert(p.key(), ip);
        }
        program_nodes(&mut st, &c1, &mut host).unwrap();
        (st, host)
    }

    fn after(st: &LabState) -> Cluster {
        build_with(
            &parse_documents("a.yaml", AFTER).unwrap(),
            &ConfigOverrides::default(),
            &st.placements(),
        )
        .unwrap()
    }

    #[test]
    fn a_change_applies_whole() {
        let (mut st, mut host) = lab();
        let c2 = after(&st);
        host.calls = 0;
        let r = apply_with(&mut st, &c2, LabPlan::new("t", &c2), &mut host).unwrap();
        assert_eq!(r.added.len(), 2, "a replica and the changed pod: {r:?}");
        assert_eq!(
            r.removed.len(),
            2,
            "the leaving pod and the changed one: {r:?}"
        );
        let keys: BTreeSet<NsName> = st.plan.pods.iter().map(PodPlan::key).collect();
        assert_eq!(keys, c2.pods.iter().map(|p| p.key()).collect());
        assert_eq!(
            host.pods.keys().collect::<BTreeSet<_>>(),
            st.pod_ips
                .keys()
                .filter(|k| host.pods.contains_key(k))
                .collect()
        );
        assert_eq!(st.external_routes.len(), 2);
    }

    /// Issue 10, defect 2: a failing `lab apply` left the lab half-changed (12 of 14 pods gone,
    /// an orphan namespace, a state that no longer said what ran). Each call of the change is
    /// made to fail in turn: every time, the machine and the state are exactly as before.
    #[test]
    fn a_failure_at_any_step_leaves_the_lab_as_it_was() {
        let (st0, host0) = lab();
        let c2 = after(&st0);
        let mut probe = host0.clone();
        probe.calls = 0;
        apply_with(&mut st0.clone(), &c2, LabPlan::new("t", &c2), &mut probe).unwrap();
        let total = probe.calls;
        assert!(total >= 8, "pods, nodes and routes: {total} calls");
        for k in 0..total {
            let mut host = host0.clone();
            host.calls = 0;
            host.fail_at = Some(k);
            let mut st = st0.clone();
            let err = apply_with(&mut st, &c2, LabPlan::new("t", &c2), &mut host).unwrap_err();
            let msg = podnet_node::chain(&err);
            assert!(msg.contains("the lab is as it was"), "call {k}: {msg}");
            assert!(
                msg.contains(&format!("call {k} failed on purpose")),
                "call {k}: {msg}"
            );
            assert_eq!(world(&host), world(&host0), "call {k}: the machine");
            assert_eq!(st.pod_ips, st0.pod_ips, "call {k}");
            assert_eq!(st.plan, st0.plan, "call {k}");
            assert_eq!(st.external_routes, st0.external_routes, "call {k}");
            for (node, held) in &st0.nodes {
                assert_eq!(st.nodes[node].proxy, held.proxy, "call {k}: {node}");
                assert_eq!(st.nodes[node].remotes, held.remotes, "call {k}: {node}");
            }
            // And the same change then applies.
            host.fail_at = None;
            apply_with(&mut st, &c2, LabPlan::new("t", &c2), &mut host).unwrap();
        }
    }

    /// The ready condition of each endpoint at `ip` in the API's EndpointSlices.
    fn endpoint_ready(api: &[serde_json::Value], ip: IpAddr) -> Vec<bool> {
        api.iter()
            .filter(|o| o["kind"] == "EndpointSlice")
            .flat_map(|o| o["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| {
                e["addresses"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&ip.to_string())))
            })
            .map(|e| e["conditions"]["ready"] == true)
            .collect()
    }

    /// Issue 20: a new pod's endpoints are not ready in the API until every node holds the
    /// pod (the lab's settle waits for that): they went out ready with the pod itself, so a
    /// client's node could send to the pod before the pod's own node knew it, and that node
    /// dropped the connection (about 1 in 1,500 under the API's faults).
    #[test]
    fn a_new_pods_endpoints_are_ready_only_after_the_pod_was_settled() {
        let (mut st, mut host) = lab();
        st.agents = true;
        let c2 = after(&st);
        apply_with(&mut st, &c2, LabPlan::new("t", &c2), &mut host).unwrap();
        let before: BTreeSet<NsName> = lab().0.pod_ips.keys().cloned().collect();
        let new: Vec<IpAddr> = st
            .pod_ips
            .iter()
            .filter(|(k, _)| !before.contains(*k) && k.name.starts_with("web"))
            .flat_map(|(_, ips)| ips.iter().copied())
            .collect();
        assert_eq!(new.len(), 1, "{:?}", st.pod_ips);
        // Settled: the new pods published (no address), then with their address, not ready;
        // (then the leaving pods, Terminating).
        assert!(host.settled.len() >= 2, "{}", host.settled.len());
        for ip in &new {
            let at_phase_a = endpoint_ready(&host.settled[1], *ip);
            assert!(
                !at_phase_a.is_empty() && at_phase_a.iter().all(|r| !r),
                "{ip}: {at_phase_a:?}"
            );
            let last = endpoint_ready(&st.api, *ip);
            assert!(
                !last.is_empty() && last.iter().all(|r| *r),
                "{ip}: {last:?}"
            );
        }
    }
}
