//! TLS to the backends (BackendTLSPolicy): a rustls client configuration per policy, trusting
//! the policy's CA certificates (or the system's), sending its hostname as SNI and verifying
//! the certificate holds that name, or one of its `subjectAltNames`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::*;
use crate::edge::BackendTls;

/// How to reach a backend over TLS.
#[derive(Debug)]
pub(super) struct TlsTo {
    /// What it was made from: a policy's change is a new pool.
    pub(super) policy: BackendTls,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsTo {
    /// The client side of a policy; Err (why, to answer 503 with) when it cannot be used.
    pub(super) fn new(policy: &BackendTls) -> Result<TlsTo, String> {
        let (name_of, hostname, ca, names, uris, client) = match policy {
            BackendTls::Unusable { policy, why } => {
                return Err(format!("BackendTLSPolicy {policy}: {why}"))
            }
            BackendTls::To {
                policy,
                hostname,
                ca,
                names,
                uris,
                client,
            } => (policy, hostname, ca, names, uris, client),
        };
        let bad = |what: String| format!("BackendTLSPolicy {name_of}: {what}");
        let provider = Arc::new(crate::crypto_provider());
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(ders) => {
                for d in ders {
                    roots
                        .add(CertificateDer::from(d.clone()))
                        .map_err(|e| bad(format!("a CA certificate rustls refuses: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(bad("the system has no CA certificate".into()));
                }
            }
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| bad(format!("{e}")))?;
        let algs = provider.signature_verification_algorithms;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("{e}")))?;
        // (No ALPN here: the connector offers http/1.1 itself.)
        let builder = if names.is_empty() && uris.is_empty() {
            builder.with_webpki_verifier(verifier)
        } else {
            let names = names
                .iter()
                .map(|n| ServerName::try_from(n.clone()).map_err(|e| bad(format!("{n}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName {
                    inner: verifier,
                    names,
                    uris: uris.clone(),
                    roots,
                    algs,
                }))
        };
        // The Gateway's client certificate, for backends that ask for one.
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((crt, key)) => {
                use rustls::pki_types::pem::PemObject;
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(format!("the Gateway's client certificate: {e}")))?;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| bad(format!("the Gateway's client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad(format!("the Gateway's client certificate: {e}")))?
            }
        };
        let name =
            ServerName::try_from(hostname.clone()).map_err(|e| bad(format!("{hostname}: {e}")))?;
        Ok(TlsTo {
            policy: policy.clone(),
            config: Arc::new(config),
            name,
        })
    }

    /// For a TLS stream the proxy ends (TLSRoute, Terminate): the client side of the
    /// backend's TLS, and the name to send.
    pub(super) fn stream_connector(&self) -> (tokio_rustls::TlsConnector, ServerName<'static>) {
        (
            tokio_rustls::TlsConnector::from(self.config.clone()),
            self.name.clone(),
        )
    }

    /// A connector over `plain` that speaks TLS, as this policy asks, offering HTTP/2 alone
    /// (ALPN h2) when `h2`, else HTTP/1.1.
    pub(super) fn connector(
        &self,
        plain: Connector,
        h2: bool,
    ) -> hyper_rustls::HttpsConnector<Connector> {
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.config).clone())
            .https_only()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                self.name.clone(),
            ));
        if h2 {
            b.enable_http2().wrap_connector(plain)
        } else {
            b.enable_http1().wrap_connector(plain)
        }
    }
}

/// Verifies a certificate as webpki does, for any one of a policy's subjectAltNames instead
/// of the SNI name: a DNS name of `names`, or a URI name of `uris` (its chain verified as
/// webpki does, then its URI names read with x509-parser: webpki checks no URI names).
#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
    uris: Vec<String>,
    roots: Arc<rustls::RootCertStore>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// The URI names of a certificate's subjectAltName.
fn uri_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no subjectAltName to verify".into());
        for n in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, n, ocsp_response, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        if !self.uris.is_empty() {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                self.algs.all,
            )?;
            let held = uri_names(end_entity);
            if held.iter().any(|u| self.uris.contains(u)) {
                return Ok(ServerCertVerified::assertion());
            }
            last = rustls::Error::General(format!(
                "the certificate's URI names {held:?} hold none of {:?}",
                self.uris
            ));
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
