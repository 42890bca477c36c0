//! Client certificate validation of a Gateway's HTTPS listeners (`spec.tls.frontend`), as
//! `gateway.networking.k8s.io/v1` documents it:
//! - a port's configuration is its `perPort` entry, else `default`; it applies to the
//!   HTTPS listeners of the port (an HTTP listener is untouched, even with an entry);
//! - `caCertificateRefs` name ConfigMaps with a PEM bundle in `ca.crt`: another kind is
//!   InvalidCACertificateKind, a missing ConfigMap or one without a certificate is
//!   InvalidCACertificateRef, another namespace's without a ReferenceGrant RefNotPermitted;
//!   each sets the listener's ResolvedRefs False, and when no reference is valid the
//!   listener is not Accepted either (NoValidCACertificate) and is not served;
//! - mode `AllowValidOnly` (the default) refuses a handshake without a certificate that
//!   verifies; `AllowInsecureFallback` asks for one and serves the connection anyway, and the
//!   Gateway says so (InsecureFrontendValidationMode True, reason ConfigurationChanged).

use super::*;
use podnet_model::gateway_api::FrontendTLS;
use podnet_routes::edge::ClientValidation;

/// A port's validation, as judged.
#[derive(Debug, Clone)]
pub(super) struct PortValidation {
    /// What is served: the valid references' CA certificates (None: none is valid).
    pub(super) served: Option<ClientValidation>,
    /// The first problem with a reference (ResolvedRefs False), if any.
    pub(super) problem: Option<(&'static str, String)>,
}

/// The frontend configuration that applies to `port`: its `perPort` entry, else the default.
fn config_of(g: &Gateway, port: i32) -> Option<&FrontendTLS> {
    let f = g.spec.tls.as_ref()?.frontend.as_ref()?;
    Some(
        f.per_port
            .iter()
            .find(|p| p.port == port)
            .map_or(&f.default, |p| &p.tls),
    )
}

/// The client certificate validation of an HTTPS listener's port; None when none applies.
pub(super) fn for_port(c: &Cluster, g: &Gateway, port: i32) -> Option<PortValidation> {
    let v = config_of(g, port)?.validation.as_ref()?;
    let gw_ns = ns_of(&g.metadata);
    let mut problem = None;
    let mut ca = Vec::new();
    for r in &v.ca_certificate_refs {
        let ns = r.namespace.as_deref().unwrap_or(gw_ns);
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            problem.get_or_insert((
                "InvalidCACertificateKind",
                format!(
                    "{}/{} {ns}/{}: only ConfigMaps hold CA certificates",
                    r.group, r.kind, r.name
                ),
            ));
            continue;
        }
        if ns != gw_ns && !granted(c, "Gateway", gw_ns, "", "ConfigMap", ns, &r.name) {
            problem.get_or_insert((
                "RefNotPermitted",
                format!(
                    "ConfigMap {ns}/{}: no ReferenceGrant in {ns} allows it",
                    r.name
                ),
            ));
            continue;
        }
        match policy::config_map_ca(c, ns, &r.name) {
            Ok(certs) => ca.extend(certs),
            Err(why) => {
                problem.get_or_insert(("InvalidCACertificateRef", why));
            }
        }
    }
    let served = (!ca.is_empty()).then(|| ClientValidation {
        ca,
        insecure_fallback: insecure(v.mode.as_deref()),
    });
    Some(PortValidation { served, problem })
}

fn insecure(mode: Option<&str>) -> bool {
    mode == Some("AllowInsecureFallback")
}

/// Whether any of the Gateway's validations (the default's or a port's) falls back to
/// serving clients without a valid certificate.
pub(super) fn any_insecure(g: &Gateway) -> bool {
    g.spec
        .tls
        .as_ref()
        .and_then(|t| t.frontend.as_ref())
        .is_some_and(|f| {
            std::iter::once(&f.default)
                .chain(f.per_port.iter().map(|p| &p.tls))
                .filter_map(|t| t.validation.as_ref())
                .any(|v| insecure(v.mode.as_deref()))
        })
}
