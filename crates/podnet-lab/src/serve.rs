//! The built-in test servers, like upstream's agnhost: one listener per declared containerPort
//! of every pod, all held by one process.
//!
//! A socket stays in the namespace it was created in, so each pod's sockets are bound on a
//! fresh thread that has entered the pod's namespace; then one tokio runtime serves them all.
//!
//! - TCP: HTTP. `/hostname` → the pod's name; `/clientip` → the peer's `ip:port`;
//!   `/echo?msg=M` → `M`; any other path → `{"pod","namespace","node","clientIP"}`.
//! - UDP: `hostname` → the pod's name; `echo M` → `M`; `clientip` → the peer's `ip:port`;
//!   anything else → the pod's name.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nix::sched::{setns, CloneFlags};

use crate::plan::PodPlan;
use crate::{LabError, LabState};

#[derive(Debug)]
struct PodInfo {
    name: String,
    namespace: String,
    node: String,
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Binds every port of a pod inside its namespace.
fn bind_pod(pod: &PodPlan) -> Result<Vec<Bound>, LabError> {
    let path = crate::net::netns_path(&pod.netns);
    let file = std::fs::File::open(&path).map_err(|e| LabError::Io(format!("{path}: {e}")))?;
    let ports = pod.ports.clone();
    let who = format!("{}/{}", pod.namespace, pod.name);
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::Io(format!("entering {path}: {e}")))?;
        let mut out = Vec::new();
        for p in ports {
            let addr = SocketAddr::from(([0, 0, 0, 0], p.port));
            let b = match p.protocol.as_str() {
                "TCP" => std::net::TcpListener::bind(addr).map(Bound::Tcp),
                "UDP" => std::net::UdpSocket::bind(addr).map(Bound::Udp),
                other => {
                    eprintln!(
                        "{who}: {other} port {}: this kernel has no {other} sockets; not served",
                        p.port
                    );
                    continue;
                }
            };
            match b {
                Ok(b) => out.push(b),
                Err(e) => eprintln!("{who}: {} port {}: {e}", p.protocol, p.port),
            }
        }
        Ok(out)
    })
    .join()
    .map_err(|_| LabError::Io("a bind thread panicked".into()))?
}

