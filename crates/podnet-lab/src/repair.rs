//! A change interrupted at any point (SIGINT, SIGKILL, the machine's power) leaves the lab as
//! the next command finds it: that command, holding the lab's lock, repairs it first. The
//! saved state says what runs as of the change's last step saved; the machine may hold more (a
//! pod created and not yet recorded) or less (a pod removed and not yet recorded). Whatever
//! the state does not know is removed (CNI DEL, its namespace, its address), and a pod the
//! state knows whose namespace is gone is dropped from the state; the change that follows
//! programs the rest from the state as it then is.

use std::collections::BTreeSet;

use podnet_model::NsName;

use crate::plan::{self, PodPlan};
use crate::{net, node_dir, LabError, LabState};

/// One thing repaired, said to the user.
pub type Repaired = String;

/// The reservation files of a node's IPAM: (path, the container ID it holds).
fn reservations(lab: &str, node: &str) -> Vec<(std::path::PathBuf, String)> {
    let dir = node_dir(lab, node).join("ipam").join("podnet");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            name.parse::<std::net::IpAddr>().ok()?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((
                e.path(),
                text.lines().next().unwrap_or("").trim().to_string(),
            ))
        })
        .collect()
}

/// The pod a leftover namespace was made for, when its name says (not for hashed names).
fn pod_of_netns(lab: &str, ns: &str) -> Option<NsName> {
    let rest = ns.strip_prefix(&format!("{}p.", plan::prefix(lab)))?;
    let (namespace, name) = rest.split_once('.')?;
    Some(NsName::new(namespace, name))
}

/// Brings `st` and the machine back in line after an interrupted change; returns what it did.
/// `st` is saved by the caller if anything was repaired.
pub fn repair(lab: &str, st: &mut LabState) -> Result<Vec<Repaired>, LabError> {
    let mut done = Vec::new();
    let mut problems = Vec::new();
    let known = of_pods(st, |p| &p.netns);
    // 1. Namespaces of pods the state does not know: a create not recorded, or a removal
    // not finished.
    for ns in net::netns_list(&format!("{}p", plan::prefix(lab))) {
        if known.contains(&ns) {
            continue;
        }
        let pod = pod_of_netns(lab, &ns);
        let node = pod.as_ref().and_then(|k| {
            let id = plan::container_id(lab, k);
            st.plan
                .nodes
                .iter()
                .find(|n| reservations(lab, &n.name).iter().any(|(_, c)| *c == id))
                .map(|n| n.name.clone())
        });
        let result = match (&pod, node) {
            (Some(k), Some(node)) => {
                // A CNI DEL as for any pod: its interface, its address, the agent's record.
                let p = PodPlan {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                    node,
                    netns: ns.clone(),
                    container_id: plan::container_id(lab, k),
                    ..Default::default()
                };
                crate::remove_pod(lab, &st.plan, &p)
            }
            _ => net::netns_del(&ns),
        };
        let _ = net::etc_remove(&ns);
        match result {
            Ok(()) => done.push(format!(
                "removed {}, left by an interrupted change",
                pod.map_or(ns.clone(), |k| format!("pod {k}"))
            )),
            Err(e) => problems.push(e),
        }
    }
    // 2. Pods the state knows whose namespace is gone: a removal not recorded.
    let present: BTreeSet<String> = net::netns_list(&plan::prefix(lab)).into_iter().collect();
    let gone: Vec<PodPlan> = st
        .plan
        .pods
        .iter()
        .filter(|p| !p.host_network && !present.contains(&p.netns))
        .cloned()
        .collect();
    for p in gone {
        st.plan.pods.retain(|q| q.key() != p.key());
        st.pod_ips.remove(&p.key());
        let _ = std::fs::remove_file(
            node_dir(lab, &p.node).join(format!("{}.result.json", p.container_id)),
        );
        done.push(format!(
            "pod {} is gone (an interrupted change removed it): dropped from the lab's state",
            p.key()
        ));
    }
    // 3. Addresses reserved for no pod the state knows.
    let ids = of_pods(st, |p| &p.container_id);
    for n in &st.plan.nodes {
        for (path, id) in reservations(lab, &n.name) {
            if ids.contains(&id) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => done.push(format!(
                    "released {} on {} (reserved for {id}, which no pod is)",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    n.name
                )),
                Err(source) => problems.push(LabError::Io {
                    what: format!("releasing {}", path.display()),
                    source,
                }),
            }
        }
    }
    LabError::all(problems)?;
    Ok(done)
}

/// One name of each of the lab's pods that has a namespace of its own (not host-network).
fn of_pods(st: &LabState, name: impl Fn(&PodPlan) -> &String) -> BTreeSet<String> {
    st.plan
        .pods
        .iter()
        .filter(|p| !p.host_network)
        .map(|p| name(p).clone())
        .collect()
}
