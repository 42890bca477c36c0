//! The proxy plan as nftables: one table, `ip podnet-proxy`, of maps and sets, with chains per
//! endpoint count instead of per service (see `docs/design/service-proxy.md`). Dispatch is two
//! hash lookups whatever the number of Services.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::process::{Command, Stdio};

use crate::plan::{Dispatch, ProxyPlan};

pub const TABLE: &str = "podnet-proxy";
/// The mark that asks postrouting to masquerade.
pub const MASQ_MARK: u32 = 0x4000;

/// The protocols the proxy handles. Backend maps and dispatch chains exist per protocol: nft
/// reads a map's data type (`ip daddr . udp dport`) into the rules that use the map, so each map
/// serves one protocol. (A protocol-neutral `th dport` loads, but nft cannot read it back from
/// the kernel, and every later transaction on the table would fail.)
pub const PROTOS: [&str; 3] = ["tcp", "udp", "sctp"];

/// What a frontend's element jumps to: `goto svc_udp_ep3`, `goto np_tcp_aff10800_ep2_masq`,
/// `drop`; None for a frontend that is rejected.
fn verdict(prefix: &str, proto: &str, affinity: Option<u32>, d: &Dispatch) -> Option<String> {
    let aff = affinity.map(|t| format!("aff{t}_")).unwrap_or_default();
    match d {
        Dispatch::Endpoints {
            endpoints,
            masquerade,
        } => Some(format!(
            "goto {prefix}_{proto}_{aff}ep{}{}",
            endpoints.len(),
            if *masquerade { "_masq" } else { "" }
        )),
        Dispatch::Drop => Some("drop".to_string()),
        Dispatch::Reject => None,
    }
}

/// The elements of each map and set, as nft text: what a node's proxy holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Elements {
    pub services: BTreeSet<String>,
    pub node_ports: BTreeSet<String>,
    /// Backend maps by name: `backends_<proto>` and `np_backends_<proto>` by slot,
    /// `aff_backends_<proto>` and `np_aff_backends_<proto>` (session affinity) by slot + 1.
    pub backends: std::collections::BTreeMap<String, BTreeSet<String>>,
    pub no_endpoints: BTreeSet<String>,
    pub no_endpoint_ports: BTreeSet<String>,
    pub hairpin: BTreeSet<String>,
}

/// A dispatch chain: for Services (`svc`) or node ports (`np`), one protocol, with session
/// affinity's timeout or without, for `n` endpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ChainSpec {
    node_port: bool,
    proto: String,
    affinity: Option<u32>,
    n: usize,
}

impl ChainSpec {
    fn parse(verdict: &str) -> Option<ChainSpec> {
        let name = verdict.strip_prefix("goto ")?.trim_end_matches("_masq");
        let (node_port, rest) = if let Some(r) = name.strip_prefix("svc_") {
            (false, r)
        } else {
            (true, name.strip_prefix("np_")?)
        };
        let (proto, rest) = rest.split_once('_')?;
        let (affinity, rest) = match rest.strip_prefix("aff") {
            Some(r) => {
                let (t, r) = r.split_once('_')?;
                (Some(t.parse().ok()?), r)
            }
            None => (None, rest),
        };
        Some(ChainSpec {
            node_port,
            proto: proto.to_string(),
            affinity,
            n: rest.strip_prefix("ep")?.parse().ok()?,
        })
    }

    fn name(&self) -> String {
        let aff = self
            .affinity
            .map(|t| format!("aff{t}_"))
            .unwrap_or_default();
        format!(
            "{}_{}_{aff}ep{}",
            if self.node_port { "np" } else { "svc" },
            self.proto,
            self.n
        )
    }

