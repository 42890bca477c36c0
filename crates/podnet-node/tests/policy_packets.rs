//! Random NetworkPolicies and labels over a small cluster: every node's compiled policy table,
//! loaded into the kernel through the node's own effects, judges real packets as the model
//! does, on every cell (source pod, destination pod, protocol, port).
//!
//! Three namespaces of the test's own: `router` holds one node's policy table at a time and
//! forwards between `src` and `dst`, which both hold every pod's address (policy routing by
//! the incoming link keeps the two sides apart). A probe is a new connection from `src`,
//! bound to the source pod's address, to the destination pod's: it passed the table when
//! `dst`'s kernel answered (TCP: a reset, as nothing listens; UDP: port unreachable; SCTP,
//! sent as a raw INIT since this kernel has no SCTP sockets: protocol unreachable), and was
//! dropped when nothing came back. A connection across nodes meets two tables (the source
//! node's, then the destination node's): it is allowed when both pass it.
//!
//! Root only: without it the test says why it skips, and fails under `CI=true`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use podnet_emulator::build;
use podnet_model::netpol::{End, Policies};
use podnet_model::{parse_documents, ConfigOverrides, Protocol};
use podnet_node::effects::Linux;
use podnet_node::sctp;
use podnet_node::sys::{self, Scratch};
use podnet_node::Effects;
use podnet_policy::{protocol_number, PolicyPlan, Transaction};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use socket2::{Domain, SockAddr, Socket, Type};

use podnet_testkit::policy_gen as gen;

const ROUTER_SRC_MAC: &str = "02:00:00:00:00:01";
const ROUTER_DST_MAC: &str = "02:00:00:00:00:02";
const SRC_MAC: &str = "02:00:00:00:00:11";
const DST_MAC: &str = "02:00:00:00:00:12";
const GATEWAY: &str = "169.254.1.1";

/// How long a dropped probe is waited for. An answer takes well under a millisecond here.
const WAIT: Duration = Duration::from_millis(250);

struct Bench {
    router: Scratch,
    src: Scratch,
    dst: Scratch,
    fx: Linux,
    addresses: BTreeSet<Ipv4Addr>,
}

fn tid(ns: &Scratch) -> String {
    ns.path
        .to_string_lossy()
        .rsplit('/')
        .nth(2)
        .expect("/proc/PID/task/TID/ns/net")
        .to_string()
}

