//! The elements of an nftables set, read from the kernel over netlink (`NFT_MSG_GETSETELEM`).
//!
//! `nft -j list ruleset` takes nft's userspace 1.2 s for the 110,000 elements of a node at
//! 10,000 Services and pods (it builds an expression tree per element, then JSON); the kernel
//! hands the same elements over netlink in a few tens of milliseconds. So a verify pass lists
//! the tables' structure with `nft -j --terse` (sets, chains and rules, without elements) and
//! reads each set's elements here, decoded by the set's own types (as nft's JSON gives them)
//! into the very JSON shape `nft -j` prints for an element, which [`crate::observe`] reads.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use netlink_packet_core::{NlaBuffer, NlasIterator};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use podnet_model::nftset::{ElementData, ElementOp, SetElement};
use podnet_model::IpFamily;
use serde_json::{json, Value};

use crate::{sys, NodeError};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// One set as the terse listing describes it: its key's types and its data's (a map).
#[derive(Debug, Clone)]
pub struct SetType {
    pub key: Vec<String>,
    /// `Some(["verdict"])` for a verdict map; the data's types for other maps.
    pub data: Option<Vec<String>>,
    pub interval: bool,
}

impl SetType {
    /// From a `set` or `map` object of `nft -j --terse`.
    pub fn of(body: &Value) -> SetType {
        let names = |v: &Value| -> Vec<String> {
            match v {
                // A typeof map's data prints as one string: "ipv4_addr . inet_service".
                Value::String(s) => s.split(" . ").map(str::to_string).collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        SetType {
            key: names(&body["type"]),
            data: body.get("map").map(names),
            interval: body["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "interval")),
        }
    }
}

/// A raw element: its key (and key end, for a concatenated interval), data and flags.
#[derive(Debug, Default)]
struct Raw {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    data: Option<Data>,
    flags: u32,
}

#[derive(Debug)]
enum Data {
    Value(Vec<u8>),
    Verdict { code: i32, chain: Option<String> },
}

fn bad(what: impl std::fmt::Display) -> NodeError {
    NodeError::Command {
        cmd: "netlink NFT_MSG_GETSETELEM".into(),
        status: None,
        stderr: what.to_string(),
    }
}

fn nlas(b: &[u8]) -> impl Iterator<Item = NlaBuffer<&[u8]>> {
    NlasIterator::new(b).filter_map(Result::ok)
}

/// The request: a dump of one set's elements.
fn request(family: u8, table: &str, set: &str, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &string(table));
    attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &string(set));
    let mut m = Vec::with_capacity(20 + attrs.len());
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM;
    message(
        &mut m,
        kind,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        0,
        &attrs,
    );
    m
}

fn data(b: &[u8]) -> Option<Data> {
    for a in nlas(b) {
        match a.kind() {
            NFTA_DATA_VALUE => return Some(Data::Value(a.value().to_vec())),
            NFTA_DATA_VERDICT => {
                let (mut code, mut chain) = (0i32, None);
                for v in nlas(a.value()) {
                    match v.kind() {
                        NFTA_VERDICT_CODE if v.value().len() == 4 => {
                            code = i32::from_be_bytes(v.value().try_into().expect("4 bytes"))
                        }
                        NFTA_VERDICT_CHAIN => {
                            let s = v.value();
                            let s = &s[..s.iter().position(|b| *b == 0).unwrap_or(s.len())];
                            chain = Some(String::from_utf8_lossy(s).into_owned());
                        }
                        _ => {}
                    }
                }
                return Some(Data::Verdict { code, chain });
            }
            _ => {}
        }
    }
    None
}

fn value_of(b: &[u8]) -> Vec<u8> {
    match data(b) {
        Some(Data::Value(v)) => v,
        _ => Vec::new(),
    }
}

/// A netfilter netlink socket in namespace `netns` (it stays there, whichever thread uses
/// it).
pub fn socket(netns: &Path) -> Result<Socket, NodeError> {
    let socket = sys::in_netns(netns, || {
        let mut s = Socket::new(NETLINK_NETFILTER).map_err(|source| NodeError::Io {
            what: "a netfilter netlink socket".into(),
            source,
        })?;
        s.bind_auto().map_err(|source| NodeError::Io {
            what: "binding a netfilter netlink socket".into(),
            source,
        })?;
        Ok(s)
    })?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|source| NodeError::Io {
            what: "connecting a netfilter netlink socket".into(),
            source,
        })?;
    Ok(socket)
}