/// Binds a DNS pod's port 53 (UDP and TCP) and runs the cluster DNS server on it.
fn start_dns_pod(
    pod: &PodPlan,
    dns: &Arc<podnet_dns::ClusterDns>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, LabError> {
    let e = |e: std::io::Error| LabError::Io(e.to_string());
    let (mut udp, mut tcp) = (Vec::new(), Vec::new());
    for b in bind_pod(pod)? {
        match b {
            Bound::Udp(s) => {
                s.set_nonblocking(true).map_err(e)?;
                udp.push(tokio::net::UdpSocket::from_std(s).map_err(e)?);
            }
            Bound::Tcp(l) => {
                l.set_nonblocking(true).map_err(e)?;
                tcp.push(tokio::net::TcpListener::from_std(l).map_err(e)?);
            }
        }
    }
    let who = format!("{}/{}", pod.namespace, pod.name);
    let dns = dns.clone();
    Ok(vec![tokio::spawn(async move {
        if let Err(e) = dns.run(udp, tcp).await {
            eprintln!("{who}: DNS server stopped: {e}");
        }
    })])
}

/// Binds a pod's sockets and spawns its servers; returns their tasks.
fn start_pod(pod: &PodPlan) -> Result<Vec<tokio::task::JoinHandle<()>>, LabError> {
    let info = Arc::new(PodInfo {
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        node: pod.node.clone(),
    });
    let mut tasks = Vec::new();
    for b in bind_pod(pod)? {
        match b {
            Bound::Tcp(l) => {
                l.set_nonblocking(true)
                    .map_err(|e| LabError::Io(e.to_string()))?;
                let l = tokio::net::TcpListener::from_std(l)
                    .map_err(|e| LabError::Io(e.to_string()))?;
                tasks.push(tokio::spawn(serve_tcp(l, info.clone())));
            }
            Bound::Udp(s) => {
                s.set_nonblocking(true)
                    .map_err(|e| LabError::Io(e.to_string()))?;
                let s =
                    tokio::net::UdpSocket::from_std(s).map_err(|e| LabError::Io(e.to_string()))?;
                tasks.push(tokio::spawn(serve_udp(s, info.clone())));
            }
        }
    }
    Ok(tasks)
}

/// A health check's current answer, shared with its server task.
type SharedCheck = Arc<std::sync::Mutex<crate::HealthCheck>>;

/// The running servers: per pod, and per health check (node, port).
#[derive(Default)]
struct Running {
    pods: HashMap<String, (PodPlan, Vec<tokio::task::JoinHandle<()>>)>,
    health: HashMap<(String, u16), (SharedCheck, tokio::task::JoinHandle<()>)>,
    /// The cluster DNS state all DNS pods share.
    dns: Option<Arc<podnet_dns::ClusterDns>>,
}

/// Brings the running servers in line with `st`: new pods get theirs, removed pods lose theirs,
/// the others are not touched; health checks follow the same way, their counts updated in place.
fn reconcile(st: &LabState, running: &mut Running) -> Result<(), LabError> {
    // The zone first, so that DNS pods started below serve the new one.
    if let Some(stored) = &st.dns {
        let zone = podnet_model::dns::DnsZone::from_stored(stored.clone()).map_err(LabError::Io)?;
        match &running.dns {
            Some(d) => d.set_zone(zone).map_err(|e| LabError::Io(e.to_string()))?,
            None => {
                // No upstreams: the lab has no path out, so other names are refused at once.
                let d = podnet_dns::ClusterDns::new(zone, vec![])
                    .map_err(|e| LabError::Io(e.to_string()))?;
                running.dns = Some(Arc::new(d));
            }
        }
    }
    let want: HashMap<String, &PodPlan> = st
        .plan
        .pods
        .iter()
        .filter(|p| !p.ports.is_empty())
        .map(|p| (format!("{}/{}", p.namespace, p.name), p))
        .collect();
    running.pods.retain(|k, (plan, tasks)| {
        let keep = want.get(k).is_some_and(|p| **p == *plan);
        if !keep {
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
        }
        keep
    });
    for (k, p) in want {
        if let std::collections::hash_map::Entry::Vacant(e) = running.pods.entry(k) {
            let tasks = match (&running.dns, p.dns_server) {
                (Some(dns), true) => start_dns_pod(p, dns)?,
                _ => start_pod(p)?,
            };
            e.insert((p.clone(), tasks));
        }
    }
    let checks: HashMap<(String, u16), &crate::HealthCheck> = st
        .health_checks
        .iter()
        .map(|h| ((h.node.clone(), h.port), h))
        .collect();
    running.health.retain(|k, (_, task)| {
        let keep = checks.contains_key(k);
        if !keep {
            task.abort();
        }
        keep
    });
    for (k, h) in checks {
        match running.health.get(&k) {
            Some((shared, _)) => *shared.lock().expect("not poisoned") = h.clone(),
            None => {
                let Some(node) = st.plan.node(&h.node) else {
                    continue;
                };
                let shared = Arc::new(std::sync::Mutex::new(h.clone()));
                let plan = PodPlan {
                    namespace: h.namespace.clone(),
                    name: format!("healthz-{}", h.port),
                    node: h.node.clone(),
                    netns: node.ns.clone(),
                    host_network: true,
                    container_id: String::new(),
                    planned_ip: None,
                    ports: vec![crate::plan::PortPlan {
                        port: h.port,
                        protocol: "TCP".into(),
                    }],
                    ready: true,
                    dns_server: false,
                    resolv_conf: String::new(),
                    hosts: String::new(),
                };
                for b in bind_pod(&plan)? {
                    if let Bound::Tcp(l) = b {
                        l.set_nonblocking(true)
                            .map_err(|e| LabError::Io(e.to_string()))?;
                        let l = tokio::net::TcpListener::from_std(l)
                            .map_err(|e| LabError::Io(e.to_string()))?;
                        let task = tokio::spawn(serve_health(l, shared.clone()));
                        running.health.insert(k.clone(), (shared.clone(), task));
                    }
                }
            }
        }
    }
    Ok(())
}

/// kube-proxy's service health server: 200 with local endpoints, 503 without.
async fn serve_health(
    l: tokio::net::TcpListener,
    check: Arc<std::sync::Mutex<crate::HealthCheck>>,
) {
    loop {
        let Ok((stream, _)) = l.accept().await else {
            continue;
        };
        let check = check.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let h = check.lock().expect("not poisoned").clone();
                async move {
                    let body = serde_json::json!({"service": {"namespace": h.namespace, "name": h.name}, "localEndpoints": h.local_endpoints, "serviceProxyHealthy": true}).to_string();
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    if h.local_endpoints == 0 {
                        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Runs the servers of a lab until killed. Prints `ready` on stdout once every socket is bound.
/// On SIGHUP it re-reads the lab's state and reconciles, then writes the number of reloads to
/// `serve.gen`.
pub fn run(lab: &str) -> Result<(), LabError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::Io(e.to_string()))?;
    rt.block_on(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| LabError::Io(e.to_string()))?;
        let mut running = Running::default();
        reconcile(&crate::load_state(lab)?, &mut running)?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
        let mut generation = 0u64;
        while hup.recv().await.is_some() {
            generation += 1;
            let start = std::time::Instant::now();
            match crate::load_state(lab).and_then(|st| reconcile(&st, &mut running)) {
                Ok(()) => {
                    eprintln!(
                        "reload {generation}: done in {:.1} ms",
                        start.elapsed().as_secs_f64() * 1e3
                    );
                    let _ = std::fs::write(
                        crate::lab_dir(lab).join("serve.gen"),
                        generation.to_string(),
                    );
                }
                Err(e) => eprintln!("reload {generation}: {e}"),
            }
        }
        Ok(())
    })
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
