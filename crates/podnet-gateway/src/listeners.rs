//! Each Gateway's listeners and status: protocols, conflicts, certificates (with the
//! ReferenceGrants that allow another namespace's Secret), attached routes.

use super::*;

/// A listener, as this controller judged it.
#[derive(Debug, Clone)]
pub(super) struct ListenerState {
    /// The listener as written.
    pub(super) listener: Listener,
    /// The ListenerSet it comes from (None: the Gateway's own).
    pub(super) owner: Option<NsName>,
    /// Conflicted, and why (ProtocolConflict, HostnameConflict).
    pub(super) conflict: Option<&'static str>,
    pub(super) port: u16,
    /// HTTPS (terminates TLS and serves HTTP).
    pub(super) tls: bool,
    /// Protocol TLS: TLSRoutes' streams; with the mode (true: Terminate).
    pub(super) stream: Option<bool>,
    pub(super) host: HostMatch,
    /// Serves (Accepted, not Conflicted, refs resolved).
    pub(super) valid: bool,
    /// Routes may attach (Accepted and not Conflicted).
    pub(super) attachable: bool,
    pub(super) kinds: Vec<RouteGroupKind>,
    pub(super) conditions: Vec<Condition>,
    pub(super) certs: Vec<HostCert>,
    pub(super) attached: i32,
    pub(super) routes: Vec<Route>,
    /// A TLS listener's routes, one per hostname.
    pub(super) streams: Vec<StreamRoute>,
    /// An HTTPS listener's client certificate validation (its port's).
    pub(super) client_validation: Option<podnet_routes::edge::ClientValidation>,
}

/// A TLS listener's mode: `tls.mode`, Terminate when unset (the API's default).
fn terminates(l: &Listener) -> bool {
    l.tls
        .as_ref()
        .and_then(|t| t.mode.as_deref())
        .is_none_or(|m| m == "Terminate")
}

