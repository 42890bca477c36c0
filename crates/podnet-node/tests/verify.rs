//! Verifying a node for real: a node's dataplane (the seeds' cluster, with its Services and
//! NetworkPolicies) applied in a namespace of its own, then changed behind the applier's back
//! the ways an operator's command, another program or a crash could change it; each verify
//! pass must name what drifted and repair it, and the next must find nothing (root only; a
//! skip says why, and is a failure under `CI=true`).

mod common;
use common::scratch;

use std::process::Command;

use podnet_node::effects::Linux;
use podnet_node::sys::Scratch;
use podnet_node::verify::verify;
use podnet_node::{apply, Held, NodeDataplane};

/// The seeds' cluster (examples/seeds), node-1's dataplane.
fn seeds_node() -> NodeDataplane {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seeds");
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        docs.extend(podnet_model::parse_documents(&f.display().to_string(), &text).unwrap());
    }
    let cluster = podnet_emulator::build(&docs, &Default::default()).unwrap();
    NodeDataplane::for_node(&cluster, "node-1", "eth0").unwrap()
}

/// `want` applied in `ns`, over an underlay of a veth pair inside it (no dummy links here).
fn programmed(ns: &Scratch, want: &NodeDataplane) -> (Linux, podnet_node::apply::Applied) {
    let node_ip = want.vxlan.vtep.node_ip.to_string();
    sh(
        ns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    sh(
        ns,
        &["ip", "addr", "add", &format!("{node_ip}/16"), "dev", "eth0"],
    );
    sh(ns, &["ip", "link", "set", "eth0", "up"]);
    sh(ns, &["ip", "link", "set", "eth0p", "up"]);
    let mut fx = Linux::at(ns.path.clone());
    let applied = apply(&Held::default(), want, &mut fx);
    assert!(applied.failures.is_empty(), "{:?}", applied.failures);
    (fx, applied)
}

fn sh(ns: &Scratch, args: &[&str]) -> String {
    ns.run(Command::new(args[0]).args(&args[1..]), None)
        .unwrap_or_else(|e| panic!("{}: {}", args.join(" "), podnet_node::chain(&e)))
}

#[test]
fn every_kind_of_drift_is_named_and_repaired_in_one_pass() {
    let Some(ns) = scratch() else { return };
    let want = seeds_node();
    assert!(!want.policy.groups.is_empty(), "the seeds have policies");
    let (mut fx, applied) = programmed(&ns, &want);

    // As applied: nothing to say.
    let v = verify(&applied.held, &want, &mut fx).unwrap();
    assert!(v.drift.is_empty(), "{:?}", v.drift);
    // The elements read over netlink are those nft itself lists, every set and map of them.
    let from_nft =
        podnet_node::observe::tables(&sh(&ns, &["nft", "-j", "list", "ruleset"])).unwrap();
    let from_netlink =
        podnet_node::observe::tables_of(&podnet_node::nlnft::ruleset(&ns.path).unwrap()).unwrap();
    assert_eq!(from_netlink, from_nft);
    assert_eq!(
        from_netlink.policy.as_ref().map(|t| &t.content),
        Some(&want.policy)
    );
    assert_eq!(
        from_netlink.proxy.as_ref().map(|t| &t.content),
        Some(&want.proxy)
    );

    // Behind the applier's back: a pod's policy entry, a Service's map element, a remote
    // node's route, a flushed base chain, a setting.
    let pod = want.policy.egress.keys().next().unwrap().to_string();
    let svc = want
        .proxy
        .services
        .keys()
        .next()
        .map(|k| format!("{} . {} . {}", k.ip, k.proto.lower(), k.port))
        .unwrap();
    let remote = want.remotes.iter().next().unwrap().pod_cidr.to_string();
    sh(
        &ns,
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "podnet-policy",
            "egress",
            &format!("{{ {pod} }}"),
        ],
    );
    sh(
        &ns,
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "podnet-proxy",
            "services",
            &format!("{{ {svc} }}"),
        ],
    );
    sh(
        &ns,
        &[
            "nft",
            "add",
            "element",
            "ip",
            "podnet-proxy",
            "hairpin",
            "{ 10.9.9.9 . 10.9.9.9 }",
        ],
    );
    sh(&ns, &["ip", "route", "del", &remote]);
    // A route to pods of a node that is gone, on the uplink: not wanted, removed.
    sh(
        &ns,
        &[
            "ip",
            "route",
            "add",
            "10.244.99.0/24",
            "via",
            "172.18.0.99",
            "dev",
            "eth0",
            "onlink",
        ],
    );
    sh(
        &ns,
        &["nft", "flush", "chain", "ip", "podnet-policy", "forward"],
    );
    sh(&ns, &["sysctl", "-w", "net.ipv4.ip_forward=0"]);

    let v = verify(&v.held, &want, &mut fx).unwrap();
    assert!(v.failures.is_empty(), "{:?}", v.failures);
    let said: Vec<String> = v.drift.iter().map(ToString::to_string).collect();
    let has = |table: &str, needle: &str| {
        said.iter()
            .any(|d| d.starts_with(&format!("{table}: ")) && d.contains(needle))
    };
    assert!(has("routes", &remote), "{said:#?}");
    assert!(
        has("routes", "10.244.99.0/24 via 172.18.0.99 (native)"),
        "{said:#?}"
    );
    assert!(has("sysctl", "net.ipv4.ip_forward is 0"), "{said:#?}");
    assert!(has("proxy", "missing from its maps and sets"), "{said:#?}");
    assert!(has("proxy", "10.9.9.9"), "{said:#?}");
    assert!(has("policy", "chain forward"), "{said:#?}");

    // Repaired: the next pass finds nothing, and the kernel shows each thing back.
    let again = verify(&v.held, &want, &mut fx).unwrap();
    assert!(again.drift.is_empty(), "{:?}", again.drift);
    assert!(sh(
        &ns,
        &["nft", "list", "map", "ip", "podnet-policy", "egress"]
    )
    .contains(&pod));
    assert!(!sh(
        &ns,
        &["nft", "list", "set", "ip", "podnet-proxy", "hairpin"]
    )
    .contains("10.9.9.9"));
    // The seeds' nodes share a subnet: their pods are routed natively, through the uplink.
    let r = want.remotes.iter().next().unwrap();
    let gw = r.gateway.expect("routed natively").to_string();
    let shown = sh(&ns, &["ip", "route", "show", &remote]);
    assert!(shown.contains(&format!("via {gw} dev eth0")), "{shown}");
    assert!(sh(&ns, &["ip", "route", "show", "10.244.99.0/24"])
        .trim()
        .is_empty());
    assert_eq!(
        sh(&ns, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        "1"
    );

    // A whole table gone, and the VXLAN device: made again.
    sh(&ns, &["nft", "delete", "table", "ip", "podnet-proxy"]);
    sh(&ns, &["ip", "link", "del", "vxlan0"]);
    let v = verify(&again.held, &want, &mut fx).unwrap();
    assert!(v.failures.is_empty(), "{:?}", v.failures);
    let said: Vec<String> = v.drift.iter().map(ToString::to_string).collect();
    assert!(
        said.iter()
            .any(|d| d == "proxy: table ip podnet-proxy missing"),
        "{said:#?}"
    );
    assert!(said.iter().any(|d| d.starts_with("overlay: ")), "{said:#?}");
    let again = verify(&v.held, &want, &mut fx).unwrap();
    assert!(again.drift.is_empty(), "{:?}", again.drift);
}

