//! The node's flow log: podnet's nfnetlink_log group read on a thread of its own (in the
//! node's namespace), its packets handed to the agent's loop through a bounded queue (a full
//! queue drops and counts: a flood of denied packets cannot grow the agent), and told there
//! as flows from the model (`podnet_flow::record`).

use std::path::Path;
use std::sync::Arc;

use podnet_flow::packet::Packet;
use podnet_flow::reader::Reader;
use podnet_flow::FlowError;

use crate::metrics::Metrics;

/// Packets waiting for the loop, at most (then new ones are dropped and counted).
pub const QUEUE: usize = 8192;

/// The packets logged on the node, as they come.
pub type FlowSource = tokio::sync::mpsc::Receiver<Packet>;

/// Opens the node's flow log: None (said in the log and in `podnet_agent_flow_log_up`) when
/// the kernel will not give it (no nfnetlink_log, or another reader holds the group).
pub fn open(netns: &Path, metrics: &Arc<Metrics>) -> Option<FlowSource> {
    let opened = podnet_node::sys::in_netns(netns, || Ok(Reader::open()));
    let reader = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!("no flow log: {e}");
            return None;
        }
        Err(e) => {
            tracing::warn!("no flow log: {}", podnet_node::chain(&e));
            return None;
        }
    };
    if !reader.with_conntrack() {
        tracing::info!(
            "the kernel sends no conntrack entry with logged packets \
             (CONFIG_NETFILTER_NETLINK_GLUE_CT): a flow dropped after the proxy's DNAT does not \
             name the Service it was sent to"
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let m = metrics.clone();
    let spawned = std::thread::Builder::new()
        .name("podnet-flows".into())
        .spawn(move || read(reader, &tx, &m));
    match spawned {
        Ok(_) => {
            metrics.flow_log_up(true);
            Some(rx)
        }
        Err(e) => {
            tracing::warn!("no flow log: starting its reader: {e}");
            None
        }
    }
}

fn read(mut reader: Reader, tx: &tokio::sync::mpsc::Sender<Packet>, metrics: &Metrics) {
    use tokio::sync::mpsc::error::TrySendError;
    loop {
        match reader.read() {
            Ok(packets) => {
                for p in packets {
                    match tx.try_send(p) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => metrics.flows_lost(1),
                        // The agent's loop is gone.
                        Err(TrySendError::Closed(_)) => return,
                    }
                }
            }
            // The kernel dropped some (how many it does not say): counted once.
            Err(FlowError::Overrun) => metrics.flows_lost(1),
            Err(e) => {
                tracing::error!("the flow log ended: {e}");
                metrics.flow_log_up(false);
                return;
            }
        }
    }
}