    /// The chain and its masquerading twin.
    fn render(&self, out: &mut String) {
        let (name, n, proto) = (self.name(), self.n, &self.proto);
        let _ = writeln!(out, "add chain ip {TABLE} {name}");
        let (key, np) = if self.node_port {
            ("meta l4proto . th dport", "np_")
        } else {
            ("ip daddr . meta l4proto . th dport", "")
        };
        match self.affinity {
            None => {
                let _ = writeln!(out, "add rule ip {TABLE} {name} dnat ip to {key} . numgen random mod {n} map @{np}backends_{proto}");
            }
            Some(t) => {
                // The slot + 1 lives in the connection's ct mark: restored from the client's
                // entry if it has one (and it still fits), drawn otherwise, then recorded.
                let client = format!("ip saddr . {key}");
                let _ = writeln!(
                    out,
                    "add rule ip {TABLE} {name} ct mark set {client} map @{np}aff_{t}"
                );
                let _ = writeln!(out, "add rule ip {TABLE} {name} ct mark 0 ct mark set numgen random mod {n} offset 1");
                let _ = writeln!(out, "add rule ip {TABLE} {name} ct mark > {n} ct mark set numgen random mod {n} offset 1");
                let _ = writeln!(
                    out,
                    "add rule ip {TABLE} {name} update @{np}aff_{t} {{ {client} : ct mark }}"
                );
                let _ = writeln!(out, "add rule ip {TABLE} {name} dnat ip to {key} . ct mark map @{np}aff_backends_{proto}");
            }
        }
        let _ = writeln!(out, "add chain ip {TABLE} {name}_masq");
        let _ = writeln!(
            out,
            "add rule ip {TABLE} {name}_masq meta mark set meta mark | {MASQ_MARK:#x} goto {name}"
        );
    }
}

/// The session-affinity maps for a timeout.
fn render_affinity_maps(out: &mut String, t: u32) {
    let _ = writeln!(out, "add map ip {TABLE} aff_{t} {{ typeof ip saddr . ip daddr . meta l4proto . th dport : ct mark; flags dynamic,timeout; timeout {t}s; }}");
    let _ = writeln!(out, "add map ip {TABLE} np_aff_{t} {{ typeof ip saddr . meta l4proto . th dport : ct mark; flags dynamic,timeout; timeout {t}s; }}");
}

impl Elements {
    pub fn of(plan: &ProxyPlan) -> Elements {
        let mut e = Elements::default();
        for (f, (owner, d)) in &plan.frontends {
            if f.ip.is_ipv4() {
                let key = format!("{} . {} . {}", f.ip, f.proto.nft(), f.port);
                e.add_frontend(
                    false,
                    key,
                    f.proto.nft(),
                    plan.affinity.get(&owner.service).copied(),
                    d,
                );
            }
        }
        for ((proto, port), (owner, d)) in &plan.node_ports {
            let key = format!("{} . {port}", proto.nft());
            e.add_frontend(
                true,
                key,
                proto.nft(),
                plan.affinity.get(&owner.service).copied(),
                d,
            );
        }
        e
    }

    /// One frontend (a ClusterIP/LoadBalancer/external address, or a node port): its verdict
    /// or its place among the rejected, and its backends by slot.
    fn add_frontend(
        &mut self,
        node_port: bool,
        key: String,
        proto: &str,
        affinity: Option<u32>,
        d: &Dispatch,
    ) {
        let (prefix, verdicts, rejected) = if node_port {
            ("np", &mut self.node_ports, &mut self.no_endpoint_ports)
        } else {
            ("svc", &mut self.services, &mut self.no_endpoints)
        };
        match verdict(prefix, proto, affinity, d) {
            Some(v) => verdicts.insert(format!("{key} : {v}")),
            None => rejected.insert(key.clone()),
        };
        if let Dispatch::Endpoints { endpoints, .. } = d {
            let np = if node_port { "np_" } else { "" };
            let (map, first) = if affinity.is_some() {
                (format!("{np}aff_backends_{proto}"), 1)
            } else {
                (format!("{np}backends_{proto}"), 0)
            };
            for (i, (ip, port)) in endpoints.iter().enumerate() {
                self.backends
                    .entry(map.clone())
                    .or_default()
                    .insert(format!("{key} . {} : {ip} . {port}", i + first));
                self.hairpin.insert(format!("{ip} . {ip}"));
            }
        }
    }

    /// The dispatch chains the elements jump to.
    fn chains(&self) -> BTreeSet<ChainSpec> {
        self.services
            .iter()
            .chain(&self.node_ports)
            .filter_map(|e| ChainSpec::parse(e.rsplit(" : ").next()?))
            .collect()
    }

    /// The endpoint counts the elements jump to.
    pub fn counts(&self) -> BTreeSet<usize> {
        self.chains().iter().map(|c| c.n).collect()
    }

    /// The session-affinity timeouts in use.
    fn timeouts(&self) -> BTreeSet<u32> {
        self.chains().iter().filter_map(|c| c.affinity).collect()
    }

