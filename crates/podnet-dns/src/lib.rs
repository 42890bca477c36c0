//! podnet's cluster DNS server.
//!
//! It is authoritative for the cluster domain and answers exactly what
//! [`podnet_model::dns::DnsZone::lookup`] says, so the server and `podnet check --dns` agree by
//! construction; this crate only moves those answers on and off the wire: hickory-proto parses
//! queries and encodes answers (EDNS, truncation to the client's buffer with TC set), TCP goes
//! through hickory-server, and UDP through a receive loop of our own, which answers each query
//! on the spot instead of spawning a task and queueing the answer through a channel as
//! hickory-server does (bench/RESULTS.md).
//!
//! Names outside the zone are relayed to the configured upstream servers, as CoreDNS's `forward`
//! plugin does. Without upstreams they are REFUSED at once (RFC 1035 4.1.1: "the name server
//! refuses to perform the specified operation"), so a client never waits for a timeout; an
//! upstream that does not answer in time gives SERVFAIL.
//!
//! The zone can be replaced at any time ([`ClusterDns::set_zone`]); queries already being
//! answered finish with the zone they started with.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::{self, A, AAAA, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use podnet_model::dns::{self as model, DnsRecord, DnsZone, Lookup, RType, Rcode};

mod cache;
mod forward;
pub mod metrics;

pub use hickory_server::Server;

/// The largest UDP response we send to an EDNS client (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("record {record}")]
    Record {
        record: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("serving DNS over UDP")]
    Udp(#[source] std::io::Error),
    #[error("serving DNS over TCP")]
    Tcp(#[source] hickory_server::net::NetError),
}

/// A zone ready to serve: the model's zone, whose records were each checked to convert to a
/// hickory record. Only the model's records are kept (one copy): an answer's hickory records
/// are made from them when it is encoded, and the UDP loop keeps encoded answers in its cache.
pub struct Zone {
    model: DnsZone,
    /// The SOA, which every negative answer carries (RFC 2308 3), made once.
    soa: Record,
}

fn name(s: &str) -> Result<Name, hickory_proto::ProtoError> {
    Name::from_ascii(s)
}

fn to_record(r: &DnsRecord) -> Result<Record, DnsError> {
    let err = |source| DnsError::Record {
        record: r.to_string(),
        source,
    };
    let data = match &r.data {
        model::RData::A(ip) => RData::A(A(*ip)),
        model::RData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        model::RData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(
            *priority,
            *weight,
            *port,
            name(target).map_err(err)?,
        )),
        model::RData::Ptr(n) => RData::PTR(rdata::PTR(name(n).map_err(err)?)),
        model::RData::Cname(n) => RData::CNAME(rdata::CNAME(name(n).map_err(err)?)),
        model::RData::Ns(n) => RData::NS(rdata::NS(name(n).map_err(err)?)),
        model::RData::Txt(t) => RData::TXT(TXT::new(vec![t.clone()])),
        model::RData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            name(mname).map_err(err)?,
            name(rname).map_err(err)?,
            *serial,
            *refresh as i32,
            *retry as i32,
            *expire as i32,
            *minimum,
        )),
    };
    Ok(Record::from_rdata(name(&r.name).map_err(err)?, r.ttl, data))
}

impl Zone {
    pub fn new(model: DnsZone) -> Result<Self, DnsError> {
        for r in &model.records {
            to_record(r)?;
        }
        let soa = to_record(&model.records[model.soa_index()])?;
        Ok(Zone { model, soa })
    }

    pub fn model(&self) -> &DnsZone {
        &self.model
    }
}

/// The server's state: the current zone and where other names go.
pub struct ClusterDns {
    zone: RwLock<Arc<Zone>>,
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    /// What was answered, for `/metrics`.
    pub metrics: metrics::Metrics,
}

/// What to do with one query.
enum Decision<'z> {
    Respond(Prepared<'z>),
    Forward,
}

