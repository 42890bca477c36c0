//! The Gateway API's kinds, as the CRDs' validation (and its CEL rules) refuses them.

use super::*;

pub(super) fn gateway(c: &mut Checker<'_, crate::gateway_api::Gateway>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    if spec.gateway_class_name.is_empty() {
        c.err("spec.gatewayClassName", "Required value");
    }
    if spec.listeners.is_empty() {
        c.err("spec.listeners", "Required value: at least one listener");
    }
    listeners(c, &spec.listeners);
    // spec.infrastructure: at most 8 labels and 8 annotations, with valid keys (and label
    // values).
    if let Some(infra) = &spec.infrastructure {
        for (what, map) in [
            ("labels", &infra.labels),
            ("annotations", &infra.annotations),
        ] {
            if map.len() > 8 {
                c.err(
                    &format!("spec.infrastructure.{what}"),
                    format!("Too many: {}: must have at most 8 items", map.len()),
                );
            }
            for (k, val) in map {
                c.check(&format!("spec.infrastructure.{what}.{k}"), v::label_key(k));
                if what == "labels" {
                    c.check(
                        &format!("spec.infrastructure.{what}.{k}"),
                        v::label_value(val),
                    );
                } else if val.len() > 4096 {
                    c.err(
                        &format!("spec.infrastructure.{what}.{k}"),
                        "Too long: may not be longer than 4096",
                    );
                }
            }
        }
    }
    // As the CRD: at most 16, an IPAddress's value an IP address, a Hostname's a hostname.
    if spec.addresses.len() > 16 {
        c.err(
            "spec.addresses",
            format!(
                "Too many: {}: must have at most 16 items",
                spec.addresses.len()
            ),
        );
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        let value = a.value.as_deref().unwrap_or_default();
        match a.kind() {
            "IPAddress" if !value.is_empty() && value.parse::<std::net::IpAddr>().is_err() => c
                .err(
                    &format!("spec.addresses[{i}].value"),
                    format!("Invalid value: {value:?}: IPAddress values must be an IP address"),
                ),
            "Hostname" if !value.is_empty() => c.check(
                &format!("spec.addresses[{i}].value"),
                v::wildcard_hostname(value),
            ),
            _ => {}
        }
    }
    if let Some(ns) = spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        allowed_from(c, "spec.allowedListeners.namespaces", ns);
    }
    frontend(c);
}

/// A ListenerSet: its parent Gateway, and 1 to 64 listeners checked as a Gateway's are.
pub(super) fn listener_set(c: &mut Checker<'_, crate::gateway_api::ListenerSet>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    let p = &spec.parent_ref;
    if p.name.is_empty() {
        c.err("spec.parentRef.name", "Required value");
    }
    if p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        || p.group.as_deref().unwrap_or(crate::gateway_api::GROUP) != crate::gateway_api::GROUP
    {
        c.err(
            "spec.parentRef",
            "Unsupported value: a ListenerSet's parent is a gateway.networking.k8s.io Gateway",
        );
    }
    if spec.listeners.is_empty() || spec.listeners.len() > 64 {
        c.err(
            "spec.listeners",
            format!(
                "Invalid value: {} listeners: 1 to 64 are allowed",
                spec.listeners.len()
            ),
        );
    }
    listeners(c, &spec.listeners);
}

/// `from` (and its selector) of allowedRoutes or allowedListeners.
fn allowed_from<T>(c: &mut Checker<'_, T>, at: &str, sel: &crate::gateway_api::RouteNamespaces) {
    match sel.from.as_deref() {
        None | Some("Same") | Some("All") | Some("None") => {}
        Some("Selector") => match &sel.selector {
            Some(ls) => c.selector(&format!("{at}.selector"), ls),
            None => c.err(
                &format!("{at}.selector"),
                "Required value: from: Selector needs a selector",
            ),
        },
        Some(other) => c.err(
            &format!("{at}.from"),
            format!("Unsupported value: {other:?}: supported values: \"All\", \"None\", \"Same\", \"Selector\""),
        ),
    }
}