/// The netlink messages of one read: each one's type and bytes (header included).
fn split(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let (mut out, mut at, n) = (Vec::new(), 0, buf.len());
    while at + 16 <= n {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
        if len < 16 || at + len > n {
            return Err(format!("a message of {len} bytes at {at} of {n}"));
        }
        out.push((kind, &buf[at..at + len]));
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// Every element of one set, raw, from one netlink dump.
fn dump(socket: &Socket, family: u8, table: &str, set: &str) -> Result<Vec<Raw>, NodeError> {
    socket
        .send(&request(family, table, set, 1), 0)
        .map_err(|source| NodeError::Io {
            what: "asking for a set's elements".into(),
            source,
        })?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|source| NodeError::Io {
                what: "reading a set's elements".into(),
                source,
            })?;
        for (kind, msg) in split(&buf[..n]).map_err(bad)? {
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(msg[16..20].try_into().expect("4"));
                    if code == 0 {
                        continue;
                    }
                    return Err(bad(format!(
                        "set {table} {set}: {}",
                        std::io::Error::from_raw_os_error(-code)
                    )));
                }
                _ => {}
            }
            // nlmsghdr (16) + nfgenmsg (4), then the attributes.
            for a in nlas(&msg[20..]) {
                if a.kind() != NFTA_SET_ELEM_LIST_ELEMENTS {
                    continue;
                }
                for e in nlas(a.value()) {
                    let mut raw = Raw::default();
                    for f in nlas(e.value()) {
                        match f.kind() {
                            NFTA_SET_ELEM_KEY => raw.key = value_of(f.value()),
                            NFTA_SET_ELEM_KEY_END => raw.key_end = Some(value_of(f.value())),
                            NFTA_SET_ELEM_DATA => raw.data = data(f.value()),
                            NFTA_SET_ELEM_FLAGS if f.value().len() == 4 => {
                                raw.flags =
                                    u32::from_be_bytes(f.value().try_into().expect("4 bytes"))
                            }
                            _ => {}
                        }
                    }
                    out.push(raw);
                }
            }
        }
    }
}

/// The width in the key of a field of type `t` (each field takes whole 32-bit registers).
fn width(t: &str) -> usize {
    match t {
        "ipv6_addr" => 16,
        _ => 4,
    }
}

/// One field's bytes as nft's JSON prints it.
fn field(t: &str, b: &[u8]) -> Value {
    match t {
        "ipv4_addr" if b.len() >= 4 => {
            json!(Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string())
        }
        "ipv6_addr" if b.len() >= 16 => {
            let a: [u8; 16] = b[..16].try_into().expect("16 bytes");
            json!(std::net::Ipv6Addr::from(a).to_string())
        }
        "inet_proto" if !b.is_empty() => match b[0] {
            6 => json!("tcp"),
            17 => json!("udp"),
            132 => json!("sctp"),
            1 => json!("icmp"),
            n => json!(n),
        },
        "inet_service" if b.len() >= 2 => json!(u16::from_be_bytes([b[0], b[1]])),
        _ if b.len() >= 4 => json!(u32::from_ne_bytes(b[..4].try_into().expect("4"))),
        _ => json!(b.first().copied().unwrap_or(0)),
    }
}

/// A key (or data value) of several fields, one after another in registers.
fn fields(types: &[String], b: &[u8]) -> Vec<Value> {
    let mut at = 0;
    types
        .iter()
        .map(|t| {
            let w = width(t);
            let v = field(t, b.get(at..).unwrap_or(&[]));
            at += w;
            v
        })
        .collect()
}

fn joined(mut parts: Vec<Value>) -> Value {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        json!({ "concat": parts })
    }
}

/// A field's range as nft prints it: the value alone when both ends are equal.
fn span(lo: Value, hi: Value) -> Value {
    if lo == hi {
        lo
    } else {
        json!({ "range": [lo, hi] })
    }
}

fn verdict(d: &Option<Data>) -> Value {
    match d {
        Some(Data::Verdict { code, chain }) => match (*code, chain) {
            (1, _) => json!({"accept": null}),
            (0, _) => json!({"drop": null}),
            (-4, Some(c)) => json!({"goto": {"target": c}}),
            (-3, Some(c)) => json!({"jump": {"target": c}}),
            (-5, _) => json!({"return": null}),
            (c, _) => json!({ "verdict": c }),
        },
        _ => Value::Null,
    }
}

