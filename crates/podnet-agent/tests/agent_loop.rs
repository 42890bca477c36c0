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
use podnet_node::effects::{Call, Effects, Fail, KernelReader, Recording, Shared};

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
    fn kernel_reader(&self, _want: &NodeDataplane) -> Option<KernelReader> {
        let (open, reads, fx) = (self.open.clone(), self.reads.clone(), self.fx.clone());
        Some(KernelReader::new(move || {
            reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // The proxy's table as the read finds it, before it waits at the gate (an IPv4
            // cluster: one table).
            let proxy = fx.lock().table.clone().map(|content| {
                assert!(!content.ipv6, "the test's cluster is IPv4 alone");
                podnet_node::observe::Table {
                    content,
                    ..Default::default()
                }
            });
            let (m, cv) = &*open;
            let _open = cv.wait_while(m.lock().unwrap(), |o| !*o).unwrap();
            let mut read = podnet_node::effects::Read::default();
            read.tables.proxy = proxy;
            Ok(read)
        }))
    }
    /// The fake as it is now, but the proxy's table as the read found it.
    fn observe_with(
        &mut self,
        want: &NodeDataplane,
        read: podnet_node::effects::Read,
    ) -> Result<podnet_node::verify::Observed, podnet_node::NodeError> {
        let mut o = self.fx.observe(want)?;
        o.held.proxy = read.tables.proxy.map(|t| t.content);
        Ok(o)
    }
}

/// Waits until the fake's calls stop coming (a round ends with its conntrack deletions, after
/// its transactions).
async fn settled(fx: &Gated) {
    let mut calls = fx.fx.lock().calls.len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = fx.fx.lock().calls.len();
        if now == calls {
            break;
        }
        calls = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_pass_reads_beside_the_loop_replays_the_proxys_changes_and_reads_again_after_others(
) {
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
    let want_of = |c: &podnet_model::Cluster| {
        NodeDataplane::for_cluster(c, UPLINK)
            .into_iter()
            .find(|d| d.node == node)
            .unwrap()
    };
    let verified = || -> Option<NodeDataplane> {
        serde_json::from_slice(&std::fs::read(verified_file(&dir, &node)).ok()?).ok()
    };
    let said = || {
        format!(
            "{} reads, {} stale, {} replayed",
            fx.reads(),
            metrics.stale_reads(),
            metrics.replayed_writes()
        )
    };

    // 1. A pass is asked for; its read takes the proxy's table, then waits at the gate.
    fx.set(false);
    metrics.verify_now.notify_one();
    until("a kernel read under way", || fx.reads() == 1, said).await;
    // A change of the proxy's elements meanwhile is programmed at once: the loop does not
    // wait for the read.
    let c2 = cluster(&common::MANIFESTS.replace("port: 81", "port: 82"));
    let want2 = want_of(&c2);
    api.replace(podnet_api::project::project(&c2));
    until(
        "the Service's change programmed while the read waits",
        || fx.fx.lock().table.as_ref() == Some(&want2.proxy),
        said,
    )
    .await;
    settled(&fx).await;
    assert_eq!(fx.reads(), 1, "the first read still waits");
    // The read ends, older than the change: the change is replayed onto it, and the pass
    // finds the node as it must be (compared unreplayed, the old port would be drift).
    fx.set(true);
    until(
        "the pass done over the replayed read",
        || verified().as_ref() == Some(&want2),
        said,
    )
    .await;
    assert_eq!((fx.reads(), metrics.stale_reads()), (1, 0), "{}", said());
    assert!(metrics.replayed_writes() >= 1, "{}", said());
    assert_eq!(
        metrics.drift_count("proxy"),
        0,
        "the replayed read is current"
    );

    // 2. A change of another table (the policy's) cannot be replayed: the read is stale, and
    // is read again.
    fx.set(false);
    metrics.verify_now.notify_one();
    until("a second kernel read under way", || fx.reads() == 2, said).await;
    let c3 = cluster(
        &common::MANIFESTS
            .replace("port: 81", "port: 82")
            .replace("ports: [{port: 5432}]", "ports: [{port: 5433}]"),
    );
    let want3 = want_of(&c3);
    assert_ne!(
        want3.policy, want2.policy,
        "the change is the node's policy's"
    );
    api.replace(podnet_api::project::project(&c3));
    until(
        "the policy's change programmed while the read waits",
        || fx.fx.lock().policy.as_ref() == Some(&want3.policy),
        said,
    )
    .await;
    settled(&fx).await;
    assert_eq!(fx.reads(), 2, "the second read still waits");
    fx.set(true);
    until(
        "the pass done over a third read",
        || verified().as_ref() == Some(&want3),
        said,
    )
    .await;
    assert_eq!((fx.reads(), metrics.stale_reads()), (3, 1), "{}", said());
    assert_eq!(
        metrics.drift_count("policy") + metrics.drift_count("proxy"),
        0,
        "no drift: the stale read was not compared"
    );
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
