//! The processes of a lab: one process (`podnet lab serve`) holds every server of the lab,
//! each in a module of its own:
//! - [`agnhost`]: the test servers of the pods, like upstream's agnhost;
//! - [`dns`]: the cluster DNS pods;
//! - [`health`]: kube-proxy's health-check servers of every node.
//!
//! They share [`bind::bind_in`], which binds a socket inside a pod's or node's namespace.

pub mod agnhost;
pub mod bind;
pub mod dns;
pub mod health;

use std::collections::HashMap;

use podnet_model::NsName;
use tokio::task::JoinHandle;

use crate::plan::PodPlan;
use crate::{LabError, LabState};

/// The running servers.
#[derive(Default)]
struct Running {
    /// Per pod: its plan (to see it change) and its tasks.
    pods: HashMap<NsName, (PodPlan, Vec<JoinHandle<()>>)>,
    health: health::HealthServers,
    dns: dns::Dns,
}

impl Running {
    /// Brings the running servers in line with `st`: new pods get theirs, removed or changed
    /// pods lose theirs, the others are not touched.
    fn reconcile(&mut self, st: &LabState) -> Result<(), LabError> {
        // The zone first, so that DNS pods started below serve the new one.
        self.dns.load(st)?;
        let want: HashMap<NsName, &PodPlan> = st
            .plan
            .pods
            .iter()
            .filter(|p| !p.ports.is_empty())
            .map(|p| (p.key(), p))
            .collect();
        self.pods.retain(|k, (plan, tasks)| {
            let keep = want.get(k).is_some_and(|p| **p == *plan);
            if !keep {
                tasks.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        for (k, p) in want {
            if self.pods.contains_key(&k) {
                continue;
            }
            let tasks = match p.dns_server {
                true => match self.dns.start(p)? {
                    Some(t) => t,
                    None => agnhost::start(p)?,
                },
                false => agnhost::start(p)?,
            };
            self.pods.insert(k, (p.clone(), tasks));
        }
        self.health.reconcile(st)
    }
}

/// Runs the servers of a lab until killed. Prints `ready` on stdout once every socket is bound.
/// On SIGHUP it re-reads the lab's state and reconciles, then writes the number of reloads to
/// `serve.gen`.
pub fn run(lab: &str) -> Result<(), LabError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| LabError::Io {
            what: "the servers' runtime".into(),
            source,
        })?;
    rt.block_on(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|source| LabError::Io {
                what: "waiting for SIGHUP".into(),
                source,
            })?;
        let mut running = Running::default();
        running.reconcile(&crate::load_state(lab)?)?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let mut generation = 0u64;
        while hup.recv().await.is_some() {
            generation += 1;
            let start = std::time::Instant::now();
            match crate::load_state(lab).and_then(|st| running.reconcile(&st)) {
                Ok(()) => {
                    eprintln!(
                        "reload {generation}: done in {:.1} ms",
                        start.elapsed().as_secs_f64() * 1e3
                    );
                    let _ = std::fs::write(
                        crate::lab_dir(lab).join("serve.gen"),
                        generation.to_string(),
                    );
                }
                Err(e) => eprintln!("reload {generation}: {}", podnet_node::chain(&e)),
            }
        }
        Ok(())
    })
}
