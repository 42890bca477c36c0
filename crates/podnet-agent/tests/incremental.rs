//! The incremental path: watch events applied one at a time to the model
//! ([`podnet_model::ApiModel`]) and to the node's dataplane ([`podnet_node::live::Live`]) give,
//! after every event, exactly the dataplane computed from scratch from the objects the API then
//! holds, and each event's transaction is exactly the difference.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{served, MANIFESTS};
use podnet_emulator::build;
use podnet_model::{parse_documents, ApiKey, ApiModel, Changed, ConfigOverrides, Kind};
use podnet_node::dataplane::NodeDataplane;
use podnet_node::effects::Recording;
use podnet_node::live::{Delta, Live};
use podnet_node::verify::verify;
use podnet_node::Held;
use podnet_proxy::nft::{Element, Op};
use proptest::prelude::*;
use serde_json::{json, Value};

const NODE: &str = "node-0";

/// The API's objects, by key.
fn world() -> BTreeMap<ApiKey, Value> {
    let o = ConfigOverrides::default();
    let c = build(&parse_documents("m.yaml", MANIFESTS).unwrap(), &o).unwrap();
    served(&c)
        .into_iter()
        .filter(|v| {
            podnet_model::api::KINDS.contains(&Kind::parse(v["kind"].as_str().unwrap()).unwrap())
        })
        .map(|v| (ApiKey::of(&v).unwrap(), v))
        .collect()
}

