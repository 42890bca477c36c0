//! `lab probe`: connectivity from pods to pods, as upstream's NetworkPolicy e2e probes it, in
//! parallel with a timeout. A cell is `.` when the source reached the target's server on the
//! port (and the server answered with the target's name), `X` otherwise. SCTP, on this kernel
//! without SCTP sockets: `.` when an INIT reached the target pod's kernel, which answers it
//! with protocol unreachable whatever the port ([`podnet_node::sctp`]).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use podnet_model::Protocol;
use serde::Serialize;

use podnet_node::NodeError;

use crate::{LabError, LabState};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matrix {
    pub port: u16,
    pub protocol: Protocol,
    /// `namespace/name` of each pod, rows (from) and columns (to) alike.
    pub pods: Vec<String>,
    /// `reachable[from][to]`.
    pub reachable: Vec<Vec<bool>>,
    /// The cells where the packets disagree with what the nodes' policy tables and the
    /// servers' ports say (the static answer of `podnet check --reach`): `from -> to`.
    pub disagreements: Vec<String>,
}

impl Matrix {
    /// The e2e truth-table layout: a header of targets, one row per source.
    pub fn render(&self) -> String {
        let mut s = String::from("-");
        for p in &self.pods {
            s.push('\t');
            s.push_str(p);
        }
        s.push('\n');
        for (i, row) in self.reachable.iter().enumerate() {
            s.push_str(&self.pods[i]);
            for ok in row {
                s.push('\t');
                s.push(if *ok { '.' } else { 'X' });
            }
            s.push('\n');
        }
        if self.disagreements.is_empty() {
            s.push_str("the static matrix agrees: every cell is what the policies and the servers' ports say\n");
        } else {
            s.push_str(&format!(
                "the static matrix disagrees in {} cell(s): {}\n",
                self.disagreements.len(),
                self.disagreements.join(", ")
            ));
        }
        s
    }
}

/// Probes every pod (with an IP, not hostNetwork) from every other, over `family` (each pod
/// at its address of that family; None: the cluster's primary family).
pub fn probe(
    st: &LabState,
    port: u16,
    protocol: &str,
    family: Option<podnet_model::IpFamily>,
    timeout: Duration,
) -> Result<Matrix, LabError> {
    let protocol = Protocol::parse(protocol)
        .ok_or_else(|| LabError::Invalid(format!("protocol {protocol:?}: TCP, UDP or SCTP")))?;
    let address = |p: &crate::PodPlan| -> Option<IpAddr> {
        let ips = st.pod_ips_of(&p.key());
        match family {
            None => ips.first().copied(),
            Some(f) => ips
                .iter()
                .copied()
                .find(|ip| podnet_model::IpFamily::of(*ip) == f),
        }
    };
    let pods: Vec<_> = st
        .plan
        .pods
        .iter()
        // The user's pods: not the host's network, not the built-in cluster DNS.
        .filter(|p| !p.host_network && !p.dns_server)
        .filter_map(|p| Some((p, address(p)?)))
        .collect();
    if pods.is_empty() && family.is_some() {
        return Err(LabError::Invalid(format!(
            "no pod of the lab has an {} address",
            family.map(|f| f.as_str()).unwrap_or_default()
        )));
    }
    // A test server answers with its pod's name; an Ingress controller's or a Gateway's
    // proxy (not the lab's server) with any HTTP response that is its own.
    let targets: Vec<(String, IpAddr)> = pods
        .iter()
        .map(|(p, ip)| {
            let edge = p.ingress_controller || p.gateway.is_some();
            (if edge { String::new() } else { p.name.clone() }, *ip)
        })
        .collect();
    let rows: Vec<Result<Vec<bool>, LabError>> = std::thread::scope(|s| {
        let mut out = Vec::new();
        for chunk in pods.chunks(32) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(src, _)| {
                    let targets = &targets;
                    let path = podnet_node::sys::netns_path(&src.netns);
                    s.spawn(move || -> Result<Vec<bool>, LabError> {
                        Ok(podnet_node::sys::in_netns(&path, || {
                            if protocol == Protocol::Sctp {
                                return reach_sctp(targets, port, timeout).map_err(|source| {
                                    NodeError::Io {
                                        what: "probing SCTP through raw sockets".into(),
                                        source,
                                    }
                                });
                            }
                            Ok(targets
                                .iter()
                                .map(|(name, ip)| {
                                    reach(SocketAddr::new(*ip, port), protocol, name, timeout)
                                })
                                .collect())
                        })?)
                    })
                })
                .collect();
            out.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("probe thread panicked")),
            );
        }
        out
    });
    let reachable = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    // What should be: the source may connect (the policy tables the nodes hold, which equal
    // the model's judgement) and the destination serves the port.
    let plans: std::collections::BTreeMap<String, podnet_policy::PolicyPlan> = st
        .nodes
        .iter()
        .filter_map(|(n, h)| Some((n.clone(), h.policy.clone()?)))
        .collect();
    let mut disagreements = Vec::new();
    for (i, (src, sip)) in pods.iter().enumerate() {
        for (j, (dst, dip)) in pods.iter().enumerate() {
            // Without an SCTP stack every pod's kernel answers an INIT, whatever the port.
            let serves = protocol == Protocol::Sctp
                || dst
                    .ports
                    .iter()
                    .chain(&dst.service_ports)
                    .any(|p| p.port == port && p.protocol == protocol);
            let allowed = i == j
                || podnet_policy::passes(
                    &plans,
                    *sip,
                    *dip,
                    podnet_policy::protocol_number(protocol),
                    port,
                );
            if reachable[i][j] != (serves && allowed) {
                disagreements.push(format!("{} -> {}", src.key(), dst.key()));
            }
        }
    }
    Ok(Matrix {
        port,
        protocol,
        pods: pods.iter().map(|(p, _)| p.key().to_string()).collect(),
        reachable,
        disagreements,
    })
}

/// SCTP probes of every target at once, from the current thread's namespace.
fn reach_sctp(
    targets: &[(String, IpAddr)],
    port: u16,
    timeout: Duration,
) -> std::io::Result<Vec<bool>> {
    let probes: Vec<Option<podnet_node::sctp::Probe>> = targets
        .iter()
        .map(|(_, ip)| {
            Some(podnet_node::sctp::Probe {
                from: None,
                to: SocketAddr::new(*ip, port),
            })
        })
        .collect();
    let sent: Vec<podnet_node::sctp::Probe> = probes.iter().flatten().copied().collect();
    let mut answers = podnet_node::sctp::reach_all(&sent, 40000, timeout)?.into_iter();
    Ok(probes
        .iter()
        .map(|p| p.is_some() && answers.next().unwrap_or(false))
        .collect())
}

/// One probe from the current thread's namespace: the server answers with `want` (empty:
/// any HTTP response over TCP).
pub fn reach(to: SocketAddr, protocol: Protocol, want: &str, timeout: Duration) -> bool {
    if protocol == Protocol::Udp {
        let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.send_to(b"hostname", to).is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        return matches!(s.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == want.as_bytes());
    }
    let Ok(mut s) = TcpStream::connect_timeout(&to, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(format!("GET /hostname HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.") && (want.is_empty() || resp.ends_with(want))
}