/// The listeners of a Gateway or a ListenerSet.
fn listeners<T>(c: &mut Checker<'_, T>, listeners: &[crate::gateway_api::Listener]) {
    let mut names = std::collections::BTreeSet::new();
    for (i, l) in listeners.iter().enumerate() {
        let at = format!("spec.listeners[{i}]");
        c.check(&format!("{at}.name"), v::dns1123_label(&l.name));
        if !names.insert(l.name.as_str()) {
            c.err(
                &format!("{at}.name"),
                format!(
                    "Duplicate value: {:?}: listener names must be unique",
                    l.name
                ),
            );
        }
        c.check(&format!("{at}.port"), v::port_number(l.port));
        if l.protocol.is_empty() {
            c.err(&format!("{at}.protocol"), "Required value");
        }
        if let Some(h) = &l.hostname {
            c.check(&format!("{at}.hostname"), v::wildcard_hostname(h));
        }
        if l.protocol == "HTTPS"
            && l.tls.as_ref().is_none_or(|t| {
                t.mode.as_deref() == Some("Terminate") && t.certificate_refs.is_empty()
            })
        {
            c.err(
                &format!("{at}.tls"),
                "Invalid value: an HTTPS listener in mode Terminate needs tls.certificateRefs",
            );
        }
        if l.protocol == "TLS"
            && l.tls.as_ref().is_some_and(|t| {
                t.mode.as_deref() == Some("Terminate") && t.certificate_refs.is_empty()
            })
        {
            c.err(
                &format!("{at}.tls"),
                "Invalid value: a TLS listener in mode Terminate needs tls.certificateRefs",
            );
        }
        if l.protocol == "TLS" && l.tls.is_none() {
            c.err(
                &format!("{at}.tls"),
                "Required value: a TLS listener needs tls (mode Passthrough or Terminate)",
            );
        }
        if l.protocol == "HTTP" && l.tls.is_some() {
            c.err(
                &format!("{at}.tls"),
                "Forbidden: tls must not be set for protocol HTTP",
            );
        }
        if let Some(sel) = l
            .allowed_routes
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
        {
            allowed_from(c, &format!("{at}.allowedRoutes.namespaces"), sel);
        }
    }
}

/// `spec.tls.frontend`, as the CRD validates it: 1 to 16 CA references each, a known mode,
/// at most 64 per-port entries with valid, distinct ports.
fn frontend(c: &mut Checker<'_, crate::gateway_api::Gateway>) {
    let s = c.src;
    let Some(f) = s.obj.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return;
    };
    let validation = |c: &mut Checker<'_, _>, at: &str, t: &crate::gateway_api::FrontendTLS| {
        let Some(v) = &t.validation else { return };
        let n = v.ca_certificate_refs.len();
        if !(1..=16).contains(&n) {
            c.err(
                &format!("{at}.validation.caCertificateRefs"),
                format!("Invalid value: {n} references: 1 to 16 are allowed"),
            );
        }
        for (i, r) in v.ca_certificate_refs.iter().enumerate() {
            if r.name.is_empty() || r.kind.is_empty() {
                c.err(
                    &format!("{at}.validation.caCertificateRefs[{i}]"),
                    "Required value: kind and name",
                );
            }
        }
        match v.mode.as_deref() {
            None | Some("AllowValidOnly") | Some("AllowInsecureFallback") => {}
            Some(m) => c.err(
                &format!("{at}.validation.mode"),
                format!(
                    "Unsupported value: {m:?}: supported values: \"AllowValidOnly\", \"AllowInsecureFallback\""
                ),
            ),
        }
    };
    validation(c, "spec.tls.frontend.default", &f.default);
    if f.per_port.len() > 64 {
        c.err(
            "spec.tls.frontend.perPort",
            format!("Too many: {}: must have at most 64 items", f.per_port.len()),
        );
    }
    let mut ports = std::collections::BTreeSet::new();
    for (i, p) in f.per_port.iter().enumerate() {
        let at = format!("spec.tls.frontend.perPort[{i}]");
        c.check(&format!("{at}.port"), v::port_number(p.port));
        if !ports.insert(p.port) {
            c.err(
                &format!("{at}.port"),
                "Invalid value: Port for TLS configuration must be unique within the Gateway",
            );
        }
        validation(c, &format!("{at}.tls"), &p.tls);
    }
}

