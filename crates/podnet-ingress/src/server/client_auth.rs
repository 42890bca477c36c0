//! Client certificate validation of an HTTPS port (a Gateway's `spec.tls.frontend`): a
//! server configuration per port that asks for a client certificate and verifies it
//! against the port's CA certificates, with the proxy's certificates and ALPN.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::*;
use crate::edge::ClientValidation;

/// The server side of an HTTPS port that validates clients: `base`'s certificates and ALPN,
/// and a verifier of `v`'s CA certificates. Err (why) when rustls refuses them: the port's
/// handshakes are then refused, never served without the validation asked for.
pub(super) fn server_config(
    base: &rustls::ServerConfig,
    v: &ClientValidation,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(crate::crypto_provider());
    let mut roots = rustls::RootCertStore::empty();
    for d in &v.ca {
        roots
            .add(CertificateDer::from(d.clone()))
            .map_err(|e| format!("a CA certificate rustls refuses: {e}"))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier: Arc<dyn ClientCertVerifier> = if v.insecure_fallback {
        let inner = builder
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())?;
        Arc::new(Fallback { inner })
    } else {
        builder.build().map_err(|e| e.to_string())?
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(base.cert_resolver.clone());
    config.alpn_protocols = base.alpn_protocols.clone();
    Ok(Arc::new(config))
}

/// `AllowInsecureFallback`: asks for a certificate (naming the CAs it trusts) and serves the
/// connection whether or not one that verifies comes. A certificate shown must still be the
/// client's: its handshake signature is checked as always.
#[derive(Debug)]
struct Fallback {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for Fallback {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            tracing::debug!(error = %e, "a client certificate that does not verify, served (AllowInsecureFallback)");
        }
        Ok(ClientCertVerified::assertion())
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