/// The elements of `table`'s set `set` of type `ty`, as `nft -j` prints them.
pub fn elements(
    socket: &Socket,
    table: &str,
    set: &str,
    ty: &SetType,
) -> Result<Vec<Value>, NodeError> {
    elements_of(socket, podnet_model::IpFamily::Ipv4, table, set, ty)
}

/// [`elements`] of a table of `family` (`ip` or `ip6`).
pub fn elements_of(
    socket: &Socket,
    family: podnet_model::IpFamily,
    table: &str,
    set: &str,
    ty: &SetType,
) -> Result<Vec<Value>, NodeError> {
    let family = match family {
        podnet_model::IpFamily::Ipv4 => AF_INET,
        podnet_model::IpFamily::Ipv6 => AF_INET6,
    };
    let raw = dump(socket, family, table, set)?;
    let with_data = |key: Value, r: &Raw| -> Value {
        match &ty.data {
            None => key,
            Some(d) if d.len() == 1 && d[0] == "verdict" => json!([key, verdict(&r.data)]),
            Some(d) => {
                let v = match &r.data {
                    Some(Data::Value(b)) => joined(fields(d, b)),
                    _ => Value::Null,
                };
                json!([key, v])
            }
        }
    };
    if !ty.interval {
        return Ok(raw
            .iter()
            .map(|r| with_data(joined(fields(&ty.key, &r.key)), r))
            .collect());
    }
    if ty.key.len() > 1 {
        // Concatenated intervals: each element carries its start and (inclusive) end.
        return Ok(raw
            .iter()
            .map(|r| {
                let lo = fields(&ty.key, &r.key);
                let hi = r
                    .key_end
                    .as_ref()
                    .map_or_else(|| lo.clone(), |e| fields(&ty.key, e));
                let parts = lo.into_iter().zip(hi).map(|(a, b)| span(a, b)).collect();
                with_data(joined(parts), r)
            })
            .collect());
    }
    // One field's intervals: starts, and end markers (flagged) one past each interval's end.
    let t = &ty.key[0];
    let num = |b: &[u8]| -> u128 { b.iter().fold(0u128, |n, x| (n << 8) | u128::from(*x)) };
    let mut points: Vec<(u128, bool, &Raw)> = raw
        .iter()
        .map(|r| (num(&r.key), r.flags & NFT_SET_ELEM_INTERVAL_END != 0, r))
        .collect();
    points.sort_by_key(|(n, end, _)| (*n, !*end));
    let bytes =
        |n: u128, len: usize| -> Vec<u8> { (0..len).rev().map(|i| (n >> (8 * i)) as u8).collect() };
    let len = raw.first().map_or(4, |r| r.key.len());
    let mut out = Vec::new();
    let mut open: Option<(u128, &Raw)> = None;
    for (n, end, r) in points {
        match (end, open.take()) {
            (false, prev) => {
                if let Some((lo, pr)) = prev {
                    // An interval up to the end of the range (no end marker).
                    out.push(with_data(
                        span(field(t, &bytes(lo, len)), field(t, &bytes(n - 1, len))),
                        pr,
                    ));
                }
                open = Some((n, r));
            }
            (true, Some((lo, pr))) => out.push(with_data(
                span(field(t, &bytes(lo, len)), field(t, &bytes(n - 1, len))),
                pr,
            )),
            (true, None) => {}
        }
    }
    if let Some((lo, pr)) = open {
        let max = if len >= 16 {
            u128::MAX
        } else {
            (1u128 << (8 * len)) - 1
        };
        out.push(with_data(
            span(field(t, &bytes(lo, len)), field(t, &bytes(max, len))),
            pr,
        ));
    }
    Ok(out)
}