/// The listeners of a Gateway, its own then those of the ListenerSets it takes (`sets`, by
/// precedence), as judged. The Gateway's own conflict with each other as the Gateway
/// documents it (every listener of a conflicting pair is Conflicted); a ListenerSet's
/// listener conflicts with one before it in that order (the Gateway's, then the older
/// sets'), which wins, as ListenerSet documents it.
pub(super) fn listener_states(
    c: &Cluster,
    g: &Gateway,
    sets: &[listener_sets::Judged<'_>],
) -> Vec<ListenerState> {
    let m = &g.metadata;
    let gw_ns = ns_of(m);
    let ls = &g.spec.listeners;
    let entries: Vec<(&Listener, Option<&listener_sets::Judged<'_>>)> = ls
        .iter()
        .map(|l| (l, None))
        .chain(
            sets.iter()
                .filter(|s| s.allowed)
                .flat_map(|s| s.set.spec.listeners.iter().map(move |l| (l, Some(s)))),
        )
        .collect();
    let mut out: Vec<ListenerState> = Vec::new();
    for (l, set) in entries {
        let owner_ns = set.map_or(gw_ns, |s| s.key.namespace.as_str());
        let owner_kind = if set.is_some() {
            "ListenerSet"
        } else {
            "Gateway"
        };
        let m = set.map_or(m, |s| &s.set.metadata);
        let mut conds = Vec::new();
        let supported = matches!(l.protocol.as_str(), "HTTP" | "HTTPS" | "TLS");
        let tls = l.protocol == "HTTPS";
        let stream = (l.protocol == "TLS").then(|| terminates(l));
        let route_kinds_served: &[&str] = if stream.is_some() {
            &["TLSRoute"]
        } else {
            &["HTTPRoute", "GRPCRoute"]
        };
        let (kinds, bad_kinds) = route_kinds(l, supported, route_kinds_served);
        // Conflicts with the other listeners of the port: the Gateway's own with each
        // other; a ListenerSet's with those before it that won.
        let same_port: Vec<&Listener> = if set.is_none() {
            ls.iter()
                .filter(|o| o.port == l.port && o.name != l.name)
                .collect()
        } else {
            out.iter()
                .filter(|o| o.conflict.is_none() && o.listener.port == l.port)
                .map(|o| &o.listener)
                .collect()
        };
        let protocol_conflict = same_port.iter().any(|o| o.protocol != l.protocol);
        // (TLS listeners of one port may differ in mode, TLSRouteModeMixed: a connection's
        // ClientHello names its listener, whose mode ends TLS or passes it on.)
        let hostname_conflict = same_port
            .iter()
            .any(|o| o.protocol == l.protocol && o.hostname == l.hostname);
        let host = HostMatch::gateway(l.hostname.as_deref());
        let (certs, mut ref_problem) = if tls || stream == Some(true) {
            certificates(c, (owner_kind, owner_ns), l, &host)
        } else {
            (Vec::new(), None)
        };
        if bad_kinds && ref_problem.is_none() {
            ref_problem = Some((
                "InvalidRouteKinds",
                format!(
                    "only {} served on a {} listener",
                    route_kinds_served.join(" and "),
                    l.protocol
                ),
            ));
        }
        // Client certificate validation: a reference that cannot be used is
        // ResolvedRefs False; none usable, the listener is not Accepted.
        let frontend = if tls {
            frontend::for_port(c, g, l.port)
        } else {
            None
        };
        let no_valid_ca = frontend.as_ref().is_some_and(|f| f.served.is_none());
        let ca_problem = frontend.as_ref().and_then(|f| f.problem.clone());
        let conflict = if protocol_conflict {
            Some("ProtocolConflict")
        } else if hostname_conflict {
            Some("HostnameConflict")
        } else {
            None
        };
        // A ListenerSet's listener that lost is not Accepted, for that reason.
        let lost = set.and(conflict);
        let accepted = supported && !no_valid_ca && lost.is_none();
        conds.push(if let Some(reason) = lost {
                condition(
                    m,
                    "Accepted",
                    false,
                    reason,
                    "a listener before it in the Gateway's order holds the port",
                )
            } else if no_valid_ca {
                condition(
                    m,
                    "Accepted",
                    false,
                    "NoValidCACertificate",
                    "no CA certificate for client certificate validation can be used (spec.tls.frontend)",
                )
            } else if accepted {
                condition(m, "Accepted", true, "Accepted", "")
            } else {
                condition(
                    m,
                    "Accepted",
                    false,
                    "UnsupportedProtocol",
                    &format!(
                        "protocol {} is not served; HTTP, HTTPS and TLS are",
                        l.protocol
                    ),
                )
            });
        let conflicted = conflict.is_some();
        conds.push(if protocol_conflict {
            condition(
                m,
                "Conflicted",
                true,
                "ProtocolConflict",
                "another listener of the port has another protocol",
            )
        } else if hostname_conflict {
            condition(
                m,
                "Conflicted",
                true,
                "HostnameConflict",
                "another listener of the port has the same hostname",
            )
        } else {
            condition(m, "Conflicted", false, "NoConflicts", "")
        });
        // (A certificate's problem is told first; a CA's, with some CA still usable,
        // does not keep the listener from being served with those.)
        conds.push(match ref_problem.as_ref().or(ca_problem.as_ref()) {
            Some((reason, msg)) => condition(m, "ResolvedRefs", false, reason, msg),
            None => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
        });
        let needs_certs = tls || stream == Some(true);
        let valid =
            accepted && !conflicted && ref_problem.is_none() && (!needs_certs || !certs.is_empty());
        conds.push(if valid {
            condition(m, "Programmed", true, "Programmed", "")
        } else {
            condition(
                m,
                "Programmed",
                false,
                lost.unwrap_or("Invalid"),
                "the listener is not served",
            )
        });
        out.push(ListenerState {
            listener: l.clone(),
            owner: set.map(|s| s.key.clone()),
            conflict,
            port: u16::try_from(l.port).unwrap_or(0),
            tls,
            stream,
            host,
            valid,
            attachable: accepted && !conflicted,
            kinds,
            conditions: conds,
            certs,
            attached: 0,
            routes: Vec::new(),
            streams: Vec::new(),
            client_validation: frontend.and_then(|f| f.served),
        });
    }
    out
}

pub(super) fn gateway_status(
    g: &Gateway,
    ls: &[ListenerState],
    addresses: &[std::net::IpAddr],
    client_ref: Option<Result<(), (&'static str, String)>>,
) -> GatewayStatus {
    let m = &g.metadata;
    // The ListenerSets attached: Accepted, with a listener served.
    let attached_sets: std::collections::BTreeSet<&NsName> = ls
        .iter()
        .filter(|l| l.valid)
        .filter_map(|l| l.owner.as_ref())
        .collect();
    let ls: Vec<&ListenerState> = ls.iter().filter(|l| l.owner.is_none()).collect();
    let any_valid = ls.iter().any(|l| l.valid);
    let any_accepted = ls.iter().any(|l| l.attachable);
    let all_accepted = ls.iter().all(|l| l.attachable);
    // Addresses asked for: IPAddress only (others: not Accepted), each of them assigned.
    let unsupported_address = g
        .spec
        .addresses
        .iter()
        .find(|a| a.kind() != "IPAddress")
        .map(|a| a.kind().to_string());
    let unusable: Vec<String> = g
        .spec
        .requested_ips()
        .iter()
        .filter(|ip| !addresses.contains(ip))
        .map(ToString::to_string)
        .collect();
    let mut conditions = vec![if let Some(t) = &unsupported_address {
        condition(
            m,
            "Accepted",
            false,
            "UnsupportedAddress",
            &format!("address type {t:?} is not served; IPAddress is"),
        )
    } else if invalid_parameters(g) {
        condition(
            m,
            "Accepted",
            false,
            "InvalidParameters",
            "podnet's Gateways take no parameters (spec.infrastructure.parametersRef)",
        )
    } else if all_accepted {
        condition(m, "Accepted", true, "Accepted", "")
    } else if any_accepted {
        // Accepted, and it says some listeners are not (the spec's reason for it).
        condition(
            m,
            "Accepted",
            true,
            "ListenersNotValid",
            "some listeners cannot be served",
        )
    } else {
        condition(
            m,
            "Accepted",
            false,
            "ListenersNotValid",
            "no listener can be served",
        )
    }];
    conditions.push(if invalid_parameters(g) || unsupported_address.is_some() {
        condition(
            m,
            "Programmed",
            false,
            "Invalid",
            "the Gateway is not accepted",
        )
    } else if !unusable.is_empty() {
        condition(
            m,
            "Programmed",
            false,
            "AddressNotUsable",
            &format!(
                "{} cannot be assigned: not in the load-balancer pool, or taken",
                unusable.join(", ")
            ),
        )
    } else if addresses.is_empty() {
        condition(
            m,
            "Programmed",
            false,
            "AddressNotAssigned",
            "no address yet: the load-balancer pool gave none",
        )
    } else if !any_valid && !ls.is_empty() {
        condition(m, "Programmed", false, "Invalid", "no listener is served")
    } else {
        condition(m, "Programmed", true, "Programmed", "")
    });
    if frontend::any_insecure(g) {
        conditions.push(condition(
            m,
            "InsecureFrontendValidationMode",
            true,
            "ConfigurationChanged",
            "spec.tls.frontend: mode AllowInsecureFallback serves clients without a valid certificate",
        ));
    }
    // The Gateway's own references (its backends' client certificate), when it has any.
    if let Some(r) = client_ref {
        conditions.push(match r {
            Ok(()) => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
            Err((reason, msg)) => condition(m, "ResolvedRefs", false, reason, &msg),
        });
    }
    GatewayStatus {
        addresses: addresses
            .iter()
            .map(|ip| GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: ip.to_string(),
            })
            .collect(),
        conditions,
        listeners: ls.iter().map(|s| s.status()).collect(),
        attached_listener_sets: Some(attached_sets.len() as i32),
    }
}

impl ListenerState {
    /// The listener's entry in its Gateway's or ListenerSet's status.
    pub(super) fn status(&self) -> ListenerStatus {
        ListenerStatus {
            name: self.listener.name.clone(),
            supported_kinds: self.kinds.clone(),
            attached_routes: self.attached,
            conditions: self.conditions.clone(),
        }
    }
}

/// Whether the Gateway names parameters (podnet takes none).
pub(super) fn invalid_parameters(g: &Gateway) -> bool {
    g.spec
        .infrastructure
        .as_ref()
        .is_some_and(|i| i.parameters_ref.as_ref().is_some_and(|p| !p.is_null()))
}

/// Whether a ReferenceGrant in `to_ns` lets a `from_kind` of `from_ns` refer to the object
/// `to_group`/`to_kind` named `to_name`.
pub fn granted(
    c: &Cluster,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    c.reference_grants
        .iter()
        .filter(|g| ns_of(&g.obj.metadata) == to_ns)
        .any(|g| {
            g.obj
                .spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.obj.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

/// The route kinds a listener allows (of `served`, those its protocol serves), and whether
/// it named any it cannot serve.
fn route_kinds(l: &Listener, supported: bool, served: &[&str]) -> (Vec<RouteGroupKind>, bool) {
    let of = |kind: &str| RouteGroupKind {
        group: Some(GROUP.into()),
        kind: kind.into(),
    };
    match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        Some(k) if !k.is_empty() => {
            let good: Vec<RouteGroupKind> = k
                .iter()
                .filter(|k| {
                    served.contains(&k.kind.as_str())
                        && k.group.as_deref().unwrap_or(GROUP) == GROUP
                })
                .map(|k| of(&k.kind))
                .collect();
            let bad = good.len() < k.len();
            (good, bad)
        }
        _ if supported => (served.iter().map(|k| of(k)).collect(), false),
        _ => (Vec::new(), false),
    }
}

/// An HTTPS listener's certificates (Secrets of its namespace, or of another that a
/// ReferenceGrant opens), and the first problem with its references, if any.
fn certificates(
    c: &Cluster,
    (owner_kind, gw_ns): (&str, &str),
    l: &Listener,
    host: &HostMatch,
) -> (Vec<HostCert>, Option<(&'static str, String)>) {
    let mut certs = Vec::new();
    let mut ref_problem: Option<(&'static str, String)> = None;
    for cr in l.tls.iter().flat_map(|t| &t.certificate_refs) {
        let ns = cr.namespace.as_deref().unwrap_or(gw_ns);
        let group = cr.group.as_deref().unwrap_or("");
        let kind = cr.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            ref_problem.get_or_insert((
                "InvalidCertificateRef",
                format!(
                    "{group}/{kind} {ns}/{}: only Secrets are certificates",
                    cr.name
                ),
            ));
            continue;
        }
        if ns != gw_ns && !granted(c, owner_kind, gw_ns, "", "Secret", ns, &cr.name) {
            ref_problem.get_or_insert((
                "RefNotPermitted",
                format!(
                    "Secret {ns}/{}: no ReferenceGrant in {ns} allows it",
                    cr.name
                ),
            ));
            continue;
        }
        match podnet_routes::edge::certified_key(c, &NsName::new(ns, &cr.name)) {
            Ok(key) => certs.push(HostCert {
                host: host.clone(),
                secret: NsName::new(ns, &cr.name),
                key,
            }),
            Err(why) => {
                ref_problem.get_or_insert((
                    "InvalidCertificateRef",
                    format!("Secret {ns}/{}: {why}", cr.name),
                ));
            }
        }
    }
    if l.protocol == "HTTPS"
        && l.tls
            .as_ref()
            .and_then(|t| t.mode.as_deref())
            .is_some_and(|m| m != "Terminate")
    {
        ref_problem.get_or_insert((
            "UnsupportedValue",
            "only TLS mode Terminate is served".into(),
        ));
    }
    (certs, ref_problem)
}