pub(super) fn http_route(c: &mut Checker<'_, crate::gateway_api::HTTPRoute>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    parent_refs(c, &spec.parent_refs);
    for (i, h) in spec.hostnames.iter().enumerate() {
        c.check(&format!("spec.hostnames[{i}]"), v::wildcard_hostname(h));
    }
    for (i, r) in spec.rules.iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        route_matches(c, &at, r);
        route_filters(c, &at, r);
        route_backends(c, &at, r);
        route_timeouts(c, &at, r);
    }
}

/// A match's header names: tokens as HTTP writes them (gRPC metadata names are the same).
fn header_names<T>(
    c: &mut Checker<'_, T>,
    at: &str,
    headers: &[crate::gateway_api::HTTPHeaderMatch],
) {
    for (k, h) in headers.iter().enumerate() {
        if h.name.is_empty()
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            c.err(
                &format!("{at}.headers[{k}].name"),
                format!("Invalid value: {:?}: not an HTTP header name", h.name),
            );
        }
    }
}

/// A route's parentRefs: at most 32, their ports valid.
fn parent_refs<T>(c: &mut Checker<'_, T>, refs: &[crate::gateway_api::ParentReference]) {
    if refs.len() > 32 {
        c.err("spec.parentRefs", "Too many: at most 32 parentRefs");
    }
    for (i, p) in refs.iter().enumerate() {
        if let Some(port) = p.port {
            c.check(&format!("spec.parentRefs[{i}].port"), v::port_number(port));
        }
    }
}

