//! A logged packet told as a flow record: the pods at both ends (or the outside address), the
//! Service the connection was sent to, the verdict and its reason, and the policies that
//! selected the isolated end, all from the model (as `podnet explain` tells them).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use podnet_model::netpol::{Direction, Policies};
use podnet_model::{Cluster, PodInfo, Protocol, ServiceInfo};
use serde::{Deserialize, Serialize};

use crate::packet::{Packet, SCTP, TCP, UDP};
use crate::{Reason, Verdict};

/// One flow event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// When the agent read it (RFC 3339).
    pub time: String,
    /// The node whose tables logged it.
    pub node: String,
    pub verdict: Verdict,
    pub reason: Reason,
    /// The reason in words, naming the pods and policies.
    pub summary: String,
    /// TCP, UDP, SCTP, ICMP, or the IP protocol number.
    pub protocol: String,
    pub source: Peer,
    pub destination: Peer,
    /// The Service the connection was sent to, if it was sent to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// The policies that select the isolated end in the direction that dropped it
    /// (namespace/name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

impl Flow {
    /// When it was read, as a time (None for a time that does not parse). Compare these, not
    /// the text: RFC 3339 leaves out a zero fraction, and "…:01Z" sorts after "…:01.5Z".
    pub fn at(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }
}

/// One end of a flow: a pod, or an address that is none of the model's pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub ip: IpAddr,
    /// 0 for a protocol without ports.
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl Peer {
    /// `namespace/name:port`, or `address:port` outside any pod.
    pub fn shown(&self) -> String {
        let port = if self.port == 0 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        match &self.pod {
            Some(p) => format!("{}/{}{port}", p.namespace, p.name),
            None if self.ip.is_ipv6() && !port.is_empty() => format!("[{}]{port}", self.ip),
            None => format!("{}{port}", self.ip),
        }
    }

    /// `namespace/name`, or the address outside any pod.
    pub fn who(&self) -> String {
        match &self.pod {
            Some(p) => format!("{}/{}", p.namespace, p.name),
            None => self.ip.to_string(),
        }
    }

    /// Whether this end is the pod `namespace/name`.
    pub fn is_pod(&self, ns_name: &str) -> bool {
        self.pod
            .as_ref()
            .is_some_and(|p| format!("{}/{}", p.namespace, p.name) == ns_name)
    }
}

/// The name of an IP protocol number.
pub fn protocol_name(n: u8) -> String {
    match n {
        TCP => "TCP".into(),
        UDP => "UDP".into(),
        SCTP => "SCTP".into(),
        1 | 58 => "ICMP".into(),
        n => n.to_string(),
    }
}

fn model_protocol(n: u8) -> Option<Protocol> {
    match n {
        TCP => Some(Protocol::Tcp),
        UDP => Some(Protocol::Udp),
        SCTP => Some(Protocol::Sctp),
        _ => None,
    }
}

/// Tells packets as flows from one state of the model; what it looked up is remembered for
/// the packets after (a flood repeats the same few ends).
pub struct Teller<'a> {
    cluster: &'a Cluster,
    node: &'a str,
    policies: Policies<'a>,
    pods: HashMap<IpAddr, Option<&'a PodInfo>>,
    selecting: HashMap<(IpAddr, Direction), Vec<String>>,
}

