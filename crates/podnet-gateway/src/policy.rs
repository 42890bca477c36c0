//! BackendTLSPolicy: which policy a Gateway's backend takes (the most specific target, then
//! the oldest policy), what its validation comes to (the CA certificates of its ConfigMaps'
//! `ca.crt`, or the system's), and its status per ancestor Gateway.
//!
//! As the API documents it:
//! - a policy targets Services of its namespace, a port by its name (`sectionName`) or all;
//!   a backend (a Service port a route of the Gateway sends to) takes the policy naming its
//!   port over one naming only its Service, and of two alike the oldest (then the first by
//!   namespace and name): the other is not Accepted there (Conflicted);
//! - a CA reference that is not a ConfigMap is InvalidKind, one to a ConfigMap that is missing
//!   or holds no certificate in `ca.crt` is InvalidCACertificateRef (ResolvedRefs False);
//!   with no valid CA certificate at all the policy is not Accepted (NoValidCACertificate)
//!   and requests to its backends are refused, never sent in plain text;
//! - `wellKnownCACertificates: System` trusts the system's CA certificates; other values are
//!   not served (Accepted False, Invalid);
//! - `subjectAltNames`: the certificate must hold one of them, a Hostname as a DNS name or a
//!   URI as a URI name (instead of `hostname`, still the SNI name).

use std::collections::{BTreeMap, BTreeSet};

use podnet_model::gateway_api::{BackendTLSPolicy, PolicyAncestorStatus, PolicyStatus};
use podnet_routes::edge::BackendTls;
use rustls::pki_types::pem::PemObject;

use super::*;

/// A policy, judged once for every Gateway.
pub(super) struct Judged {
    pub key: NsName,
    pub tls: BackendTls,
    pub accepted: Result<(), (&'static str, String)>,
    pub resolved: Result<(), (&'static str, String)>,
}

/// Every policy judged, the oldest first (then by namespace and name).
pub(super) fn judge_all(c: &Cluster) -> Vec<(Judged, &BackendTLSPolicy)> {
    let mut ps: Vec<&BackendTLSPolicy> = c.backend_tls_policies.iter().map(|p| &p.obj).collect();
    ps.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), key_of(&p.metadata)));
    ps.into_iter().map(|p| (judge(c, p), p)).collect()
}

fn judge(c: &Cluster, p: &BackendTLSPolicy) -> Judged {
    let key = key_of(&p.metadata);
    let ns = ns_of(&p.metadata);
    let v = &p.spec.validation;
    let mut resolved: Result<(), (&'static str, String)> = Ok(());
    let mut problem = |reason: &'static str, msg: String| {
        if resolved.is_ok() {
            resolved = Err((reason, msg));
        }
    };
    let mut ca: Vec<Vec<u8>> = Vec::new();
    for r in &v.ca_certificate_refs {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            problem(
                "InvalidKind",
                format!(
                    "{}/{} {}: only ConfigMaps hold CA certificates",
                    r.group, r.kind, r.name
                ),
            );
            continue;
        }
        match config_map_ca(c, ns, &r.name) {
            Ok(certs) => ca.extend(certs),
            Err(why) => problem("InvalidCACertificateRef", why),
        }
    }
    let names: Vec<String> = v
        .subject_alt_names
        .iter()
        .filter_map(|s| s.hostname.clone())
        .collect();
    let uris: Vec<String> = v
        .subject_alt_names
        .iter()
        .filter_map(|s| s.uri.clone())
        .collect();
    let well_known = v
        .well_known_ca_certificates
        .as_deref()
        .filter(|w| !w.is_empty());
    let unusable = |why: String| BackendTls::Unusable {
        policy: key.clone(),
        why,
    };
    let (tls, accepted) = if let Some(w) = well_known {
        if w == "System" {
            let tls = BackendTls::To {
                policy: key.clone(),
                hostname: v.hostname.clone(),
                ca: None,
                names,
                uris,
                client: None,
            };
            (tls, Ok(()))
        } else {
            let why = format!("wellKnownCACertificates {w:?} is not served; System is");
            (unusable(why.clone()), Err(("Invalid", why)))
        }
    } else if ca.is_empty() {
        let why = "no valid CA certificate".to_string();
        (unusable(why.clone()), Err(("NoValidCACertificate", why)))
    } else {
        let tls = BackendTls::To {
            policy: key.clone(),
            hostname: v.hostname.clone(),
            ca: Some(ca),
            names,
            uris,
            client: None,
        };
        (tls, Ok(()))
    };
    Judged {
        key,
        tls,
        accepted,
        resolved,
    }
}