/// A GRPCRoute as its CRD refuses it: at most 16 hostnames, 16 rules, 64 matches a rule and
/// 128 in all; a method match names a service or a method (an Exact one valid names); header
/// names; filters of the four types GRPCRoute allows (each with its field, a header modifier
/// once); backends as HTTPRoute's.
pub(super) fn grpc_route(c: &mut Checker<'_, crate::gateway_api::GRPCRoute>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    parent_refs(c, &spec.parent_refs);
    if spec.hostnames.len() > 16 {
        c.err("spec.hostnames", "Too many: at most 16 hostnames");
    }
    for (i, h) in spec.hostnames.iter().enumerate() {
        c.check(&format!("spec.hostnames[{i}]"), v::wildcard_hostname(h));
    }
    if spec.rules.len() > 16 {
        c.err("spec.rules", "Too many: at most 16 rules");
    }
    let total: usize = spec.rules.iter().map(|r| r.matches.len()).sum();
    if total > 128 {
        c.err(
            "spec.rules",
            format!(
                "Invalid value: {total} matches: the rules' matches must be at most 128 in all"
            ),
        );
    }
    let service_ok = |x: &str| {
        let x = x.strip_prefix('.').unwrap_or(x);
        !x.is_empty()
            && x.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    let method_ok = |x: &str| {
        x.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    for (i, r) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if r.matches.len() > 64 {
            c.err(&format!("{at}.matches"), "Too many: at most 64 matches");
        }
        for (j, m) in r.matches.iter().enumerate() {
            let at = format!("{at}.matches[{j}]");
            if let Some(mm) = &m.method {
                let t = mm.type_.as_deref().unwrap_or("Exact");
                if !matches!(t, "Exact" | "RegularExpression") {
                    c.err(&format!("{at}.method.type"), format!("Unsupported value: {t:?}: supported values: \"Exact\", \"RegularExpression\""));
                }
                if mm.service.is_none() && mm.method.is_none() {
                    c.err(
                        &format!("{at}.method"),
                        "Invalid value: One or both of 'service' or 'method' must be specified",
                    );
                }
                if t == "Exact" {
                    if let Some(x) = mm.service.as_deref().filter(|x| !service_ok(x)) {
                        c.err(&format!("{at}.method.service"), format!("Invalid value: {x:?}: service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)"));
                    }
                    if let Some(x) = mm.method.as_deref().filter(|x| !method_ok(x)) {
                        c.err(&format!("{at}.method.method"), format!("Invalid value: {x:?}: method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)"));
                    }
                }
            }
            if m.headers.len() > 16 {
                c.err(
                    &format!("{at}.headers"),
                    "Too many: at most 16 header matches",
                );
            }
            header_names(c, &at, &m.headers);
        }
        let at_ref = at.as_str();
        let mut all: Vec<(String, &crate::gateway_api::HTTPRouteFilter)> = r
            .filters
            .iter()
            .enumerate()
            .map(|(k, f)| (format!("{at_ref}.filters[{k}]"), f))
            .collect();
        for (j, b) in r.backend_refs.iter().enumerate() {
            all.extend(
                b.filters
                    .iter()
                    .enumerate()
                    .map(|(k, f)| (format!("{at_ref}.backendRefs[{j}].filters[{k}]"), f)),
            );
        }
        for (k, f) in all {
            if !matches!(
                f.type_.as_str(),
                "RequestHeaderModifier"
                    | "ResponseHeaderModifier"
                    | "RequestMirror"
                    | "ExtensionRef"
            ) {
                c.err(&format!("{k}.type"), format!("Unsupported value: {:?}: supported values: \"ResponseHeaderModifier\", \"RequestHeaderModifier\", \"RequestMirror\", \"ExtensionRef\"", f.type_));
            }
        }
        for t in ["RequestHeaderModifier", "ResponseHeaderModifier"] {
            if r.filters.iter().filter(|f| f.type_ == t).count() > 1 {
                c.err(
                    &format!("{at}.filters"),
                    format!("Invalid value: {t} filter cannot be repeated"),
                );
            }
        }
        // Each filter's field, and the backends: as HTTPRoute's.
        let as_http = crate::gateway_api::HTTPRouteRule {
            filters: r.filters.clone(),
            backend_refs: Some(r.backend_refs.clone()),
            ..Default::default()
        };
        route_filters(c, &at, &as_http);
        route_backends(c, &at, &as_http);
    }
}

/// A TLSRoute as its CRD refuses it: 1 to 1024 SNI hostnames (no IP address), one rule of
/// 1 to 16 backendRefs, each Service with a port.
pub(super) fn tls_route(c: &mut Checker<'_, crate::gateway_api::TLSRoute>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    parent_refs(c, &spec.parent_refs);
    if spec.hostnames.is_empty() {
        c.err(
            "spec.hostnames",
            "Required value: at least one SNI hostname",
        );
    }
    if spec.hostnames.len() > 1024 {
        c.err("spec.hostnames", "Too many: at most 1024 hostnames");
    }
    for (i, h) in spec.hostnames.iter().enumerate() {
        let at = format!("spec.hostnames[{i}]");
        if h.parse::<std::net::IpAddr>().is_ok() {
            c.err(
                &at,
                format!("Invalid value: {h:?}: Hostnames cannot contain an IP"),
            );
        } else {
            c.check(&at, v::wildcard_hostname(h));
        }
    }
    if spec.rules.len() != 1 {
        c.err(
            "spec.rules",
            format!(
                "Invalid value: {} rules: a TLSRoute has exactly one",
                spec.rules.len()
            ),
        );
    }
    for (i, r) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}].backendRefs");
        if r.backend_refs.is_empty() || r.backend_refs.len() > 16 {
            c.err(
                &at,
                format!(
                    "Invalid value: {} backendRefs: between 1 and 16",
                    r.backend_refs.len()
                ),
            );
        }
        for (j, b) in r.backend_refs.iter().enumerate() {
            let at = format!("{at}[{j}]");
            backend_ref(
                c,
                &at,
                (b.group.as_deref(), b.kind.as_deref()),
                b.port,
                b.weight,
            );
        }
    }
}

