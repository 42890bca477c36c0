//! What the kernel holds, read back into the applier's own types.
//!
//! The agent's record of what its node holds ([`Held`]) is a cache: this module reads the
//! truth. nftables' tables come from `nft -j list ruleset` (the kernel's structure as JSON,
//! never its text): each map and set of podnet's tables becomes the typed elements it was made
//! from ([`Elements`], [`PolicyPlan`]), and each chain's rules are counted, so a flushed or
//! edited chain shows even when its sets are intact. The overlay comes from `ip -j` and
//! `bridge -j` (the VXLAN device, its routes, neighbours and FDB entries), settings from
//! `/proc/sys`. [`crate::verify`] compares the result with what the node must hold and repairs
//! the difference with the applier's own smallest transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use podnet_model::netpol::Direction;
use podnet_model::{IpFamily, Protocol};
use podnet_policy::{GroupId, PolicyPlan, Rect, Target};
use podnet_proxy::nft::{
    Backend, BackendMap, BackendSlot, Chain, Element, Elements, FrontendKey, NodePortKey,
    ServiceKey, Verdict,
};
use serde_json::Value;

use crate::dataplane::{MacAddr, RemoteNode, Vtep, MASQ_TABLE};
use crate::NodeError;

/// A value in what the kernel holds that is not what podnet writes there: that part of the
/// kernel's state is not trusted (and is repaired).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found} is not {expected}")]
pub struct Unreadable {
    /// The value as the tool printed it.
    pub found: String,
    /// What podnet writes there.
    pub expected: &'static str,
}

fn not(found: impl std::fmt::Display, expected: &'static str) -> Unreadable {
    Unreadable {
        found: found.to_string(),
        expected,
    }
}

/// Output of `tool` that is not the JSON the tool documents.
fn json<T: serde::de::DeserializeOwned>(tool: &'static str, text: &str) -> Result<T, NodeError> {
    serde_json::from_str(text).map_err(|source| NodeError::Output { tool, source })
}

/// Rules per chain of one table.
pub type RuleCounts = BTreeMap<String, usize>;

/// One of podnet's tables as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table<T> {
    pub content: T,
    pub rules: RuleCounts,
    /// Chains that exist (with or without rules).
    pub chains: BTreeSet<String>,
    /// Elements that could not be read as ours, by set (then the table is not trusted).
    pub unreadable: Vec<(String, Unreadable)>,
}

impl<T> Table<T> {
    /// What a check of the table's shape reads: its rules per chain, and what in it is not
    /// podnet's.
    pub fn checked(&self) -> (&RuleCounts, &[(String, Unreadable)]) {
        (&self.rules, &self.unreadable)
    }
}

/// podnet's nftables tables in a ruleset; None where a table is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub proxy: Option<Table<Elements>>,
    /// The proxy's `ip6` table.
    pub proxy6: Option<Table<Elements>>,
    /// The policy's `ip6` table.
    pub policy6: Option<Table<PolicyPlan>>,
    /// The masquerade's `ip6` table.
    pub masquerade6: Option<Table<()>>,
    pub policy: Option<Table<PolicyPlan>>,
    pub masquerade: Option<Table<()>>,
}

/// Reads podnet's tables out of `nft -j list ruleset`.
pub fn tables(text: &str) -> Result<Tables, NodeError> {
    let v: Value = json("nft -j list ruleset", text)?;
    tables_of(&v).map_err(|source| NodeError::Unreadable {
        what: "the ruleset".into(),
        source,
    })
}

/// Whether a set is one of the proxy's session-affinity maps, whose entries are the kernel's
/// own (clients it remembers), not podnet's.
pub fn is_affinity_map(name: &str) -> bool {
    (name.starts_with("aff_") || name.starts_with("np_aff_")) && !name.contains("backends")
}

/// Whether a ruleset object belongs to one of podnet's tables.
pub fn is_ours(body: &Value) -> bool {
    let table = body["table"].as_str().unwrap_or("");
    (body["family"] == "ip"
        && [podnet_proxy::nft::TABLE, podnet_policy::TABLE, MASQ_TABLE].contains(&table))
        || (body["family"] == "ip6"
            && [podnet_proxy::nft::TABLE, podnet_policy::TABLE, MASQ_TABLE].contains(&table))
}

