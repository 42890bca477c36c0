//! `apply` against the recording fake, without root: what reaches the kernel, in which order,
//! and how a failure half-way is reported and then repaired.

use podnet_emulator::build;
use podnet_model::config::Routing;
use podnet_model::{parse_documents, Cluster, ConfigOverrides};
use podnet_node::effects::{Call, Effects, Fail, Recording};
use podnet_node::net::NetOp;
use podnet_node::{apply, Held, NodeDataplane};
use podnet_proxy::nft::Op;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: REPLICAS\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}\n";
const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}\n";

fn cluster(replicas: u32, service: bool, nodes: u32) -> Cluster {
    routed(replicas, service, nodes, None)
}

fn routed(replicas: u32, service: bool, nodes: u32, routing: Option<Routing>) -> Cluster {
    let mut text = WEB.replace("REPLICAS", &replicas.to_string());
    if service {
        text = format!("{text}---\n{SVC}");
    }
    let docs = parse_documents("t.yaml", &text).unwrap();
    let o = ConfigOverrides {
        nodes: Some(nodes),
        routing,
        ..Default::default()
    };
    build(&docs, &o).unwrap()
}

fn node0(c: &Cluster) -> NodeDataplane {
    NodeDataplane::for_cluster(c, "eth0").remove(0)
}

/// Applies and requires success; returns what the node holds.
fn ok(held: &Held, want: &NodeDataplane, fx: &mut Recording) -> Held {
    let a = apply(held, want, fx);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    a.held
}

/// The fake holds exactly `want`.
fn holds(fx: &Recording, want: &NodeDataplane) {
    assert_eq!(fx.table.as_ref(), Some(&want.proxy), "the proxy's elements");
    assert_eq!(fx.policy.as_ref(), Some(&want.policy), "the policy table");
    let routes: Vec<_> = fx.routes.keys().copied().collect();
    let wanted: Vec<_> = want.remotes.iter().map(|r| r.pod_cidr).collect();
    assert_eq!(routes, wanted, "a route to every other node's pod CIDR");
    for r in &want.remotes {
        let (via, dev) = &fx.routes[&r.pod_cidr];
        match r.gateway {
            Some(gw) => assert_eq!((via, dev.as_deref()), (&vec![gw], Some("eth0"))),
            None => assert_eq!((via, dev.as_deref()), (&vec![r.vtep.ip], Some("vxlan0"))),
        }
    }
    let overlay = want.remotes.iter().filter(|r| r.gateway.is_none()).count();
    assert_eq!(fx.neighbours.len(), overlay);
    assert_eq!(fx.fdb.len(), overlay);
    assert!(fx.links.contains("vxlan0"));
    assert_eq!(fx.sysctls, want.sysctls);
}