/// A response, before encoding: header and the records of each section, made from the zone's.
struct Prepared<'z> {
    meta: Metadata,
    answers: Vec<Record>,
    soa: Option<&'z Record>,
    additionals: Vec<Record>,
}

impl Prepared<'_> {
    fn error(mut meta: Metadata, code: ResponseCode) -> Self {
        meta.response_code = code;
        Prepared {
            meta,
            answers: vec![],
            soa: None,
            additionals: vec![],
        }
    }
}

/// What the UDP path sends back.
enum Out {
    Bytes(Vec<u8>),
    Forward(Box<Request>),
    Nothing,
}

/// The OPT record of a response to an EDNS query (RFC 6891 7), with our buffer size.
/// Its payload size is ours (RFC 6891 6.2.3: "the number of octets of the largest UDP payload
/// that can be reassembled and delivered in the responder's network stack").
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut r = Edns::new();
        r.set_max_payload(MAX_UDP_PAYLOAD);
        r
    })
}

/// The largest response a UDP client takes: 512 bytes, or what its EDNS record says.
fn udp_limit(request: &Request) -> u16 {
    request
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
}

/// A response of the header alone, as hickory-server sends for a query it cannot parse or
/// encode an answer to.
fn header_only(id: u16, op_code: OpCode, code: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(id, op_code, code);
    m.metadata.message_type = MessageType::Response;
    m.to_vec().ok()
}

/// Encodes a response of at most `max` bytes; hickory sets TC and drops what does not fit.
fn encode<'a>(
    request: &Request,
    edns: Option<&Edns>,
    meta: Metadata,
    answers: impl Iterator<Item = &'a Record> + Send + 'a,
    authorities: impl Iterator<Item = &'a Record> + Send + 'a,
    additionals: impl Iterator<Item = &'a Record> + Send + 'a,
    max: u16,
) -> Vec<u8> {
    let msg = MessageResponseBuilder::new(&request.queries, edns).build(
        meta,
        answers,
        authorities,
        None::<&Record>,
        additionals,
    );
    let mut bytes = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut bytes);
    enc.set_max_size(max);
    if msg.destructive_emit(&mut enc).is_ok() {
        return bytes;
    }
    header_only(meta.id, meta.op_code, ResponseCode::ServFail).unwrap_or_default()
}

impl ClusterDns {
    pub fn new(zone: DnsZone, upstreams: Vec<SocketAddr>) -> Result<Self, DnsError> {
        Ok(ClusterDns {
            zone: RwLock::new(Arc::new(Zone::new(zone)?)),
            upstreams,
            timeout: Duration::from_secs(2),
            metrics: Default::default(),
        })
    }

    /// How long an upstream may take before the query gets SERVFAIL (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Serves `zone` from now on.
    pub fn set_zone(&self, zone: DnsZone) -> Result<(), DnsError> {
        let z = Arc::new(Zone::new(zone)?);
        *self.zone.write().expect("not poisoned") = z;
        Ok(())
    }

    pub fn zone(&self) -> Arc<Zone> {
        self.zone.read().expect("not poisoned").clone()
    }