/// The CA certificates (DER) in a ConfigMap's `ca.crt`, or why there are none.
pub(super) fn config_map_ca(c: &Cluster, ns: &str, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let pem = c
        .config_maps
        .iter()
        .map(|m| &m.obj)
        .find(|m| ns_of(&m.metadata) == ns && m.metadata.name.as_deref() == Some(name))
        .and_then(|m| m.data.as_ref()?.get("ca.crt").cloned())
        .ok_or_else(|| format!("ConfigMap {ns}/{name}: not found, or no ca.crt"))?;
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|d| d.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "ConfigMap {ns}/{name}: ca.crt holds no PEM certificate"
        ));
    }
    Ok(certs)
}

/// The policy a backend takes, by its index in `policies` (judged, oldest first), and the
/// others that target it as specifically (they lose: Conflicted).
pub(super) fn policy_of(
    c: &Cluster,
    policies: &[(Judged, &BackendTLSPolicy)],
    b: &Backend,
) -> Option<(usize, Vec<usize>)> {
    let svc = c.service(&b.service.namespace, &b.service.name)?;
    let port_name = match &b.port {
        BackendPort::Number(n) => svc.ports.iter().find(|p| p.port == *n)?.name.clone(),
        BackendPort::Name(n) => n.clone(),
    };
    // (specificity, index): 1 when the target names the port.
    let matching: Vec<(u8, usize)> = policies
        .iter()
        .enumerate()
        .filter(|(_, (j, _))| j.key.namespace == b.service.namespace)
        .filter_map(|(i, (_, p))| {
            p.spec
                .target_refs
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == b.service.name)
                .filter_map(|t| match t.section_name.as_deref() {
                    None | Some("") => Some(0),
                    Some(s) if s == port_name => Some(1),
                    Some(_) => None,
                })
                .max()
                .map(|s| (s, i))
        })
        .collect();
    let best = matching.iter().map(|(s, _)| *s).max()?;
    let mut same: Vec<usize> = matching
        .iter()
        .filter(|(s, _)| *s == best)
        .map(|(_, i)| *i)
        .collect();
    let winner = same.remove(0);
    Some((winner, same))
}

