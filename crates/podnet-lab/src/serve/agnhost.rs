//! The test servers, like upstream's agnhost: one listener per port of a pod.
//!
//! - TCP: HTTP (on port 3001 cleartext HTTP/2, as upstream's echo-basic). `/hostname` → the pod's name (a hostNetwork pod's is its node's, as the
//!   host's UTS namespace makes it on a cluster); `/clientip` → the peer's `ip:port`;
//!   `/echo?msg=M` → `M`; any other path → JSON as upstream's conformance echo server
//!   answers (`path`, `host`, `method`, `proto`, `headers`, `namespace`, `pod`, and `service`
//!   from the container's `SERVICE_NAME`), with `node` and `clientIP`.
//! - UDP: `hostname` → the same hostname; `echo M` → `M`; `clientip` → the peer's `ip:port`;
//!   anything else → the hostname.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::bind::{bind_in, Bound, PortKey};
use super::http;
use super::{grpcecho, tcpecho};
use crate::plan::PodPlan;
use crate::LabError;
use podnet_model::Protocol;
use tokio::sync::Semaphore;

#[derive(Debug)]
struct PodInfo {
    name: String,
    /// What `hostname` answers: the pod's name, or its node's for a hostNetwork pod.
    hostname: String,
    namespace: String,
    node: String,
    env: std::collections::BTreeMap<String, String>,
    /// `/retry/`'s requests by `uuid` (at most [`RETRY_KEYS`]).
    retries: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Where the server's lines go (the pod's log, as `kubectl logs` reads it).
    logs: podnet_api::logs::PodLogs,
}

/// The port a test server speaks cleartext HTTP/2 on (prior knowledge; HTTP/1 is answered
/// 400), as upstream's echo server (echo-basic) does.
pub const H2C_PORT: u16 = 3001;

/// How many `/retry/` uuids a pod's server remembers (then it forgets them all).
const RETRY_KEYS: usize = 10_000;

/// Binds `ports` of a pod and spawns a server on each; returns their tasks by port.
pub fn start(
    pod: &PodPlan,
    ports: &[(u16, Protocol)],
    budget: &Arc<Semaphore>,
    logs: &podnet_api::logs::PodLogs,
) -> Result<Vec<(PortKey, JoinHandle<()>)>, LabError> {
    let info = Arc::new(PodInfo {
        name: pod.name.clone(),
        hostname: if pod.host_network {
            pod.node.clone()
        } else {
            pod.name.clone()
        },
        namespace: pod.namespace.clone(),
        node: pod.node.clone(),
        env: pod.echo_env.clone(),
        retries: Default::default(),
        logs: logs.clone(),
    });
    // Upstream's echo server as its TCP server (TCP_ECHO_SERVER): the line protocol, TLS on
    // 8443 when the pod has a certificate.
    let tcp_echo = pod.echo_env.contains_key("TCP_ECHO_SERVER");
    let grpc_echo = pod.echo_env.contains_key("GRPC_ECHO_SERVER");
    let grpc_context = Arc::new(grpcecho::Context {
        namespace: pod.namespace.clone(),
        ingress: pod
            .echo_env
            .get("INGRESS_NAME")
            .cloned()
            .unwrap_or_default(),
        service_name: pod
            .echo_env
            .get("SERVICE_NAME")
            .cloned()
            .unwrap_or_default(),
        pod: pod.name.clone(),
    });
    let tls = pod.serving_cert.as_ref().and_then(|(c, k)| {
        let config = tcpecho::tls_config(c, k);
        if config.is_none() {
            logs.line(
                &pod.namespace,
                &pod.name,
                "TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY are not a certificate and its key: no TLS"
                    .to_string(),
            );
        }
        config
    });
    // HTTPS with ALPN: HTTP/2 when the client asks; with TLS_CLIENT_CACERTS, asking clients
    // for a certificate.
    let https = tls.as_ref().and_then(|t| {
        let base = match (&pod.client_ca, &pod.serving_cert) {
            (Some(ca), Some((c, k))) => tcpecho::tls_config_with_clients(c, k, ca)?,
            _ => t.clone(),
        };
        let mut c = (*base).clone();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(Arc::new(c))
    });
    let context = |port: u16| {
        Arc::new(tcpecho::Context {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            service: pod
                .echo_env
                .get("SERVICE_NAME")
                .cloned()
                .unwrap_or_default(),
            ingress: pod
                .echo_env
                .get("INGRESS_NAME")
                .cloned()
                .unwrap_or_default(),
            tcp_port: port,
        })
    };
    Ok(bind_in(&pod.netns, &pod.key().to_string(), ports)?
        .into_iter()
        .map(|(at, b)| match b {
            Bound::Tcp(l) if grpc_echo => (
                at,
                tokio::spawn(grpcecho::serve(
                    l,
                    grpc_context.clone(),
                    tls.clone().filter(|_| at.0 == tcpecho::TLS_PORT),
                    Some(budget.clone()),
                )),
            ),
            Bound::Tcp(l) if tcp_echo => (
                at,
                tokio::spawn(tcpecho::serve(
                    l,
                    context(at.0),
                    tls.clone().filter(|_| at.0 == tcpecho::TLS_PORT),
                    Some(budget.clone()),
                )),
            ),
            // Upstream's echo server speaks cleartext HTTP/2 on 3001.
            // Upstream's echo server speaks HTTPS on 8443 when it has a certificate.
            Bound::Tcp(l) if at.0 == tcpecho::TLS_PORT && https.is_some() => (
                at,
                tokio::spawn(http::serve_https(
                    l,
                    handler(info.clone()),
                    https.clone().expect("checked"),
                    Some(budget.clone()),
                )),
            ),
            Bound::Tcp(l) if at.0 == H2C_PORT => (
                at,
                tokio::spawn(http::serve_h2c(
                    l,
                    handler(info.clone()),
                    Some(budget.clone()),
                )),
            ),
            Bound::Tcp(l) => (
                at,
                tokio::spawn(http::serve(l, handler(info.clone()), Some(budget.clone()))),
            ),
            Bound::Udp(s) => (at, tokio::spawn(serve_udp(s, info.clone()))),
        })
        .collect())
}

