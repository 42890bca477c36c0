//! Cluster DNS: the records the Kubernetes DNS-Based Service Discovery spec (schema 1.1.0,
//! `kubernetes/dns` `docs/specification.md`) defines for a cluster, and how a query is answered.
//!
//! The zone is data; [`DnsZone::lookup`] is the whole answering logic, so `podnet check --dns`
//! and the server cannot disagree: the server only encodes what `lookup` returns.
//!
//! Records (spec section in brackets):
//! - \[2.2\] `dns-version.<zone>. TXT "1.1.0"`.
//! - \[2.3.1\] "Given a ClusterIP Service named `<service>` in namespace `<ns>` … an A record
//!   `<service>.<ns>.svc.<zone>. <ttl> IN A <cluster-ip>`" (AAAA for an IPv6 ClusterIP).
//! - \[2.3.2\] "For each port in the Service with name `<port>` and number `<port-number>` using
//!   protocol `<proto>`, an SRV record `_<port>._<proto>.<service>.<ns>.svc.<zone>. … SRV
//!   <weight> <priority> <port-number> <service>.<ns>.svc.<zone>.`" Unnamed ports have none.
//! - \[2.3.3\] PTR `<d>.<c>.<b>.<a>.in-addr.arpa.` (nibbles under `ip6.arpa.`) for each
//!   ClusterIP.
//! - \[2.4.1\] Headless: "an A record … for each ready endpoint" at `<service>.<ns>.svc.<zone>.`,
//!   and `<hostname>.<service>.<ns>.svc.<zone>.` for each ready endpoint, where the hostname is the
//!   endpoint's `hostname` or "a unique, system-assigned identifier": here the address with `.`
//!   (or `:`) replaced by `-`, as CoreDNS does.
//! - \[2.4.2\] Headless SRV: one per ready endpoint and named port, target the endpoint's name.
//! - \[2.4.3\] Headless PTR to the endpoint's name.
//! - \[2.5\] ExternalName: `<service>.<ns>.svc.<zone>. CNAME <extname>.`
//! - Pod records `a-b-c-d.<ns>.pod.<zone>. A a.b.c.d`, removed from the spec in 2019 but still
//!   queried by upstream e2e tests, are answered for any well-formed address, as CoreDNS does with
//!   `pods insecure` (kubeadm's and kind's default).
//!
//! "Ready" (2.1) is the endpoint's `conditions.ready`, or the Service publishing not-ready
//! addresses. Comparisons are case-insensitive (2.1): names are kept in lower case and queries are
//! lowered before lookup.
//!
//! Negative answers: a name that owns records of other types, or that has names below it (an
//! empty non-terminal such as `<ns>.svc.<zone>.` or `_tcp.<service>…`), is NOERROR with no answer
//! (NODATA); any other name in the zone is NXDOMAIN. A headless Service without ready endpoints has
//! no records, so it is NXDOMAIN as 2.4.1 says it should be.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::model::{Cluster, ServiceInfo, ServiceType};

/// Where the cluster DNS Service lives, as in kubeadm and kind.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";
/// The built-in cluster DNS Deployment (kind's name for it).
pub const DNS_DEPLOYMENT: &str = "coredns";

/// The cluster DNS that a cluster has when the manifests don't define `kube-system/kube-dns`:
/// kind's `coredns` Deployment (2 replicas, `k8s-app: kube-dns`) and the `kube-dns` Service at
/// the configured DNS address. In the lab, podnet's DNS server runs in these pods.
pub fn builtin_manifests(c: &crate::config::ClusterConfig) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {ns}
  labels: {{k8s-app: kube-dns, kubernetes.io/name: CoreDNS}}
