//! The lab's API never loses or reorders a change between a list and the watch after it: while
//! the objects change quickly and at random, watchers (kube-rs's, as the agents and the DNS pods
//! run them) start at random moments, and every one of them ends up holding exactly what the
//! store holds, every object at its latest version. A lost event here would leave an agent
//! without a pod, and that pod without a network.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use podnet_api::server::Api;
use serde_json::{json, Value};

fn pod(i: u32, version: u32) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": format!("p{i}"), "namespace": "default",
                     "labels": {"v": version.to_string()}},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": format!("10.244.0.{}", i + 2)}
    })
}

/// The pods the store holds: name → the `v` label (each change gives a new one).
fn held(objects: &BTreeMap<u32, u32>) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|(i, v)| (format!("p{i}"), v.to_string()))
        .collect()
}

fn seen(store: &reflector::Store<Pod>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.metadata.labels.as_ref().unwrap()["v"].clone(),
            )
        })
        .collect()
}

async fn run(seed: u64, faults: bool) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let api = Api::new();
    let mut objects: BTreeMap<u32, u32> = (0..20).map(|i| (i, 0)).collect();
    let project = |o: &BTreeMap<u32, u32>| o.iter().map(|(i, v)| pod(*i, *v)).collect();
    api.replace(project(&objects));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();

    let mut stores = Vec::new();
    let mut version = 0;
    for step in 0..300 {
        // A watcher starts now and then, in the middle of the changes.
        if step % 30 == rng.u32(0..30) as usize || stores.is_empty() {
            let (reader, writer) = reflector::store::<Pod>();
            let pods: kube::Api<Pod> = kube::Api::all(client.clone());
            let stream = reflector(writer, watcher(pods, watcher::Config::default()))
                .applied_objects()
                .for_each(|_| async {});
            tokio::spawn(stream);
            stores.push(reader);
        }
        // One change of the lab: some pods changed, some gone, some new.
        version += 1;
        for _ in 0..rng.u32(1..4) {
            let i = rng.u32(0..30);
            match rng.u32(0..3) {
                0 => {
                    objects.remove(&i);
                }
                _ => {
                    objects.insert(i, version);
                }
            }
        }
        api.replace(project(&objects));
        // The API's faults, now and then: every watch ended mid-stream, or resuming ones
        // answered 410 Gone for a moment (they must list again).
        if faults && rng.u32(0..40) == 0 {
            api.faults.inject(&podnet_api::faults::FaultSpec {
                end_watches: true,
                ..Default::default()
            });
        }
        if faults && step == 150 {
            api.faults.inject(&podnet_api::faults::FaultSpec {
                end_watches: true,
                expire: Some(Duration::from_millis(300)),
                ..Default::default()
            });
        }
        if rng.bool() {
            tokio::time::sleep(Duration::from_micros(rng.u64(0..2000))).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    let want = held(&objects);
    let start = Instant::now();
    for (n, s) in stores.iter().enumerate() {
        loop {
            let got = seen(s);
            if got == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "seed {seed}: watcher {n} of {} holds something else than the store:\nmissing or old: {:?}\nextra or old: {:?}",
                stores.len(),
                want.iter().filter(|(k, v)| got.get(*k) != Some(v)).collect::<Vec<_>>(),
                got.iter().filter(|(k, v)| want.get(*k) != Some(v)).collect::<Vec<_>>(),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_started_at_any_moment_of_quick_changes_hold_what_the_store_holds() {
    for seed in 0..8 {
        run(seed, false).await;
    }
}

/// The same through the API's faults: watches ended mid-stream and, for a moment, every
/// resuming watch answered 410 Gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_through_ended_and_expired_watches_hold_what_the_store_holds() {
    for seed in 0..4 {
        run(seed, true).await;
    }
}