    /// Every map and set with its elements, by name.
    fn sets(&self) -> Vec<(String, &BTreeSet<String>)> {
        let mut v: Vec<(String, &BTreeSet<String>)> = vec![
            ("services".into(), &self.services),
            ("node_ports".into(), &self.node_ports),
            ("no_endpoints".into(), &self.no_endpoints),
            ("no_endpoint_ports".into(), &self.no_endpoint_ports),
            ("hairpin".into(), &self.hairpin),
        ];
        v.extend(self.backends.iter().map(|(k, set)| (k.clone(), set)));
        v
    }
}

/// The whole table, for a node's first load: one transaction (`nft -f`).
pub fn full(plan: &ProxyPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "add table ip {TABLE}");
    let _ = writeln!(
        s,
        "add map ip {TABLE} services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    );
    let _ = writeln!(
        s,
        "add map ip {TABLE} node_ports {{ type inet_proto . inet_service : verdict; }}"
    );
    for proto in PROTOS {
        let _ = writeln!(s, "add map ip {TABLE} backends_{proto} {{ typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . {proto} dport; }}");
        let _ = writeln!(s, "add map ip {TABLE} np_backends_{proto} {{ typeof meta l4proto . th dport . numgen random mod 2 : ip daddr . {proto} dport; }}");
        let _ = writeln!(s, "add map ip {TABLE} aff_backends_{proto} {{ typeof ip daddr . meta l4proto . th dport . ct mark : ip daddr . {proto} dport; }}");
        let _ = writeln!(s, "add map ip {TABLE} np_aff_backends_{proto} {{ typeof meta l4proto . th dport . ct mark : ip daddr . {proto} dport; }}");
    }
    let _ = writeln!(
        s,
        "add set ip {TABLE} no_endpoints {{ type ipv4_addr . inet_proto . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "add set ip {TABLE} no_endpoint_ports {{ type inet_proto . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "add set ip {TABLE} hairpin {{ type ipv4_addr . ipv4_addr; }}"
    );
    let elements = Elements::of(plan);
    for t in elements.timeouts() {
        render_affinity_maps(&mut s, t);
    }
    for c in elements.chains() {
        c.render(&mut s);
    }
    // DNAT: new connections to a frontend, from pods (prerouting) and from the node (output).
    let _ = writeln!(s, "add chain ip {TABLE} dispatch");
    let _ = writeln!(
        s,
        "add rule ip {TABLE} dispatch ip daddr . meta l4proto . th dport vmap @services"
    );
    let _ = writeln!(s, "add rule ip {TABLE} dispatch fib daddr type local meta l4proto . th dport vmap @node_ports");
    let _ = writeln!(s, "add chain ip {TABLE} nat_prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}");
    let _ = writeln!(s, "add rule ip {TABLE} nat_prerouting jump dispatch");
    let _ = writeln!(
        s,
        "add chain ip {TABLE} nat_output {{ type nat hook output priority -100; policy accept; }}"
    );
    let _ = writeln!(s, "add rule ip {TABLE} nat_output jump dispatch");
    // Refuse, don't time out: frontends without endpoints.
    let _ = writeln!(s, "add chain ip {TABLE} reject_chain");
    let _ = writeln!(
        s,
        "add rule ip {TABLE} reject_chain meta l4proto tcp reject with tcp reset"
    );
    let _ = writeln!(
        s,
        "add rule ip {TABLE} reject_chain reject with icmp port-unreachable"
    );
    for (chain, hook) in [
        ("filter_prerouting", "prerouting"),
        ("filter_output", "output"),
    ] {
        let _ = writeln!(s, "add chain ip {TABLE} {chain} {{ type filter hook {hook} priority -90; policy accept; }}");
        if hook == "prerouting" {
            // Hairpin: a pod reaching itself through a Service must see another source.
            let _ = writeln!(s, "add rule ip {TABLE} {chain} ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | {MASQ_MARK:#x}");
        }
        let _ = writeln!(s, "add rule ip {TABLE} {chain} ct state new ip daddr . meta l4proto . th dport @no_endpoints goto reject_chain");
        let _ = writeln!(s, "add rule ip {TABLE} {chain} ct state new fib daddr type local meta l4proto . th dport @no_endpoint_ports goto reject_chain");
    }
    let _ = writeln!(s, "add chain ip {TABLE} nat_postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}");
    let _ = writeln!(s, "add rule ip {TABLE} nat_postrouting meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark & {:#x} masquerade fully-random", !MASQ_MARK);
    for (name, set) in elements.sets() {
        add_elements(&mut s, &name, set.iter());
    }
    s
}

fn add_elements<'a>(s: &mut String, set: &str, elems: impl Iterator<Item = &'a String>) {
    let v: Vec<&String> = elems.collect();
    for chunk in v.chunks(1000) {
        let _ = writeln!(
            s,
            "add element ip {TABLE} {set} {{ {} }}",
            chunk
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn delete_elements<'a>(s: &mut String, set: &str, elems: impl Iterator<Item = &'a String>) {
    // Map elements are deleted by key: the text before " : ".
    let v: Vec<String> = elems
        .map(|e| e.split(" : ").next().unwrap_or(e).to_string())
        .collect();
    for chunk in v.chunks(1000) {
        let _ = writeln!(
            s,
            "delete element ip {TABLE} {set} {{ {} }}",
            chunk.join(", ")
        );
    }
}

/// The changes from `old` to `new` as one transaction: only the elements that differ (and
/// chains and affinity maps that are new). Empty when nothing changed.
pub fn diff(a: &Elements, b: &Elements) -> String {
    let mut s = String::new();
    for t in b.timeouts().difference(&a.timeouts()) {
        render_affinity_maps(&mut s, *t);
    }
    for c in b.chains().difference(&a.chains()) {
        c.render(&mut s);
    }
    let empty = BTreeSet::new();
    let (olds, news): (
        std::collections::BTreeMap<_, _>,
        std::collections::BTreeMap<_, _>,
    ) = (
        a.sets().into_iter().collect(),
        b.sets().into_iter().collect(),
    );
    let names: BTreeSet<&String> = olds.keys().chain(news.keys()).collect();
    // A changed map value is a delete and an add of the same key, in that order.
    for name in &names {
        let (o, n) = (
            olds.get(*name).copied().unwrap_or(&empty),
            news.get(*name).copied().unwrap_or(&empty),
        );
        delete_elements(&mut s, name, o.difference(n));
    }
    for name in &names {
        let (o, n) = (
            olds.get(*name).copied().unwrap_or(&empty),
            news.get(*name).copied().unwrap_or(&empty),
        );
        add_elements(&mut s, name, n.difference(o));
    }
    s
}

/// UDP backends that `new` no longer has, as (frontend IP or None for a node port, port,
/// endpoint IP): their conntrack entries must go, or clients keep sending to a gone endpoint.
pub fn removed_udp_backends(a: &Elements, b: &Elements) -> Vec<(Option<String>, u16, String)> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for map in [
        "backends_udp",
        "aff_backends_udp",
        "np_backends_udp",
        "np_aff_backends_udp",
    ] {
        let node_port = map.starts_with("np_");
        let (old, new) = (
            a.backends.get(map).unwrap_or(&empty),
            b.backends.get(map).unwrap_or(&empty),
        );
        for e in old.difference(new) {
            // "VIP . udp . PORT . SLOT : EP . EPPORT" or "udp . PORT . SLOT : EP . EPPORT"
            let Some((key, value)) = e.split_once(" : ") else {
                continue;
            };
            let k: Vec<&str> = key.split(" . ").collect();
            let (vip, port) = if node_port {
                (None, k.get(1))
            } else {
                (k.first().map(|s| s.to_string()), k.get(2))
            };
            let (Some(port), Some(ep)) =
                (port.and_then(|p| p.parse().ok()), value.split(" . ").next())
            else {
                continue;
            };
            // Still a backend of the same frontend under another slot: keep its flows.
            let frontend = key.rsplit_once(" . ").map_or(key, |x| x.0);
            let still = new.iter().any(|n| {
                n.split_once(" : ").is_some_and(|(nk, v)| {
                    nk.rsplit_once(" . ").map_or(nk, |x| x.0) == frontend
                        && v.split(" . ").next() == Some(ep)
                })
            });
            if !still {
                out.push((vip, port, ep.to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Runs a script through `nft -f -` inside the network namespace at `netns` (a path), as one
/// transaction: all of it applies, or none.
pub fn apply(netns: &str, script: &str) -> Result<(), String> {
    if script.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f in {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Frontend, Owner, Proto};

    fn plan(n: usize) -> ProxyPlan {
        let mut p = ProxyPlan {
            node: "node-0".into(),
            ..Default::default()
        };
        let eps = (0..n)
            .map(|i| (format!("10.244.0.{}", i + 2).parse().unwrap(), 8080))
            .collect();
        let owner = Owner {
            service: "default/s".into(),
            port: "80".into(),
        };
        p.frontends.insert(
            Frontend {
                ip: "10.96.0.5".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
            },
            (
                owner.clone(),
                Dispatch::Endpoints {
                    endpoints: eps,
                    masquerade: false,
                },
            ),
        );
        p.frontends.insert(
            Frontend {
                ip: "10.96.0.6".parse().unwrap(),
                proto: Proto::Udp,
                port: 53,
            },
            (owner.clone(), Dispatch::Reject),
        );
        p.node_ports
            .insert((Proto::Tcp, 30080), (owner, Dispatch::Drop));
        p
    }

    #[test]
    fn elements_of_a_plan() {
        let e = Elements::of(&plan(2));
        assert_eq!(
            e.services.iter().collect::<Vec<_>>(),
            ["10.96.0.5 . tcp . 80 : goto svc_tcp_ep2"]
        );
        let b = &e.backends["backends_tcp"];
        assert_eq!(b.len(), 2);
        assert!(b.contains("10.96.0.5 . tcp . 80 . 1 : 10.244.0.3 . 8080"));
        assert_eq!(
            e.no_endpoints.iter().collect::<Vec<_>>(),
            ["10.96.0.6 . udp . 53"]
        );
        assert_eq!(
            e.node_ports.iter().collect::<Vec<_>>(),
            ["tcp . 30080 : drop"]
        );
        assert!(e.hairpin.contains("10.244.0.2 . 10.244.0.2"));
    }

    #[test]
    fn full_table_has_chains_per_protocol_and_endpoint_count() {
        let s = full(&plan(3));
        assert!(s.contains("add chain ip podnet-proxy svc_tcp_ep3\n"));
        assert!(s.contains("numgen random mod 3 map @backends_tcp"));
        assert!(s.contains("add map ip podnet-proxy backends_udp { typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . udp dport; }"));
        assert!(!s.contains("svc_tcp_ep2"), "no chain for counts not in use");
    }

    #[test]
    fn removed_udp_backends_are_found() {
        let mut a = Elements::default();
        let udp = a.backends.entry("backends_udp".into()).or_default();
        udp.insert("10.96.0.6 . udp . 53 . 0 : 10.244.0.2 . 5353".into());
        udp.insert("10.96.0.6 . udp . 53 . 1 : 10.244.0.3 . 5353".into());
        a.backends
            .entry("backends_tcp".into())
            .or_default()
            .insert("10.96.0.5 . tcp . 80 . 0 : 10.244.0.2 . 8080".into());
        a.backends
            .entry("np_backends_udp".into())
            .or_default()
            .insert("udp . 30053 . 0 : 10.244.0.3 . 5353".into());
        let mut b = Elements::default();
        // 10.244.0.3 moved to slot 0: still a backend of that frontend.
        b.backends
            .entry("backends_udp".into())
            .or_default()
            .insert("10.96.0.6 . udp . 53 . 0 : 10.244.0.3 . 5353".into());
        let r = removed_udp_backends(&a, &b);
        assert_eq!(
            r,
            [
                (None, 30053, "10.244.0.3".to_string()),
                (Some("10.96.0.6".to_string()), 53, "10.244.0.2".to_string())
            ]
        );
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let e = |n| Elements::of(&plan(n));
        assert_eq!(diff(&e(2), &e(2)), "");
        assert_eq!(e(3).counts().into_iter().collect::<Vec<_>>(), [3]);
        let d = diff(&e(2), &e(3));
        assert!(d.contains("add chain ip podnet-proxy svc_tcp_ep3\n"), "{d}");
        assert!(
            d.contains("delete element ip podnet-proxy services { 10.96.0.5 . tcp . 80 }\n"),
            "{d}"
        );
        assert!(d.contains("add element ip podnet-proxy services { 10.96.0.5 . tcp . 80 : goto svc_tcp_ep3 }\n"), "{d}");
        assert!(d.contains("add element ip podnet-proxy backends_tcp { 10.96.0.5 . tcp . 80 . 2 : 10.244.0.4 . 8080 }\n"), "{d}");
        assert!(
            !d.contains("10.96.0.6"),
            "the unchanged frontend is not touched: {d}"
        );
        let del = d.find("delete element").unwrap();
        let add = d.find("add element").unwrap();
        assert!(del < add, "deletes come first");
    }
}

#[cfg(test)]
mod load {
    /// The rendered script is valid nftables: loaded into a fresh namespace when root.
    #[test]
    fn the_full_table_loads_into_nft_and_takes_diffs() {
        use crate::nft::{diff, full, Elements};
        let p3 = super::tests_support::plan3();
        let mut p5 = p3.clone();
        let eps: Vec<_> = (0..5)
            .map(|i| (format!("10.244.1.{}", i + 2).parse().unwrap(), 80))
            .collect();
        p5.frontends.insert(
            crate::plan::Frontend {
                ip: "10.96.0.8".parse().unwrap(),
                proto: crate::plan::Proto::Tcp,
                port: 80,
            },
            (
                crate::plan::Owner {
                    service: "default/five".into(),
                    port: "80".into(),
                },
                crate::plan::Dispatch::Endpoints {
                    endpoints: eps,
                    masquerade: false,
                },
            ),
        );
        // Session affinity, as a new timeout arriving in the diff.
        p5.affinity.insert("default/five".into(), 30);
        let dir = std::env::temp_dir().join(format!("podnet-nft-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("full.nft"), full(&p3)).unwrap();
        std::fs::write(
            dir.join("diff.nft"),
            diff(&Elements::of(&p3), &Elements::of(&p5)),
        )
        .unwrap();
        let script = format!(
            "nft -f {0}/full.nft && nft -f {0}/diff.nft && nft list table ip podnet-proxy",
            dir.display()
        );
        let out = std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(out) = out else { return };
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Operation not permitted") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "skipped under CI=true: needs root"
            );
            eprintln!("SKIP: loading nftables needs root");
            return;
        }
        assert!(out.status.success(), "{err}");
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(
            listed.contains("numgen random mod 3 map @backends_tcp"),
            "{listed}"
        );
        assert!(
            listed.contains("numgen random mod 5 offset 1"),
            "the diff added a chain: {listed}"
        );
        assert!(
            listed.contains("10.96.0.7 . sctp . 3868 : goto svc_sctp_ep1"),
            "{listed}"
        );
        assert!(
            listed.contains("10.96.0.8 . tcp . 80 : goto svc_tcp_aff30_ep5"),
            "{listed}"
        );
        assert!(
            listed
                .contains("ct mark set ip saddr . ip daddr . meta l4proto . th dport map @aff_30"),
            "{listed}"
        );
        assert!(
            listed.contains("10.96.0.8 . tcp . 80 . 0x00000005 : 10.244.1.6 . 80"),
            "slots count from 1: {listed}"
        );
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::plan::{Dispatch, Frontend, Owner, Proto, ProxyPlan};

    pub fn plan3() -> ProxyPlan {
        let mut p = ProxyPlan {
            node: "node-0".into(),
            ..Default::default()
        };
        let owner = Owner {
            service: "default/s".into(),
            port: "80".into(),
        };
        let eps: Vec<_> = (0..3)
            .map(|i| (format!("10.244.0.{}", i + 2).parse().unwrap(), 8080))
            .collect();
        p.frontends.insert(
            Frontend {
                ip: "10.96.0.5".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
            },
            (
                owner.clone(),
                Dispatch::Endpoints {
                    endpoints: eps.clone(),
                    masquerade: false,
                },
            ),
        );
        p.frontends.insert(
            Frontend {
                ip: "172.18.255.201".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
            },
            (
                owner.clone(),
                Dispatch::Endpoints {
                    endpoints: eps.clone(),
                    masquerade: true,
                },
            ),
        );
        p.frontends.insert(
            Frontend {
                ip: "10.96.0.6".parse().unwrap(),
                proto: Proto::Udp,
                port: 53,
            },
            (owner.clone(), Dispatch::Reject),
        );
        p.node_ports.insert(
            (Proto::Tcp, 30080),
            (
                owner.clone(),
                Dispatch::Endpoints {
                    endpoints: eps,
                    masquerade: true,
                },
            ),
        );
        p.node_ports
            .insert((Proto::Udp, 30053), (owner.clone(), Dispatch::Reject));
        p.node_ports
            .insert((Proto::Tcp, 30081), (owner.clone(), Dispatch::Drop));
        // SCTP is compiled like the others, even where the kernel cannot carry it.
        let sctp: Vec<_> = vec![("10.244.0.9".parse().unwrap(), 3868)];
        p.frontends.insert(
            Frontend {
                ip: "10.96.0.7".parse().unwrap(),
                proto: Proto::Sctp,
                port: 3868,
            },
            (
                owner,
                Dispatch::Endpoints {
                    endpoints: sctp,
                    masquerade: false,
                },
            ),
        );
        p
    }
}
