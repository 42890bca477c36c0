//! podnet's cluster DNS server.
//!
//! It is authoritative for the cluster domain and answers exactly what
//! [`podnet_model::dns::DnsZone::lookup`] says, so the server and `podnet check --dns` agree by
//! construction; this crate only moves those answers on and off the wire with hickory-server
//! (UDP and TCP, EDNS, truncation to the client's buffer with TC set).
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
use hickory_proto::serialize::binary::{BinDecodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use podnet_model::dns::{self as model, DnsRecord, DnsZone, Lookup, RType, Rcode};

mod forward;

pub use hickory_server::Server;

/// The largest UDP response we send to an EDNS client (the DNS Flag Day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("record {record}: {why}")]
    Record { record: String, why: String },
    #[error("{0}")]
    Io(String),
}

/// A zone ready to serve: the model's zone and the same records as hickory records.
pub struct Zone {
    model: DnsZone,
    records: Vec<Record>,
}

fn name(s: &str) -> Result<Name, String> {
    Name::from_ascii(s).map_err(|e| e.to_string())
}

fn to_record(r: &DnsRecord) -> Result<Record, DnsError> {
    let err = |why: String| DnsError::Record {
        record: r.to_string(),
        why,
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
        let records = model
            .records
            .iter()
            .map(to_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Zone { model, records })
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
}

impl ClusterDns {
    pub fn new(zone: DnsZone, upstreams: Vec<SocketAddr>) -> Result<Self, DnsError> {
        Ok(ClusterDns {
            zone: RwLock::new(Arc::new(Zone::new(zone)?)),
            upstreams,
            timeout: Duration::from_secs(2),
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

    /// A hickory-server [`Server`] for this state, on the given sockets.
    pub fn server(
        self: &Arc<Self>,
        udp: Vec<tokio::net::UdpSocket>,
        tcp: Vec<tokio::net::TcpListener>,
    ) -> Server<Handler> {
        let mut s = Server::new(Handler(self.clone()));
        for u in udp {
            s.register_socket(u);
        }
        for t in tcp {
            s.register_listener(t, Duration::from_secs(10), 64);
        }
        s
    }

    /// Answers one raw query the way the server does over `protocol` (UDP limits the size), and
    /// returns the encoded response; None when the server sends nothing (not a parseable query
    /// header, or a response). For tests and fuzzing: no sockets involved.
    pub async fn answer_bytes(self: &Arc<Self>, raw: &[u8], udp: bool) -> Option<Vec<u8>> {
        let src: SocketAddr = ([127, 0, 0, 1], 53000).into();
        let protocol = if udp {
            hickory_server::net::xfer::Protocol::Udp
        } else {
            hickory_server::net::xfer::Protocol::Tcp
        };
        let request = match Request::from_bytes(raw.to_vec(), src, protocol) {
            Ok(r) => r,
            Err(_) => {
                // As the server does: a readable header gets FORMERR, anything shorter nothing.
                let header =
                    Header::read(&mut hickory_proto::serialize::binary::BinDecoder::new(raw))
                        .ok()?;
                if header.metadata.message_type == MessageType::Response {
                    return None;
                }
                let mut m = Message::error_msg(
                    header.metadata.id,
                    header.metadata.op_code,
                    ResponseCode::FormErr,
                );
                m.metadata.message_type = MessageType::Response;
                return m.to_vec().ok();
            }
        };
        if request.metadata.message_type == MessageType::Response {
            return None;
        }
        let out = Capture {
            buf: Arc::new(std::sync::Mutex::new(None)),
            max: if udp { None } else { Some(u16::MAX) },
        };
        Handler(self.clone())
            .handle_request::<_, hickory_server::net::runtime::TokioTime>(&request, out.clone())
            .await;
        let got = out.buf.lock().expect("not poisoned").take();
        got
    }
}

/// Encodes a response into a buffer instead of a socket.
#[derive(Clone)]
struct Capture {
    buf: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    /// None: UDP rules (512, or the EDNS size).
    max: Option<u16>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let max = self
            .max
            .unwrap_or_else(|| response.edns().map_or(512, |e| e.max_payload()));
        let mut bytes = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut bytes);
        enc.set_max_size(max);
        let info = response.destructive_emit(&mut enc)?;
        *self.buf.lock().expect("not poisoned") = Some(bytes);
        Ok(info)
    }
}

/// The hickory-server request handler.
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
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = !self.0.upstreams.is_empty();
        // RFC 6891 7: a response to an EDNS query carries an OPT record.
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            r
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let send_error = |code: ResponseCode, mut meta: Metadata| {
            meta.response_code = code;
            meta
        };
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3: BADVERS for an EDNS version we don't implement.
            let m = send_error(ResponseCode::BADVERS, meta);
            return response
                .send_response(builder.build_no_records(m))
                .await
                .unwrap_or_else(|_| failed(m));
        }
        let queries = request.queries.queries();
        let q = match (request.metadata.op_code, queries) {
            (OpCode::Query, [q]) => q,
            (OpCode::Query, _) => {
                let m = send_error(ResponseCode::FormErr, meta);
                return response
                    .send_response(builder.build_no_records(m))
                    .await
                    .unwrap_or_else(|_| failed(m));
            }
            _ => {
                let m = send_error(ResponseCode::NotImp, meta);
                return response
                    .send_response(builder.build_no_records(m))
                    .await
                    .unwrap_or_else(|_| failed(m));
            }
        };
        let zone = self.0.zone();
        let qname = q.name().to_string();
        let qname = if qname.ends_with('.') {
            qname
        } else {
            format!("{qname}.")
        };
        let lookup = if q.query_class() == DNSClass::IN || q.query_class() == DNSClass::ANY {
            zone.model
                .lookup(&qname, RType::from_code(u16::from(q.query_type())))
        } else {
            Lookup::Outside
        };
        match lookup {
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
                let mut made = Vec::new();
                let mut zone_answers = Vec::new();
                for a in &answer {
                    match a {
                        model::Answered::Zone(i) => zone_answers.push(*i),
                        model::Answered::Synthesized(r) => match to_record(r) {
                            Ok(rec) => made.push(rec),
                            Err(_) => continue,
                        },
                    }
                }
                let soa = if answer.is_empty() {
                    Some(&zone.records[zone.model.soa_index()])
                } else {
                    None
                };
                let answers = zone_answers
                    .iter()
                    .map(|&i| &zone.records[i])
                    .chain(made.iter());
                let additionals = additional.iter().map(|&i| &zone.records[i]);
                let msg = builder.build(meta, answers, None, soa, additionals);
                response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| failed(meta))
            }
            Lookup::Outside => {
                if self.0.upstreams.is_empty() {
                    let m = send_error(ResponseCode::Refused, meta);
                    return response
                        .send_response(builder.build_no_records(m))
                        .await
                        .unwrap_or_else(|_| failed(m));
                }
                match forward::relay(&self.0.upstreams, request.as_slice(), self.0.timeout).await {
                    Some(reply) => {
                        meta.response_code = reply.metadata.response_code;
                        meta.authoritative = false;
                        let msg = builder.build(
                            meta,
                            reply.answers.iter(),
                            reply.authorities.iter(),
                            None,
                            reply.additionals.iter(),
                        );
                        response
                            .send_response(msg)
                            .await
                            .unwrap_or_else(|_| failed(meta))
                    }
                    None => {
                        let m = send_error(ResponseCode::ServFail, meta);
                        response
                            .send_response(builder.build_no_records(m))
                            .await
                            .unwrap_or_else(|_| failed(m))
                    }
                }
            }
        }
    }
}