fn batch(ns: &Scratch, script: &str) {
    ns.run(
        Command::new("ip").args(["-batch", "-"]),
        Some(script.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{}\n{script}", podnet_node::chain(&e)));
}

fn sysctl(ns: &Scratch, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    sys::in_netns(&ns.path, || {
        std::fs::write(&path, value).map_err(|source| podnet_node::NodeError::Sysctl {
            key: key.into(),
            source,
        })
    })
    .unwrap();
}

impl Bench {
    fn new() -> Option<Bench> {
        let router = common::scratch()?;
        let (src, dst) = (Scratch::new().unwrap(), Scratch::new().unwrap());
        batch(
            &router,
            &format!(
                "link set lo up\n\
                 link add vs address {ROUTER_SRC_MAC} type veth peer name eth0 address {SRC_MAC} netns {}\n\
                 link add vd address {ROUTER_DST_MAC} type veth peer name eth0 address {DST_MAC} netns {}\n\
                 link set vs up\nlink set vd up\n\
                 rule add iif vs lookup 100\nrule add iif vd lookup 200\n\
                 route add default dev vd table 100\nroute add default dev vs table 200\n",
                tid(&src),
                tid(&dst)
            ),
        );
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.vs.rp_filter",
            "net.ipv4.conf.vd.rp_filter",
        ] {
            sysctl(
                &router,
                key,
                if key.ends_with("forward") { "1" } else { "0" },
            );
        }
        for (ns, mac) in [(&src, ROUTER_SRC_MAC), (&dst, ROUTER_DST_MAC)] {
            batch(
                ns,
                // Both sides hold every pod address, yet what they send must leave: what is
                // sent from here (`iif lo`) is routed out before the local table is consulted.
                &format!(
                    "link set lo up\nlink set eth0 up\n\
                     neigh add {GATEWAY} lladdr {mac} dev eth0 nud permanent\n\
                     route add default via {GATEWAY} dev eth0 onlink table 100\n\
                     rule add pref 10 iif lo lookup 100\n\
                     rule add pref 20 lookup local\n\
                     rule del pref 0 lookup local\n"
                ),
            );
            // Every probe that passes is answered, however many at once.
            sysctl(ns, "net.ipv4.icmp_ratelimit", "0");
            sysctl(ns, "net.ipv4.icmp_msgs_per_sec", "100000");
            sysctl(ns, "net.ipv4.icmp_msgs_burst", "100000");
        }
        let fx = Linux::at(router.path.clone());
        Some(Bench {
            router,
            src,
            dst,
            fx,
            addresses: BTreeSet::new(),
        })
    }

    /// Gives both sides every pod address (the router, a permanent neighbour for each).
    fn address(&mut self, want: &BTreeSet<Ipv4Addr>) {
        let add: Vec<Ipv4Addr> = want.difference(&self.addresses).copied().collect();
        if add.is_empty() {
            return;
        }
        let mut own = String::new();
        let mut router = String::new();
        for ip in &add {
            own += &format!("address add {ip}/32 dev eth0\n");
            router += &format!(
                "neigh add {ip} lladdr {SRC_MAC} dev vs nud permanent\n\
                 neigh add {ip} lladdr {DST_MAC} dev vd nud permanent\n"
            );
        }
        batch(&self.src, &own);
        batch(&self.dst, &own);
        batch(&self.router, &router);
        self.addresses.extend(add);
    }

    /// Loads one node's table (replacing the one before) and forgets every connection.
    fn load(&mut self, plan: &PolicyPlan) {
        self.fx.nft_policy(&Transaction::create(plan)).unwrap();
        // What a verify pass reads back (every set's elements over netlink) is the plan
        // itself: random policies' ranges, ports and protocols decode as they were made.
        let read = podnet_node::observe::tables_of(
            &podnet_node::nlnft::ruleset(&self.router.path).unwrap(),
        )
        .unwrap()
        .policy
        .unwrap();
        assert!(read.unreadable.is_empty(), "{:?}", read.unreadable);
        assert_eq!(&read.content, plan, "the policy table as read back");
        let _ = self.router.run(Command::new("conntrack").arg("-F"), None);
    }
}

/// One cell: (source, destination, protocol, port).
type Cell = (Ipv4Addr, Ipv4Addr, Protocol, u16);

/// Sends every probe at once from `src` and returns the cells that were answered: TCP and UDP
/// on one thread, SCTP ([`sctp::reach_all`]) on another, both inside `src`.
fn probe(bench: &Bench, cells: &[Cell]) -> BTreeSet<Cell> {
    let (sctp_cells, others): (Vec<Cell>, Vec<Cell>) =
        cells.iter().partition(|c| c.2 == Protocol::Sctp);
    let path = &bench.src.path;
    std::thread::scope(|s| {
        let sctp_side = s.spawn(|| {
            let probes: Vec<sctp::Probe> = sctp_cells
                .iter()
                .map(|&(from, to, _, port)| sctp::Probe {
                    from: Some(from.into()),
                    to: SocketAddr::V4(SocketAddrV4::new(to, port)),
                })
                .collect();
            sys::in_netns(path, || {
                sctp::reach_all(&probes, 40000, WAIT).map_err(|source| podnet_node::NodeError::Io {
                    what: "SCTP probes".into(),
                    source,
                })
            })
            .unwrap()
        });
        let mut answered = sys::in_netns(path, || Ok(probe_sockets(&others))).unwrap();
        let sctp_answers = sctp_side.join().unwrap();
        answered.extend(
            sctp_cells
                .iter()
                .zip(sctp_answers)
                .filter(|(_, a)| *a)
                .map(|(c, _)| *c),
        );
        answered
    })
}

/// TCP and UDP probes from the current thread's namespace.
fn probe_sockets(cells: &[Cell]) -> BTreeSet<Cell> {
    let mut open: Vec<(Cell, Socket)> = Vec::new();
    for &(s, d, proto, port) in cells {
        let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(d, port)));
        let (ty, p) = if proto == Protocol::Tcp {
            (Type::STREAM, socket2::Protocol::TCP)
        } else {
            (Type::DGRAM, socket2::Protocol::UDP)
        };
        let sock = Socket::new(Domain::IPV4, ty, Some(p)).unwrap();
        sock.set_nonblocking(true).unwrap();
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(s, 0)).into())
            .unwrap();
        match sock.connect(&to) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
            Err(e) => panic!("connect {s} -> {d}:{port}: {e}"),
        }
        if proto == Protocol::Udp {
            sock.send(b"probe").unwrap();
        }
        open.push(((s, d, proto, port), sock));
    }
    let mut answered = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && !open.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
        open.retain(|(cell, sock)| {
            let refused = match cell.2 {
                Protocol::Tcp => sock
                    .take_error()
                    .unwrap()
                    .is_some_and(|e| e.kind() == ErrorKind::ConnectionRefused),
                _ => {
                    let mut buf = [0u8; 64];
                    matches!((&*sock).read(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
                }
            };
            if refused {
                answered.insert(*cell);
            }
            !refused
        });
    }
    answered
}