spec:
  clusterIP: {ip}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, protocol: UDP, targetPort: 53}}
  - {{name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {deployment}
  namespace: {ns}
  labels: {{k8s-app: kube-dns}}
spec:
  replicas: 2
  selector:
    matchLabels: {{k8s-app: kube-dns}}
  template:
    metadata:
      labels: {{k8s-app: kube-dns}}
    spec:
      dnsPolicy: Default
      containers:
      - name: coredns
        image: podnet/dns
        ports:
        - {{name: dns, containerPort: 53, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
"#,
        ip = c.dns_ip,
        ns = DNS_NAMESPACE,
        service = DNS_SERVICE,
        deployment = DNS_DEPLOYMENT,
    )
}

/// Whether `pod` is one of the built-in cluster DNS pods (the lab runs the DNS server there).
pub fn is_builtin_dns_pod(c: &Cluster, pod: &crate::model::PodInfo) -> bool {
    c.service(DNS_NAMESPACE, DNS_SERVICE).is_some_and(|s| {
        s.builtin
            && pod.namespace == DNS_NAMESPACE
            && s.selector
                .as_ref()
                .is_some_and(|sel| crate::model::selector_matches(sel, &pod.labels))
    })
}

/// The schema version this zone follows (spec 2.2).
pub const SCHEMA_VERSION: &str = "1.1.0";
/// TTL of every record, as kubeadm's Corefile sets (`ttl 30`).
pub const DEFAULT_TTL: u32 = 30;

/// The data of one record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    Cname(String),
    Txt(String),
    Ns(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

/// Query and record types this zone knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RType {
    A,
    Aaaa,
    Srv,
    Ptr,
    Cname,
    Txt,
    Ns,
    Soa,
    /// `ANY` (255): every record at the name.
    Any,
    /// Any other type: never present here, so always NODATA for an existing name.
    Other(u16),
}

impl RType {
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => RType::A,
            28 => RType::Aaaa,
            33 => RType::Srv,
            12 => RType::Ptr,
            5 => RType::Cname,
            16 => RType::Txt,
            2 => RType::Ns,
            6 => RType::Soa,
            255 => RType::Any,
            n => RType::Other(n),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "A" => RType::A,
            "AAAA" => RType::Aaaa,
            "SRV" => RType::Srv,
            "PTR" => RType::Ptr,
            "CNAME" => RType::Cname,
            "TXT" => RType::Txt,
            "NS" => RType::Ns,
            "SOA" => RType::Soa,
            "ANY" => RType::Any,
            _ => return None,
        })
    }
}

impl RData {
    pub fn rtype(&self) -> RType {
        match self {
            RData::A(_) => RType::A,
            RData::Aaaa(_) => RType::Aaaa,
            RData::Srv { .. } => RType::Srv,
            RData::Ptr(_) => RType::Ptr,
            RData::Cname(_) => RType::Cname,
            RData::Txt(_) => RType::Txt,
            RData::Ns(_) => RType::Ns,
            RData::Soa { .. } => RType::Soa,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            RData::A(_) => "A",
            RData::Aaaa(_) => "AAAA",
            RData::Srv { .. } => "SRV",
            RData::Ptr(_) => "PTR",
            RData::Cname(_) => "CNAME",
            RData::Txt(_) => "TXT",
            RData::Ns(_) => "NS",
            RData::Soa { .. } => "SOA",
        }
    }
}

/// The presentation form of the data, as dig prints it.
impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RData::A(ip) => write!(f, "{ip}"),
            RData::Aaaa(ip) => write!(f, "{ip}"),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target}"),
            RData::Ptr(n) | RData::Cname(n) | RData::Ns(n) => write!(f, "{n}"),
            RData::Txt(t) => write!(f, "{t:?}"),
            RData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => write!(
                f,
                "{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
            ),
        }
    }
}

/// One resource record. `name` is lower case and absolute (ends with a dot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsRecord {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

impl fmt::Display for DnsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} IN {} {}",
            self.name,
            self.ttl,
            self.data.type_name(),
            self.data
        )
    }
}

impl Serialize for DnsRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("DnsRecord", 4)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("ttl", &self.ttl)?;
        st.serialize_field("type", self.data.type_name())?;
        st.serialize_field("data", &self.data.to_string())?;
        st.end()
    }
}

/// The response code of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
}

/// The outcome of [`DnsZone::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name is ours: an answer (possibly empty: NODATA), records for the additional
    /// section, and the SOA for the authority section of a negative answer.
    Answer {
        rcode: Rcode,
        answer: Vec<Answered>,
        /// Indices into [`DnsZone::records`].
        additional: Vec<usize>,
    },
    /// The name is outside the zone (and not a reverse name the zone holds): forward it.
    Outside,
}