impl<'a> Teller<'a> {
    pub fn new(cluster: &'a Cluster, node: &'a str) -> Teller<'a> {
        Teller {
            cluster,
            node,
            policies: Policies::of(cluster),
            pods: HashMap::new(),
            selecting: HashMap::new(),
        }
    }

    /// The pod with this address (None: not a pod of the model; a host-network pod's address
    /// is its node's, and is told as the node's).
    fn pod(&mut self, ip: IpAddr) -> Option<&'a PodInfo> {
        let cluster = self.cluster;
        *self.pods.entry(ip).or_insert_with(|| {
            cluster
                .pods
                .iter()
                .find(|p| !p.host_network && p.ips.contains(&ip))
        })
    }

    fn peer(&mut self, ip: IpAddr, port: u16) -> Peer {
        Peer {
            ip,
            port,
            pod: self.pod(ip).map(|p| PodRef {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                labels: p.labels.clone().into_iter().collect(),
            }),
        }
    }

    fn policies_of(&mut self, ip: IpAddr, dir: Direction) -> Vec<String> {
        if let Some(v) = self.selecting.get(&(ip, dir)) {
            return v.clone();
        }
        let v: Vec<String> = match self.pod(ip) {
            Some(p) => self
                .policies
                .selecting(p, dir)
                .iter()
                .map(ToString::to_string)
                .collect(),
            None => Vec::new(),
        };
        self.selecting.insert((ip, dir), v.clone());
        v
    }

    /// The Service with this address and port for the protocol: a cluster, external or load
    /// balancer IP and the Service's port, or any address and its node port.
    fn service(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<ServiceRef> {
        let proto = model_protocol(protocol)?;
        let by_ip = |s: &&ServiceInfo| {
            (s.cluster_ips.contains(&ip)
                || s.external_ips.contains(&ip)
                || s.load_balancer_ips.contains(&ip))
                && s.ports
                    .iter()
                    .any(|p| p.protocol == proto && p.port == i32::from(port))
        };
        let by_node_port = |s: &&ServiceInfo| {
            s.ports
                .iter()
                .any(|p| p.protocol == proto && p.node_port == Some(i32::from(port)))
        };
        let s = self
            .cluster
            .services
            .iter()
            .find(by_ip)
            .or_else(|| self.cluster.services.iter().find(by_node_port))?;
        Some(ServiceRef {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            ip,
            port,
        })
    }

    /// The Service a connection to the endpoint `ip`:`port` was sent to, when the tables
    /// said it was translated but not from what: the one Service with a cluster address
    /// whose endpoint slices hold that address with that port for one of its ports (None
    /// when none or several do). Its cluster address of the endpoint's family, and its port.
    fn service_of_endpoint(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<ServiceRef> {
        let proto = model_protocol(protocol)?;
        let mut found = self.cluster.services.iter().filter_map(|s| {
            let cluster_ip = *s.cluster_ips.iter().find(|c| c.is_ipv4() == ip.is_ipv4())?;
            let sp = s.ports.iter().find(|sp| {
                sp.protocol == proto
                    && s.endpoint_slices.iter().any(|slice| {
                        slice.ports.iter().any(|ep| {
                            ep.name == sp.name && ep.protocol == proto && ep.port == i32::from(port)
                        }) && slice.endpoints.iter().any(|e| e.addresses.contains(&ip))
                    })
            })?;
            Some(ServiceRef {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                ip: cluster_ip,
                port: u16::try_from(sp.port).ok()?,
            })
        });
        let one = found.next()?;
        found.next().is_none().then_some(one)
    }

    /// The packet as a flow read at `time`.
    pub fn tell(&mut self, p: &Packet, time: jiff::Timestamp) -> Flow {
        let source = self.peer(p.src, p.sport);
        let destination = self.peer(p.dst, p.dport);
        // The Service: the packet's own destination while it is not translated yet (a
        // rejection happens before), else the one conntrack says it was first sent to.
        // Without the original tuple, a packet the tables said was translated: the Service
        // whose endpoint it now goes to.
        let service = match p.original_dst {
            Some((ip, port)) if (ip, port) != (p.dst, p.dport) => {
                self.service(ip, port, p.protocol)
            }
            None if p.translated => self.service_of_endpoint(p.dst, p.dport, p.protocol),
            _ => self.service(p.dst, p.dport, p.protocol),
        };
        let proto = protocol_name(p.protocol);
        let (policies, summary) = match p.reason {
            Reason::PolicyIngress => {
                let pols = self.policies_of(p.dst, Direction::Ingress);
                let s = format!(
                    "{} is isolated for ingress (by {}) and no rule allows {} on {proto}/{}",
                    destination.who(),
                    listed(&pols),
                    source.who(),
                    p.dport
                );
                (pols, s)
            }
            Reason::PolicyEgress => {
                let pols = self.policies_of(p.src, Direction::Egress);
                let s = format!(
                    "{} is isolated for egress (by {}) and no rule allows {} on {proto}/{}",
                    source.who(),
                    listed(&pols),
                    destination.who(),
                    p.dport
                );
                (pols, s)
            }
            Reason::UnknownPod => (
                Vec::new(),
                format!(
                    "a pod address of node {} that its policy table does not know yet ({} or {})",
                    self.node, p.src, p.dst
                ),
            ),
            Reason::NoEndpoints => (
                Vec::new(),
                match &service {
                    Some(s) => format!(
                        "Service {}/{} has no ready endpoint for {proto}/{}",
                        s.namespace, s.name, s.port
                    ),
                    None => format!("no endpoint for {}:{} ({proto})", p.dst, p.dport),
                },
            ),
            Reason::Allowed => (Vec::new(), "a new connection, allowed".into()),
        };
        Flow {
            time: time.to_string(),
            node: self.node.to_string(),
            verdict: p.reason.verdict(),
            reason: p.reason,
            summary,
            protocol: proto,
            source,
            destination,
            service,
            policies,
        }
    }
}

fn listed(pols: &[String]) -> String {
    if pols.is_empty() {
        "no policy the model knows".into()
    } else {
        pols.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec: {nodeName: node-2, containers: [{name: c, image: x, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: 10.96.0.50, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-only-api, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]
"#;

    fn cluster() -> Cluster {
        let docs = podnet_model::parse_documents("flows.yaml", MANIFESTS).unwrap();
        podnet_emulator::build(&docs, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(c: &Cluster, name: &str) -> IpAddr {
        c.pod("default", name).unwrap().ips[0]
    }

    fn packet(c: &Cluster, reason: Reason, original: Option<(&str, u16)>) -> Packet {
        Packet {
            reason,
            src: ip(c, "client"),
            dst: ip(c, "db"),
            protocol: TCP,
            sport: 40000,
            dport: 5432,
            original_dst: original.map(|(ip, p)| (ip.parse().unwrap(), p)),
            translated: false,
            in_if: None,
            out_if: None,
        }
    }

    #[test]
    fn a_drop_by_ingress_policy_names_the_pods_the_service_and_the_policy() {
        let cluster = cluster();
        let mut t = Teller::new(&cluster, "node-2");
        let f = t.tell(
            &packet(&cluster, Reason::PolicyIngress, Some(("10.96.0.50", 5432))),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(f.verdict, Verdict::Dropped);
        assert_eq!(f.source.shown(), "default/client:40000");
        assert_eq!(f.destination.shown(), "default/db:5432");
        assert_eq!(
            f.destination
                .pod
                .as_ref()
                .unwrap()
                .labels
                .get("app")
                .unwrap(),
            "db"
        );
        assert_eq!(f.service.as_ref().unwrap().name, "db");
        assert_eq!(f.policies, vec!["default/db-only-api".to_string()]);
        assert!(
            f.summary
                .contains("isolated for ingress (by default/db-only-api)"),
            "{}",
            f.summary
        );
        // As JSON and back.
        let j = serde_json::to_string(&f).unwrap();
        assert!(j.contains("\"verdict\":\"DROPPED\""), "{j}");
        assert!(j.contains("\"reason\":\"policy-ingress\""), "{j}");
        assert_eq!(serde_json::from_str::<Flow>(&j).unwrap(), f);
    }

    #[test]
    fn a_translated_drop_without_conntrack_names_the_service_of_its_endpoint() {
        let cluster = cluster();
        let mut t = Teller::new(&cluster, "node-2");
        let mut p = packet(&cluster, Reason::PolicyIngress, None);
        // Not said translated: straight to the pod, no Service.
        let f = t.tell(&p, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(f.service, None);
        p.translated = true;
        let f = t.tell(&p, jiff::Timestamp::UNIX_EPOCH);
        let s = f.service.expect("the Service whose endpoint it is");
        assert_eq!((s.name.as_str(), s.port), ("db", 5432));
        assert_eq!(s.ip, "10.96.0.50".parse::<IpAddr>().unwrap());
        // A port the endpoint does not serve for the Service: none.
        p.dport = 5433;
        assert_eq!(t.tell(&p, jiff::Timestamp::UNIX_EPOCH).service, None);
    }

    #[test]
    fn times_compare_as_times_not_as_text() {
        let cluster = cluster();
        let mut t = Teller::new(&cluster, "node-1");
        let p = packet(&cluster, Reason::PolicyEgress, None);
        let whole = t.tell(&p, "2026-12-07T11:00:01Z".parse().unwrap());
        let later = t.tell(&p, "2026-12-07T11:00:01.5Z".parse().unwrap());
        assert_eq!(whole.time, "2026-12-07T11:00:01Z");
        assert!(whole.time > later.time, "as text, the earlier sorts after");
        assert!(whole.at() < later.at());
    }

    #[test]
    fn egress_outside_addresses_and_rejections() {
        let cluster = cluster();
        let mut t = Teller::new(&cluster, "node-1");
        // The client is selected by no egress policy.
        let f = t.tell(
            &packet(&cluster, Reason::PolicyEgress, None),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert!(f.policies.is_empty());
        assert!(
            f.summary.contains("by no policy the model knows"),
            "{}",
            f.summary
        );
        let mut p = packet(&cluster, Reason::NoEndpoints, None);
        p.dst = "10.96.0.50".parse().unwrap();
        let f = t.tell(&p, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(f.verdict, Verdict::Rejected);
        assert_eq!(f.destination.pod, None);
        assert_eq!(f.destination.shown(), "10.96.0.50:5432");
        assert!(
            f.summary
                .starts_with("Service default/db has no ready endpoint"),
            "{}",
            f.summary
        );
    }
}