/// The status of every policy: an ancestor entry for each of podnet's Gateways that sends to
/// a backend it targets (`used`: each Gateway's backends).
pub(super) fn statuses(
    c: &Cluster,
    policies: &[(Judged, &BackendTLSPolicy)],
    used: &BTreeMap<NsName, Vec<Backend>>,
) -> Vec<BackendTLSPolicy> {
    // Per policy: the Gateways where it serves, and those where it lost.
    let mut won: BTreeMap<usize, BTreeSet<NsName>> = BTreeMap::new();
    let mut lost: BTreeMap<usize, BTreeSet<NsName>> = BTreeMap::new();
    for (gw, backends) in used {
        for b in backends {
            if let Some((w, losers)) = policy_of(c, policies, b) {
                won.entry(w).or_default().insert(gw.clone());
                for l in losers {
                    lost.entry(l).or_default().insert(gw.clone());
                }
            }
        }
    }
    policies
        .iter()
        .enumerate()
        .map(|(i, (j, p))| {
            let mut obj: BackendTLSPolicy = (*p).clone();
            let m = &p.metadata;
            let serving = won.get(&i).cloned().unwrap_or_default();
            let losing = lost.get(&i).cloned().unwrap_or_default();
            let ancestors: Vec<PolicyAncestorStatus> = serving
                .union(&losing)
                .map(|gw| {
                    let accepted = if serving.contains(gw) {
                        match &j.accepted {
                            Ok(()) => condition(m, "Accepted", true, "Accepted", ""),
                            Err((r, msg)) => condition(m, "Accepted", false, r, msg),
                        }
                    } else {
                        condition(
                            m,
                            "Accepted",
                            false,
                            "Conflicted",
                            "an older policy targets the same Service port",
                        )
                    };
                    let resolved = match &j.resolved {
                        Ok(()) => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
                        Err((r, msg)) => condition(m, "ResolvedRefs", false, r, msg),
                    };
                    PolicyAncestorStatus {
                        ancestor_ref: ParentReference {
                            group: Some(GROUP.into()),
                            kind: Some("Gateway".into()),
                            namespace: Some(gw.namespace.clone()),
                            name: gw.name.clone(),
                            section_name: None,
                            port: None,
                        },
                        controller_name: CONTROLLER.into(),
                        conditions: vec![accepted, resolved],
                    }
                })
                .collect();
            if !ancestors.is_empty() {
                obj.status = Some(PolicyStatus { ancestors });
            }
            obj
        })
        .collect()
}

/// The TLS of each backend of a Gateway that a policy targets, showing `client` (the
/// Gateway's client certificate and key) to backends that ask for one.
pub(super) fn backend_tls(
    c: &Cluster,
    policies: &[(Judged, &BackendTLSPolicy)],
    backends: &[Backend],
    client: Option<&(Vec<u8>, Vec<u8>)>,
) -> std::collections::HashMap<Backend, BackendTls> {
    backends
        .iter()
        .filter_map(|b| {
            let (w, _) = policy_of(c, policies, b)?;
            let mut tls = policies[w].0.tls.clone();
            if let BackendTls::To { client: c, .. } = &mut tls {
                *c = client.cloned();
            }
            Some((b.clone(), tls))
        })
        .collect()
}

/// A certificate chain and its key, PEM.
pub(super) type CertAndKey = (Vec<u8>, Vec<u8>);

/// A Gateway's client certificate for its backends (`spec.tls.backend.clientCertificateRef`):
/// None when it names none; else the certificate and key, or why they cannot be used
/// (ResolvedRefs False: InvalidClientCertificateRef, or RefNotPermitted for another
/// namespace's Secret without a ReferenceGrant).
pub(super) fn client_certificate(
    c: &Cluster,
    g: &Gateway,
) -> Option<Result<CertAndKey, (&'static str, String)>> {
    let r = g
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let gw_ns = ns_of(&g.metadata);
    let ns = r.namespace.as_deref().unwrap_or(gw_ns);
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Some(Err((
            "InvalidClientCertificateRef",
            format!(
                "{group}/{kind} {ns}/{}: only Secrets are certificates",
                r.name
            ),
        )));
    }
    if ns != gw_ns && !granted(c, "Gateway", gw_ns, "", "Secret", ns, &r.name) {
        return Some(Err((
            "RefNotPermitted",
            format!(
                "Secret {ns}/{}: no ReferenceGrant in {ns} allows it",
                r.name
            ),
        )));
    }
    let secret = NsName::new(ns, &r.name);
    let checked = podnet_routes::edge::tls_secret_pem(c, &secret).and_then(|(crt, key)| {
        podnet_routes::edge::certified_key_pem(&crt, &key).map(|_| (crt, key))
    });
    Some(checked.map_err(|why| {
        (
            "InvalidClientCertificateRef",
            format!("Secret {secret}: {why}"),
        )
    }))
}