    /// The answer to a parsed query, from `zone`.
    fn decide<'z>(&self, zone: &'z Zone, request: &Request) -> Decision<'z> {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = !self.upstreams.is_empty();
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3: BADVERS for an EDNS version we don't implement.
            return Decision::Respond(Prepared::error(meta, ResponseCode::BADVERS));
        }
        let q = match (request.metadata.op_code, request.queries.queries()) {
            (OpCode::Query, [q]) => q,
            // RFC 9619: exactly one question.
            (OpCode::Query, _) => {
                return Decision::Respond(Prepared::error(meta, ResponseCode::FormErr))
            }
            _ => return Decision::Respond(Prepared::error(meta, ResponseCode::NotImp)),
        };
        if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
            return self.outside(meta);
        }
        let mut qname = q.name().to_string();
        if !qname.ends_with('.') {
            qname.push('.');
        }
        match zone
            .model
            .lookup(&qname, RType::from_code(u16::from(q.query_type())))
        {
            Lookup::Outside => self.outside(meta),
            Lookup::Answer {
                rcode,
                answer,
                additional,
            } => {
                meta.authoritative = true;
                meta.response_code = match rcode {
                    Rcode::NoError => ResponseCode::NoError,
                    Rcode::NxDomain => ResponseCode::NXDomain,
                };
                // Every record of the zone converts (Zone::new checked); a pod record made for
                // the query that does not is left out.
                let made = |r: &DnsRecord| to_record(r).ok();
                let records = &zone.model.records;
                Decision::Respond(Prepared {
                    meta,
                    // RFC 2308 3: negative answers carry the zone's SOA.
                    soa: answer.is_empty().then_some(&zone.soa),
                    answers: answer
                        .iter()
                        .filter_map(|a| made(a.record(&zone.model)))
                        .collect(),
                    additionals: additional
                        .iter()
                        .filter_map(|&i| made(&records[i]))
                        .collect(),
                })
            }
        }
    }

    /// A name that is not ours: forwarded, or REFUSED at once when there is no upstream.
    fn outside<'z>(&self, meta: Metadata) -> Decision<'z> {
        if self.upstreams.is_empty() {
            Decision::Respond(Prepared::error(meta, ResponseCode::Refused))
        } else {
            Decision::Forward
        }
    }

    /// The response to a raw UDP (or, with `udp` false, TCP-sized) query when the zone has it.
    fn respond(&self, raw: &[u8], udp: bool) -> Out {
        self.respond_in(&self.zone(), raw, udp)
    }

    fn respond_in(&self, zone: &Zone, raw: &[u8], udp: bool) -> Out {
        let src: SocketAddr = ([0, 0, 0, 0], 0).into();
        let protocol = if udp {
            hickory_server::net::xfer::Protocol::Udp
        } else {
            hickory_server::net::xfer::Protocol::Tcp
        };
        let request = match Request::from_bytes(raw.to_vec(), src, protocol) {
            Ok(r) => r,
            Err(_) => {
                // As hickory-server does: a readable header gets FORMERR, anything shorter nothing.
                let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else {
                    return Out::Nothing;
                };
                if header.metadata.message_type == MessageType::Response {
                    return Out::Nothing;
                }
                let m = &header.metadata;
                return header_only(m.id, m.op_code, ResponseCode::FormErr)
                    .map_or(Out::Nothing, Out::Bytes);
            }
        };
        // Never answer responses (no reflection loops).
        if request.metadata.message_type == MessageType::Response {
            return Out::Nothing;
        }
        match self.decide(zone, &request) {
            Decision::Forward => Out::Forward(Box::new(request)),
            Decision::Respond(p) => {
                let edns = response_edns(&request);
                let max = if udp { udp_limit(&request) } else { u16::MAX };
                Out::Bytes(encode(
                    &request,
                    edns.as_ref(),
                    p.meta,
                    p.answers.iter(),
                    p.soa.into_iter(),
                    p.additionals.iter(),
                    max,
                ))
            }
        }
    }

    /// Relays a query to the upstreams: the header of our response (the upstream's response
    /// code, or SERVFAIL when none answers in time) and the upstream's reply.
    async fn relay(&self, request: &Request) -> (Metadata, Option<Message>) {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let reply = forward::relay(&self.upstreams, request.as_slice(), self.timeout).await;
        self.metrics.forwarded(reply.is_none());
        meta.response_code = reply
            .as_ref()
            .map_or(ResponseCode::ServFail, |r| r.metadata.response_code);
        (meta, reply)
    }

    /// Relays a query to the upstreams and encodes their answer.
    async fn forwarded(&self, request: &Request, udp: bool) -> Vec<u8> {
        let (meta, reply) = self.relay(request).await;
        let (answers, authorities, additionals) = sections(&reply);
        let edns = response_edns(request);
        let max = if udp { udp_limit(request) } else { u16::MAX };
        encode(
            request,
            edns.as_ref(),
            meta,
            answers.iter(),
            authorities.iter(),
            additionals.iter(),
            max,
        )
    }

    /// Answers one raw query as the server does over UDP (`udp`, which limits the size) or TCP,
    /// and returns the encoded response; None when the server sends nothing (too short for a
    /// header, or a response). No sockets: for tests and fuzzing.
    pub async fn answer_bytes(&self, raw: &[u8], udp: bool) -> Option<Vec<u8>> {
        match self.respond(raw, udp) {
            Out::Bytes(b) => Some(b),
            Out::Forward(request) => Some(self.forwarded(&request, udp).await),
            Out::Nothing => None,
        }
    }

    /// Serves UDP on `socket` until it fails: one receive, one answer, one send, on this task;
    /// only queries that go to an upstream get a task of their own.
    async fn serve_udp(self: Arc<Self>, socket: tokio::net::UdpSocket) -> std::io::Result<()> {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 65535];
        let mut path = UdpPath::new(self.clone());
        loop {
            let (n, src) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP errors for earlier sends surface here; they are not fatal.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            match path.handle(&buf[..n]) {
                UdpOut::Send(b) => {
                    self.metrics.answered(metrics::Protocol::Udp, b);
                    let _ = socket.send_to(b, src).await;
                }
                UdpOut::Forward(request) => {
                    let (this, socket) = (self.clone(), socket.clone());
                    tokio::spawn(async move {
                        let b = this.forwarded(&request, true).await;
                        this.metrics.answered(metrics::Protocol::Udp, &b);
                        let _ = socket.send_to(&b, src).await;
                    });
                }
                UdpOut::Nothing => {}
            }
        }
    }

    /// Serves until a socket fails (or the future is dropped, which stops everything): UDP on
    /// our own receive loop, TCP through hickory-server (framing, pipelining, idle timeouts).
    pub async fn run(
        self: Arc<Self>,
        udp: Vec<tokio::net::UdpSocket>,
        tcp: Vec<tokio::net::TcpListener>,
    ) -> Result<(), DnsError> {
        let mut server = Server::new(Handler(self.clone()));
        let has_tcp = !tcp.is_empty();
        for t in tcp {
            server.register_listener(t, Duration::from_secs(10), 64);
        }
        let udp_loops =
            futures_util::future::try_join_all(udp.into_iter().map(|u| self.clone().serve_udp(u)));
        let tcp_server = async {
            if has_tcp {
                server.block_until_done().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            r = udp_loops => r.map(drop).map_err(DnsError::Udp),
            r = tcp_server => r.map_err(DnsError::Tcp),
        }
    }
}

