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
use podnet_node::effects::{Call, Fail, Recording, Shared};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_is_retried_until_the_node_holds_what_the_api_says() {
    let docs = podnet_model::parse_documents("m.yaml", common::MANIFESTS).unwrap();
    let c = podnet_emulator::build(&docs, &Default::default()).unwrap();
    let api = podnet_api::server::Api::new();
    api.replace(podnet_api::project::project(&c));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();

    let node = c.nodes[0].name.clone();
    let dir = std::env::temp_dir().join(format!("podnet-agent-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = AgentConfig {
        node: node.clone(),
        overrides: c.config.overrides(),
        uplink: UPLINK.into(),
        netns: "/nonexistent: the fake is the kernel".into(),
        state_dir: dir.clone(),
        cni: None,
        verify_every: Duration::from_secs(3600),
        verify_changes: true,
        cni_socket: dir.join("cni.sock"),
    };
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
