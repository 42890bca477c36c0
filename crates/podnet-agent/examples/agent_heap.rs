//! What the agent's memory is made of (issue 24, item 5): the live heap after each phase of a
//! node's first programming at the size of `agent_bench` (10,000 Services and pods, 1,000
//! policies by default), counted by dhat's allocator, with the process's RSS beside it (dhat's
//! own bookkeeping inflates the RSS; the heap counts are exact).
//!
//! `cargo run --release -p podnet-agent --example agent_heap -- [SERVICES] [POLICIES]`

use std::collections::BTreeMap;

use podnet_model::{ApiModel, ConfigOverrides};
use podnet_node::effects::Recording;
use podnet_node::live::Live;
use podnet_node::Held;
use serde_json::Value;

#[path = "shared/mod.rs"]
mod shared;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn heap_mb() -> f64 {
    dhat::HeapStats::get().curr_bytes as f64 / 1048576.0
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let args: Vec<String> = std::env::args().collect();
    let services: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let policies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let o = ConfigOverrides {
        nodes: Some(3),
        node_cidr_mask_size: Some(18),
        ..Default::default()
    };
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut mark = |what: &str| rows.push((what.to_string(), heap_mb(), shared::rss_mb("self")));
    mark("start");
    // The API's objects, as a list gives them (JSON), of the kinds the agent watches.
    let objects: Vec<Value> = shared::objects(services, policies, &o);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for v in &objects {
        *kinds
            .entry(v["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    mark("the API's objects as JSON (what a list brings)");
    // The model of each kind alone (with the Nodes and Namespaces), for where its size goes.
    let mut by_kind: Vec<(String, f64)> = Vec::new();
    for kind in ["Pod", "Service", "EndpointSlice", "NetworkPolicy"] {
        let some: Vec<Value> = objects
            .iter()
            .filter(|v| v["kind"] == kind || v["kind"] == "Node" || v["kind"] == "Namespace")
            .cloned()
            .collect();
        let before = heap_mb();
        let (m, _) = ApiModel::of_objects(&some, &o).unwrap();
        by_kind.push((kind.to_string(), heap_mb() - before));
        drop(m);
    }
    let (model, skipped) = ApiModel::of_objects(&objects, &o).unwrap();
    assert!(skipped.is_empty());
    mark("+ the model");
    drop(objects);
    mark("- the JSON objects");
    let mut live = Live::new(model.cluster(), "node-0", "eth0").unwrap();
    mark("+ node-0's dataplane (Live: the plan and its indexes)");
    let mut fx = Recording::default();
    let a = podnet_node::apply(&Held::default(), live.dataplane(), &mut fx);
    assert!(a.failures.is_empty());
    drop(fx);
    let held = a.held;
    mark("+ the record of what the kernel holds (Held)");
    let dp = live.dataplane().clone();
    mark("(a clone of the dataplane, for its size)");
    drop(dp);
    let _ = &mut live;
    println!("objects: {kinds:?}");
    println!("| after | live heap (MB) | step (MB) | RSS with dhat (MB) |");
    println!("|---|---|---|---|");
    let mut last = 0.0;
    for (what, heap, rss) in &rows {
        println!("| {what} | {heap:.1} | {:+.1} | {rss:.0} |", heap - last);
        last = *heap;
    }
    for (kind, mb) in &by_kind {
        println!("the model of the {kind}s alone: {mb:.1} MB");
    }
    let s = dhat::HeapStats::get();
    println!(
        "peak live heap {:.1} MB; {} allocations in all",
        s.max_bytes as f64 / 1048576.0,
        s.total_blocks
    );
    drop((model, live, held));
}