/// The UDP path of one receive loop: the answer cache, then the full path.
pub struct UdpPath {
    dns: Arc<ClusterDns>,
    cache: cache::AnswerCache,
    key: Vec<u8>,
    out: Vec<u8>,
}

enum UdpOut<'a> {
    Send(&'a [u8]),
    Forward(Box<Request>),
    Nothing,
}

impl UdpPath {
    pub fn new(dns: Arc<ClusterDns>) -> Self {
        UdpPath {
            dns,
            cache: cache::AnswerCache::default(),
            key: Vec::new(),
            out: Vec::new(),
        }
    }

    fn handle(&mut self, raw: &[u8]) -> UdpOut<'_> {
        let zone = self.dns.zone();
        self.cache.for_zone(&zone);
        let q = cache::question(raw, &mut self.key);
        if let Some(q) = &q {
            if self.cache.answer(raw, &self.key, q, &mut self.out) {
                self.dns.metrics.cache_hit();
                return UdpOut::Send(&self.out);
            }
        }
        match self.dns.respond_in(&zone, raw, true) {
            Out::Bytes(b) => {
                if let Some(q) = &q {
                    self.cache.insert(raw, &self.key, q, &b);
                }
                self.out = b;
                UdpOut::Send(&self.out)
            }
            Out::Forward(request) => UdpOut::Forward(request),
            Out::Nothing => UdpOut::Nothing,
        }
    }

    /// What the server sends back for a UDP datagram, as the receive loop computes it (answer
    /// cache included); None when it sends nothing or the query goes to an upstream. No
    /// sockets: for tests and fuzzing.
    pub fn answer(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        match self.handle(raw) {
            UdpOut::Send(b) => Some(b.to_vec()),
            _ => None,
        }
    }
}

