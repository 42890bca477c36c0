//! `podnet explain FROM TO:PORT[/PROTO]`: whether the NetworkPolicies allow a connection, and
//! why: which policies isolate each end, and the rule that allows it or that none does.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use podnet_model::netpol::{End, Policies, Side, Verdict};
use podnet_model::{Cluster, IpFamily, PodInfo, Protocol, ServiceInfo, ServicePortInfo};
use serde::Serialize;

use crate::{build_model, ExplainArgs};

/// One judged connection.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Judged {
    from: String,
    to: String,
    port: u16,
    protocol: Protocol,
    #[serde(flatten)]
    verdict: Verdict,
}

pub fn run(a: ExplainArgs) -> Result<ExitCode> {
    let Some(cluster) = build_model(&a.manifests.files, &a.cluster)? else {
        return Ok(ExitCode::FAILURE);
    };
    let (target, port, protocol) = parse_target(&a.to)?;
    let cluster = match family(a.family.as_deref(), &[&a.from, &target])? {
        Some(f) => over(&cluster, f),
        None => cluster,
    };
    let from = end(&cluster, &a.from)?;
    let policies = Policies::of(&cluster);
    let judged: Vec<Judged> = destinations(&cluster, &target, port, protocol)?
        .into_iter()
        .map(|(to, name, port)| Judged {
            from: a.from.clone(),
            to: name,
            port,
            protocol,
            verdict: policies.judge(from, to, port, protocol),
        })
        .collect();
    crate::output::emit(a.output, &judged, || {
        judged.iter().map(render).collect::<Vec<_>>().join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The family to judge over: `--family`, else that of an address given as source or target
/// (both given must agree).
fn family(flag: Option<&str>, ends: &[&str]) -> Result<Option<IpFamily>> {
    let mut of_addresses = ends
        .iter()
        .filter_map(|e| e.parse::<IpAddr>().ok())
        .map(IpFamily::of);
    let first = of_addresses.next();
    if let Some(other) = of_addresses.find(|f| Some(*f) != first) {
        bail!(
            "{} and {} addresses: a connection is of one family",
            first.expect("one").as_str(),
            other.as_str()
        );
    }
    match flag {
        None => Ok(first),
        Some(f) => {
            let f = IpFamily::parse(f).ok_or_else(|| anyhow!("--family {f:?}: IPv4 or IPv6"))?;
            if first.is_some_and(|a| a != f) {
                bail!(
                    "--family {} and an {} address",
                    f.as_str(),
                    first.expect("some").as_str()
                );
            }
            Ok(Some(f))
        }
    }
}

/// The cluster with each pod at its address of `family` (pods without one have none).
fn over(c: &Cluster, family: IpFamily) -> Cluster {
    let mut c = c.clone();
    for p in &mut c.pods {
        if let Some(at) = p.at(family) {
            *p = at;
        } else {
            p.ips.clear();
        }
    }
    c
}

/// `TARGET:PORT[/PROTO]`.
fn parse_target(s: &str) -> Result<(String, u16, Protocol)> {
    let (rest, protocol) = match s.rsplit_once('/') {
        Some((r, p)) if Protocol::parse(&p.to_uppercase()).is_some() => {
            (r, Protocol::parse(&p.to_uppercase()).expect("checked"))
        }
        _ => (s, Protocol::Tcp),
    };
    let (target, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{s:?}: expected TARGET:PORT[/TCP|UDP|SCTP]"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("{s:?}: {port:?} is not a port number"))?;
    Ok((target.to_string(), port, protocol))
}

/// A source: a pod by `namespace/name`, or an address (a pod's, if a pod has it).
fn end<'a>(c: &'a Cluster, s: &str) -> Result<End<'a>> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(c
            .pods
            .iter()
            .find(|p| !p.host_network && p.ips.contains(&ip))
            .map_or(End::Ip(ip), End::Pod));
    }
    Ok(End::Pod(pod(c, s)?))
}

fn pod<'a>(c: &'a Cluster, s: &str) -> Result<&'a PodInfo> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("{s:?}: expected namespace/name or an IP address"))?;
    c.pod(ns, name)
        .ok_or_else(|| anyhow!("no pod {s:?} in the manifests"))
}

