//! The agent's loop itself, over a fake kernel (`podnet_node::effects::Recording`) and
//! against the lab's API served in this process: no root, no namespace. A transaction that
//! fails is retried (from what the kernel holds, read back) until the node holds what the API
//! says; only then is the node ready, and what it verified is what it was to hold.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_agent::metrics::Metrics;
use podnet_agent::run::{run_with, verified_file, AgentConfig};
use podnet_node::dataplane::NodeDataplane;
use podnet_node::effects::{Call, Effects, Fail, Recording, RulesetReader, Shared};

const UPLINK: &str = "eth0";

/// Waits for `done`, at most 20 s; says what it waited for and what it saw if it never came.
async fn until(what: &str, mut done: impl FnMut() -> bool, seen: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}; {}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cluster of `manifests`, as the lab builds it.
fn cluster(manifests: &str) -> podnet_model::Cluster {
    let docs = podnet_model::parse_documents("m.yaml", manifests).unwrap();
    podnet_emulator::build(&docs, &Default::default()).unwrap()
}

/// The lab's API serving `c` in this process, and a client of it.
async fn serve(c: &podnet_model::Cluster) -> (Arc<podnet_api::server::Api>, kube::Client) {
    let api = podnet_api::server::Api::new();
    api.replace(podnet_api::project::project(c));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (api, kube::Client::try_from(config).unwrap())
}