/// A record in an answer: one of the zone's (an index into [`DnsZone::records`]), or a pod
/// record made for the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    Zone(usize),
    Synthesized(DnsRecord),
}

impl Answered {
    pub fn record<'z>(&'z self, zone: &'z DnsZone) -> &'z DnsRecord {
        match self {
            Answered::Zone(i) => &zone.records[*i],
            Answered::Synthesized(r) => r,
        }
    }
}

/// The cluster's zone: `<zone>` plus the reverse names of its addresses.
#[derive(Debug, Clone)]
pub struct DnsZone {
    /// The cluster domain, lower case, absolute (`cluster.local.`).
    pub origin: String,
    pub ttl: u32,
    /// Sorted, without duplicates: a name's records stand together (found through `names`,
    /// which holds indices, so each owner name is kept once, here).
    pub records: Vec<DnsRecord>,
    soa: usize,
    /// Names in the zone that exist without records of their own (empty non-terminals: the
    /// names between an owner and the origin, and the namespaces' `svc` and `pod` names),
    /// sorted.
    ents: Vec<Box<str>>,
    /// Every name that exists, by its hash: the index of its first record, or of its entry in
    /// `ents` with [`ENT`] set. The names themselves are not copied: a probe compares with the
    /// record's or the entry's own.
    names: HashTable<u32>,
    hasher: RandomState,
}

/// In [`DnsZone::names`], marks an index into `ents`.
const ENT: u32 = 1 << 31;

/// A zone as data, to keep in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredZone {
    pub origin: String,
    pub ttl: u32,
    pub records: Vec<(String, u32, RData)>,
    pub empty_names: Vec<String>,
}

impl PartialEq for DnsZone {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin && self.records == other.records
    }
}

impl Serialize for DnsZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("DnsZone", 4)?;
        st.serialize_field("origin", &self.origin)?;
        st.serialize_field("schemaVersion", SCHEMA_VERSION)?;
        st.serialize_field("ttl", &self.ttl)?;
        st.serialize_field("records", &self.records)?;
        st.end()
    }
}

/// `cluster.local` → `cluster.local.`, lower case.
fn absolute(name: &str) -> String {
    let mut n = name.trim_end_matches('.').to_ascii_lowercase();
    n.push('.');
    n
}

/// The SRV record of a named port (spec 2.3.2 and 2.4.2):
/// `_<port>._<proto>.<service fqdn> SRV 0 100 <port> <target>`.
fn srv(
    port_name: &str,
    protocol: crate::Protocol,
    port: i32,
    fqdn: &str,
    target: &str,
) -> (String, RData) {
    let owner = format!(
        "_{}._{}.{fqdn}",
        port_name.to_ascii_lowercase(),
        protocol.lower()
    );
    let data = RData::Srv {
        priority: 0,
        weight: 100,
        port: port as u16,
        target: target.to_string(),
    };
    (owner, data)
}

/// The endpoint name a spec "system-assigned identifier" takes: the address with `.` or `:`
/// replaced by `-` (CoreDNS's form; it is also the pod-record form).
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The reverse name of an address (RFC 1035 3.5, RFC 3596 2.5), absolute.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
                s.push('.');
                s.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
                s.push('.');
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// What the zone is made from.
pub struct ZoneInput<'a> {
    /// The cluster domain (`cluster.local`).
    pub domain: &'a str,
    /// The DNS Service's address, for the zone's NS record.
    pub dns_ip: Option<IpAddr>,
    pub services: &'a [ServiceInfo],
    /// Namespaces that exist: `<ns>.svc.<zone>.` and `<ns>.pod.<zone>.` answer NODATA.
    pub namespaces: Vec<&'a str>,
    pub ttl: u32,
}

/// A stored zone without its SOA record: not a zone to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored zone {origin} has no SOA")]
pub struct NoSoa {
    pub origin: String,
}

impl DnsZone {
    /// The zone of a whole cluster.
    pub fn from_cluster(c: &Cluster) -> Self {
        DnsZone::new(&ZoneInput {
            domain: &c.config.cluster_domain,
            dns_ip: Some(c.config.dns_ip),
            services: &c.services,
            namespaces: c.namespaces.keys().map(String::as_str).collect(),
            ttl: DEFAULT_TTL,
        })
    }