/// The destinations a target means: one pod or address, or each endpoint of a Service (at its
/// target port: policies judge traffic after the Service's translation). A Service is meant by
/// name, or by an address the proxy translates: a ClusterIP, an external or load-balancer IP
/// at the Service's port, or a node's address at a node port.
fn destinations<'a>(
    c: &'a Cluster,
    target: &str,
    port: u16,
    protocol: Protocol,
) -> Result<Vec<(End<'a>, String, u16)>> {
    if let Ok(ip) = target.parse::<IpAddr>() {
        if let Some((svc, sp)) = service_at(c, ip, port, protocol) {
            let via = format!("Service {}/{} at {target}:{port}", svc.namespace, svc.name);
            return endpoints_of(c, svc, sp, &via);
        }
        let e = end(c, target)?;
        return Ok(vec![(e, target.to_string(), port)]);
    }
    let (ns, name) = target
        .split_once('/')
        .ok_or_else(|| anyhow!("{target:?}: expected namespace/name or an IP address"))?;
    if let Some(p) = c.pod(ns, name) {
        return Ok(vec![(End::Pod(p), target.to_string(), port)]);
    }
    let Some(svc) = c.service(ns, name) else {
        bail!("no pod or Service {target:?} in the manifests");
    };
    let sp = svc
        .ports
        .iter()
        .find(|p| p.port == i32::from(port) && p.protocol == protocol)
        .ok_or_else(|| anyhow!("Service {target} has no port {port}/{protocol}"))?;
    endpoints_of(c, svc, sp, &format!("Service {target}"))
}

/// The Service and port that the proxy sends `ip:port` to, if any.
fn service_at(
    c: &Cluster,
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
) -> Option<(&ServiceInfo, &ServicePortInfo)> {
    let node_ip = c.nodes.iter().any(|n| n.internal_ip == ip);
    c.services.iter().find_map(|svc| {
        let at_service_port = svc.cluster_ips.contains(&ip)
            || svc.external_ips.contains(&ip)
            || svc.load_balancer_ips.contains(&ip);
        svc.ports.iter().find_map(|sp| {
            let by_port = at_service_port && sp.port == i32::from(port);
            let by_node_port = node_ip && sp.node_port == Some(i32::from(port));
            (sp.protocol == protocol && (by_port || by_node_port) && !svc.headless)
                .then_some((svc, sp))
        })
    })
}

/// Each endpoint of a Service's port, at its target port.
fn endpoints_of<'a>(
    c: &'a Cluster,
    svc: &ServiceInfo,
    sp: &ServicePortInfo,
    via: &str,
) -> Result<Vec<(End<'a>, String, u16)>> {
    let ns = &svc.namespace;
    let mut out = Vec::new();
    for slice in &svc.endpoint_slices {
        let Some(ep_port) = slice
            .ports
            .iter()
            .find(|p| p.name == sp.name && p.protocol == sp.protocol)
        else {
            continue;
        };
        for e in &slice.endpoints {
            let Some(pod) = e.pod.as_deref().and_then(|n| c.pod(ns, n)) else {
                continue;
            };
            let target_port = u16::try_from(ep_port.port).unwrap_or(sp.port as u16);
            out.push((
                End::Pod(pod),
                format!("{ns}/{} (via {via})", pod.name),
                target_port,
            ));
        }
    }
    if out.is_empty() {
        bail!("{via} has no endpoints on port {}/{}", sp.port, sp.protocol);
    }
    Ok(out)
}

fn render(j: &Judged) -> String {
    let verdict = if j.verdict.allowed {
        "allowed"
    } else {
        "denied"
    };
    let side = |what: &str, s: &Side| match s {
        Side::NotIsolated => {
            format!("  {what}: not isolated (no NetworkPolicy of that type selects it)")
        }
        Side::Allowed { isolated_by, rule } => format!(
            "  {what}: isolated by {}; allowed by {rule}",
            list(isolated_by)
        ),
        Side::Denied { isolated_by } => format!(
            "  {what}: isolated by {}; no rule of theirs allows {}/{} here",
            list(isolated_by),
            j.protocol,
            j.port
        ),
        Side::Cluster { rule, allowed } => format!(
            "  {what}: {} by {rule}",
            if *allowed { "allowed" } else { "denied" }
        ),
    };
    // An Admin-tier Pass handed the side on: said before what decided it.
    let side = |what: &str, dir: podnet_model::netpol::Direction, s: &Side| {
        let mut out = String::new();
        for p in j.verdict.passed.iter().filter(|p| p.direction == dir) {
            out += &format!("  {what}: passed on to NetworkPolicy by {p}\n");
        }
        out + &side(what, s)
    };
    format!(
        "{} -> {} {}/{}: {verdict}\n{}\n{}",
        j.from,
        j.to,
        j.protocol,
        j.port,
        side(
            &format!("egress of {}", j.from),
            podnet_model::netpol::Direction::Egress,
            &j.verdict.egress
        ),
        side(
            &format!("ingress of {}", j.to),
            podnet_model::netpol::Direction::Ingress,
            &j.verdict.ingress
        ),
    )
}

fn list(v: &[podnet_model::NsName]) -> String {
    v.iter()
        .map(|k| format!("NetworkPolicy {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