/// A BackendTLSPolicy as its CRD refuses it: 1 to 16 targets (a target named twice has a
/// sectionName each time, each its own), a hostname, either CA certificate references (at
/// most 8) or `wellKnownCACertificates`, at most 5 subjectAltNames each of its type.
pub(super) fn backend_tls_policy(c: &mut Checker<'_, crate::gateway_api::BackendTLSPolicy>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    let n = spec.target_refs.len();
    if !(1..=16).contains(&n) {
        c.err(
            "spec.targetRefs",
            format!("Invalid value: {n} targetRefs: between 1 and 16"),
        );
    }
    for (i, t) in spec.target_refs.iter().enumerate() {
        let twice = spec
            .target_refs
            .iter()
            .enumerate()
            .filter(|(j, o)| *j != i && o.group == t.group && o.kind == t.kind && o.name == t.name)
            .any(|(_, o)| o.section_name.is_none() || o.section_name == t.section_name);
        if twice {
            c.err(
                &format!("spec.targetRefs[{i}].sectionName"),
                "Invalid value: sectionName must be specified and unique when targetRefs includes 2 or more references to the same target",
            );
        }
    }
    let val = &s.obj.spec.validation;
    if val.hostname.is_empty() {
        c.err("spec.validation.hostname", "Required value");
    } else {
        c.check(
            "spec.validation.hostname",
            v::dns1123_subdomain(&val.hostname),
        );
    }
    let well_known = val
        .well_known_ca_certificates
        .as_deref()
        .filter(|w| !w.is_empty());
    match (val.ca_certificate_refs.is_empty(), well_known) {
        (false, Some(_)) => c.err(
            "spec.validation",
            "Invalid value: must not contain both CACertificateRefs and WellKnownCACertificates",
        ),
        (true, None) => c.err(
            "spec.validation",
            "Invalid value: must specify either CACertificateRefs or WellKnownCACertificates",
        ),
        _ => {}
    }
    if val.ca_certificate_refs.len() > 8 {
        c.err(
            "spec.validation.caCertificateRefs",
            "Too many: at most 8 CA certificate references",
        );
    }
    if val.subject_alt_names.len() > 5 {
        c.err(
            "spec.validation.subjectAltNames",
            "Too many: at most 5 subjectAltNames",
        );
    }
    for (i, san) in val.subject_alt_names.iter().enumerate() {
        let at = format!("spec.validation.subjectAltNames[{i}]");
        let has = |o: &Option<String>| o.as_deref().is_some_and(|x| !x.is_empty());
        match san.type_.as_str() {
            "Hostname" if !has(&san.hostname) || has(&san.uri) => c.err(
                &at,
                "Invalid value: a Hostname subjectAltName has a hostname and no uri",
            ),
            "URI" if !has(&san.uri) || has(&san.hostname) => c.err(
                &at,
                "Invalid value: a URI subjectAltName has a uri and no hostname",
            ),
            "Hostname" | "URI" => {}
            other => c.err(
                &format!("{at}.type"),
                format!("Unsupported value: {other:?}: supported values: \"Hostname\", \"URI\""),
            ),
        }
    }
}

