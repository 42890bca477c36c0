//! One pod's test servers as a process of its own (`podnet lab pod --name L --pod ns/name`),
//! as a container is: the lab's server process starts it in the pod's namespace and keeps it
//! running, and it outlives that process (killed, started again, it takes this one back), so
//! connections to the pod never notice. It reads the lab's state for its pod's ports, serves
//! them ([`super::agnhost`]), and on SIGHUP reads the state again and serves what changed;
//! it ends when its pod is gone from the state. Once it serves what the state asks, it
//! records those ports in [`ports_file`] for the server process to wait on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use podnet_model::{NsName, Protocol};
use tokio::sync::Semaphore;

use crate::plan::PodPlan;
use crate::LabError;

/// Where a pod's process records the ports it serves (what the state asked of it).
pub fn ports_file(lab: &str, pod: &NsName) -> PathBuf {
    crate::lab_dir(lab)
        .join("pods")
        .join(format!("{}.{}.ports.json", pod.namespace, pod.name))
}

/// The ports `ports_file` says the pod's process serves, if it says any.
pub fn served(lab: &str, pod: &NsName) -> Option<BTreeSet<(u16, Protocol)>> {
    let b = std::fs::read(ports_file(lab, pod)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// The command line of a pod's process.
pub fn command(exe: &std::path::Path, lab: &str, pod: &PodPlan) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["lab", "pod", "--name", lab, "--pod"])
        .arg(pod.key().to_string());
    cmd
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.to_string();
    move |source| LabError::Io { what, source }
}

/// Serves pod `key`'s ports until the pod is gone from the lab's state (or the process is
/// killed).
pub fn run(lab: &str, key: &NsName) -> Result<(), LabError> {
    let limit = super::raise_fd_limit();
    // Half of what is left after a reserve goes to the connections.
    let budget = Arc::new(Semaphore::new(
        (limit.saturating_sub(256) / 2).clamp(64, 32_768) as usize,
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("the pod's runtime"))?;
    rt.block_on(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(io("waiting for SIGHUP"))?;
        let mut tasks: BTreeMap<(u16, Protocol), tokio::task::JoinHandle<()>> = BTreeMap::new();
        loop {
            let st = crate::load_state(lab)?;
            let Some(p) = st.plan.pods.iter().find(|p| p.key() == *key) else {
                eprintln!("{key}: gone from the lab; stopping");
                return Ok(());
            };
            let want = super::test_ports(p);
            let gone: Vec<_> = tasks
                .keys()
                .filter(|k| !want.contains(k))
                .copied()
                .collect();
            for k in gone {
                if let Some(t) = tasks.remove(&k) {
                    t.abort();
                    let _ = t.await;
                }
            }
            let missing: Vec<_> = want
                .iter()
                .filter(|k| !tasks.contains_key(k))
                .copied()
                .collect();
            tasks.extend(super::agnhost::start(p, &missing, &budget)?);
            let file = ports_file(lab, key);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
            }
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(&want).expect("JSON"))
                .map_err(io(tmp.display()))?;
            std::fs::rename(&tmp, &file).map_err(io(file.display()))?;
            if hup.recv().await.is_none() {
                return Ok(());
            }
        }
    })
}
