//! The test servers, like upstream's agnhost: one listener per port of a pod.
//!
//! - TCP: HTTP. `/hostname` → the pod's name; `/clientip` → the peer's `ip:port`;
//!   `/echo?msg=M` → `M`; any other path → `{"pod","namespace","node","clientIP"}`.
//! - UDP: `hostname` → the pod's name; `echo M` → `M`; `clientip` → the peer's `ip:port`;
//!   anything else → the pod's name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::bind::{bind_in, Bound};
use crate::plan::PodPlan;
use crate::LabError;

#[derive(Debug)]
struct PodInfo {
    name: String,
    namespace: String,
    node: String,
}

/// Binds a pod's ports and spawns its servers; returns their tasks.
pub fn start(pod: &PodPlan) -> Result<Vec<JoinHandle<()>>, LabError> {
    let info = Arc::new(PodInfo {
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        node: pod.node.clone(),
    });
    let ports: Vec<_> = pod.ports.iter().map(|p| (p.port, p.protocol)).collect();
    Ok(bind_in(&pod.netns, &pod.key().to_string(), &ports)?
        .into_iter()
        .map(|b| match b {
            Bound::Tcp(l) => tokio::spawn(serve_tcp(l, info.clone())),
            Bound::Udp(s) => tokio::spawn(serve_udp(s, info.clone())),
        })
        .collect())
}

async fn serve_tcp(l: tokio::net::TcpListener, info: Arc<PodInfo>) {
    loop {
        let Ok((stream, peer)) = l.accept().await else {
            continue;
        };
        let info = info.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| respond(req, info.clone(), peer));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    info: Arc<PodInfo>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/hostname" => info.name.clone(),
        "/clientip" => peer.to_string(),
        "/echo" => query_param(req.uri().query().unwrap_or(""), "msg").unwrap_or_default(),
        _ => serde_json::json!({"pod": info.name, "namespace": info.namespace, "node": info.node, "clientIP": peer.to_string()}).to_string(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
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
            peer.to_string()
        } else {
            info.name.clone()
        };
        let _ = s.send_to(reply.as_bytes(), peer).await;
    }
}

/// A query parameter, percent-decoded (`+` is a space), as Go's `FormValue` reads it.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