/// A rule's timeouts and retries: durations as the API writes them; a backend request's
/// timeout not longer than the request's (when that one is not 0s).
fn route_timeouts(
    c: &mut Checker<'_, crate::gateway_api::HTTPRoute>,
    at: &str,
    r: &crate::gateway_api::HTTPRouteRule,
) {
    fn parsed(
        c: &mut Checker<'_, crate::gateway_api::HTTPRoute>,
        at: &str,
        d: &Option<String>,
    ) -> Option<std::time::Duration> {
        let d = d.as_deref()?;
        let v = crate::gateway_api::gateway_duration(d);
        if v.is_none() {
            c.err(
                at,
                format!("Invalid value: {d:?}: a duration such as 500ms, 10s, 1m or 1h (at most 4 parts of 1-5 digits and h, m, s or ms)"),
            );
        }
        v
    }
    if let Some(t) = &r.timeouts {
        let request = parsed(c, &format!("{at}.timeouts.request"), &t.request);
        let backend = parsed(
            c,
            &format!("{at}.timeouts.backendRequest"),
            &t.backend_request,
        );
        if let (Some(req), Some(b)) = (request, backend) {
            if !req.is_zero() && b > req {
                c.err(
                    &format!("{at}.timeouts.backendRequest"),
                    "Invalid value: backendRequest timeout cannot be longer than request timeout",
                );
            }
        }
    }
    for (k, f) in r.filters.iter().enumerate() {
        let Some(m) = &f.request_mirror else { continue };
        let at = format!("{at}.filters[{k}].requestMirror");
        if m.percent.is_some() && m.fraction.is_some() {
            c.err(
                &at,
                "Invalid value: only one of percent or fraction may be set",
            );
        }
        if let Some(p) = m.percent.filter(|p| !(0..=100).contains(p)) {
            c.err(
                &format!("{at}.percent"),
                format!("Invalid value: {p}: must be 0 to 100"),
            );
        }
        if let Some(f) = &m.fraction {
            let d = f.denominator.unwrap_or(100);
            if d < 1 || f.numerator < 0 || f.numerator > d {
                c.err(
                    &format!("{at}.fraction"),
                    "Invalid value: numerator must be 0 to denominator, denominator at least 1",
                );
            }
        }
        let kind = m.backend_ref.kind.as_deref().unwrap_or("Service");
        if kind == "Service" && m.backend_ref.port.is_none() {
            c.err(
                &format!("{at}.backendRef.port"),
                "Required value: port is required when the backend is a Service",
            );
        }
    }
    for (k, f) in r.filters.iter().enumerate() {
        let Some(cors) = &f.cors else { continue };
        let at = format!("{at}.filters[{k}].cors");
        for (i, o) in cors.allow_origins.iter().enumerate() {
            let ok = o == "*"
                || o.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains('/')
                        && rest
                            .rfind('*')
                            .is_none_or(|i| i == 0 && rest.starts_with("*."))
                });
            if !ok {
                c.err(
                    &format!("{at}.allowOrigins[{i}]"),
                    format!("Invalid value: {o:?}: `*`, or scheme://host[:port] (http or https; the host may start with `*.`)"),
                );
            }
        }
        if cors.allow_methods.len() > 1 && cors.allow_methods.iter().any(|m| m == "*") {
            c.err(
                &format!("{at}.allowMethods"),
                "Invalid value: `*` must be the only method",
            );
        }
        if cors.max_age.is_some_and(|a| a < 1) {
            c.err(&format!("{at}.maxAge"), "Invalid value: at least 1");
        }
    }
    if let Some(rt) = &r.retry {
        parsed(c, &format!("{at}.retry.backoff"), &rt.backoff);
        for (k, code) in rt.codes.iter().enumerate() {
            if !(400..=599).contains(code) {
                c.err(
                    &format!("{at}.retry.codes[{k}]"),
                    format!("Invalid value: {code}: must be between 400 and 599"),
                );
            }
        }
        if rt.attempts.is_some_and(|a| a < 0) {
            c.err(
                &format!("{at}.retry.attempts"),
                "Invalid value: must be 0 or more",
            );
        }
    }
}

/// A rule's matches: path types and values, header names, methods.
fn route_matches(
    c: &mut Checker<'_, crate::gateway_api::HTTPRoute>,
    at: &str,
    r: &crate::gateway_api::HTTPRouteRule,
) {
    for (j, m) in r.matches.iter().flatten().enumerate() {
        let at = format!("{at}.matches[{j}]");
        if let Some(p) = &m.path {
            let t = p.type_.as_deref().unwrap_or("PathPrefix");
            if !matches!(t, "Exact" | "PathPrefix" | "RegularExpression") {
                c.err(&format!("{at}.path.type"), format!("Unsupported value: {t:?}: supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\""));
            }
            let value = p.value.as_deref().unwrap_or("/");
            if t != "RegularExpression" && !value.starts_with('/') {
                c.err(
                    &format!("{at}.path.value"),
                    format!("Invalid value: {value:?}: must be an absolute path"),
                );
            }
            if t != "RegularExpression"
                && (value.contains("//")
                    || value.contains("/./")
                    || value.contains("/../")
                    || value.contains('%') && value.contains("%2f")
                    || value.ends_with("/..")
                    || value.ends_with("/.")
                    || value.contains('#')
                    || value.contains('?'))
            {
                c.err(&format!("{at}.path.value"), format!("Invalid value: {value:?}: must not contain '//', '/./', '/../', '#' or '?', or end in '/..' or '/.'"));
            }
        }
        header_names(c, &at, &m.headers);
        if let Some(method) = &m.method {
            if !matches!(
                method.as_str(),
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "DELETE"
                    | "CONNECT"
                    | "OPTIONS"
                    | "TRACE"
                    | "PATCH"
            ) {
                c.err(
                    &format!("{at}.method"),
                    format!("Unsupported value: {method:?}"),
                );
            }
        }
    }
}

