//! NetworkPolicy and Ingress, as the API server validates them.

use super::*;

pub(super) fn network_policy(c: &mut Checker<'_, NetworkPolicy>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    if let Some(spec) = &s.obj.spec {
        if let Some(ps) = &spec.pod_selector {
            c.selector("spec.podSelector", ps);
        }
        for (i, t) in spec.policy_types.iter().flatten().enumerate() {
            if !matches!(t.as_str(), "Ingress" | "Egress") {
                c.err(
                    &format!("spec.policyTypes[{i}]"),
                    format!("Unsupported value: {t:?}: supported values: \"Egress\", \"Ingress\""),
                );
            }
        }
        let rules = spec
            .ingress
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("spec.ingress[{i}]"),
                    "from",
                    r.from.as_ref(),
                    r.ports.as_ref(),
                )
            })
            .chain(spec.egress.iter().flatten().enumerate().map(|(i, r)| {
                (
                    format!("spec.egress[{i}]"),
                    "to",
                    r.to.as_ref(),
                    r.ports.as_ref(),
                )
            }))
            .collect::<Vec<_>>();
        for (base, peer_field, peers, ports) in rules {
            for (j, peer) in peers.into_iter().flatten().enumerate() {
                policy_peer(c, &format!("{base}.{peer_field}[{j}]"), peer);
            }
            for (j, p) in ports.into_iter().flatten().enumerate() {
                policy_port(c, &format!("{base}.ports[{j}]"), p);
            }
        }
    }
}

/// A peer of a NetworkPolicy rule: selectors, or an ipBlock whose `except` lies inside it.
fn policy_peer(c: &mut Checker<'_, NetworkPolicy>, pp: &str, peer: &NetworkPolicyPeer) {
    if let Some(ps) = &peer.pod_selector {
        c.selector(&format!("{pp}.podSelector"), ps);
    }
    if let Some(ns) = &peer.namespace_selector {
        c.selector(&format!("{pp}.namespaceSelector"), ns);
    }
    if let Some(b) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            c.err(
                pp,
                "Forbidden: may not specify ipBlock together with podSelector or namespaceSelector",
            );
        }
        match b.cidr.parse::<ipnet::IpNet>() {
            Err(_) => c.err(
                &format!("{pp}.ipBlock.cidr"),
                format!("Invalid value: {:?}: must be a valid CIDR", b.cidr),
            ),
            Ok(net) => {
                for (k, e) in b.except.iter().flatten().enumerate() {
                    match e.parse::<ipnet::IpNet>() {
                        Ok(x) if net.contains(&x) && x != net => {}
                        _ => c.err(
                            &format!("{pp}.ipBlock.except[{k}]"),
                            format!("Invalid value: {e:?}: must be a strict subset of `cidr`"),
                        ),
                    }
                }
            }
        }
    }
}

/// A port of a NetworkPolicy rule: protocol, number or name, and a range's end.
fn policy_port(c: &mut Checker<'_, NetworkPolicy>, pp: &str, p: &NetworkPolicyPort) {
    if let Some(pr) = &p.protocol {
        c.check(&format!("{pp}.protocol"), v::protocol(pr));
    }
    match &p.port {
        Some(IntOrString::Int(n)) => c.check(&format!("{pp}.port"), v::port_number(*n)),
        Some(IntOrString::String(name)) => c.check(&format!("{pp}.port"), v::iana_svc_name(name)),
        None => {}
    }
    if let Some(end) = p.end_port {
        match &p.port {
            Some(IntOrString::Int(n)) if end >= *n => {
                c.check(&format!("{pp}.endPort"), v::port_number(end))
            }
            Some(IntOrString::Int(_)) => c.err(
                &format!("{pp}.endPort"),
                "Invalid value: must be greater than or equal to `port`",
            ),
            _ => c.err(
                &format!("{pp}.endPort"),
                "Forbidden: may only be set with a numeric `port`",
            ),
        }
    }
}

pub(super) fn ingress(c: &mut Checker<'_, Ingress>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    if let Some(spec) = &s.obj.spec {
        for (i, r) in spec.rules.iter().flatten().enumerate() {
            if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
                c.check(&format!("spec.rules[{i}].host"), v::wildcard_hostname(h));
            }
            for (j, p) in r.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let pp = format!("spec.rules[{i}].http.paths[{j}]");
                if !matches!(
                    p.path_type.as_str(),
                    "Exact" | "Prefix" | "ImplementationSpecific"
                ) {
                    c.err(&format!("{pp}.pathType"), format!("Unsupported value: {:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"", p.path_type));
                }
                if let Some(path) = &p.path {
                    if p.path_type != "ImplementationSpecific" && !path.starts_with('/') {
                        c.err(
                            &format!("{pp}.path"),
                            format!("Invalid value: {path:?}: must be an absolute path"),
                        );
                    }
                }
                if let Some(svc) = &p.backend.service {
                    if let Some(port) = &svc.port {
                        if let Some(n) = port.number {
                            c.check(
                                &format!("{pp}.backend.service.port.number"),
                                v::port_number(n),
                            );
                        }
                        if port.number.is_some() && port.name.is_some() {
                            c.err(
                                &format!("{pp}.backend.service.port"),
                                "Invalid value: cannot set both port name & port number",
                            );
                        }
                    }
                }
            }
        }
    }
}