/// [`tables`], from the parsed JSON.
pub fn tables_of(v: &Value) -> Result<Tables, Unreadable> {
    let objects = v["nftables"]
        .as_array()
        .ok_or_else(|| not("the ruleset", "an object with an \"nftables\" array"))?;
    let mut t = Tables::default();
    let mut shapes = Shapes::default();
    for o in objects {
        let Some((kind, body)) = o.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let family = match body["family"].as_str() {
            Some("ip") => IpFamily::Ipv4,
            Some("ip6") => IpFamily::Ipv6,
            _ => continue,
        };
        let table = body["table"]
            .as_str()
            .or(body["name"].as_str())
            .unwrap_or("");
        if family == IpFamily::Ipv6 {
            // The proxy and the policy have ip6 tables.
            match table {
                podnet_proxy::nft::TABLE => {
                    ip6_object(&mut t.proxy6, kind, body, |p, name, elems| {
                        proxy_elements(p, IpFamily::Ipv6, name, elems)
                    })
                }
                MASQ_TABLE => ip6_object(&mut t.masquerade6, kind, body, |_, _, _| {}),
                podnet_policy::TABLE => ip6_object(&mut t.policy6, kind, body, |p, name, elems| {
                    if let Err(why) = policy_set(&mut p.content, IpFamily::Ipv6, name, elems) {
                        p.unreadable.push((name.to_string(), why));
                    }
                }),
                _ => {}
            }
            continue;
        }
        match (kind.as_str(), table) {
            ("table", podnet_proxy::nft::TABLE) if body.get("table").is_none() => {
                t.proxy = Some(Table::default())
            }
            ("table", podnet_policy::TABLE) if body.get("table").is_none() => {
                t.policy = Some(Table::default())
            }
            ("table", MASQ_TABLE) if body.get("table").is_none() => {
                t.masquerade = Some(Table::default())
            }
            _ => {}
        }
        let table = body["table"].as_str().unwrap_or("");
        match kind.as_str() {
            "chain" | "rule" => {
                let chain = if kind == "chain" {
                    body["name"].as_str()
                } else {
                    body["chain"].as_str()
                }
                .unwrap_or("")
                .to_string();
                let note = |rules: &mut RuleCounts, chains: &mut BTreeSet<String>| {
                    if kind == "rule" {
                        *rules.entry(chain.clone()).or_default() += 1;
                    } else {
                        chains.insert(chain.clone());
                        rules.entry(chain.clone()).or_default();
                    }
                };
                match table {
                    podnet_proxy::nft::TABLE => {
                        if let Some(p) = &mut t.proxy {
                            note(&mut p.rules, &mut p.chains)
                        }
                    }
                    podnet_policy::TABLE => {
                        if let Some(p) = &mut t.policy {
                            note(&mut p.rules, &mut p.chains);
                            if kind == "rule" && chain == "sample" {
                                p.content.sample = sample_of(body);
                            }
                            if kind == "rule" {
                                if let Err(why) = shapes.rule(&chain, body) {
                                    p.unreadable.push((chain.clone(), why));
                                }
                            } else {
                                shapes.chains.insert(chain.clone());
                            }
                        }
                    }
                    MASQ_TABLE => {
                        if let Some(p) = &mut t.masquerade {
                            note(&mut p.rules, &mut p.chains)
                        }
                    }
                    _ => {}
                }
            }
            "set" | "map" => {
                let name = body["name"].as_str().unwrap_or("");
                let elems = body["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                match table {
                    podnet_proxy::nft::TABLE => {
                        if let Some(p) = &mut t.proxy {
                            proxy_elements(p, IpFamily::Ipv4, name, elems);
                        }
                    }
                    podnet_policy::TABLE => {
                        if let Some(p) = &mut t.policy {
                            if let Err(why) =
                                policy_set(&mut p.content, IpFamily::Ipv4, name, elems)
                            {
                                p.unreadable.push((name.to_string(), why));
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if let Some(p) = &mut t.policy {
        p.content.layouts = shapes.layouts();
    }
    Ok(t)
}

/// The flow log's sample in the policy table's `sample` rule, per 10,000: the bound of its
/// `numgen random mod 10000 < N` match, or all (10,000) for a rule without one.
fn sample_of(rule: &Value) -> u16 {
    let numgen = rule["expr"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("match"))
        .find(|m| m["left"].get("numgen").is_some());
    match numgen {
        None => 10_000,
        Some(m) => m["right"]
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(0),
    }
}

/// An object of an `ip6` table: the table itself, a chain's or rule's count, a set's elements
/// (through `elements`).
fn ip6_object<T: Default>(
    table: &mut Option<Table<T>>,
    kind: &str,
    body: &Value,
    elements: impl Fn(&mut Table<T>, &str, &[Value]),
) {
    match kind {
        "table" => *table = Some(Table::default()),
        "chain" | "rule" => {
            let Some(p) = table else { return };
            let key = if kind == "chain" { "name" } else { "chain" };
            let chain = body[key].as_str().unwrap_or("").to_string();
            let n = p.rules.entry(chain.clone()).or_default();
            if kind == "rule" {
                *n += 1;
            } else {
                p.chains.insert(chain);
            }
        }
        "set" | "map" => {
            let Some(p) = table else { return };
            let name = body["name"].as_str().unwrap_or("");
            let elems = body["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            elements(p, name, elems);
        }
        _ => {}
    }
}

/// A proxy table's set's elements into the table's content (or what is not ours).
fn proxy_elements(p: &mut Table<Elements>, family: IpFamily, name: &str, elems: &[Value]) {
    for e in elems {
        match proxy_element(family, name, e) {
            Ok(Some(el)) => p.content.patch(&[], &[el]),
            Ok(None) => {}
            Err(why) => p.unreadable.push((name.to_string(), why)),
        }
    }
}

/// An element as nft's JSON gives it: a key, or `[key, value]` for maps; either may be
/// wrapped in `{"elem": {"val": ...}}` when it carries a timeout or counter.
fn unwrap_elem(e: &Value) -> &Value {
    match e.get("elem") {
        Some(inner) => inner.get("val").unwrap_or(inner),
        None => e,
    }
}

fn key_value(e: &Value) -> (&Value, Option<&Value>) {
    match e.as_array() {
        Some(kv) if kv.len() == 2 => (unwrap_elem(&kv[0]), Some(&kv[1])),
        _ => (unwrap_elem(e), None),
    }
}

fn concat(v: &Value) -> Vec<&Value> {
    match v.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().collect(),
        None => vec![v],
    }
}

/// An address of a table's family.
fn addr_of(family: IpFamily, v: &Value) -> Result<IpAddr, Unreadable> {
    v.as_str()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .filter(|ip| IpFamily::of(*ip) == family)
        .ok_or_else(|| {
            not(
                v,
                match family {
                    IpFamily::Ipv4 => "an IPv4 address",
                    IpFamily::Ipv6 => "an IPv6 address",
                },
            )
        })
}

fn number(v: &Value) -> Result<u64, Unreadable> {
    v.as_u64().ok_or_else(|| not(v, "a number"))
}

/// An IP protocol as nft prints it: by name for the ones it knows, otherwise a number.
fn ip_proto(v: &Value) -> Result<u8, Unreadable> {
    if let Some(n) = v.as_u64() {
        return u8::try_from(n).map_err(|_| not(n, "a protocol"));
    }
    match v.as_str() {
        Some("icmp") => Ok(1),
        Some("igmp") => Ok(2),
        Some("tcp") => Ok(6),
        Some("udp") => Ok(17),
        Some("gre") => Ok(47),
        Some("esp") => Ok(50),
        Some("ah") => Ok(51),
        Some("udplite") => Ok(136),
        Some("sctp") => Ok(132),
        Some("dccp") => Ok(33),
        Some("ipv6-icmp") | Some("icmpv6") => Ok(58),
        _ => Err(not(v, "a protocol")),
    }
}

fn protocol(v: &Value) -> Result<Protocol, Unreadable> {
    match ip_proto(v)? {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        132 => Ok(Protocol::Sctp),
        n => Err(not(format!("protocol {n}"), "a protocol of Services")),
    }
}

fn port(v: &Value) -> Result<u16, Unreadable> {
    u16::try_from(number(v)?).map_err(|_| not(v, "a port"))
}

/// A dispatch chain's name back to the chain: `{svc|np}_{proto}_[aff{t}_]ep{n}[_masq]`, in a
/// table of `family`.
fn chain(family: IpFamily, name: &str) -> Result<(Chain, bool), Unreadable> {
    let bad = || not(format!("{name:?}"), "one of podnet's dispatch chains");
    let (base, masquerade) = match name.strip_suffix("_masq") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let mut parts = base.split('_');
    let node_port = match parts.next() {
        Some("svc") => false,
        Some("np") => true,
        _ => return Err(bad()),
    };
    let proto = match parts.next() {
        Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some("sctp") => Protocol::Sctp,
        _ => return Err(bad()),
    };
    let mut next = parts.next().ok_or_else(bad)?;
    let mut affinity = None;
    if let Some(t) = next.strip_prefix("aff") {
        affinity = Some(t.parse().map_err(|_| bad())?);
        next = parts.next().ok_or_else(bad)?;
    }
    let endpoints = next
        .strip_prefix("ep")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    let c = Chain {
        family,
        node_port,
        proto,
        affinity,
        endpoints,
    };
    Ok((c, masquerade))
}

fn verdict(family: IpFamily, v: &Value) -> Result<Verdict, Unreadable> {
    if v.get("drop").is_some() {
        return Ok(Verdict::Drop);
    }
    let target = v["goto"]["target"]
        .as_str()
        .ok_or_else(|| not(v, "a goto or drop"))?;
    let (chain, masquerade) = chain(family, target)?;
    Ok(Verdict::Goto { chain, masquerade })
}

/// A key of fewer fields than `expected`.
fn short_key(parts: &[&Value], expected: &'static str) -> Unreadable {
    let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    not(parts.join(" . "), expected)
}

fn service_key(family: IpFamily, parts: &[&Value]) -> Result<ServiceKey, Unreadable> {
    match parts {
        [ip, proto, p, ..] => Ok(ServiceKey {
            ip: addr_of(family, ip)?,
            proto: protocol(proto)?,
            port: port(p)?,
        }),
        _ => Err(short_key(parts, "ip . proto . port")),
    }
}

fn node_port_key(family: IpFamily, parts: &[&Value]) -> Result<NodePortKey, Unreadable> {
    match parts {
        [proto, p, ..] => Ok(NodePortKey {
            family,
            proto: protocol(proto)?,
            port: port(p)?,
        }),
        _ => Err(short_key(parts, "proto . port")),
    }
}

/// The backend map a map's name is (`[np_][aff_]backends_{proto}`).
fn backend_map(family: IpFamily, name: &str) -> Option<BackendMap> {
    let (node_port, rest) = match name.strip_prefix("np_") {
        Some(r) => (true, r),
        None => (false, name),
    };
    let (affinity, rest) = match rest.strip_prefix("aff_") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let proto = match rest.strip_prefix("backends_")? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    Some(BackendMap {
        family,
        node_port,
        affinity,
        proto,
    })
}

/// One element of the proxy's table; None for the affinity maps, whose entries are the
/// kernel's own (clients it remembers), not podnet's.
fn proxy_element(family: IpFamily, set: &str, e: &Value) -> Result<Option<Element>, Unreadable> {
    let (k, v) = key_value(e);
    let key = concat(k);
    let value = || v.ok_or_else(|| not(e, "a map element with a value"));
    let f = family;
    Ok(Some(match set {
        "services" => Element::Service(service_key(f, &key)?, verdict(f, value()?)?),
        "node_ports" => Element::NodePort(node_port_key(f, &key)?, verdict(f, value()?)?),
        "no_endpoints" => Element::NoEndpoints(service_key(f, &key)?),
        "no_endpoint_ports" => Element::NoEndpointPort(node_port_key(f, &key)?),
        "hairpin" => match key.as_slice() {
            [a, b] if a == b => Element::Hairpin(addr_of(f, a)?),
            _ => return Err(not(k, "a hairpin pair")),
        },
        name => {
            if is_affinity_map(name) {
                return Ok(None);
            }
            let Some(map) = backend_map(f, name) else {
                return Err(not(name, "one of podnet's maps"));
            };
            let (frontend, slot) = if map.node_port {
                (
                    FrontendKey::NodePort(node_port_key(f, &key)?),
                    key.get(2)
                        .ok_or_else(|| short_key(&key, "proto . port . slot"))?,
                )
            } else {
                (
                    FrontendKey::Service(service_key(f, &key)?),
                    key.get(3)
                        .ok_or_else(|| short_key(&key, "ip . proto . port . slot"))?,
                )
            };
            let slot = u32::try_from(number(slot)?).map_err(|_| not(slot, "a slot"))?;
            let to = concat(value()?);
            let [ip, p] = to.as_slice() else {
                return Err(short_key(&to, "a backend's ip . port"));
            };
            Element::Backend(
                BackendSlot {
                    map,
                    frontend,
                    slot,
                },
                Backend {
                    ip: addr_of(f, ip)?,
                    port: port(p)?,
                },
            )
        }
    }))
}

/// An interval component: a single value, `{"range": [lo, hi]}` or `{"prefix": ...}`.
fn span<T: Copy>(
    v: &Value,
    one: impl Fn(&Value) -> Result<T, Unreadable>,
) -> Result<(T, T), Unreadable> {
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        if let [lo, hi] = r.as_slice() {
            return Ok((one(lo)?, one(hi)?));
        }
    }
    let x = one(v)?;
    Ok((x, x))
}

fn addr_span(family: IpFamily, v: &Value) -> Result<(u128, u128), Unreadable> {
    if let Some(p) = v.get("prefix") {
        let net: ipnet::IpNet = format!(
            "{}/{}",
            p["addr"].as_str().unwrap_or(""),
            p["len"].as_u64().unwrap_or(999)
        )
        .parse()
        .ok()
        .filter(|n: &ipnet::IpNet| IpFamily::of_net(n) == family)
        .ok_or_else(|| not(v, "a prefix of the table's family"))?;
        return Ok((
            podnet_policy::addr_number(net.network()),
            podnet_policy::addr_number(net.broadcast()),
        ));
    }
    span(v, |x| addr_of(family, x).map(podnet_policy::addr_number))
}

fn rect(family: IpFamily, e: &Value) -> Result<Rect, Unreadable> {
    let parts = concat(unwrap_elem(e));
    let [a, pr, po] = parts.as_slice() else {
        return Err(not(e, "addr . proto . port"));
    };
    Ok(Rect {
        family,
        addr: addr_span(family, a)?,
        proto: span(pr, ip_proto)?,
        port: span(po, port)?,
    })
}

/// The shapes of the policy table's group chains, as the kernel holds them: which chains a
/// group has (`_t`, `_d`), which of its tiers' sets its chains look up, in order (the Admin
/// tier's in its chain, the Baseline tier's in its `_t` chain), each rule's verdict its set's
/// action's, and whether they look NetworkPolicy's sets up.
#[derive(Debug, Default)]
struct Shapes {
    chains: BTreeSet<String>,
    layouts: BTreeMap<GroupId, podnet_policy::Layout>,
    isolated: BTreeSet<GroupId>,
}

impl Shapes {
    /// One rule of the ip table's policy table.
    fn rule(&mut self, chain: &str, rule: &Value) -> Result<(), Unreadable> {
        use podnet_model::policy_api::Tier;
        let (base, tail) = match chain.strip_suffix("_t") {
            Some(b) => (b, true),
            None => (chain, false),
        };
        let Some(g) = group(base) else {
            return Ok(());
        };
        let exprs = rule["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let set = exprs
            .iter()
            .filter_map(|e| e["match"]["right"].as_str())
            .find_map(|r| r.strip_prefix('@'));
        let Some(set) = set else {
            return Ok(());
        };
        if set.ends_with("_pts") || set.ends_with("_allow") {
            self.isolated.insert(g);
            return Ok(());
        }
        let Some((id, action, _)) = tier_set(set).filter(|(id, _, _)| id.group == g) else {
            return Err(not(set, "a tier set of the chain's group"));
        };
        let verdict = exprs.iter().find_map(|e| {
            if e.get("accept").is_some() {
                Some("accept".to_string())
            } else {
                e["goto"]["target"].as_str().map(|t| format!("goto {t}"))
            }
        });
        if verdict.as_deref() != Some(tier_verdict(g, action).as_str()) {
            return Err(not(
                format!("{verdict:?}"),
                "the verdict of the set's action",
            ));
        }
        let l = self.layouts.entry(g).or_default();
        let actions = match (id.tier, tail) {
            (Tier::Admin, false) => &mut l.admin,
            (Tier::Baseline, true) => &mut l.baseline,
            _ => return Err(not(chain, "the chain of the set's tier")),
        };
        if !actions.contains(&action) {
            actions.push(action);
        }
        Ok(())
    }

    /// The layouts: each group whose chains look a tier's sets up, with the chains it has.
    fn layouts(self) -> BTreeMap<GroupId, podnet_policy::Layout> {
        let Shapes {
            chains,
            mut layouts,
            isolated,
        } = self;
        for (g, l) in layouts.iter_mut() {
            let c = g.chain();
            l.isolated = isolated.contains(g);
            l.tail = chains.contains(&format!("{c}_t"));
            l.deny = chains.contains(&format!("{c}_d"));
        }
        layouts
    }
}

/// What a tier's rule does with a connection its set holds, as podnet writes it.
fn tier_verdict(g: GroupId, a: podnet_policy::Action) -> String {
    use podnet_policy::Action;
    match (a, g.dir) {
        (Action::Accept, Direction::Ingress) => "accept".into(),
        (Action::Accept, Direction::Egress) => "goto ingress_check".into(),
        (Action::Deny, _) => format!("goto {}_d", g.chain()),
        (Action::Pass, _) => format!("goto {}_t", g.chain()),
    }
}

/// A tier's set by name (`<group>_a_accept`, `<group>_b_deny_r`, ...): its tier, its action,
/// and whether it is the ranges'.
fn tier_set(name: &str) -> Option<(podnet_policy::TierId, podnet_policy::Action, bool)> {
    use podnet_model::policy_api::Tier;
    use podnet_policy::Action;
    let (g, rest) = name.split_at_checked(12)?;
    let (rest, ranges) = match rest.strip_suffix("_r") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (tier, action) = rest.strip_prefix('_')?.split_once('_')?;
    let tier = match tier {
        "a" => Tier::Admin,
        "b" => Tier::Baseline,
        _ => return None,
    };
    let action = match action {
        "accept" => Action::Accept,
        "deny" => Action::Deny,
        "pass" => Action::Pass,
        _ => return None,
    };
    Some((
        podnet_policy::TierId {
            group: group(g)?,
            tier,
        },
        action,
        ranges,
    ))
}

/// A group's chain name back to its id (`ing_<8 hex>`, `egr_<8 hex>`).
fn group(chain: &str) -> Option<GroupId> {
    let (dir, id) = if let Some(id) = chain.strip_prefix("ing_") {
        (Direction::Ingress, id)
    } else {
        (Direction::Egress, chain.strip_prefix("egr_")?)
    };
    if id.len() != 8 {
        return None;
    }
    Some(GroupId {
        dir,
        id: u32::from_str_radix(id, 16).ok()?,
    })
}

fn target(dir: Direction, v: &Value) -> Result<Target, Unreadable> {
    if v.get("accept").is_some() && dir == Direction::Ingress {
        return Ok(Target::Open);
    }
    let to = v["goto"]["target"]
        .as_str()
        .ok_or_else(|| not(v, "a verdict of podnet's"))?;
    if to == "ingress_check" && dir == Direction::Egress {
        return Ok(Target::Open);
    }
    group(to)
        .filter(|g| g.dir == dir)
        .map(Target::Group)
        .ok_or_else(|| not(format!("{to:?}"), "a group chain"))
}

/// One set or map of the policy table into the plan.
fn policy_set(
    p: &mut PolicyPlan,
    family: IpFamily,
    name: &str,
    elems: &[Value],
) -> Result<(), Unreadable> {
    match name {
        "ingress" | "egress" => {
            let dir = if name == "ingress" {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            for e in elems {
                let (k, v) = key_value(e);
                let t = target(dir, v.ok_or_else(|| not(e, "a map element with a value"))?)?;
                let ip = addr_of(family, k)?;
                match dir {
                    Direction::Ingress => p.ingress.insert(ip, t),
                    Direction::Egress => p.egress.insert(ip, t),
                };
            }
        }
        "local" => {
            for e in elems {
                let (lo, hi) = addr_span(family, unwrap_elem(e))?;
                let (lo, hi) = (
                    podnet_policy::rects::number_addr(family, lo),
                    podnet_policy::rects::number_addr(family, hi),
                );
                let nets: Vec<ipnet::IpNet> = match (lo, hi) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => ipnet::Ipv4Subnets::new(a, b, 0)
                        .map(ipnet::IpNet::V4)
                        .collect(),
                    (IpAddr::V6(a), IpAddr::V6(b)) => ipnet::Ipv6Subnets::new(a, b, 0)
                        .map(ipnet::IpNet::V6)
                        .collect(),
                    _ => Vec::new(),
                };
                p.local.extend(nets);
            }
        }
        other => {
            let rects = if let Some(g) = other
                .strip_suffix("_pts")
                .or_else(|| other.strip_suffix("_allow"))
                .and_then(group)
            {
                p.groups.entry(g).or_default()
            } else if let Some((id, action, _)) = tier_set(other) {
                let map = p.tiers.entry(id).or_default();
                for e in elems {
                    map.insert(rect(family, e)?, action);
                }
                return Ok(());
            } else {
                return Err(not(name, "one of podnet's sets"));
            };
            for e in elems {
                rects.insert(rect(family, e)?);
            }
        }
    }
    Ok(())
}

/// The rules per chain that a table's rendering adds (its creation's script, without
/// elements): what the kernel must show.
pub fn rules_of(script: &str, table: &str) -> RuleCounts {
    rules_of_family(script, "ip", table)
}

/// [`rules_of`] for a table of another family (`ip6`).
pub fn rules_of_family(script: &str, family: &str, table: &str) -> RuleCounts {
    let prefix = format!("add rule {family} {table} ");
    let mut counts = RuleCounts::new();
    for l in script.lines() {
        if let Some(chain) = l
            .strip_prefix(&prefix)
            .and_then(|r| r.split_whitespace().next())
        {
            *counts.entry(chain.to_string()).or_default() += 1;
        }
        if let Some(chain) = l
            .strip_prefix(&format!("add chain {family} {table} "))
            .and_then(|r| r.split_whitespace().next())
        {
            counts.entry(chain.to_string()).or_default();
        }
    }
    counts
}

/// The chains of `want` whose rules the kernel does not hold as many of (missing chains
/// included); empty when every chain is as rendered.
pub fn rules_differ(kernel: &RuleCounts, want: &RuleCounts) -> Vec<String> {
    want.iter()
        .filter(|(c, n)| kernel.get(*c) != Some(n))
        .map(|(c, n)| {
            format!(
                "chain {c}: {} rules, want {n}",
                kernel
                    .get(c)
                    .map_or("no chain".to_string(), |k| k.to_string())
            )
        })
        .collect()
}

/// The overlay device as the kernel holds it (its link message): whether it is the one wanted,
/// a VXLAN device of the wanted VNI, port, MTU and MAC, up.
pub fn vxlan_matches(l: &LinkMessage, want: &crate::dataplane::VxlanDevice) -> bool {
    let (mut vxlan, mut id, mut port, mut mtu, mut mac) = (false, None, None, None, None);
    for a in &l.attributes {
        match a {
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            LinkAttribute::Address(a) => mac = Some(a.as_slice()),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(InfoKind::Vxlan) => vxlan = true,
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            for d in data {
                                match d {
                                    InfoVxlan::Id(v) => id = Some(*v),
                                    InfoVxlan::Port(p) => port = Some(*p),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    vxlan
        && id == Some(want.vni)
        && port == Some(want.port)
        && mtu == Some(want.mtu)
        && mac == Some(&want.vtep.mac.0[..])
        && l.header.flags.contains(LinkFlags::Up)
}

/// The remote nodes whose route, neighbour and FDB entry are all on device `dev` as an apply
/// makes them, from `ip -j route show dev D` (and `ip -j -6 ...`), `ip -j neigh show dev D` and
/// `bridge -j fdb show dev D`. Entries of nodes that are not wanted are read back as remote
/// nodes too (named `?`), so that the applier removes them.
pub fn remotes(
    routes: &[String],
    neighbours: &str,
    fdb: &str,
    want: &BTreeSet<RemoteNode>,
) -> Result<BTreeSet<RemoteNode>, NodeError> {
    let parse = |s: &str, tool: &'static str| -> Result<Vec<Value>, NodeError> {
        if s.trim().is_empty() {
            return Ok(Vec::new());
        }
        json(tool, s)
    };
    let mut all_routes = Vec::new();
    for text in routes {
        all_routes.extend(parse(text, "ip -j route")?);
    }
    let routes = all_routes;
    let neighbours = parse(neighbours, "ip -j neigh")?;
    let fdb = parse(fdb, "bridge -j fdb")?;
    let neigh: BTreeMap<IpAddr, MacAddr> = neighbours
        .iter()
        .filter(|n| {
            n["state"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))
        })
        .filter_map(|n| {
            Some((
                n["dst"].as_str()?.parse().ok()?,
                n["lladdr"].as_str()?.parse().ok()?,
            ))
        })
        .collect();
    let fdb: BTreeSet<(MacAddr, IpAddr)> = fdb
        .iter()
        .filter_map(|f| {
            Some((
                f["mac"].as_str()?.parse().ok()?,
                f["dst"].as_str()?.parse().ok()?,
            ))
        })
        .collect();
    let mut out = BTreeSet::new();
    for r in &routes {
        let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gateway"].as_str()) else {
            continue;
        };
        let (Ok(pod_cidr), Ok(gw)) = (dst.parse::<ipnet::IpNet>(), gw.parse::<IpAddr>()) else {
            continue;
        };
        let Some(mac) = neigh.get(&gw) else { continue };
        let Some((_, node_ip)) = fdb.iter().find(|(m, _)| m == mac) else {
            continue;
        };
        let vtep = Vtep {
            node_ip: *node_ip,
            ip: gw,
            mac: *mac,
        };
        let found = want
            .iter()
            .find(|w| w.pod_cidr == pod_cidr && w.vtep == vtep)
            .cloned()
            .unwrap_or(RemoteNode {
                name: "?".into(),
                pod_cidr,
                vtep,
                gateway: None,
            });
        out.insert(found);
    }
    Ok(out)
}

/// The remote nodes routed natively: routes on the uplink (`ip -j route show dev U`, and
/// `ip -j -6 ...`), each read as [`native_remote`] reads it.
pub fn native_remotes(
    routes: &[String],
    pod_cidrs: &[ipnet::IpNet],
    want: &BTreeSet<RemoteNode>,
) -> Result<BTreeSet<RemoteNode>, NodeError> {
    let mut out = BTreeSet::new();
    for text in routes {
        if text.trim().is_empty() {
            continue;
        }
        let routes: Vec<Value> = json("ip -j route", text)?;
        for r in routes {
            let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gateway"].as_str()) else {
                continue;
            };
            let (Ok(dst), Ok(gw)) = (dst.parse::<ipnet::IpNet>(), gw.parse::<IpAddr>()) else {
                continue;
            };
            out.extend(native_remote(dst, gw, pod_cidrs, want));
        }
    }
    Ok(out)
}

/// A route on the uplink to `dst` via `gw`, as a remote node routed natively: podnet's when
/// `dst` lies inside one of the cluster's pod CIDRs (the uplink's other routes are not);
/// the wanted remote it is, or, when none is (another node's, or via another gateway), a
/// remote node named `?`, so that the applier replaces or removes it.
pub fn native_remote(
    dst: ipnet::IpNet,
    gw: IpAddr,
    pod_cidrs: &[ipnet::IpNet],
    want: &BTreeSet<RemoteNode>,
) -> Option<RemoteNode> {
    if !pod_cidrs.iter().any(|c| c.contains(&dst)) {
        return None;
    }
    Some(
        want.iter()
            .find(|w| w.pod_cidr == dst && w.gateway == Some(gw))
            .cloned()
            .unwrap_or(RemoteNode {
                name: "?".into(),
                pod_cidr: dst,
                vtep: Vtep {
                    node_ip: gw,
                    ip: dst.network(),
                    mac: MacAddr([0; 6]),
                },
                gateway: Some(gw),
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_chains_read_back() {
        for c in [
            Chain {
                family: IpFamily::Ipv4,
                node_port: false,
                proto: Protocol::Tcp,
                affinity: None,
                endpoints: 3,
            },
            Chain {
                family: IpFamily::Ipv6,
                node_port: true,
                proto: Protocol::Sctp,
                affinity: Some(10800),
                endpoints: 12,
            },
        ] {
            assert_eq!(chain(c.family, &c.name()).unwrap(), (c, false));
            assert_eq!(
                chain(c.family, &format!("{}_masq", c.name())).unwrap(),
                (c, true)
            );
        }
        assert!(chain(IpFamily::Ipv4, "dispatch").is_err());
        assert!(chain(IpFamily::Ipv4, "svc_tcp_ep").is_err());
    }

    #[test]
    fn a_ruleset_reads_back_as_elements_and_plans() {
        let json = r#"{"nftables": [
          {"metainfo": {"version": "1.1.1"}},
          {"table": {"family": "ip", "name": "podnet-proxy", "handle": 1}},
          {"map": {"family": "ip", "name": "services", "table": "podnet-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
            "elem": [[{"concat": ["10.96.0.10", "udp", 53]}, {"goto": {"target": "svc_udp_ep2_masq"}}]]}},
          {"map": {"family": "ip", "name": "node_ports", "table": "podnet-proxy", "type": ["inet_proto", "inet_service"], "map": "verdict",
            "elem": [[{"concat": ["tcp", 31779]}, {"drop": null}]]}},
          {"map": {"family": "ip", "name": "backends_udp", "table": "podnet-proxy", "map": ["ipv4_addr", "inet_service"],
            "elem": [[{"concat": ["10.96.0.10", "udp", 53, 1]}, {"concat": ["10.244.1.2", 53]}]]}},
          {"map": {"family": "ip", "name": "aff_10800", "table": "podnet-proxy", "elem": [{"elem": {"val": {"concat": ["1.2.3.4", "10.96.0.1", "tcp", 80]}, "timeout": 10800}}]}},
          {"set": {"family": "ip", "name": "hairpin", "table": "podnet-proxy", "elem": [{"concat": ["10.244.0.2", "10.244.0.2"]}]}},
          {"chain": {"family": "ip", "table": "podnet-proxy", "name": "dispatch"}},
          {"rule": {"family": "ip", "table": "podnet-proxy", "chain": "dispatch", "expr": []}},
          {"table": {"family": "ip", "name": "podnet-policy", "handle": 2}},
          {"map": {"family": "ip", "name": "egress", "table": "podnet-policy", "elem": [["10.244.1.2", {"goto": {"target": "ingress_check"}}], ["10.244.1.3", {"goto": {"target": "egr_0000002a"}}]]}},
          {"map": {"family": "ip", "name": "ingress", "table": "podnet-policy", "elem": [["10.244.1.2", {"accept": null}]]}},
          {"set": {"family": "ip", "name": "local", "table": "podnet-policy", "elem": [{"prefix": {"addr": "10.244.1.0", "len": 24}}]}},
          {"set": {"family": "ip", "name": "egr_0000002a_pts", "table": "podnet-policy", "elem": [{"concat": ["10.244.0.3", "tcp", 443]}]}},
          {"set": {"family": "ip", "name": "egr_0000002a_allow", "table": "podnet-policy", "elem": [{"concat": [{"range": ["10.0.0.0", "10.0.0.9"]}, {"range": [0, 255]}, {"range": [0, 65535]}]}, {"concat": ["10.1.0.1", "udp", {"range": [1, 9]}]}]}},
          {"table": {"family": "inet", "name": "other", "handle": 3}}
        ]}"#;
        let t = tables(json).unwrap();
        let proxy = t.proxy.unwrap();
        assert!(proxy.unreadable.is_empty(), "{:?}", proxy.unreadable);
        assert_eq!(proxy.rules.get("dispatch"), Some(&1));
        let e = proxy.content;
        assert_eq!(e.services.len(), 1);
        assert_eq!(e.node_ports.values().next(), Some(&Verdict::Drop));
        let (slot, b) = e.backends.iter().next().unwrap();
        assert_eq!(
            (slot.slot, b.ip.to_string(), b.port),
            (1, "10.244.1.2".into(), 53)
        );
        assert_eq!(e.hairpin.len(), 1);
        let policy = t.policy.unwrap();
        assert!(policy.unreadable.is_empty(), "{:?}", policy.unreadable);
        let p = policy.content;
        let g = GroupId {
            dir: Direction::Egress,
            id: 42,
        };
        assert_eq!(p.egress.len(), 2);
        assert_eq!(p.egress[&"10.244.1.3".parse().unwrap()], Target::Group(g));
        assert_eq!(p.ingress.values().next(), Some(&Target::Open));
        assert_eq!(p.local.iter().next().unwrap().to_string(), "10.244.1.0/24");
        assert_eq!(p.groups[&g].len(), 3);
        assert!(p.groups[&g].contains(&Rect {
            family: IpFamily::Ipv4,
            addr: (
                u128::from(u32::from(std::net::Ipv4Addr::new(10, 1, 0, 1))),
                u128::from(u32::from(std::net::Ipv4Addr::new(10, 1, 0, 1)))
            ),
            proto: (17, 17),
            port: (1, 9),
        }));
        assert!(t.masquerade.is_none());
    }

    /// A group's tiers read back from the kernel: its layout from its chains and their
    /// rules (the Admin sets looked up in its chain, the Baseline sets in its `_t` chain, each
    /// action's in order), each element's action from its set; a rule whose verdict is not its
    /// set's action's makes the table untrusted.
    #[test]
    fn tier_layouts_and_sets_read_back() {
        let c = "ing_00000007";
        let lookup = |chain: &str, set: &str, verdict: &str| {
            format!(
                r#"{{"rule": {{"family": "ip", "table": "podnet-policy", "chain": "{chain}", "expr": [{{"match": {{"op": "==", "left": {{"concat": []}}, "right": "@{set}"}}}}, {verdict}]}}}}"#
            )
        };
        let to = |t: &str| format!(r#"{{"goto": {{"target": "{t}"}}}}"#);
        let accept = r#"{"accept": null}"#;
        let chain = |name: &str| {
            format!(
                r#"{{"chain": {{"family": "ip", "table": "podnet-policy", "name": "{name}"}}}}"#
            )
        };
        let set = |name: &str, elem: &str| {
            format!(
                r#"{{"set": {{"family": "ip", "name": "{name}", "table": "podnet-policy", "elem": [{elem}]}}}}"#
            )
        };
        let objects = [
            r#"{"table": {"family": "ip", "name": "podnet-policy", "handle": 2}}"#.to_string(),
            chain(c),
            chain(&format!("{c}_t")),
            chain(&format!("{c}_d")),
            set(
                &format!("{c}_a_deny"),
                r#"{"concat": ["10.244.0.3", "tcp", 80]}"#,
            ),
            set(
                &format!("{c}_a_pass"),
                r#"{"concat": ["10.244.0.4", "tcp", 80]}"#,
            ),
            set(
                &format!("{c}_b_accept_r"),
                r#"{"concat": [{"range": ["10.0.0.0", "10.0.0.9"]}, {"range": [0, 255]}, {"range": [0, 65535]}]}"#,
            ),
            lookup(c, &format!("{c}_a_deny"), &to(&format!("{c}_d"))),
            lookup(c, &format!("{c}_a_deny_r"), &to(&format!("{c}_d"))),
            lookup(c, &format!("{c}_a_pass"), &to(&format!("{c}_t"))),
            lookup(c, &format!("{c}_a_pass_r"), &to(&format!("{c}_t"))),
            lookup(&format!("{c}_t"), &format!("{c}_b_accept"), accept),
            lookup(&format!("{c}_t"), &format!("{c}_b_accept_r"), accept),
        ];
        let json = format!(r#"{{"nftables": [{}]}}"#, objects.join(","));
        let policy = tables(&json).unwrap().policy.unwrap();
        assert!(policy.unreadable.is_empty(), "{:?}", policy.unreadable);
        let g = GroupId {
            dir: Direction::Ingress,
            id: 7,
        };
        use podnet_model::policy_api::Tier;
        use podnet_policy::{Action, Layout, TierId};
        assert_eq!(
            policy.content.layouts,
            [(
                g,
                Layout {
                    admin: vec![Action::Deny, Action::Pass],
                    isolated: false,
                    baseline: vec![Action::Accept],
                    tail: true,
                    deny: true,
                }
            )]
            .into()
        );
        let admin = &policy.content.tiers[&TierId {
            group: g,
            tier: Tier::Admin,
        }];
        let actions: Vec<Action> = admin.values().copied().collect();
        assert_eq!(actions, [Action::Deny, Action::Pass]);
        let baseline = &policy.content.tiers[&TierId {
            group: g,
            tier: Tier::Baseline,
        }];
        assert_eq!(baseline.values().next(), Some(&Action::Accept));
        // An Accept turned into a drop behind podnet's back: not podnet's table.
        let json = json.replacen(accept, r#"{"drop": null}"#, 1);
        let policy = tables(&json).unwrap().policy.unwrap();
        assert_eq!(policy.unreadable.len(), 1, "{:?}", policy.unreadable);
    }
}