/// The node's dataplane computed from scratch from these objects.
fn from_scratch(objects: &BTreeMap<ApiKey, Value>) -> Option<NodeDataplane> {
    let c = podnet_agent::translate::model(objects.values(), &ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    NodeDataplane::for_node(&c, NODE, "eth0")
}

/// The elements a delta deletes and adds.
fn elements(d: &Delta) -> (BTreeSet<Element>, BTreeSet<Element>) {
    let (mut del, mut add) = (BTreeSet::new(), BTreeSet::new());
    for op in d.proxy.iter().flat_map(|t| &t.ops) {
        match op {
            Op::DeleteElements(v) => del.extend(v.iter().copied()),
            Op::AddElements(v) => add.extend(v.iter().copied()),
            _ => {}
        }
    }
    (del, add)
}

/// The delta is exactly the difference from `before` to `after`.
fn check_delta(before: &NodeDataplane, after: &NodeDataplane, d: &Delta, what: &str) {
    let (b, a): (BTreeSet<Element>, BTreeSet<Element>) =
        (before.proxy.iter().collect(), after.proxy.iter().collect());
    let (del, add) = elements(d);
    assert_eq!(del, b.difference(&a).copied().collect(), "{what}: deleted");
    assert_eq!(add, a.difference(&b).copied().collect(), "{what}: added");
    let chains: BTreeSet<_> = d
        .proxy
        .iter()
        .flat_map(|t| &t.ops)
        .filter_map(|op| match op {
            Op::AddChain(c) => Some(*c),
            _ => None,
        })
        .collect();
    let new_chains: BTreeSet<_> = after
        .proxy
        .chains()
        .difference(&before.proxy.chains())
        .copied()
        .collect();
    assert_eq!(chains, new_chains, "{what}: chains");
    assert_eq!(d.policy, before.policy != after.policy, "{what}: policy");
    if before.remotes != after.remotes || before.vxlan != after.vxlan {
        assert!(d.nodes, "{what}: nodes");
    }
    let mut patched = before.proxy.clone();
    patched.patch(
        &del.iter().copied().collect::<Vec<_>>(),
        &add.iter().copied().collect::<Vec<_>>(),
    );
    assert_eq!(patched, after.proxy, "{what}: the delta applied");
}

/// One object changed as a watch would see it: a new version, or None (deleted).
fn changed_object(
    kind: &str,
    cur: Option<&Value>,
    orig: &Value,
    variant: u8,
    p: u8,
) -> Option<Value> {
    let Some(cur) = cur else {
        return Some(orig.clone()); // Back.
    };
    if variant == 0 {
        return (kind != "Node" || orig["metadata"]["name"] != NODE).then_some(Value::Null);
    }
    let mut v = cur.clone();
    match (kind, variant) {
        ("Service", 1) => {
            if let Some(port) = v["spec"]["ports"][0].get_mut("port") {
                *port = json!(80 + u16::from(p % 4));
            }
        }
        ("Service", 2) => {
            let sticky = v["spec"]["sessionAffinity"] == "ClientIP";
            v["spec"]["sessionAffinity"] = json!(if sticky { "None" } else { "ClientIP" });
            if sticky {
                v["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("sessionAffinityConfig");
            } else {
                v["spec"]["sessionAffinityConfig"] =
                    json!({"clientIP": {"timeoutSeconds": 60 + u32::from(p % 2) * 60}});
            }
        }
        ("Service", _) => {
            let local = v["spec"]["internalTrafficPolicy"] == "Local";
            v["spec"]["internalTrafficPolicy"] = json!(if local { "Cluster" } else { "Local" });
        }
        ("EndpointSlice", 1) => {
            if let Some(e) = v["endpoints"].as_array_mut().and_then(|a| a.first_mut()) {
                let ready = e["conditions"]["ready"] != false;
                e["conditions"]["ready"] = json!(!ready);
                e["conditions"]["serving"] = json!(p.is_multiple_of(2));
                e["conditions"]["terminating"] = json!(ready);
            }
        }
        ("EndpointSlice", 2) => {
            if let Some(a) = v["endpoints"].as_array_mut() {
                a.pop();
            }
        }
        ("EndpointSlice", _) => {
            if let Some(e) = v["endpoints"].as_array_mut().and_then(|a| a.first_mut()) {
                e["nodeName"] = json!(format!("node-{}", p % 3));
            }
        }
        ("Pod", 1) => {
            v["metadata"]["labels"]["app"] = json!(["web", "db", "other"][usize::from(p % 3)]);
        }
        ("Pod", 2) => {
            v["metadata"]["labels"]["tier"] = json!(format!("t{}", p % 2));
        }
        ("Pod", _) => {
            // Its state only: ready or not, being deleted or not.
            let ready = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            v["status"]["conditions"] =
                json!([{"type": "Ready", "status": if ready { "False" } else { "True" }}]);
            if p % 2 == 1 {
                v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
        }
        ("NetworkPolicy", 1) => {
            let app = ["web", "db"][usize::from(p % 2)];
            v["spec"]["podSelector"] = json!({"matchLabels": {"app": app}});
        }
        ("NetworkPolicy", _) => {
            v["spec"]["ingress"] =
                json!([{"from": [{"podSelector": {"matchLabels": {"tier": "t1"}}}]}]);
        }
        ("Namespace", _) => {
            v["metadata"]["labels"]["team"] = json!(["a", "b"][usize::from(p % 2)]);
        }
        ("Node", _) => {
            v["metadata"]["labels"]["zone"] = json!(format!("z{}", p % 2));
        }
        _ => {}
    }
    Some(v)
}

/// Runs events; after each, the incremental dataplane equals the one from scratch and its
/// delta is exactly the difference.
/// Applies the events one by one, checking the incremental dataplane against the one from
/// scratch after each; `after` sees each event's index, the dataplane and the delta.
fn run_events(events: &[(u8, u8, u8, u8)], mut after: impl FnMut(usize, &NodeDataplane, &Delta)) {
    let original = world();
    let mut objects = original.clone();
    let kinds = podnet_model::api::KINDS;
    let (mut m, skipped) =
        ApiModel::of_objects(objects.values(), &ConfigOverrides::default()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let mut live = Live::new(m.cluster(), NODE, "eth0").unwrap();
    assert_eq!(Some(live.dataplane()), from_scratch(&objects).as_ref());
    for (i, &(k, which, variant, p)) in events.iter().enumerate() {
        let kind = kinds[usize::from(k) % kinds.len()];
        let of_kind: Vec<&ApiKey> = original.keys().filter(|key| key.kind == kind).collect();
        let key = of_kind[usize::from(which) % of_kind.len()].clone();
        let Some(new) = changed_object(
            kind.as_str(),
            objects.get(&key),
            &original[&key],
            variant % 4,
            p,
        ) else {
            continue;
        };
        let new = (!new.is_null()).then_some(new);
        match &new {
            Some(v) => objects.insert(key.clone(), v.clone()),
            None => objects.remove(&key),
        };
        let what = format!(
            "event {i}: {key} {}",
            if new.is_some() { "changed" } else { "deleted" }
        );
        let out = m.apply(&key, new.as_ref());
        assert!(out.refused.is_none(), "{what}: {:?}", out.why());
        let before = live.dataplane().clone();
        let delta = live
            .update(m.cluster(), &out.changed)
            .expect("node-0 stays");
        let want = from_scratch(&objects).unwrap();
        assert_eq!(live.dataplane(), &want, "{what}");
        check_delta(&before, &want, &delta, &what);
        if out.changed.is_empty() {
            assert_eq!(
                delta,
                Delta::default(),
                "{what}: nothing changed, nothing to do"
            );
        }
        after(i, &want, &delta);
    }
}

/// Drift the fake kernel suffers: elements, entries and routes deleted, a foreign element
/// added, whole tables gone, the device gone.
fn inflict(fx: &mut Recording, kind: u8, pick: u8) {
    let nth = |n: usize| usize::from(pick) % n.max(1);
    match kind % 7 {
        0 => {
            if let Some(t) = &mut fx.table {
                let all: Vec<Element> = t.iter().collect();
                if !all.is_empty() {
                    let e = all[nth(all.len())];
                    t.patch(&[e], &[]);
                }
            }
        }
        1 => {
            if let Some(p) = &mut fx.policy {
                let ips: Vec<_> = p.egress.keys().chain(p.ingress.keys()).copied().collect();
                if !ips.is_empty() {
                    let ip = ips[nth(ips.len())];
                    p.egress.remove(&ip);
                    p.ingress.remove(&ip);
                }
            }
        }
        2 => {
            let routes: Vec<_> = fx.routes.keys().copied().collect();
            if !routes.is_empty() {
                fx.routes.remove(&routes[nth(routes.len())]);
            }
        }
        3 => fx.table = None,
        4 => fx.policy = None,
        5 => {
            if let Some(t) = &mut fx.table {
                t.hairpin.insert(std::net::IpAddr::from([10, 9, 9, pick]));
            }
        }
        _ => {
            fx.links.remove("vxlan0");
            fx.routes
                .retain(|_, (_, dev)| dev.as_deref() != Some("vxlan0"));
            fx.neighbours.retain(|(_, dev)| dev != "vxlan0");
        }
    }
}

/// The agent's way with a node under drift: each event's delta applied from what it holds,
/// drift inflicted behind its back, then one verify pass: the fake kernel must then hold
/// exactly the dataplane computed from scratch, and the next events' deltas apply on it.
fn run_events_with_drift(events: &[(u8, u8, u8, u8)], drifts: &[(u8, u8, u8)]) {
    let mut fx = Recording::default();
    let mut held = Held::default();
    let mut first = true;
    run_events(events, |i, want, delta| {
        let applied = if first {
            first = false;
            podnet_node::apply(&held, want, &mut fx)
        } else {
            podnet_node::apply_delta(std::mem::take(&mut held), want, delta, &mut fx)
        };
        assert!(
            applied.failures.is_empty(),
            "event {i}: {:?}",
            applied.failures
        );
        held = applied.held;
        let mut drifted = false;
        for &(at, kind, pick) in drifts {
            if usize::from(at) % events.len().max(1) == i {
                inflict(&mut fx, kind, pick);
                drifted = true;
            }
        }
        let v = verify(&held, want, &mut fx).unwrap();
        assert!(v.failures.is_empty(), "event {i}: {:?}", v.failures);
        if !drifted {
            assert!(
                v.drift.is_empty(),
                "event {i}: drift without any: {:?}",
                v.drift
            );
        }
        held = v.held;
        assert_eq!(fx.table.as_ref(), Some(&want.proxy), "event {i}: proxy");
        assert_eq!(fx.policy.as_ref(), Some(&want.policy), "event {i}: policy");
        let again = verify(&held, want, &mut fx).unwrap();
        assert!(again.drift.is_empty(), "event {i}: still {:?}", again.drift);
        held = again.held;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_sequence_of_events_gives_the_dataplane_computed_from_scratch(
        events in prop::collection::vec((0u8..6, 0u8..16, 0u8..4, 0u8..8), 1..40)
    ) {
        run_events(&events, |_, _, _| {});
    }

    /// Random events with random drift of the kernel between them: one verify pass brings the
    /// node back to the dataplane computed from scratch every time.
    #[test]
    fn drift_between_any_events_is_repaired_by_one_verify_pass(
        events in prop::collection::vec((0u8..6, 0u8..16, 0u8..4, 0u8..8), 1..30),
        drifts in prop::collection::vec((0u8..30, 0u8..7, 0u8..255), 0..12),
    ) {
        run_events_with_drift(&events, &drifts);
    }
}

/// Each kind of event changes exactly the expected parts.
#[test]
fn each_kind_of_event_changes_exactly_its_part() {
    let original = world();
    let (mut m, _) = ApiModel::of_objects(original.values(), &ConfigOverrides::default()).unwrap();
    let mut live = Live::new(m.cluster(), NODE, "eth0").unwrap();

    // A Service's port: only that Service's frontend and backends.
    let key = ApiKey::new(Kind::Service, "shop", "sticky");
    let mut svc = original[&key].clone();
    svc["spec"]["ports"][0]["port"] = json!(91);
    let out = m.apply(&key, Some(&svc));
    assert_eq!(
        out.changed,
        [Changed::Service(podnet_model::NsName::new(
            "shop", "sticky"
        ))]
    );
    let d = live.update(m.cluster(), &out.changed).unwrap();
    let (del, add) = elements(&d);
    let port = |e: &Element| match e {
        Element::Service(k, _) | Element::NoEndpoints(k) => Some(k.port),
        Element::Backend(s, _) => match s.frontend {
            podnet_proxy::nft::FrontendKey::Service(k) => Some(k.port),
            podnet_proxy::nft::FrontendKey::NodePort(_) => None,
        },
        _ => None,
    };
    assert!(
        !del.is_empty() && del.iter().all(|e| port(e) == Some(81)),
        "{del:?}"
    );
    assert!(
        !add.is_empty() && add.iter().all(|e| port(e) == Some(91)),
        "{add:?}"
    );
    assert!(!d.policy && !d.nodes);

    // A pod's labels: the policy table, never the proxy (its Services' endpoints come from
    // their EndpointSlices).
    let pod = original
        .keys()
        .find(|k| {
            k.kind == Kind::Pod
                && k.name.starts_with("web-")
                && original[*k]["spec"]["nodeName"] == NODE
        })
        .unwrap()
        .clone();
    let mut p = original[&pod].clone();
    p["metadata"]["labels"]["app"] = json!("other");
    let out = m.apply(&pod, Some(&p));
    let d = live.update(m.cluster(), &out.changed).unwrap();
    assert_eq!(d.proxy, None);
    assert!(d.policy, "the web policies selected it, on this node");

    // The same pod's readiness: nothing NetworkPolicy reads.
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    let out = m.apply(&pod, Some(&p));
    assert_eq!(
        out.changed,
        [Changed::PodState(podnet_model::NsName::new(
            &pod.namespace,
            &pod.name
        ))]
    );
    let d = live.update(m.cluster(), &out.changed).unwrap();
    assert_eq!(d, Delta::default());

    // An endpoint that stops being ready: its Service's elements only.
    let slice = original
        .keys()
        .find(|k| k.kind == Kind::EndpointSlice && k.name.starts_with("web-"))
        .unwrap()
        .clone();
    let mut s = original[&slice].clone();
    let e = s["endpoints"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["conditions"]["ready"] == true)
        .unwrap();
    e["conditions"]["ready"] = json!(false);
    let out = m.apply(&slice, Some(&s));
    assert_eq!(
        out.changed,
        [Changed::Service(podnet_model::NsName::new("shop", "web"))]
    );
    let d = live.update(m.cluster(), &out.changed).unwrap();
    assert!(d.proxy.is_some() && !d.policy);

    // A policy deleted: the policy table only.
    let np = ApiKey::new(Kind::NetworkPolicy, "shop", "web");
    let out = m.apply(&np, None);
    let d = live.update(m.cluster(), &out.changed).unwrap();
    assert!(d.policy && d.proxy.is_none());

    // A node leaves: the overlay only.
    let node = ApiKey::new(Kind::Node, "", "node-2");
    let out = m.apply(&node, None);
    assert_eq!(out.changed, [Changed::Nodes]);
    let before = live.dataplane().remotes.len();
    let d = live.update(m.cluster(), &out.changed).unwrap();
    assert!(d.nodes && d.proxy.is_none() && !d.policy);
    assert_eq!(live.dataplane().remotes.len(), before - 1);

    // The same object again: nothing.
    let out = m.apply(&node, None);
    assert!(out.changed.is_empty());
    let out = m.apply(&key, Some(&svc));
    assert!(out.changed.is_empty());
}