    pub fn new(input: &ZoneInput<'_>) -> Self {
        let origin = absolute(input.domain);
        let ttl = input.ttl;
        let mut records: Vec<DnsRecord> = Vec::new();
        let mut rec = |name: String, data: RData| records.push(DnsRecord { name, ttl, data });
        let ns_name = format!("ns.dns.{origin}");
        rec(
            origin.clone(),
            RData::Soa {
                mname: ns_name.clone(),
                rname: format!("hostmaster.{origin}"),
                serial: 1,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: ttl,
            },
        );
        rec(origin.clone(), RData::Ns(ns_name.clone()));
        match input.dns_ip {
            Some(IpAddr::V4(ip)) => rec(ns_name, RData::A(ip)),
            Some(IpAddr::V6(ip)) => rec(ns_name, RData::Aaaa(ip)),
            None => {}
        }
        rec(
            format!("dns-version.{origin}"),
            RData::Txt(SCHEMA_VERSION.to_string()),
        );
        let mut ents: BTreeSet<String> = BTreeSet::new();
        ents.insert(format!("svc.{origin}"));
        ents.insert(format!("pod.{origin}"));
        for ns in &input.namespaces {
            ents.insert(format!("{ns}.svc.{origin}"));
            ents.insert(format!("{ns}.pod.{origin}"));
        }
        // ClusterIP PTRs win over endpoint PTRs for the same address.
        let mut ptr_owned: BTreeSet<IpAddr> = BTreeSet::new();
        let mut endpoint_ptrs: Vec<(IpAddr, String)> = Vec::new();
        for svc in input.services {
            let fqdn = format!("{}.{}.svc.{origin}", svc.name, svc.namespace);
            if svc.service_type == ServiceType::ExternalName {
                if let Some(ext) = &svc.external_name {
                    rec(fqdn, RData::Cname(absolute(ext)));
                }
                continue;
            }
            if !svc.headless {
                for ip in &svc.cluster_ips {
                    rec(fqdn.clone(), address(*ip));
                    rec(reverse_name(*ip), RData::Ptr(fqdn.clone()));
                    ptr_owned.insert(*ip);
                }
                for p in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                    let (owner, data) = srv(&p.name, p.protocol, p.port, &fqdn, &fqdn);
                    rec(owner, data);
                }
                continue;
            }
            for (slice, ep) in svc.endpoints() {
                if !(ep.ready || svc.publish_not_ready_addresses) {
                    continue;
                }
                for ip in &ep.addresses {
                    let host = match &ep.hostname {
                        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                        _ => dashed(*ip),
                    };
                    let ep_name = format!("{host}.{fqdn}");
                    rec(fqdn.clone(), address(*ip));
                    rec(ep_name.clone(), address(*ip));
                    endpoint_ptrs.push((*ip, ep_name.clone()));
                    for p in slice.ports.iter().filter(|p| !p.name.is_empty()) {
                        let (owner, data) = srv(&p.name, p.protocol, p.port, &fqdn, &ep_name);
                        rec(owner, data);
                    }
                }
            }
        }
        for (ip, name) in endpoint_ptrs {
            if !ptr_owned.contains(&ip) {
                records.push(DnsRecord {
                    name: reverse_name(ip),
                    ttl,
                    data: RData::Ptr(name),
                });
            }
        }
        records.sort();
        records.dedup();
        // SRV weights: RFC 2782 wants them to share the load; equal weights summing to 100.
        // The records are sorted, so a name's SRV records stand together.
        for set in records.chunk_by_mut(|a, b| a.name == b.name && a.data.rtype() == b.data.rtype())
        {
            let n = set.len() as u16;
            for r in set {
                if let RData::Srv { weight, .. } = &mut r.data {
                    *weight = (100 / n).max(1);
                }
            }
        }
        DnsZone::from_parts(origin, ttl, records, ents)
    }

    /// A zone from its records (sorted, without duplicates) and its empty names.
    fn from_parts(
        origin: String,
        ttl: u32,
        records: Vec<DnsRecord>,
        ents: BTreeSet<String>,
    ) -> Self {
        let has_records = |name: &str| {
            records
                .binary_search_by(|r| r.name.as_str().cmp(name))
                .is_ok()
        };
        // Every name between an owner and the origin exists (an empty non-terminal).
        let mut implied: HashSet<&str> = HashSet::new();
        for r in records.iter().filter(|r| r.name.ends_with(&origin)) {
            let mut rest = r.name.as_str();
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if rest.len() <= origin.len() || !implied.insert(rest) {
                    break;
                }
            }
        }
        let mut empty: Vec<Box<str>> = implied
            .into_iter()
            .chain(ents.iter().map(String::as_str))
            .filter(|n| n.ends_with(&origin) && !has_records(n))
            .map(Box::from)
            .collect();
        empty.sort();
        empty.dedup();
        assert!(
            records.len() < ENT as usize && empty.len() < ENT as usize,
            "a zone of 2^31 names"
        );
        let hasher = RandomState::new();
        let mut names = HashTable::with_capacity(records.len() + empty.len());
        let mut add = |name: &str, at: u32| {
            names.insert_unique(hasher.hash_one(name), at, |&i| {
                hasher.hash_one(name_at(&records, &empty, i))
            });
        };
        for (i, r) in records.iter().enumerate() {
            if i == 0 || records[i - 1].name != r.name {
                add(&r.name, i as u32);
            }
        }
        for (i, e) in empty.iter().enumerate() {
            add(e, i as u32 | ENT);
        }
        let soa = records
            .iter()
            .position(|r| matches!(r.data, RData::Soa { .. }) && r.name == origin)
            .expect("the SOA was added");
        DnsZone {
            origin,
            ttl,
            records,
            soa,
            ents: empty,
            names,
            hasher,
        }
    }

    /// The records owned by `name` (lower case, absolute) as a range of [`DnsZone::records`]:
    /// empty for a name that exists without records, None for a name that does not exist.
    fn owned(&self, name: &str) -> Option<Range<usize>> {
        let &at = self.names.find(self.hasher.hash_one(name), |&i| {
            name_at(&self.records, &self.ents, i) == name
        })?;
        if at & ENT != 0 {
            return Some(0..0);
        }
        let start = at as usize;
        let end = start
            + self.records[start..]
                .iter()
                .take_while(|r| r.name == name)
                .count();
        Some(start..end)
    }

    /// The zone in a form to store and load again ([`DnsZone::from_stored`]).
    pub fn to_stored(&self) -> StoredZone {
        StoredZone {
            origin: self.origin.clone(),
            ttl: self.ttl,
            records: self
                .records
                .iter()
                .map(|r| (r.name.clone(), r.ttl, r.data.clone()))
                .collect(),
            empty_names: self.ents.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The zone as [`DnsZone::to_stored`] gives it, to write out, without copying it: the
    /// same serialized form.
    pub fn stored(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Stored<'z> {
            origin: &'z str,
            ttl: u32,
            records: Vec<(&'z str, u32, &'z RData)>,
            empty_names: &'z [Box<str>],
        }
        Stored {
            origin: &self.origin,
            ttl: self.ttl,
            records: self
                .records
                .iter()
                .map(|r| (r.name.as_str(), r.ttl, &r.data))
                .collect(),
            empty_names: &self.ents,
        }
    }

    /// Fails when the records have no SOA at the origin.
    pub fn from_stored(s: StoredZone) -> Result<Self, NoSoa> {
        if !s
            .records
            .iter()
            .any(|(n, _, d)| *n == s.origin && matches!(d, RData::Soa { .. }))
        {
            return Err(NoSoa { origin: s.origin });
        }
        let mut records: Vec<DnsRecord> = s
            .records
            .into_iter()
            .map(|(name, ttl, data)| DnsRecord { name, ttl, data })
            .collect();
        records.sort();
        records.dedup();
        Ok(DnsZone::from_parts(
            s.origin,
            s.ttl,
            records,
            s.empty_names.into_iter().collect(),
        ))
    }

    /// The index of the zone's SOA in [`DnsZone::records`], for the authority section of
    /// negative answers (RFC 2308).
    pub fn soa_index(&self) -> usize {
        self.soa
    }

    /// Whether `name` (lower case, absolute) is in the zone.
    pub fn in_zone(&self, name: &str) -> bool {
        name == self.origin
            || (name.len() > self.origin.len()
                && name.ends_with(&self.origin)
                && name.as_bytes()[name.len() - self.origin.len() - 1] == b'.')
    }

    /// Answers a query. `qname` may be in any case; it must be absolute (end with a dot).
    pub fn lookup(&self, qname: &str, qtype: RType) -> Lookup {
        let lowered;
        let name = if qname.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = qname.to_ascii_lowercase();
            lowered.as_str()
        } else {
            qname
        };
        let ours = self.in_zone(name);
        let Some(idx) = self.owned(name) else {
            if !ours {
                return Lookup::Outside;
            }
            if let Some(rec) = self.pod_record(name) {
                let answer = if rec.data.rtype() == qtype || qtype == RType::Any {
                    vec![Answered::Synthesized(rec)]
                } else {
                    vec![]
                };
                return Lookup::Answer {
                    rcode: Rcode::NoError,
                    answer,
                    additional: vec![],
                };
            }
            return Lookup::Answer {
                rcode: Rcode::NxDomain,
                answer: vec![],
                additional: vec![],
            };
        };
        let mut answer: Vec<Answered> = idx
            .clone()
            .filter(|&i| qtype == RType::Any || self.records[i].data.rtype() == qtype)
            .map(Answered::Zone)
            .collect();
        let mut additional = Vec::new();
        if answer.is_empty() && qtype != RType::Cname {
            // RFC 1034 3.6.2: a CNAME answers every type; follow it while it stays in the zone.
            let mut at = idx;
            for _ in 0..8 {
                let Some(c) = at
                    .clone()
                    .find(|&i| self.records[i].data.rtype() == RType::Cname)
                else {
                    break;
                };
                answer.push(Answered::Zone(c));
                let RData::Cname(target) = &self.records[c].data else {
                    break;
                };
                match self.owned(target) {
                    Some(next) => {
                        answer.extend(
                            next.clone()
                                .filter(|&i| self.records[i].data.rtype() == qtype)
                                .map(Answered::Zone),
                        );
                        at = next;
                    }
                    None => break,
                }
            }
        }
        // Targets of SRV answers, when the zone knows their addresses.
        for a in &answer {
            if let RData::Srv { target, .. } = &a.record(self).data {
                if let Some(t) = self.owned(target) {
                    additional.extend(
                        t.filter(|&i| matches!(self.records[i].data, RData::A(_) | RData::Aaaa(_))),
                    );
                }
            }
        }
        additional.sort();
        additional.dedup();
        Lookup::Answer {
            rcode: Rcode::NoError,
            answer,
            additional,
        }
    }

    /// The pod record `a-b-c-d.<ns>.pod.<zone>.` (or the dashed IPv6 form) for any well-formed
    /// address in any namespace.
    pub fn pod_record(&self, name: &str) -> Option<DnsRecord> {
        let rest = name.strip_suffix(&self.origin)?.strip_suffix("pod.")?;
        let (host, ns) = rest.strip_suffix('.')?.split_once('.')?;
        if ns.is_empty() || ns.contains('.') {
            return None;
        }
        let data = if host.contains("--") || host.matches('-').count() > 3 {
            RData::Aaaa(host.replace('-', ":").parse().ok()?)
        } else {
            RData::A(host.replace('-', ".").parse().ok()?)
        };
        Some(DnsRecord {
            name: name.to_string(),
            ttl: self.ttl,
            data,
        })
    }

    /// The zone in master-file form, one record a line.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "; cluster DNS zone {} (Kubernetes DNS schema {SCHEMA_VERSION})\n",
            self.origin
        );
        s.push_str(&format!(
            "; pod records <a-b-c-d>.<namespace>.pod.{} are answered for any address\n",
            self.origin
        ));
        for r in &self.records {
            s.push_str(&r.to_string());
            s.push('\n');
        }
        s
    }
}

/// The name an entry of [`DnsZone::names`] stands for.
fn name_at<'z>(records: &'z [DnsRecord], ents: &'z [Box<str>], i: u32) -> &'z str {
    if i & ENT != 0 {
        &ents[(i & !ENT) as usize]
    } else {
        &records[i as usize].name
    }
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}
