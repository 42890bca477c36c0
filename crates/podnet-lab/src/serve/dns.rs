//! The cluster DNS pods: each built-in kube-dns pod runs podnet's DNS server on its port 53
//! (UDP and TCP); all of them share one zone, replaced in place on reload.

use std::sync::Arc;

use podnet_dns::ClusterDns;
use tokio::task::JoinHandle;

use super::bind::{bind_in, Bound};
use crate::plan::PodPlan;
use crate::{LabError, LabState};

/// The cluster DNS state all DNS pods share.
#[derive(Default)]
pub struct Dns {
    shared: Option<Arc<ClusterDns>>,
}

impl Dns {
    /// Loads the zone of `st`: a new zone for running servers, or the server state itself the
    /// first time. The lab has no upstream (nothing in it leads out): other names are refused
    /// at once.
    pub fn load(&mut self, st: &LabState) -> Result<(), LabError> {
        let Some(stored) = &st.dns else {
            return Ok(());
        };
        let zone = podnet_model::dns::DnsZone::from_stored(stored.clone())
            .map_err(|e| LabError::Servers(format!("the stored DNS zone: {e}")))?;
        match &self.shared {
            Some(d) => d.set_zone(zone).map_err(LabError::Dns)?,
            None => {
                self.shared = Some(Arc::new(
                    ClusterDns::new(zone, vec![]).map_err(LabError::Dns)?,
                ))
            }
        }
        Ok(())
    }

    /// Binds a DNS pod's ports and runs the server on them; None for another pod, or before
    /// a zone is loaded.
    pub fn start(&self, pod: &PodPlan) -> Result<Option<Vec<JoinHandle<()>>>, LabError> {
        let Some(dns) = self.shared.clone().filter(|_| pod.dns_server) else {
            return Ok(None);
        };
        let who = pod.key().to_string();
        let ports: Vec<_> = pod.ports.iter().map(|p| (p.port, p.protocol)).collect();
        let (mut udp, mut tcp) = (Vec::new(), Vec::new());
        for (_, b) in bind_in(&pod.netns, &who, &ports)? {
            match b {
                Bound::Udp(s) => udp.push(s),
                Bound::Tcp(l) => tcp.push(l),
            }
        }
        Ok(Some(vec![tokio::spawn(async move {
            if let Err(e) = dns.run(udp, tcp).await {
                eprintln!(
                    "{who}: DNS server stopped: {}",
                    podnet_model::diag::chain(&e)
                );
            }
        })]))
    }
}
