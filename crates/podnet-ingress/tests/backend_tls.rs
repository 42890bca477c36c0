//! TLS from the proxy to the backends (BackendTLSPolicy) on loopback: the policy's hostname is
//! the SNI name sent and the name verified against its CA; a certificate of another name or
//! CA fails the request (502), a policy that cannot be used refuses it (503); nothing goes in
//! plain text to a backend a policy names.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use podnet_ingress::edge::{BackendTls, EdgeConfig, Upstream};
use podnet_ingress::routes::{
    Action, Backend, BackendPort, HostMatch, PathMatch, Route, RouteTable, Source,
};
use podnet_ingress::server::{Edge, Settings};
use podnet_model::NsName;
use tokio::net::{TcpListener, TcpStream};

/// A CA, and a certificate it signs for `name` and the URI `spiffe://name/id` (DER of the
/// CA, PEM of the leaf and its key).
fn ca_and_leaf(name: &str) -> (Vec<u8>, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(format!("spiffe://{name}/id")).unwrap(),
    ));
    let leaf = params.signed_by(&leaf_key, &ca).unwrap();
    (ca.der().to_vec(), leaf.pem(), leaf_key.serialize_pem())
}

/// An HTTPS backend that answers each request with the SNI name its client sent (`-` for
/// none); counts the plain-text requests it refuses.
async fn https_backend(crt: &str, key: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(crt.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(podnet_ingress::crypto_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(t) = acceptor.accept(s).await else {
                    return;
                };
                let sni = t.get_ref().1.server_name().unwrap_or("-").to_string();
                let svc = hyper::service::service_fn(move |_req| {
                    let sni = sni.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from(sni)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(t), svc)
                    .await;
            });
        }
    });
    at
}

fn backend(name: &str) -> Backend {
    Backend {
        service: NsName::new("default", name),
        port: BackendPort::Number(443),
    }
}

fn route(path: &str, to: &str, i: usize) -> Route {
    Route {
        host: HostMatch::Any,
        path: PathMatch::Prefix(path.into()),
        when: Default::default(),
        action: Action::to(backend(to)),
        created: None,
        source: Source {
            kind: "HTTPRoute",
            object: NsName::new("default", "r"),
            rule: i,
            path: 0,
        },
    }
}

async fn get(at: SocketAddr, path: &str) -> (StatusCode, String) {
    let s = TcpStream::connect(at).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "gw.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn backends_are_reached_over_tls_as_their_policy_asks_and_never_in_plain_text() {
    let (ca, crt, key) = ca_and_leaf("abc.example");
    let (other_ca, _, _) = ca_and_leaf("abc.example");
    let at_backend = https_backend(&crt, &key).await;
    let policy = |hostname: &str, ca: &[u8], names: &[&str]| BackendTls::To {
        policy: NsName::new("default", "p"),
        hostname: hostname.into(),
        ca: Some(vec![ca.to_vec()]),
        names: names
            .iter()
            .filter(|n| !n.contains("://"))
            .map(|n| n.to_string())
            .collect(),
        uris: names
            .iter()
            .filter(|n| n.contains("://"))
            .map(|n| n.to_string())
            .collect(),
        client: None,
    };
    let mut config = EdgeConfig::default();
    let mut routes = Vec::new();
    for (i, (name, tls)) in [
        ("good", policy("abc.example", &ca, &[])),
        ("other-name", policy("mismatch.example", &ca, &[])),
        ("other-ca", policy("abc.example", &other_ca, &[])),
        ("by-san", policy("sni.example", &ca, &["abc.example"])),
        (
            "by-uri",
            policy("sni.example", &ca, &["spiffe://abc.example/id"]),
        ),
        (
            "other-uri",
            policy("sni.example", &ca, &["spiffe://other.example/id"]),
        ),
        (
            "uri-other-ca",
            policy("sni.example", &other_ca, &["spiffe://abc.example/id"]),
        ),
        (
            "unusable",
            BackendTls::Unusable {
                policy: NsName::new("default", "bad"),
                why: "no valid CA certificate".into(),
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        routes.push(route(&format!("/{name}"), name, i));
        config
            .upstreams
            .insert(backend(name), Upstream::Ready(vec![at_backend]));
        config.backend_tls.insert(backend(name), tls);
    }
    config.table = RouteTable::new(routes, Vec::new());
    let edge = Edge::new(Settings {
        access_log: false,
        ..Settings::default()
    })
    .unwrap();
    edge.set(config);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    tokio::spawn(edge.clone().serve_http(l));

    // The policy's hostname is the SNI name, verified against its CA.
    assert_eq!(
        get(at, "/good").await,
        (StatusCode::OK, "abc.example".into())
    );
    // Twice: the pooled TLS connection is reused.
    assert_eq!(
        get(at, "/good").await,
        (StatusCode::OK, "abc.example".into())
    );
    // A certificate without the name, or of another CA: the request fails.
    assert_eq!(get(at, "/other-name").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(get(at, "/other-ca").await.0, StatusCode::BAD_GATEWAY);
    // subjectAltNames: the certificate holds one of them; the SNI name is still the hostname.
    assert_eq!(
        get(at, "/by-san").await,
        (StatusCode::OK, "sni.example".into())
    );
    // A URI subjectAltName the certificate holds; one it does not, or the right one from a
    // CA not trusted: the request fails.
    assert_eq!(
        get(at, "/by-uri").await,
        (StatusCode::OK, "sni.example".into())
    );
    assert_eq!(get(at, "/other-uri").await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(get(at, "/uri-other-ca").await.0, StatusCode::BAD_GATEWAY);
    // A policy that cannot be used: refused, not sent in plain text.
    let (status, body) = get(at, "/unusable").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("BackendTLSPolicy default/bad"), "{body}");
}
