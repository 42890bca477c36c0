//! Certificates by SNI from the live configuration, and the default one.

use super::*;

/// The certificate for a TLS handshake: by SNI from the live configuration, else the default.
#[derive(Debug)]
pub(super) struct Resolver {
    pub(super) live: Arc<ArcSwap<Live>>,
    pub(super) default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let live = self.live.load();
        hello
            .server_name()
            .and_then(|n| live.config.cert_for(n).cloned())
            .or_else(|| Some(self.default.clone()))
    }
}

/// A generated certificate for names no Secret covers (ingress-nginx has one too).
/// Its subject and only name: `CN=podnet-ingress-default`.
pub(super) fn default_certificate() -> Result<Arc<CertifiedKey>, IngressError> {
    let (cert, key) = default_certificate_pem()?;
    crate::edge::certified_key_pem(cert.as_bytes(), key.as_bytes())
        .map_err(IngressError::DefaultKey)
}

/// The default certificate and its key, PEM.
pub(super) fn default_certificate_pem() -> Result<(String, String), IngressError> {
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_NAME.to_string()])
        .map_err(IngressError::DefaultCert)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().map_err(IngressError::DefaultCert)?;
    let cert = params
        .self_signed(&key)
        .map_err(IngressError::DefaultCert)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The default certificate's name (ingress-nginx's is "Kubernetes Ingress Controller Fake
/// Certificate").
pub const DEFAULT_CERT_NAME: &str = "podnet-ingress-default";