/// Every kind of the proxy's elements (Services and node ports over TCP, UDP and SCTP, session
/// affinity, no endpoints, hairpin) reads back over netlink as nft lists it and as applied.
#[test]
fn every_kind_of_proxy_element_reads_back_as_applied() {
    let Some(ns) = scratch() else { return };
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 80, name: http}, {containerPort: 53, protocol: UDP}, {containerPort: 9, protocol: SCTP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  selector: {app: web}
  ports: [{name: h, port: 80, targetPort: http}, {name: d, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: s, port: 9, protocol: SCTP}, {name: h, port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: none}
  ports: [{port: 80}]
"#;
    let docs = podnet_model::parse_documents("p.yaml", text).unwrap();
    let cluster = podnet_emulator::build(&docs, &Default::default()).unwrap();
    let want = NodeDataplane::for_node(&cluster, "node-1", "eth0").unwrap();
    let p = &want.proxy;
    assert!(!p.node_ports.is_empty() && !p.no_endpoints.is_empty() && !p.hairpin.is_empty());
    assert!(
        p.backends.keys().any(|k| k.map.affinity) && p.backends.keys().any(|k| k.map.node_port)
    );
    let mut fx = Linux::at(ns.path.clone());
    fx_apply_proxy(&mut fx, &want);
    let from_nft =
        podnet_node::observe::tables(&sh(&ns, &["nft", "-j", "list", "ruleset"])).unwrap();
    let from_netlink =
        podnet_node::observe::tables_of(&podnet_node::nlnft::ruleset(&ns.path).unwrap()).unwrap();
    let proxy = from_netlink.proxy.as_ref().unwrap();
    assert!(proxy.unreadable.is_empty(), "{:?}", proxy.unreadable);
    assert_eq!(&proxy.content, p);
    assert_eq!(from_netlink.proxy, from_nft.proxy);
}

/// The proxy's table alone, loaded whole.
fn fx_apply_proxy(fx: &mut Linux, want: &NodeDataplane) {
    use podnet_node::Effects;
    fx.nft(&podnet_proxy::nft::Transaction::create(&want.proxy))
        .unwrap();
}

/// What a new pod's CNI ADD waits for (issue 20): the policy maps' keys read back over
/// netlink are the plan's, and lose an entry deleted behind the applier's back; the fakes'
/// answer (from a whole observation) is the same.
#[test]
fn the_policy_maps_keys_read_back_over_netlink() {
    use podnet_node::effects::Effects;
    let Some(ns) = scratch() else { return };
    let want = seeds_node();
    let (mut fx, _) = programmed(&ns, &want);
    let got = fx.policy_entries(&want).unwrap();
    let plan_in: std::collections::BTreeSet<_> = want.policy.ingress.keys().copied().collect();
    let plan_eg: std::collections::BTreeSet<_> = want.policy.egress.keys().copied().collect();
    assert!(!plan_in.is_empty());
    assert_eq!((&got.ingress, &got.egress), (&plan_in, &plan_eg));
    let gone = *plan_in.iter().next().unwrap();
    sh(
        &ns,
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "podnet-policy",
            "ingress",
            &format!("{{ {gone} }}"),
        ],
    );
    let got = fx.policy_entries(&want).unwrap();
    assert!(!got.ingress.contains(&gone) && got.egress.contains(&gone));
    let mut rec = podnet_node::effects::Recording::default();
    let _ = apply(&Held::default(), &want, &mut rec);
    let faked = rec.policy_entries(&want).unwrap();
    assert_eq!((&faked.ingress, &faked.egress), (&plan_in, &plan_eg));
}
