//! The TCP server of upstream's echo server (echo-basic with `TCP_ECHO_SERVER`), for the
//! TLSRoute tests: on connecting, the server writes `Gateway API Test TCP Server`; then, per
//! line, `PING` → `PONG`, `IS_TLS` → whether the connection is TLS, `TEST` → one JSON line
//! (the pod's context, `isTLS`, and for TLS the version, SNI name and cipher suite); other
//! lines get no answer. Plain on every port but the TLS one (8443), which speaks TLS when the
//! pod has a serving certificate.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

/// What the server writes first.
pub const WELCOME: &str = "Gateway API Test TCP Server\n";

/// The port upstream's echo servers speak TLS on.
pub const TLS_PORT: u16 = 8443;

/// The longest line the server reads (a client sending more is closed).
const MAX_LINE: usize = 4096;

/// What the `TEST` line reports of the pod.
#[derive(Debug, Clone)]
pub struct Context {
    pub namespace: String,
    pub pod: String,
    pub service: String,
    pub ingress: String,
    pub tcp_port: u16,
}

/// A TLS server configuration for a certificate and key (PEM).
pub fn tls_config(cert: &str, key: &str) -> Option<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).ok()?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(podnet_routes::crypto_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .ok()?;
    Some(Arc::new(config))
}

/// [`tls_config`] that asks clients for a certificate (not required) and verifies one given
/// against the CA certificates `ca` (PEM), as upstream's echo server does with
/// `TLS_CLIENT_CACERTS`.
pub fn tls_config_with_clients(
    cert: &str,
    key: &str,
    ca: &str,
) -> Option<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(podnet_routes::crypto_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).ok()?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.ok()?).ok()?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .ok()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .ok()?;
    Some(Arc::new(config))
}

/// Serves `l` until the task is aborted; with `tls`, every connection is TLS.
pub async fn serve(
    l: tokio::net::TcpListener,
    ctx: Arc<Context>,
    tls: Option<Arc<rustls::ServerConfig>>,
    budget: Option<Arc<Semaphore>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let accepting = super::http::Accepting::new(l, budget);
    while let Some((s, _, held)) = accepting.next().await {
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _held = held;
            let _ = s.set_nodelay(true);
            match acceptor {
                Some(a) => {
                    let hs = tokio::time::timeout(super::http::HEADER_READ_TIMEOUT, a.accept(s));
                    let Ok(Ok(t)) = hs.await else { return };
                    let (_, conn) = t.get_ref();
                    let tls = serde_json::json!({
                        "version": match conn.protocol_version() {
                            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
                            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
                            _ => "",
                        },
                        "serverName": conn.server_name().unwrap_or_default(),
                        "cipherSuite": conn
                            .negotiated_cipher_suite()
                            .map(|c| format!("{:?}", c.suite()))
                            .unwrap_or_default(),
                    });
                    talk(t, &ctx, Some(tls)).await
                }
                None => talk(s, &ctx, None).await,
            }
        });
    }
}

/// One connection: the welcome line, then an answer per line.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    ctx: &Context,
    tls: Option<serde_json::Value>,
) {
    let is_tls = tls.is_some();
    let mut test = serde_json::json!({
        "namespace": ctx.namespace,
        "ingress": ctx.ingress,
        "service": ctx.service,
        "pod": ctx.pod,
        "tcpport": ctx.tcp_port.to_string(),
        "tlsport": TLS_PORT.to_string(),
        "isTLS": is_tls,
    });
    if let Some(t) = tls {
        test["tls"] = t;
    }
    let test = format!("{test}\n");
    let (r, mut w) = tokio::io::split(s);
    if w.write_all(WELCOME.as_bytes()).await.is_err() {
        return;
    }
    let mut lines = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE as u64);
        let read = tokio::time::timeout(
            super::http::CONNECTION_LIFETIME,
            limited.read_line(&mut line),
        );
        match read.await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        let answer = match line.trim_end_matches(['\r', '\n']) {
            "PING" => "PONG\n".to_string(),
            "IS_TLS" => format!("{is_tls}\n"),
            "TEST" => test.clone(),
            _ => continue,
        };
        if w.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
