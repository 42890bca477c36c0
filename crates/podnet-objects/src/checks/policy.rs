//! ClusterNetworkPolicy, as its CRD (`policy.networking.k8s.io_clusternetworkpolicies.yaml`,
//! experimental channel) and its CEL rules refuse it.

use super::*;
use crate::policy_api::{ClusterNetworkPolicy, NamespacedPod, ProtocolMatch};

/// At most this many rules per direction, peers per rule, protocols per rule, CIDRs and
/// domain names per peer.
const MAX_ITEMS: usize = 25;

pub(super) fn cluster_network_policy(c: &mut Checker<'_, ClusterNetworkPolicy>) {
    let s = c.src;
    c.meta(&s.obj.metadata, v::dns1123_subdomain);
    let spec = &s.obj.spec;
    if spec.tier.is_none() {
        c.err(
            "spec.tier",
            "Required value: supported values: \"Admin\", \"Baseline\"",
        );
    }
    if !(0..=1000).contains(&spec.priority) {
        c.err(
            "spec.priority",
            format!(
                "Invalid value: {}: must be between 0 and 1000, inclusive",
                spec.priority
            ),
        );
    }
    let subject = &spec.subject;
    match (&subject.namespaces, &subject.pods) {
        (Some(ns), None) => c.selector("spec.subject.namespaces", ns),
        (None, Some(p)) => namespaced_pod(c, "spec.subject.pods", p),
        _ => c.err(
            "spec.subject",
            "Invalid value: exactly one of namespaces or pods must be set",
        ),
    }
    for (dir, n) in [
        ("ingress", spec.ingress.len()),
        ("egress", spec.egress.len()),
    ] {
        if n > MAX_ITEMS {
            c.err(
                &format!("spec.{dir}"),
                format!("Too many: {n}: must have at most {MAX_ITEMS} items"),
            );
        }
    }
    for (i, r) in spec.ingress.iter().enumerate() {
        let base = format!("spec.ingress[{i}]");
        rule_head(
            c,
            &base,
            r.name.as_deref(),
            r.action.is_some(),
            r.from.len(),
            "from",
        );
        for (j, peer) in r.from.iter().enumerate() {
            let pp = format!("{base}.from[{j}]");
            one_field(c, &pp, peer.fields(), "namespaces, pods");
            if let Some(ns) = &peer.namespaces {
                c.selector(&format!("{pp}.namespaces"), ns);
            }
            if let Some(p) = &peer.pods {
                namespaced_pod(c, &format!("{pp}.pods"), p);
            }
        }
        protocols(c, &base, r.protocols.as_deref());
    }
    for (i, r) in spec.egress.iter().enumerate() {
        let base = format!("spec.egress[{i}]");
        rule_head(
            c,
            &base,
            r.name.as_deref(),
            r.action.is_some(),
            r.to.len(),
            "to",
        );
        let mut addresses = false;
        for (j, peer) in r.to.iter().enumerate() {
            let pp = format!("{base}.to[{j}]");
            one_field(
                c,
                &pp,
                peer.fields(),
                "namespaces, pods, nodes, networks, domainNames",
            );
            if let Some(ns) = &peer.namespaces {
                c.selector(&format!("{pp}.namespaces"), ns);
            }
            if let Some(p) = &peer.pods {
                namespaced_pod(c, &format!("{pp}.pods"), p);
            }
            if let Some(n) = &peer.nodes {
                c.selector(&format!("{pp}.nodes"), n);
                addresses = true;
            }
            if let Some(nets) = &peer.networks {
                addresses = true;
                count(c, &format!("{pp}.networks"), nets.len());
                for (k, cidr) in nets.iter().enumerate() {
                    let path = format!("{pp}.networks[{k}]");
                    if cidr.len() > 43 {
                        c.err(&path, "Too long: may not be longer than 43");
                    } else if cidr.parse::<ipnet::IpNet>().is_err() {
                        c.err(
                            &path,
                            format!("Invalid value: {cidr:?}: Invalid CIDR format provided"),
                        );
                    }
                }
            }
            if let Some(names) = &peer.domain_names {
                addresses = true;
                count(c, &format!("{pp}.domainNames"), names.len());
                for (k, name) in names.iter().enumerate() {
                    if !domain_name(name) {
                        c.err(
                            &format!("{pp}.domainNames[{k}]"),
                            format!(
                                "Invalid value: {name:?}: must be a DNS name, optionally with a leading \"*.\""
                            ),
                        );
                    }
                }
            }
        }
        protocols(c, &base, r.protocols.as_deref());
        let named = r
            .protocols
            .iter()
            .flatten()
            .any(|p| p.destination_named_port.is_some());
        if addresses && named {
            c.err(
                &base,
                "Invalid value: networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames",
            );
        }
    }
}