/// The HTTP answer of a pod's test server. Beyond agnhost's paths, what upstream's Gateway
/// API echo server (echo-basic) does:
/// - `X-Echo-Set-Header: Name:value,Name2:value2`: each pair a header of the answer;
/// - `?delay=D` (a Go duration: `1s`, `500ms`): the answer waits that long;
/// - `/status/NNN`: that status;
/// - `/retry/...?uuid=U&succeedAfter=N[&responseCode=C][&delayRetry=D]`: the first N requests
///   with that uuid fail, with status C, else with the connection reset; each waits D first.
fn respond(req: &Request<Incoming>, info: &PodInfo, peer: SocketAddr) -> http::Reply {
    let query = req.uri().query().unwrap_or("");
    let path = req.uri().path();
    if path.starts_with("/retry/") || path == "/retry" {
        let uuid = query_param(query, "uuid").unwrap_or_default();
        let after: u32 = query_param(query, "succeedAfter")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let seen = {
            let mut m = info.retries.lock().expect("not poisoned");
            if m.len() >= RETRY_KEYS && !m.contains_key(&uuid) {
                m.clear();
            }
            let n = m.entry(uuid).or_default();
            *n += 1;
            *n
        };
        if seen <= after {
            let wait = query_param(query, "delayRetry").and_then(|d| go_duration(&d));
            let code = query_param(query, "responseCode")
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| hyper::StatusCode::from_u16(c).ok());
            return match (code, wait) {
                (Some(code), wait) => {
                    let mut r = Response::new(Full::new(Bytes::from("failing on purpose\n")));
                    *r.status_mut() = code;
                    match wait {
                        Some(d) => http::Reply::After(d, r),
                        None => r.into(),
                    }
                }
                (None, _) => http::Reply::Reset,
            };
        }
    }
    let (body, kind) = match path {
        "/hostname" => (info.hostname.clone(), "text/plain; charset=utf-8"),
        "/clientip" => (peer.to_string(), "text/plain; charset=utf-8"),
        "/echo" => (
            query_param(query, "msg").unwrap_or_default(),
            "text/plain; charset=utf-8",
        ),
        _ => {
            // As upstream's echo server logs each request it echoes (the mirror tests read
            // these lines).
            info.logs.line(
                &info.namespace,
                &info.name,
                format!(
                    "Echoing back request made to {} to client ({peer})",
                    req.uri().path_and_query().map_or("/", |p| p.as_str())
                ),
            );
            (echo(req, info, peer), "application/json")
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| hyper::StatusCode::from_u16(c).ok())
    {
        *r.status_mut() = code;
    }
    for v in req.headers().get_all("x-echo-set-header") {
        for pair in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let Some((name, value)) = pair.split_once(':') else {
                continue;
            };
            if let (Ok(n), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
                hyper::header::HeaderValue::from_str(value.trim()),
            ) {
                r.headers_mut().append(n, v);
            }
        }
    }
    match query_param(query, "delay").and_then(|d| go_duration(&d)) {
        Some(d) => http::Reply::After(d.min(MAX_DELAY), r),
        None => r.into(),
    }
}

/// The longest `?delay=` a test server waits.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

/// A Go duration (`1s`, `500ms`, `1m30s`, `1.5s`; units ns, us, µs, ms, s, m, h).
pub fn go_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