/// The answer, authority and additional records of an upstream's reply (none without one).
fn sections(reply: &Option<Message>) -> (&[Record], &[Record], &[Record]) {
    match reply {
        Some(r) => (&r.answers, &r.authorities, &r.additionals),
        None => (&[], &[], &[]),
    }
}

/// The hickory-server request handler (the TCP path).
pub struct Handler(Arc<ClusterDns>);

fn failed(meta: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header {
        metadata: meta,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let zone = self.0.zone();
        match self.0.decide(&zone, request) {
            Decision::Respond(p) => {
                let meta = p.meta;
                self.0
                    .metrics
                    .answered_code(metrics::Protocol::Tcp, u16::from(meta.response_code));
                let msg = builder.build(
                    meta,
                    p.answers.iter(),
                    None::<&Record>,
                    p.soa,
                    p.additionals.iter(),
                );
                response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| failed(meta))
            }
            Decision::Forward => {
                let (meta, reply) = self.0.relay(request).await;
                self.0
                    .metrics
                    .answered_code(metrics::Protocol::Tcp, u16::from(meta.response_code));
                let (answers, authorities, additionals) = sections(&reply);
                let msg = builder.build(
                    meta,
                    answers.iter(),
                    authorities.iter(),
                    None::<&Record>,
                    additionals.iter(),
                );
                response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| failed(meta))
            }
        }
    }
}

/// The upstreams a resolv.conf names (port 53), as CoreDNS's `forward . /etc/resolv.conf` uses
/// them, and the ones left out: this server's own address, which would forward to itself in a
/// loop (what CoreDNS's `loop` plugin detects).
pub fn upstreams_from_resolv_conf(
    text: &str,
    listen: SocketAddr,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let conf = podnet_model::resolv::ResolvConf::parse(text);
    conf.nameservers
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .partition(|up| {
            let ours = listen.port() == 53
                && (up.ip() == listen.ip()
                    || (listen.ip().is_unspecified() && up.ip().is_loopback()));
            !ours
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_come_from_resolv_conf_without_ourselves() {
        let text = "# the node's\nnameserver 192.0.2.53\nnameserver 127.0.0.53 # resolved\nsearch example.org\nnameserver 2001:db8::53\n";
        let (up, skipped) = upstreams_from_resolv_conf(text, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(
            up,
            ["192.0.2.53:53", "127.0.0.53:53", "[2001:db8::53]:53"]
                .map(|s| s.parse::<SocketAddr>().unwrap())
        );
        assert!(skipped.is_empty());
        let (up, skipped) = upstreams_from_resolv_conf(text, "0.0.0.0:53".parse().unwrap());
        assert_eq!(up.len(), 2);
        assert_eq!(skipped, ["127.0.0.53:53".parse::<SocketAddr>().unwrap()]);
        let (up, skipped) = upstreams_from_resolv_conf(text, "192.0.2.53:53".parse().unwrap());
        assert_eq!(up.len(), 2);
        assert_eq!(skipped, ["192.0.2.53:53".parse::<SocketAddr>().unwrap()]);
    }
}