fn nft_calls(fx: &Recording) -> Vec<&podnet_proxy::nft::Transaction> {
    fx.calls
        .iter()
        .filter_map(|c| match c {
            Call::Nft(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cold_apply_builds_everything_in_order() {
    let want = node0(&cluster(3, true, 3));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &want, &mut fx);
    holds(&fx, &want);
    assert_eq!(held.proxy.as_ref(), Some(&want.proxy));
    // Settings, the device, the masquerade table, the remotes, the policy table, then the
    // proxy's table: each table in one transaction.
    assert!(matches!(&fx.calls[0], Call::Sysctl(k, v) if k == "net.ipv4.ip_forward" && v == "1"));
    assert!(
        matches!(&fx.calls[1], Call::Net(ops) if ops.iter().any(|o| matches!(o, NetOp::Vxlan(_))))
    );
    assert!(
        matches!(&fx.calls[2], Call::NftMasquerade(m) if m.pod_cidrs[0].to_string() == "10.244.0.0/16" && m.overlay == "vxlan0")
    );
    assert_eq!(fx.masquerade, want.masquerade);
    assert!(
        matches!(&fx.calls[3], Call::Net(ops) if ops.len() == 2),
        "a route for each of 2 remote nodes, routed natively (the nodes share a subnet)"
    );
    let mut vx = Recording::default();
    ok(
        &Held::default(),
        &node0(&routed(3, true, 3, Some(Routing::Vxlan))),
        &mut vx,
    );
    assert!(
        matches!(&vx.calls[3], Call::Net(ops) if ops.len() == 6),
        "over VXLAN, 3 entries for each of 2 remote nodes"
    );
    let Call::NftPolicy(policy) = &fx.calls[4] else {
        panic!("{:?}", fx.calls[4])
    };
    assert_eq!(
        policy.ops[0],
        podnet_policy::Op::CreateTable(podnet_model::IpFamily::Ipv4)
    );
    let Call::Nft(tx) = &fx.calls[5] else {
        panic!("{:?}", fx.calls[5])
    };
    assert_eq!(tx.ops[0], Op::CreateTable(podnet_model::IpFamily::Ipv4));
    assert_eq!(fx.calls.len(), 6);
    assert_eq!(fx.policy.as_ref(), Some(&want.policy));
    // Nothing to do the second time.
    let mut again = Recording::default();
    let a = apply(&held, &want, &mut again);
    assert!(again.calls.is_empty(), "{:?}", again.calls);
    assert_eq!(a.held, held);
}

#[test]
fn a_service_added_then_removed_changes_only_its_elements() {
    let (without, with) = (node0(&cluster(3, false, 3)), node0(&cluster(3, true, 3)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &without, &mut fx);
    fx.calls.clear();
    let held = ok(&held, &with, &mut fx);
    holds(&fx, &with);
    assert_eq!(fx.calls.len(), 1, "one transaction: {:?}", fx.calls);
    let tx = nft_calls(&fx)[0];
    assert!(tx
        .ops
        .iter()
        .all(|o| !matches!(o, Op::DeleteElements(_) | Op::CreateTable(_))));
    fx.calls.clear();
    ok(&held, &without, &mut fx);
    holds(&fx, &without);
    let tx = nft_calls(&fx)[0];
    assert!(
        tx.ops.iter().all(|o| matches!(o, Op::DeleteElements(_))),
        "{tx:?}"
    );
}

#[test]
fn endpoints_that_leave_lose_their_udp_flows() {
    let (three, two) = (node0(&cluster(3, true, 3)), node0(&cluster(2, true, 3)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &three, &mut fx);
    fx.calls.clear();
    let held = ok(&held, &two, &mut fx);
    holds(&fx, &two);
    assert_eq!(
        fx.forgotten.len(),
        1,
        "the DNS port's flows to the gone pod"
    );
    assert_eq!(fx.forgotten[0].port, 53);
    // The proxy stops sending to it before its flows go.
    let pos = |f: &dyn Fn(&Call) -> bool| fx.calls.iter().position(f).unwrap();
    assert!(pos(&|c| matches!(c, Call::Nft(_))) < pos(&|c| matches!(c, Call::ForgetUdpFlow(_))));
    assert!(held.stale_flows.is_empty());
    // Back to three: a new endpoint leaves no stale flow.
    fx.forgotten.clear();
    ok(&held, &three, &mut fx);
    assert!(fx.forgotten.is_empty());
}

#[test]
fn a_node_added_gets_routes_before_the_proxy_and_a_node_removed_loses_them_after() {
    let (three, four) = (node0(&cluster(3, true, 3)), node0(&cluster(4, true, 4)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &three, &mut fx);
    fx.calls.clear();
    let held = ok(&held, &four, &mut fx);
    holds(&fx, &four);
    assert_eq!(fx.routes.len(), 3);
    let net = fx
        .calls
        .iter()
        .position(|c| matches!(c, Call::Net(_)))
        .unwrap();
    let nft = fx
        .calls
        .iter()
        .position(|c| matches!(c, Call::Nft(_)))
        .unwrap();
    assert!(net < nft, "routes to the new node first: {:?}", fx.calls);
    fx.calls.clear();
    ok(&held, &three, &mut fx);
    holds(&fx, &three);
    let net = fx
        .calls
        .iter()
        .position(|c| matches!(c, Call::Net(_)))
        .unwrap();
    let nft = fx
        .calls
        .iter()
        .position(|c| matches!(c, Call::Nft(_)))
        .unwrap();
    assert!(nft < net, "routes to the leaving node last: {:?}", fx.calls);
}

#[test]
fn a_failed_transaction_changes_nothing_is_reported_and_the_next_apply_repairs_it() {
    let (before, after) = (node0(&cluster(3, false, 3)), node0(&cluster(3, true, 3)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &before, &mut fx);
    fx.fail.insert(Fail::Nft);
    let a = apply(&held, &after, &mut fx);
    assert_eq!(a.failures.len(), 1);
    let msg = podnet_node::chain(&a.failures[0]);
    assert!(
        msg.contains("nft -f -") && msg.contains("failed on purpose"),
        "{msg}"
    );
    assert_eq!(
        a.held.proxy.as_ref(),
        Some(&before.proxy),
        "the table is as it was"
    );
    assert_eq!(fx.table.as_ref(), Some(&before.proxy));
    fx.heal();
    ok(&a.held, &after, &mut fx);
    holds(&fx, &after);
}

#[test]
fn a_policy_table_unlike_the_one_held_is_replaced_whole_after_its_change_fails() {
    let (before, after) = (node0(&cluster(4, true, 3)), node0(&cluster(1, true, 3)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &before, &mut fx);
    // The kernel's table is not what the node holds (an older podnet's, or edited by hand):
    // its map entries are gone.
    fx.policy.as_mut().unwrap().ingress.clear();
    let a = apply(&held, &after, &mut fx);
    assert_eq!(
        a.failures.len(),
        1,
        "deleting entries the table lacks is refused"
    );
    assert!(
        a.held.policy.is_none(),
        "what the kernel holds is no longer known"
    );
    // The next apply, with nothing healed, loads the table whole.
    ok(&a.held, &after, &mut fx);
    holds(&fx, &after);
}

#[test]
fn failed_route_batches_and_conntrack_deletions_are_retried() {
    let (three, four) = (node0(&cluster(3, true, 3)), node0(&cluster(4, true, 4)));
    let mut fx = Recording::default();
    let held = ok(&Held::default(), &three, &mut fx);
    // The routes to the new node fail; the proxy goes on.
    fx.fail.insert(Fail::Net);
    let a = apply(&held, &four, &mut fx);
    assert_eq!(a.failures.len(), 1, "{:?}", a.failures);
    assert!(!a.held.remotes_certain);
    assert_eq!(
        fx.table.as_ref(),
        Some(&four.proxy),
        "the proxy still went on"
    );
    fx.heal();
    let held = ok(&a.held, &four, &mut fx);
    holds(&fx, &four);
    assert!(held.remotes_certain);
    // An endpoint leaves, and its conntrack deletion fails: owed, then paid.
    let fewer = node0(&cluster(3, true, 4));
    fx.fail.insert(Fail::ForgetUdpFlow);
    let a = apply(&held, &fewer, &mut fx);
    assert_eq!(a.failures.len(), 1);
    assert_eq!(a.held.stale_flows.len(), 1);
    fx.heal();
    let held = ok(&a.held, &fewer, &mut fx);
    assert!(held.stale_flows.is_empty());
    assert_eq!(fx.forgotten.len(), 1);
}

#[test]
fn every_failure_is_reported_not_just_the_first() {
    let want = node0(&cluster(3, true, 3));
    let mut fx = Recording::default();
    fx.fail.extend([Fail::Sysctl, Fail::Net, Fail::Nft]);
    let a = apply(&Held::default(), &want, &mut fx);
    // The settings, the device, the masquerade table, the policy table and the proxy's table.
    assert_eq!(a.failures.len(), 5, "{:?}", a.failures);
    assert_eq!(a.held.vxlan, None);
    assert_eq!(a.held.proxy, None);
    assert_eq!(a.held.policy, None);
    let err = podnet_node::NodeError::all(a.failures)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("5 failures"), "{err}");
    fx.heal();
    ok(&Held::default(), &want, &mut fx);
    holds(&fx, &want);
}

#[test]
fn a_node_moved_between_native_routing_and_the_overlay_keeps_its_routes() {
    let of = |r| node0(&routed(3, true, 3, Some(r)));
    let (vxlan, native) = (of(Routing::Vxlan), of(Routing::Native));
    assert!(vxlan.remotes.iter().all(|r| r.gateway.is_none()));
    assert!(native.remotes.iter().all(|r| r.gateway.is_some()));
    assert_eq!(vxlan.pod_mtu, 1450);
    assert_eq!(native.pod_mtu, 1500);
    let mut fx = Recording::default();
    let mut held = ok(&Held::default(), &vxlan, &mut fx);
    holds(&fx, &vxlan);
    for want in [&native, &vxlan, &native] {
        fx.calls.clear();
        held = ok(&held, want, &mut fx);
        holds(&fx, want);
        // Each route replaced in place: never deleted, so the pods stay reachable throughout.
        let deleted: Vec<&NetOp> = fx
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Net(ops) => Some(ops),
                _ => None,
            })
            .flatten()
            .filter(|o| matches!(o, NetOp::DeleteRoute { .. }))
            .collect();
        assert!(deleted.is_empty(), "{deleted:?}");
        // What the fake's kernel holds reads back as wanted.
        let observed = fx.observe(want).unwrap();
        assert_eq!(observed.held.remotes, want.remotes);
    }
}