/// What upstream's conformance echo server answers: the request as the pod saw it.
fn echo(req: &Request<Incoming>, info: &PodInfo, peer: SocketAddr) -> String {
    let mut headers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in req.headers() {
        headers
            .entry(canonical(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let proto = match req.version() {
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut v = serde_json::json!({
        // The raw request URI, with its query, as upstream's echo server gives it.
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "host": host,
        "method": req.method().as_str(),
        "proto": proto,
        "headers": headers,
        "namespace": info.namespace,
        "pod": info.name,
        "service": info.env.get("SERVICE_NAME").cloned().unwrap_or_default(),
        "ingress": info.env.get("INGRESS_NAME").cloned().unwrap_or_default(),
        "node": info.node,
        "clientIP": peer.to_string(),
    });
    if let Some(t) = req.extensions().get::<http::TlsInfo>() {
        v["tls"] = t.0.clone();
    }
    v.to_string()
}

/// A header name as Go writes it (`x-forwarded-for` → `X-Forwarded-For`).
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn handler(info: Arc<PodInfo>) -> http::Handler {
    Arc::new(move |req, peer| respond(req, &info, peer))
}

async fn serve_udp(s: tokio::net::UdpSocket, info: Arc<PodInfo>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer)) = s.recv_from(&mut buf).await else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let reply = if let Some(rest) = msg.strip_prefix("echo ") {
            rest.to_string()
        } else if msg == "clientip" {
            SocketAddr::new(peer.ip().to_canonical(), peer.port()).to_string()
        } else {
            info.hostname.clone()
        };
        let _ = s.send_to(reply.as_bytes(), peer).await;
    }
}

/// A query parameter, percent-decoded (`+` is a space), as Go's `FormValue` reads it; bytes
/// that are not UTF-8 after decoding are replaced.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Serves one HTTP/1 connection whose client sends `input` and then closes its side; returns
/// what the server wrote back. For tests and fuzzing: the same service as a pod's server.
pub fn serve_bytes(input: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let info = Arc::new(PodInfo {
            name: "fuzz".into(),
            hostname: "fuzz".into(),
            namespace: "default".into(),
            node: "node-0".into(),
            env: Default::default(),
            retries: Default::default(),
            logs: Default::default(),
        });
        let peer: SocketAddr = ([10, 244, 0, 2], 40000).into();
        // The servers' own configuration; the client closes its side once it has sent
        // everything, and the server still answers.
        let mut b = http::builder();
        b.half_close(true);
        podnet_ingress::server::exchange(input, |server| async move {
            http::connection(TokioIo::new(server), handler(info), peer, &b, None).await
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, defect 10: a percent escape followed by a multi-byte character panicked the
    /// server (`GET /echo?msg=%a\xc3\xa9`).
    #[test]
    fn a_broken_escape_before_a_multibyte_character_is_answered() {
        assert_eq!(
            query_param("msg=%a\u{e9}", "msg").as_deref(),
            Some("%a\u{e9}")
        );
        let out = serve_bytes(b"GET /echo?msg=%a\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 "), "{text}");
    }

    proptest::proptest! {
        /// No request panics the test server; a well-formed one always gets an answer, and
        /// /echo gives back what it was sent.
        #[test]
        fn no_request_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                             msg in "[ -~]{0,40}") {
            let _ = serve_bytes(&raw);
            let q: String = form_urlencoded::byte_serialize(msg.as_bytes()).collect();
            let out = serve_bytes(format!("GET /echo?msg={q} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            let text = String::from_utf8_lossy(&out);
            proptest::prop_assert!(text.starts_with("HTTP/1.1 200"), "{}", text);
            proptest::prop_assert!(text.ends_with(&msg), "{}", text);
        }
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration("s"), None);
        assert_eq!(go_duration("1d"), None);
    }

    #[test]
    fn status_set_headers_and_retries() {
        let out = serve_bytes(
            b"GET /status/418 HTTP/1.1\r\nHost: x\r\nX-Echo-Set-Header: A:1,B: two\r\n\r\n",
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 418"), "{text}");
        assert!(
            text.contains("a: 1\r\n") && text.contains("b: two\r\n"),
            "{text}"
        );
        let req = b"GET /retry/x?uuid=u1&succeedAfter=1&responseCode=503 HTTP/1.1\r\nHost: x\r\n\r\nGET /retry/x?uuid=u1&succeedAfter=1&responseCode=503 HTTP/1.1\r\nHost: x\r\n\r\n";
        let text = String::from_utf8_lossy(&serve_bytes(req)).into_owned();
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
        assert!(text.contains(r#""path":"/retry/x?uuid=u1"#), "{text}");
        // Without a code: no answer at all.
        let text = serve_bytes(b"GET /retry/x?uuid=u2&succeedAfter=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text.is_empty(), "{}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn echo_parameter() {
        assert_eq!(
            query_param("msg=hello+world%21", "msg").as_deref(),
            Some("hello world!")
        );
        assert_eq!(query_param("a=1&msg=x", "msg").as_deref(), Some("x"));
        assert_eq!(query_param("a=1", "msg"), None);
        assert_eq!(query_param("msg=100%", "msg").as_deref(), Some("100%"));
    }
}