/// The first node's agent over a fake kernel, its state in `dir` (emptied), no CNI and no
/// periodic pass.
fn agent_config(
    c: &podnet_model::Cluster,
    dir: &std::path::Path,
    verify_changes: bool,
) -> AgentConfig {
    let _ = std::fs::remove_dir_all(dir);
    AgentConfig {
        node: c.nodes[0].name.clone(),
        overrides: c.config.overrides(),
        uplink: UPLINK.into(),
        netns: "/nonexistent: the fake is the kernel".into(),
        state_dir: dir.to_path_buf(),
        cni: None,
        verify_every: Duration::from_secs(3600),
        verify_changes,
        cni_socket: dir.join("cni.sock"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_is_retried_until_the_node_holds_what_the_api_says() {
    let c = cluster(common::MANIFESTS);
    let (_api, client) = serve(&c).await;

    let node = c.nodes[0].name.clone();
    let dir = std::env::temp_dir().join(format!("podnet-agent-loop-{}", std::process::id()));
    let cfg = agent_config(&c, &dir, true);
    let fx = Shared::new(Recording::default().failing(Fail::Nft));
    let metrics = Arc::new(Metrics::default());
    let agent = tokio::spawn(run_with(client, cfg.clone(), metrics, fx.clone()));

    // Every try fails, and is tried again (a failure is retried every 200 ms); the node is
    // not ready meanwhile.
    let nft_calls = || {
        fx.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Nft(_)))
            .count()
    };
    until(
        "a retried transaction",
        || nft_calls() >= 3,
        || format!("{} nft calls", nft_calls()),
    )
    .await;
    assert!(
        fx.lock().table.is_none(),
        "a failed transaction changed nothing"
    );
    assert!(!cfg.ready_file().exists(), "ready with nothing programmed");

    // The kernel takes transactions again: the next try programs the node whole.
    fx.lock().heal();
    let want = NodeDataplane::for_cluster(&c, UPLINK)
        .into_iter()
        .find(|d| d.node == node)
        .unwrap();
    let verified = || -> Option<NodeDataplane> {
        serde_json::from_slice(&std::fs::read(verified_file(&dir, &node)).ok()?).ok()
    };
    until(
        "the node ready, and verified to hold what the API says",
        || cfg.ready_file().exists() && verified().as_ref() == Some(&want),
        || {
            format!(
                "ready: {}, verified: {:?}",
                cfg.ready_file().exists(),
                verified().is_some()
            )
        },
    )
    .await;
    // What the fake kernel holds is what was wanted: read back, not taken from a record.
    let mut check = fx.lock().clone();
    let observed = podnet_node::effects::Effects::observe(&mut check, &want).unwrap();
    assert!(observed.notes.is_empty(), "{:?}", observed.notes);
    assert_eq!(observed.held.proxy.as_ref(), fx.lock().table.as_ref());
    assert!(fx.lock().table.is_some());
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Effects over a fake kernel whose ruleset reads (a verify pass's slow part, read beside the
/// loop) wait at a gate the test opens.
#[derive(Clone)]
struct Gated {
    fx: Shared<Recording>,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gated {
    fn set(&self, open: bool) {
        *self.open.0.lock().unwrap() = open;
        self.open.1.notify_all();
    }

    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Effects for Gated {
    fn nft(&mut self, tx: &podnet_proxy::nft::Transaction) -> Result<(), podnet_node::NodeError> {
        self.fx.nft(tx)
    }
    fn nft_policy(
        &mut self,
        tx: &podnet_policy::Transaction,
    ) -> Result<(), podnet_node::NodeError> {
        self.fx.nft_policy(tx)
    }
    fn nft_masquerade(
        &mut self,
        m: &podnet_node::dataplane::Masquerade,
    ) -> Result<(), podnet_node::NodeError> {
        self.fx.nft_masquerade(m)
    }
    fn net(&mut self, ops: &[podnet_node::net::NetOp]) -> Result<(), podnet_node::NodeError> {
        self.fx.net(ops)
    }
    fn forget_udp_flow(
        &mut self,
        f: &podnet_proxy::nft::StaleUdpFlow,
    ) -> Result<(), podnet_node::NodeError> {
        self.fx.forget_udp_flow(f)
    }
    fn sysctl(&mut self, k: &str, v: &str) -> Result<(), podnet_node::NodeError> {
        self.fx.sysctl(k, v)
    }
    fn observe(
        &mut self,
        want: &NodeDataplane,
    ) -> Result<podnet_node::verify::Observed, podnet_node::NodeError> {
        self.fx.observe(want)
    }
    fn ruleset_reader(&self) -> Option<RulesetReader> {
        let (open, reads) = (self.open.clone(), self.reads.clone());
        Some(RulesetReader::new(move || {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (m, cv) = &*open;
            let _open = cv.wait_while(m.lock().unwrap(), |o| !*o).unwrap();
            // The fake's observe reads the fake itself; the tables stand for the read.
            Ok(podnet_node::observe::Tables::default())
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_pass_reads_beside_the_loop_and_reads_again_when_a_change_overtakes_it() {
    let c = cluster(common::MANIFESTS);
    let (api, client) = serve(&c).await;
    let node = c.nodes[0].name.clone();
    let dir = std::env::temp_dir().join(format!("podnet-agent-read-{}", std::process::id()));
    let cfg = agent_config(&c, &dir, false);
    let fx = Gated {
        fx: Shared::new(Recording::default()),
        open: Arc::new((std::sync::Mutex::new(true), std::sync::Condvar::new())),
        reads: Default::default(),
    };
    let metrics = Arc::new(Metrics::default());
    let agent = tokio::spawn(run_with(client, cfg.clone(), metrics.clone(), fx.clone()));
    until("the node ready", || cfg.ready_file().exists(), String::new).await;
    assert_eq!(fx.reads(), 0, "the pass at start is done on the loop");

    // A pass is asked for; its read waits at the gate.
    fx.set(false);
    metrics.verify_now.notify_one();
    until(
        "a ruleset read under way",
        || fx.reads() == 1,
        || format!("{} reads", fx.reads()),
    )
    .await;
    // A change meanwhile is programmed at once: the loop does not wait for the read.
    let c2 = cluster(&common::MANIFESTS.replace("port: 81", "port: 82"));
    api.replace(podnet_api::project::project(&c2));
    let want = NodeDataplane::for_cluster(&c2, UPLINK)
        .into_iter()
        .find(|d| d.node == node)
        .unwrap();
    until(
        "the change programmed while the read waits",
        || fx.fx.lock().table.as_ref() == Some(&want.proxy),
        || format!("{} reads", fx.reads()),
    )
    .await;
    // The change's round ends with its conntrack deletions, after the table's transaction:
    // all of it lands before the gate opens.
    let mut calls = fx.fx.lock().calls.len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = fx.fx.lock().calls.len();
        if now == calls {
            break;
        }
        calls = now;
    }
    assert_eq!(fx.reads(), 1, "the first read still waits");
    // The read ends: what it read is older than the change, so it is read again, and the pass
    // then confirms the node holds the change.
    fx.set(true);
    let verified = || -> Option<NodeDataplane> {
        serde_json::from_slice(&std::fs::read(verified_file(&dir, &node)).ok()?).ok()
    };
    until(
        "the pass done over a second read",
        || verified().as_ref() == Some(&want),
        || format!("{} reads, {} stale", fx.reads(), metrics.stale_reads()),
    )
    .await;
    assert_eq!(fx.reads(), 2);
    assert_eq!(metrics.stale_reads(), 1);
    assert_eq!(
        metrics.drift_count("proxy"),
        0,
        "no drift: the stale read was not compared"
    );
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