/// podnet's tables as `nft -j list ruleset` would print them: the structure from
/// `nft -j --terse` (sets, chains, rules, without elements), each set's elements from the
/// kernel over netlink ([`elements`]); the session-affinity maps' (the kernel's own) left out.
pub fn ruleset(netns: &Path) -> Result<Value, NodeError> {
    let json = sys::run_in(
        netns,
        std::process::Command::new("nft").args(["-j", "--terse", "list", "ruleset"]),
        None,
    )?;
    let mut ruleset: Value = serde_json::from_str(&json)
        .map_err(|e| bad(format!("nft -j --terse list ruleset: {e}")))?;
    let socket = socket(netns)?;
    if let Some(objects) = ruleset["nftables"].as_array_mut() {
        for o in objects {
            let Some((kind, body)) = o.as_object_mut().and_then(|m| m.iter_mut().next()) else {
                continue;
            };
            let name = body["name"].as_str().unwrap_or("").to_string();
            if !(kind == "set" || kind == "map")
                || !crate::observe::is_ours(body)
                || crate::observe::is_affinity_map(&name)
            {
                continue;
            }
            let table = body["table"].as_str().unwrap_or("").to_string();
            let family = match body["family"].as_str() {
                Some("ip6") => podnet_model::IpFamily::Ipv6,
                _ => podnet_model::IpFamily::Ipv4,
            };
            let ty = SetType::of(body);
            body["elem"] = Value::Array(elements_of(&socket, family, &table, &name, &ty)?);
        }
    }
    Ok(ruleset)
}

const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_LIST_ELEM: u16 = 1;
/// Elements per message of a batch (nft's `add element` statements hold a thousand; a message
/// stays well inside a page's worth of attributes per element either way).
const PER_MESSAGE: usize = 256;
/// The largest batch sent as one (the socket's send buffer is raised to fit it, as nft does);
/// a larger change goes through nft's text.
pub const BATCH_LIMIT: usize = 4 << 20;

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn nested(out: &mut Vec<u8>, kind: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    inner(out);
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    out[at + 2..at + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
}

fn string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

fn element(out: &mut Vec<u8>, e: &SetElement, with_data: bool) {
    nested(out, NFTA_LIST_ELEM, |out| {
        nested(out, NFTA_SET_ELEM_KEY, |out| {
            attr(out, NFTA_DATA_VALUE, &e.key)
        });
        if let Some(end) = &e.key_end {
            nested(out, NFTA_SET_ELEM_KEY_END, |out| {
                attr(out, NFTA_DATA_VALUE, end)
            });
        }
        let Some(data) = e.data.as_ref().filter(|_| with_data) else {
            return;
        };
        nested(out, NFTA_SET_ELEM_DATA, |out| {
            let verdict = |out: &mut Vec<u8>, code: i32, chain: Option<&str>| {
                nested(out, NFTA_DATA_VERDICT, |out| {
                    attr(out, NFTA_VERDICT_CODE, &code.to_be_bytes());
                    if let Some(c) = chain {
                        attr(out, NFTA_VERDICT_CHAIN, &string(c));
                    }
                })
            };
            match data {
                ElementData::Value(v) => attr(out, NFTA_DATA_VALUE, v),
                ElementData::Accept => verdict(out, 1, None),
                ElementData::Drop => verdict(out, 0, None),
                ElementData::Jump(c) => verdict(out, -3, Some(c)),
                ElementData::Goto(c) => verdict(out, -4, Some(c)),
            }
        });
    });
}

/// A table's family, the table and one of its sets.
type SetOf<'a> = (IpFamily, &'a str, &'a str);

/// An encoded batch and what each of its messages did, by sequence number.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// The first sequence number (the batch's begin) and each element message's, with what
    /// it holds for an error to name.
    begin: u32,
    messages: Vec<(u32, String)>,
    /// The last sequence number it uses (the batch's end).
    pub end: u32,
}

