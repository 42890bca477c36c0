//! TLS streams (TLSRoutes) through the proxy on loopback: a connection routed by the SNI name
//! of its ClientHello, passed through to a backend that ends TLS itself or ended by the proxy
//! and sent on in plain; and the hostile ones: a ClientHello split over hundreds of packets,
//! none at all, no SNI name, an unknown name, bytes that are not TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use podnet_ingress::edge::{
    certified_key_pem, EdgeConfig, HostCert, PortConfig, StreamListener, StreamRoute, Upstream,
};
use podnet_ingress::routes::{Backend, BackendPort, HostMatch};
use podnet_ingress::server::{Edge, Settings};
use podnet_model::NsName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

fn cert_for(names: &[&str]) -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

/// An echo server on loopback: every byte back, after `greeting`; over TLS with `tls`.
async fn echo(greeting: &'static str, tls: Option<(String, String)>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    let acceptor = tls.map(|(c, k)| {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            podnet_ingress::crypto_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(t) = a.accept(s).await {
                            serve_echo(t, greeting).await
                        }
                    }
                    None => serve_echo(s, greeting).await,
                }
            });
        }
    });
    at
}

async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, greeting: &str) {
    if s.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn backend(name: &str) -> Backend {
    Backend {
        service: NsName::new("default", name),
        port: BackendPort::Number(443),
    }
}

fn listener(name: &str, host: &str, terminate: bool, to: &str) -> StreamListener {
    StreamListener {
        name: format!("default/gw/{name}"),
        host: HostMatch::gateway(Some(host)),
        terminate,
        routes: vec![StreamRoute {
            route: format!("default/{name}"),
            host: HostMatch::gateway(Some(host)),
            backends: vec![(Some(backend(to)), 1)],
        }],
    }
}

/// A TLS client trusting `ca_pem`, for `name` (an IP address: no SNI name is sent).
fn connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg =
        rustls::ClientConfig::builder_with_provider(Arc::new(podnet_ingress::crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A stream that writes its first `slow` bytes one per write, `gap` apart (TCP_NODELAY: one
/// packet each).
struct Trickle {
    inner: TcpStream,
    slow: usize,
    gap: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.slow == 0 {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if let Some(w) = self.wait.as_mut() {
            if w.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        let one = &buf[..1.min(buf.len())];
        match Pin::new(&mut self.inner).poll_write(cx, one) {
            Poll::Ready(Ok(n)) => {
                self.slow -= n.min(self.slow);
                let gap = self.gap;
                self.wait = Some(Box::pin(tokio::time::sleep(gap)));
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads what a TLS stream sends until `want` bytes came (or it ends).
async fn read_n<S: AsyncRead + Unpin>(s: &mut S, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    let mut n = 0;
    while n < want {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut got[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => n += k,
        }
    }
    got.truncate(n);
    got
}

/// How the proxy ended a connection it refused: EOF (or a reset) before any byte, in time.
async fn refused(at: SocketAddr, send: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
    s.write_all(send).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => Err(format!("answered {:?}", &buf[..n])),
        Err(_) => Err("still open after 5 s".into()),
    }
}

fn counter(edge: &Edge, reason: &str) -> u64 {
    let text = edge.metrics.encode();
    let line = format!("podnet_ingress_streams_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn tls_streams_are_routed_by_sni_whole_or_split_and_refused_cleanly_otherwise() {
    let (pass_crt, pass_key) = cert_for(&["pass.example"]);
    let (term_crt, term_key) = cert_for(&["term.example"]);
    let tls_backend = echo("tls backend\n", Some((pass_crt.clone(), pass_key))).await;
    let plain_backend = echo("plain backend\n", None).await;
    let edge = Edge::new(Settings {
        access_log: false,
        handshake_timeout: Duration::from_secs(2),
        ..Settings::default()
    })
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    let mut config = EdgeConfig::default();
    config.ports.insert(
        at.port(),
        PortConfig {
            streams: vec![
                listener("pass", "pass.example", false, "pass"),
                listener("term", "term.example", true, "term"),
            ],
            ..PortConfig::default()
        },
    );
    config
        .upstreams
        .insert(backend("pass"), Upstream::Ready(vec![tls_backend]));
    config
        .upstreams
        .insert(backend("term"), Upstream::Ready(vec![plain_backend]));
    config.certs.push(HostCert {
        host: HostMatch::gateway(Some("term.example")),
        secret: NsName::new("default", "term"),
        key: certified_key_pem(term_crt.as_bytes(), term_key.as_bytes()).unwrap(),
    });
    edge.set(config);
    tokio::spawn(edge.clone().serve_tls(l, at.port()));

    // Passed through: the client verifies the backend's own certificate.
    let name = ServerName::try_from("pass.example").unwrap();
    let mut t = connector(&pass_crt)
        .connect(name.clone(), TcpStream::connect(at).await.unwrap())
        .await
        .expect("a handshake with the backend, through the proxy");
    assert_eq!(read_n(&mut t, 12).await, b"tls backend\n");
    t.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut t, 4).await, b"ping");
    drop(t);

    // The same, with the ClientHello's first 400 bytes one per packet, 2 ms apart (about
    // 1 s: within the handshake timeout of 2 s).
    let s = TcpStream::connect(at).await.unwrap();
    s.set_nodelay(true).unwrap();
    let trickle = Trickle {
        inner: s,
        slow: 400,
        gap: Duration::from_millis(2),
        wait: None,
    };
    let mut t = connector(&pass_crt)
        .connect(name, trickle)
        .await
        .expect("a ClientHello split over 400 packets is read whole");
    assert_eq!(read_n(&mut t, 12).await, b"tls backend\n");
    drop(t);

    // Ended by the proxy with the listener's certificate; the backend gets plain bytes.
    let mut t = connector(&term_crt)
        .connect(
            ServerName::try_from("term.example").unwrap(),
            TcpStream::connect(at).await.unwrap(),
        )
        .await
        .expect("a handshake with the proxy");
    assert_eq!(read_n(&mut t, 14).await, b"plain backend\n");
    t.write_all(b"pong").await.unwrap();
    assert_eq!(read_n(&mut t, 4).await, b"pong");
    drop(t);

    // No SNI name (a client connecting to an address sends none): refused before any answer.
    let ip = ServerName::IpAddress(at.ip().into());
    let r = connector(&pass_crt)
        .connect(ip, TcpStream::connect(at).await.unwrap())
        .await;
    assert!(r.is_err(), "a ClientHello without SNI is refused");
    // A name no route has.
    let r = connector(&pass_crt)
        .connect(
            ServerName::try_from("other.example").unwrap(),
            TcpStream::connect(at).await.unwrap(),
        )
        .await;
    assert!(r.is_err(), "an unknown name is refused");
    // Not TLS at all.
    refused(at, b"GET / HTTP/1.1\r\nHost: pass.example\r\n\r\n")
        .await
        .unwrap();
    // Nothing: closed at the handshake timeout (2 s), before `refused` gives up (5 s).
    let t0 = std::time::Instant::now();
    refused(at, b"").await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    // Half a ClientHello, then nothing: the same.
    refused(at, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();

    // Each outcome counted once (the counters are bumped when a connection ends).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (reason, n) in [
        ("passthrough", 2),
        ("terminate", 1),
        ("no_sni", 1),
        ("no_route", 1),
        ("bad_hello", 1),
        ("hello_timeout", 2),
    ] {
        assert_eq!(
            counter(&edge, reason),
            n,
            "{reason}\n{}",
            edge.metrics.encode()
        );
    }
}