/// A rule's filters and its backends' filters: each type with its field, redirect codes; a
/// redirect with neither a rewrite nor backends.
fn route_filters<T>(c: &mut Checker<'_, T>, at: &str, r: &crate::gateway_api::HTTPRouteRule) {
    let mut all: Vec<(String, &crate::gateway_api::HTTPRouteFilter)> = r
        .filters
        .iter()
        .enumerate()
        .map(|(k, f)| (format!("{at}.filters[{k}]"), f))
        .collect();
    for (j, b) in r.backend_refs.iter().flatten().enumerate() {
        all.extend(
            b.filters
                .iter()
                .enumerate()
                .map(|(k, f)| (format!("{at}.backendRefs[{j}].filters[{k}]"), f)),
        );
    }
    for (at, f) in &all {
        let set = [
            ("RequestHeaderModifier", f.request_header_modifier.is_some()),
            (
                "ResponseHeaderModifier",
                f.response_header_modifier.is_some(),
            ),
            ("RequestRedirect", f.request_redirect.is_some()),
            ("URLRewrite", f.url_rewrite.is_some()),
            ("RequestMirror", f.request_mirror.is_some()),
            ("ExtensionRef", f.extension_ref.is_some()),
            ("CORS", f.cors.is_some()),
            ("ExternalAuth", f.external_auth.is_some()),
        ];
        match set.iter().find(|(t, _)| *t == f.type_) {
            None => c.err(
                &format!("{at}.type"),
                format!("Unsupported value: {:?}", f.type_),
            ),
            Some((_, false)) => c.err(
                at,
                format!(
                    "Invalid value: filter type {} needs its {} field",
                    f.type_, f.type_
                ),
            ),
            Some(_) => {}
        }
        if let Some(code) = f.request_redirect.as_ref().and_then(|r| r.status_code) {
            if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                c.err(
                    &format!("{at}.requestRedirect.statusCode"),
                    format!("Unsupported value: {code}: supported values: 301, 302, 303, 307, 308"),
                );
            }
        }
    }
    let redirect = r.filters.iter().any(|f| f.request_redirect.is_some());
    let rewrite = r.filters.iter().any(|f| f.url_rewrite.is_some());
    if redirect && rewrite {
        c.err(
            &format!("{at}.filters"),
            "Invalid value: RequestRedirect and URLRewrite cannot both be set",
        );
    }
    if redirect && r.backend_refs.as_ref().is_some_and(|b| !b.is_empty()) {
        c.err(
            &format!("{at}.backendRefs"),
            "Invalid value: a rule with a RequestRedirect filter has no backendRefs",
        );
    }
}

/// A rule's backends: weights, and a Service backend's port.
fn route_backends<T>(c: &mut Checker<'_, T>, at: &str, r: &crate::gateway_api::HTTPRouteRule) {
    for (j, b) in r.backend_refs.iter().flatten().enumerate() {
        let at = format!("{at}.backendRefs[{j}]");
        backend_ref(
            c,
            &at,
            (b.group.as_deref(), b.kind.as_deref()),
            b.port,
            b.weight,
        );
    }
}

/// One backendRef, whatever the route's kind: its weight, and a Service's port.
fn backend_ref<T>(
    c: &mut Checker<'_, T>,
    at: &str,
    (group, kind): (Option<&str>, Option<&str>),
    port: Option<i32>,
    weight: Option<i32>,
) {
    if let Some(w) = weight {
        if !(0..=1_000_000).contains(&w) {
            c.err(
                &format!("{at}.weight"),
                format!("Invalid value: {w}: must be between 0 and 1000000"),
            );
        }
    }
    let service = group.unwrap_or("").is_empty() && kind.unwrap_or("Service") == "Service";
    match port {
        Some(p) => c.check(&format!("{at}.port"), v::port_number(p)),
        None if service => c.err(
            &format!("{at}.port"),
            "Required value: a Service backendRef needs a port",
        ),
        None => {}
    }
}