/// `ops` as one netfilter batch: the kernel applies every message of it or none.
pub fn encode(ops: &[ElementOp], first_seq: u32) -> Batch {
    let mut bytes = Vec::new();
    let mut seq = first_seq;
    message(
        &mut bytes,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let begin = seq;
    let mut messages = Vec::new();
    for op in ops {
        let (kind, flags, add, verb) = match op {
            ElementOp::Add(_) => (
                NFT_MSG_NEWSETELEM,
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
                true,
                "add",
            ),
            ElementOp::Delete(_) => (
                NFT_MSG_DELSETELEM,
                NLM_F_REQUEST | NLM_F_ACK,
                false,
                "delete",
            ),
        };
        // Grouped by table and set, in their order of first appearance.
        let mut groups: Vec<(SetOf, Vec<&SetElement>)> = Vec::new();
        for e in op.elements() {
            let at = (e.family, e.table, e.set.as_str());
            match groups.iter_mut().find(|(k, _)| *k == at) {
                Some((_, v)) => v.push(e),
                None => groups.push((at, vec![e])),
            }
        }
        for ((family, table, set), elems) in groups {
            for chunk in elems.chunks(PER_MESSAGE) {
                seq = seq.wrapping_add(1);
                let mut attrs = Vec::new();
                attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &string(table));
                attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &string(set));
                nested(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS, |out| {
                    for e in chunk {
                        element(out, e, add);
                    }
                });
                let af = match family {
                    IpFamily::Ipv4 => AF_INET,
                    IpFamily::Ipv6 => AF_INET6,
                };
                message(
                    &mut bytes,
                    (NFNL_SUBSYS_NFTABLES << 8) | kind,
                    flags,
                    seq,
                    af,
                    0,
                    &attrs,
                );
                let t = match family {
                    IpFamily::Ipv4 => "ip",
                    IpFamily::Ipv6 => "ip6",
                };
                messages.push((
                    seq,
                    format!(
                        "{verb} element {t} {table} {set} ({} elements)",
                        chunk.len()
                    ),
                ));
            }
        }
    }
    seq = seq.wrapping_add(1);
    message(
        &mut bytes,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    Batch {
        bytes,
        begin,
        messages,
        end: seq,
    }
}

fn batch_error(what: String) -> NodeError {
    NodeError::Command {
        cmd: "netlink nftables batch".into(),
        status: None,
        stderr: what,
    }
}

/// Sends `batch` on `socket` and waits for the kernel's answer to each of its messages: Ok
/// once every one is acknowledged (the kernel acknowledges after the commit), the first
/// error otherwise (the kernel then applied none of it). The socket waits at most 10 s.
pub fn apply(socket: &Socket, batch: &Batch) -> Result<(), NodeError> {
    if batch.messages.is_empty() {
        return Ok(());
    }
    nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(10, 0),
    )
    .map_err(|e| batch_error(format!("setting the socket's receive timeout: {e}")))?;
    // An error's answer quotes the request's header only, not the whole message.
    socket
        .set_cap_ack(true)
        .map_err(|e| batch_error(format!("NETLINK_CAP_ACK: {e}")))?;
    if batch.bytes.len() > 200_000 {
        nix::sys::socket::setsockopt(
            socket,
            nix::sys::socket::sockopt::SndBufForce,
            &(batch.bytes.len() + 4096),
        )
        .map_err(|e| batch_error(format!("a send buffer of {} bytes: {e}", batch.bytes.len())))?;
    }
    let sent = socket
        .send(&batch.bytes, 0)
        .map_err(|source| NodeError::Io {
            what: "sending an nftables batch".into(),
            source,
        })?;
    if sent != batch.bytes.len() {
        return Err(batch_error(format!(
            "sent {sent} of {} bytes",
            batch.bytes.len()
        )));
    }
    let mut waiting: BTreeMap<u32, &str> = batch
        .messages
        .iter()
        .map(|(s, w)| (*s, w.as_str()))
        .collect();
    let mut buf = vec![0u8; 1 << 16];
    while !waiting.is_empty() {
        let n = socket
            .recv(&mut &mut buf[..], 0)
            .map_err(|source| NodeError::Io {
                what: format!("waiting for the kernel's answer to an nftables batch ({} of {} messages unanswered)", waiting.len(), batch.messages.len()),
                source,
            })?;
        for (kind, msg) in split(&buf[..n]).map_err(batch_error)? {
            if kind != NLMSG_ERROR || msg.len() < 20 {
                continue;
            }
            let code = i32::from_ne_bytes(msg[16..20].try_into().expect("4"));
            // The error message quotes the request's header: its sequence number.
            let seq = msg
                .get(28..32)
                .map(|b| u32::from_ne_bytes(b.try_into().expect("4")))
                .unwrap_or(0);
            if code == 0 {
                waiting.remove(&seq);
                continue;
            }
            let what = if seq == batch.begin {
                "the batch's commit".to_string()
            } else {
                batch
                    .messages
                    .iter()
                    .find(|(s, _)| *s == seq)
                    .map_or_else(|| format!("message {seq}"), |(_, w)| w.clone())
            };
            return Err(batch_error(format!(
                "{what}: {}",
                std::io::Error::from_raw_os_error(-code)
            )));
        }
    }
    Ok(())
}
