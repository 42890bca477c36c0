//! Client certificate validation of HTTPS ports (a Gateway's `spec.tls.frontend`) on
//! loopback: `AllowValidOnly` serves only a client whose certificate chains to the port's
//! CA; `AllowInsecureFallback` asks for a certificate and serves every client; a port
//! without validation asks for none; a port whose CA rustls refuses serves no one; and a
//! port's validation changes with the configuration, for the connections that come next.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use podnet_ingress::edge::{
    certified_key_pem, ClientValidation, EdgeConfig, HostCert, ListenerRoutes, PortConfig, Upstream,
};
use podnet_ingress::routes::{
    Action, Backend, BackendPort, HostMatch, PathMatch, Route, RouteTable, Source,
};
use podnet_ingress::server::{Edge, Settings};
use podnet_model::NsName;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};

/// A CA (DER) and a client certificate it signs (PEM, with its key).
fn ca_and_client() -> (Vec<u8>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = params.signed_by(&leaf_key, &ca).unwrap();
    (ca.der().to_vec(), leaf.pem(), leaf_key.serialize_pem())
}

/// A plain HTTP backend answering "ok".
async fn backend_at() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from("ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    at
}

/// The client's certificate, if it has one; records that the server asked for one.
#[derive(Debug)]
struct Shows {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for Shows {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One HTTPS request to `at` as `gw.example`, showing `cert` if asked: the answer's body, or
/// how it failed; and whether the server asked for a certificate.
async fn request(
    at: SocketAddr,
    server_ca: &str,
    cert: Option<&(String, String)>,
) -> (Result<String, String>, bool) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(podnet_ingress::crypto_provider());
    let key = cert.map(|(c, k)| {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap();
        Arc::new(CertifiedKey::from_der(chain, key, &provider).unwrap())
    });
    let asked = Arc::new(AtomicBool::new(false));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Shows {
            key,
            asked: asked.clone(),
        }));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let result = async {
        let s = TcpStream::connect(at)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let t = connector
            .connect(ServerName::try_from("gw.example").unwrap(), s)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(t))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", "gw.example")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }
    .await;
    (result, asked.load(Ordering::SeqCst))
}

fn port_config(validation: Option<ClientValidation>) -> PortConfig {
    let to = Backend {
        service: NsName::new("default", "app"),
        port: BackendPort::Number(80),
    };
    let route = Route {
        host: HostMatch::Any,
        path: PathMatch::Prefix(String::new()),
        when: Default::default(),
        action: Action::to(to),
        created: None,
        source: Source {
            kind: "HTTPRoute",
            object: NsName::new("default", "r"),
            rule: 0,
            path: 0,
        },
    };
    PortConfig {
        tls: true,
        listeners: vec![ListenerRoutes {
            name: "default/gw/https".into(),
            host: HostMatch::Any,
            table: RouteTable::new(vec![route], Vec::new()),
        }],
        streams: Vec::new(),
        client_validation: validation,
    }
}

#[tokio::test]
async fn clients_are_served_as_their_ports_validation_says() {
    let (ca_a, crt_a, key_a) = ca_and_client();
    let (_, crt_b, key_b) = ca_and_client();
    let (a, b) = ((crt_a, key_a), (crt_b, key_b));
    let server = rcgen::generate_simple_self_signed(vec!["gw.example".to_string()]).unwrap();
    let (server_crt, server_key) = (server.cert.pem(), server.signing_key.serialize_pem());
    let app = backend_at().await;

    // Four HTTPS ports: validating by CA a, strictly and with fallback; none; a CA that
    // rustls refuses.
    let mut listeners = Vec::new();
    for _ in 0..4 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((l.local_addr().unwrap(), l));
    }
    let at: Vec<SocketAddr> = listeners.iter().map(|(a, _)| *a).collect();
    let validation = |ca: &[u8], insecure_fallback| {
        Some(ClientValidation {
            ca: vec![ca.to_vec()],
            insecure_fallback,
        })
    };
    let config = |strict: Option<ClientValidation>| {
        let mut c = EdgeConfig::default();
        c.upstreams.insert(
            Backend {
                service: NsName::new("default", "app"),
                port: BackendPort::Number(80),
            },
            Upstream::Ready(vec![app]),
        );
        c.certs.push(HostCert {
            host: HostMatch::Any,
            secret: NsName::new("default", "gw-cert"),
            key: certified_key_pem(server_crt.as_bytes(), server_key.as_bytes()).unwrap(),
        });
        c.ports.insert(at[0].port(), port_config(strict));
        c.ports
            .insert(at[1].port(), port_config(validation(&ca_a, true)));
        c.ports.insert(at[2].port(), port_config(None));
        c.ports.insert(
            at[3].port(),
            port_config(validation(b"not a certificate", false)),
        );
        c
    };
    let edge = Edge::new(Settings {
        access_log: false,
        ..Settings::default()
    })
    .unwrap();
    edge.set(config(validation(&ca_a, false)));
    for (_, l) in listeners {
        tokio::spawn(edge.clone().serve_https(l));
    }
    let ok = (Ok("ok".to_string()), true);

    // AllowValidOnly: a certificate of the port's CA, and nothing else.
    assert_eq!(request(at[0], &server_crt, Some(&a)).await, ok);
    let (got, asked) = request(at[0], &server_crt, Some(&b)).await;
    assert!(got.is_err() && asked, "another CA's certificate: {got:?}");
    let (got, asked) = request(at[0], &server_crt, None).await;
    assert!(got.is_err() && asked, "no certificate: {got:?}");

    // AllowInsecureFallback: asked for, and served whatever comes.
    for cert in [Some(&a), Some(&b), None] {
        assert_eq!(request(at[1], &server_crt, cert).await, ok, "{cert:?}");
    }

    // No validation: not asked.
    assert_eq!(
        request(at[2], &server_crt, Some(&a)).await,
        (Ok("ok".to_string()), false)
    );

    // A CA rustls refuses: no one is served (never served without the validation asked).
    let (got, _) = request(at[3], &server_crt, Some(&a)).await;
    assert!(got.is_err(), "a port whose CA cannot be used: {got:?}");

    // The validation changes for the connections that come next: now by CA a, with
    // fallback; then none.
    edge.set(config(validation(&ca_a, true)));
    assert_eq!(request(at[0], &server_crt, Some(&b)).await, ok);
    edge.set(config(None));
    assert_eq!(
        request(at[0], &server_crt, None).await,
        (Ok("ok".to_string()), false)
    );
}