/// A rule's name (at most 100 characters), its action (required) and its 1 to 25 peers.
fn rule_head(
    c: &mut Checker<'_, ClusterNetworkPolicy>,
    base: &str,
    name: Option<&str>,
    has_action: bool,
    peers: usize,
    field: &str,
) {
    if name.is_some_and(|n| n.chars().count() > 100) {
        c.err(
            &format!("{base}.name"),
            "Too long: may not be longer than 100",
        );
    }
    if !has_action {
        c.err(
            &format!("{base}.action"),
            "Required value: supported values: \"Accept\", \"Deny\", \"Pass\"",
        );
    }
    if peers == 0 {
        c.err(
            &format!("{base}.{field}"),
            "Required value: should have at least 1 items",
        );
    }
    count(c, &format!("{base}.{field}"), peers);
}

fn count(c: &mut Checker<'_, ClusterNetworkPolicy>, path: &str, n: usize) {
    if n > MAX_ITEMS {
        c.err(
            path,
            format!("Too many: {n}: must have at most {MAX_ITEMS} items"),
        );
    } else if n == 0 {
        c.err(path, "Required value: should have at least 1 items");
    }
}

fn one_field(c: &mut Checker<'_, ClusterNetworkPolicy>, path: &str, n: usize, fields: &str) {
    if n != 1 {
        c.err(
            path,
            format!("Invalid value: {n} fields set: exactly one of {fields} must be set"),
        );
    }
}

fn namespaced_pod(c: &mut Checker<'_, ClusterNetworkPolicy>, path: &str, p: &NamespacedPod) {
    c.selector(&format!("{path}.namespaceSelector"), &p.namespace_selector);
    c.selector(&format!("{path}.podSelector"), &p.pod_selector);
}

/// A rule's protocols: 1 to 25 when present, each exactly one field; a port a number in
/// 1..=65535 or a range with `start < end`.
fn protocols(
    c: &mut Checker<'_, ClusterNetworkPolicy>,
    base: &str,
    list: Option<&[ProtocolMatch]>,
) {
    let Some(list) = list else { return };
    count(c, &format!("{base}.protocols"), list.len());
    for (i, p) in list.iter().enumerate() {
        let pp = format!("{base}.protocols[{i}]");
        one_field(c, &pp, p.fields(), "tcp, udp, sctp, destinationNamedPort");
        if let Some(name) = &p.destination_named_port {
            c.check(
                &format!("{pp}.destinationNamedPort"),
                v::iana_svc_name(name),
            );
        }
        for (proto, port) in [("tcp", &p.tcp), ("udp", &p.udp), ("sctp", &p.sctp)] {
            let Some(port) = port else { continue };
            let path = format!("{pp}.{proto}");
            let Some(dp) = &port.destination_port else {
                c.err(&path, "Required value: should have at least 1 properties");
                continue;
            };
            let path = format!("{path}.destinationPort");
            match (dp.number, &dp.range) {
                (Some(n), None) => c.check(&format!("{path}.number"), v::port_number(n)),
                (None, Some(r)) => {
                    c.check(&format!("{path}.range.start"), v::port_number(r.start));
                    c.check(&format!("{path}.range.end"), v::port_number(r.end));
                    if r.start >= r.end {
                        c.err(
                            &format!("{path}.range"),
                            "Invalid value: Start port must be less than End port",
                        );
                    }
                }
                _ => c.err(
                    &path,
                    "Invalid value: exactly one of number or range must be set",
                ),
            }
        }
    }
}

/// The CRD's pattern for a domain name: labels of letters, digits, `-` and `_` (not first or
/// last), at least two of them, an optional leading `*.` and trailing `.`.
fn domain_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        })
}
