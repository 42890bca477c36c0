//! The gRPC server of upstream's echo server (echo-basic with `GRPC_ECHO_SERVER`), for the
//! GRPCRoute tests: service `gateway_api_conformance.echo_basic.grpcecho.GrpcEcho`, whose
//! `Echo` and `EchoTwo` answer what the call looked like (`Assertions`: the method, the
//! metadata, the authority, the pod, the TLS) and whose `EchoThree` (and any other method) is
//! UNIMPLEMENTED. Cleartext HTTP/2 on every port but 8443, which speaks TLS (ALPN h2) when
//! the pod has a serving certificate. The messages are upstream's `grpcecho.proto`'s, as
//! prost types.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::sync::Semaphore;

/// The service's full name.
pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

#[derive(Clone, PartialEq, Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Context {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub ingress: String,
    #[prost(string, tag = "3")]
    pub service_name: String,
    #[prost(string, tag = "4")]
    pub pod: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct TlsAssertions {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub negotiated_protocol: String,
    #[prost(string, tag = "3")]
    pub server_name: String,
    #[prost(string, tag = "4")]
    pub cipher_suite: String,
    #[prost(string, repeated, tag = "5")]
    pub peer_certificates: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Assertions {
    #[prost(string, tag = "1")]
    pub fully_qualified_method: String,
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<Header>,
    #[prost(string, tag = "3")]
    pub authority: String,
    #[prost(message, optional, tag = "4")]
    pub context: Option<Context>,
    #[prost(message, optional, tag = "5")]
    pub tls_assertions: Option<TlsAssertions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EchoRequest {}

#[derive(Clone, PartialEq, Message)]
pub struct EchoResponse {
    #[prost(message, optional, tag = "1")]
    pub assertions: Option<Assertions>,
    #[prost(message, optional, tag = "2")]
    pub request: Option<EchoRequest>,
}

/// A message as gRPC frames it: not compressed, its length (big-endian), its bytes.
pub fn frame(m: &impl Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The first message of a gRPC body (None: not a whole uncompressed frame).
pub fn unframe<M: Message + Default>(body: &[u8]) -> Option<M> {
    let (head, rest) = body.split_at_checked(5)?;
    if head[0] != 0 {
        return None;
    }
    let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    M::decode(rest.get(..n)?).ok()
}

type GrpcBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Serves gRPC on `l` until the task is aborted; with `tls`, over TLS.
pub async fn serve(
    l: tokio::net::TcpListener,
    ctx: Arc<Context>,
    tls: Option<Arc<rustls::ServerConfig>>,
    budget: Option<Arc<Semaphore>>,
) {
    let acceptor = tls.map(|t| {
        let mut c = (*t).clone();
        c.alpn_protocols = vec![b"h2".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(c))
    });
    let accepting = super::http::Accepting::new(l, budget);
    while let Some((s, _, held)) = accepting.next().await {
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _held = held;
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let life = super::http::CONNECTION_LIFETIME;
            match acceptor {
                Some(a) => {
                    let hs = tokio::time::timeout(super::http::HEADER_READ_TIMEOUT, a.accept(s));
                    let Ok(Ok(t)) = hs.await else { return };
                    let tls = tls_assertions(t.get_ref().1);
                    let svc = hyper::service::service_fn(move |req| {
                        call(req, ctx.clone(), Some(tls.clone()))
                    });
                    let _ =
                        tokio::time::timeout(life, builder.serve_connection(TokioIo::new(t), svc))
                            .await;
                }
                None => {
                    let svc = hyper::service::service_fn(move |req| call(req, ctx.clone(), None));
                    let _ =
                        tokio::time::timeout(life, builder.serve_connection(TokioIo::new(s), svc))
                            .await;
                }
            }
        });
    }
}

fn tls_assertions(c: &rustls::ServerConnection) -> TlsAssertions {
    TlsAssertions {
        version: match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            _ => String::new(),
        },
        negotiated_protocol: c
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        server_name: c.server_name().unwrap_or_default().to_string(),
        cipher_suite: c
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        peer_certificates: Vec::new(),
    }
}

/// One call: its request read whole, then the answer (a message and `grpc-status: 0`, or
/// UNIMPLEMENTED with no message).
async fn call(
    req: Request<Incoming>,
    ctx: Arc<Context>,
    tls: Option<TlsAssertions>,
) -> Result<Response<GrpcBody>, Infallible> {
    let path = req.uri().path().to_string();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let headers: Vec<Header> = req
        .headers()
        .iter()
        .filter(|(k, _)| !k.as_str().starts_with("grpc-") && k.as_str() != "te")
        .map(|(k, v)| Header {
            key: k.as_str().to_string(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect();
    let _ = req.into_body().collect().await;
    let implemented = [format!("/{SERVICE}/Echo"), format!("/{SERVICE}/EchoTwo")];
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
    let mut trailers = hyper::HeaderMap::new();
    if implemented.contains(&path) {
        let resp = EchoResponse {
            assertions: Some(Assertions {
                fully_qualified_method: path,
                headers,
                authority,
                context: Some((*ctx).clone()),
                tls_assertions: tls,
            }),
            request: Some(EchoRequest {}),
        };
        frames.push(Ok(Frame::data(Bytes::from(frame(&resp)))));
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    } else {
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("12"));
        trailers.insert(
            "grpc-message",
            hyper::header::HeaderValue::from_static("unknown method"),
        );
    }
    frames.push(Ok(Frame::trailers(trailers)));
    let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/grpc"),
    );
    Ok(r)
}