const PROBES: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 81),
    (Protocol::Udp, 80),
    (Protocol::Sctp, 80),
];

#[test]
fn the_kernel_judges_real_packets_as_the_model() {
    judge_real_packets(false);
}

/// The same with ClusterNetworkPolicies of both tiers over the NetworkPolicies: each node's
/// tiers' sets, loaded into the kernel, drop and pass as the model's tiers.
#[test]
fn with_cluster_policies_the_kernel_judges_real_packets_as_the_model() {
    judge_real_packets(true);
}

fn judge_real_packets(with_cluster: bool) {
    let Some(bench) = Bench::new() else { return };
    // The runner takes a `Fn`: the bench and the counts are borrowed inside.
    let bench = std::cell::RefCell::new(bench);
    let cases: u32 = std::env::var("PODNET_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(0usize..3, 6),
        proptest::collection::vec(gen::policy(), 0..4),
        proptest::collection::vec(
            gen::cluster_policy(),
            usize::from(with_cluster)..4 * usize::from(with_cluster) + 1,
        ),
    );
    let seen = Seen::default();
    runner
        .run(&strategy, |(labels, policies, cluster)| {
            let text = gen::manifests(&labels, &policies) + &gen::cluster_manifests(&cluster);
            judge_case(&bench, &seen, &text)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The probes tell both apart, in every protocol: random policies both allow and deny.
    let seen = seen.into_inner();
    assert_eq!(seen.len(), PROBES.len() - 1, "{seen:?}");
    for (proto, (allowed, denied)) in &seen {
        assert!(
            *allowed > 0 && *denied > 0,
            "{proto}: {allowed} allowed, {denied} denied"
        );
    }
}

/// Allowed and denied cells per protocol.
type Seen = std::cell::RefCell<BTreeMap<Protocol, (usize, usize)>>;

/// One cluster's manifests: each node's table loaded, every cell that crosses it probed with
/// real packets, against the table's simulation and the model.
fn judge_case(
    bench: &std::cell::RefCell<Bench>,
    seen: &Seen,
    text: &str,
) -> Result<(), TestCaseError> {
    let docs = parse_documents("p.yaml", text).unwrap();
    let c = build(&docs, &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let model = Policies::of(&c);
    let pods: Vec<_> = c
        .pods
        .iter()
        .filter(|p| p.name.starts_with("pod"))
        .collect();
    let ip = |p: &podnet_model::PodInfo| match p.ips[0] {
        IpAddr::V4(v) => v,
        IpAddr::V6(_) => panic!("IPv4 pods"),
    };
    bench
        .borrow_mut()
        .address(&pods.iter().map(|p| ip(p)).collect());
    let cells_of = |node: &str| -> Vec<Cell> {
        let mut out = Vec::new();
        for a in &pods {
            for b in &pods {
                let on_node = a.node.as_deref() == Some(node) || b.node.as_deref() == Some(node);
                if a.key() != b.key() && on_node {
                    out.extend(
                        PROBES
                            .iter()
                            .map(|&(proto, port)| (ip(a), ip(b), proto, port)),
                    );
                }
            }
        }
        out
    };
    // What each node's table did with each cell that crosses it.
    let mut passed: BTreeMap<Cell, Vec<bool>> = BTreeMap::new();
    for node in &c.nodes {
        let plan = PolicyPlan::for_node(&c, &node.name);
        bench.borrow_mut().load(&plan);
        let cells = cells_of(&node.name);
        let answered = probe(&bench.borrow(), &cells);
        for cell in cells {
            let got = answered.contains(&cell);
            let sim = plan.passes(
                cell.0.into(),
                cell.1.into(),
                protocol_number(cell.2),
                cell.3,
            );
            if got != sim {
                return Err(TestCaseError::fail(format!(
                    "{}: the kernel {} {cell:?}, the table's simulation {}\n{text}",
                    node.name,
                    if got { "passed" } else { "dropped" },
                    if sim { "passes it" } else { "drops it" }
                )));
            }
            passed.entry(cell).or_default().push(got);
        }
    }
    for a in &pods {
        for b in &pods {
            if a.key() == b.key() {
                continue;
            }
            for (proto, port) in PROBES {
                let cell = (ip(a), ip(b), proto, port);
                let kernel = passed[&cell].iter().all(|p| *p);
                let want = model.judge(End::Pod(a), End::Pod(b), port, proto).allowed;
                let mut seen = seen.borrow_mut();
                let count = seen.entry(proto).or_default();
                if kernel {
                    count.0 += 1;
                } else {
                    count.1 += 1;
                }
                if kernel != want {
                    return Err(TestCaseError::fail(format!(
                        "{} -> {} {proto}/{port}: packets {}, the model {}\n{text}",
                        a.key(),
                        b.key(),
                        if kernel { "passed" } else { "were dropped" },
                        if want { "allows" } else { "denies" }
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Rules of different actions whose connections overlap: a point of an earlier Accept inside
/// a range of a later Deny, a point of an earlier Deny inside a range of a later Accept. The
/// points of every action are looked up before the ranges of any, as the first rule decides.
#[test]
fn the_first_rule_decides_where_points_and_ranges_of_other_actions_overlap() {
    let Some(bench) = Bench::new() else { return };
    let bench = std::cell::RefCell::new(bench);
    let seen = Seen::default();
    let cnp = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: overlap}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  egress:
  - {name: deny-b, action: Deny, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}}], protocols: [{tcp: {destinationPort: {number: 81}}}]}
  - {name: accept-a, action: Accept, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: deny-all, action: Deny, to: [{networks: [10.244.0.0/16]}]}
  ingress:
  - {name: deny-c, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {name: accept-all, action: Accept, from: [{namespaces: {}}]}
"#;
    let text = gen::manifests(&[0, 1, 2, 0, 1, 2], &[]) + cnp;
    judge_case(&bench, &seen, &text).unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.into_inner();
    let tcp = seen[&Protocol::Tcp];
    assert!(tcp.0 > 0 && tcp.1 > 0, "TCP: {tcp:?}");
}
