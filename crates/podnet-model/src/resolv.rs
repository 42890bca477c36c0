//! A pod's resolver configuration, as the kubelet writes its `/etc/resolv.conf` from
//! `dnsPolicy` and `dnsConfig` (pkg/kubelet/network/dns):
//!
//! - `ClusterFirst` (the default): the cluster DNS address, `search <ns>.svc.<zone> svc.<zone>
//!   <zone>` followed by the node's search domains, `options ndots:5`. A `hostNetwork` pod with
//!   `ClusterFirst` falls back to `Default`.
//! - `ClusterFirstWithHostNet`: as `ClusterFirst`, for `hostNetwork` pods too.
//! - `Default`: the node's own resolver configuration.
//! - `None`: nothing but `dnsConfig`.
//!
//! `dnsConfig` is then merged in: nameservers and searches are appended without duplicates, and
//! options replace options of the same name. At most 3 nameservers and 32 search domains are kept,
//! as the kubelet does.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::PodInfo;

pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    /// `name` or `name:value`, in order.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text (the node's): `nameserver`, `search`/`domain` and `options` lines.
    pub fn parse(text: &str) -> Self {
        let mut r = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        r.nameservers.push(ip);
                    }
                }
                // The last `search` or `domain` line wins (resolv.conf(5)).
                Some("search") | Some("domain") => {
                    r.searches = words.map(str::to_string).collect();
                }
                Some("options") => {
                    for o in words {
                        merge_option(&mut r.options, o);
                    }
                }
                _ => {}
            }
        }
        r
    }
}

fn merge_option(options: &mut Vec<String>, o: &str) {
    let key = o.split(':').next().unwrap_or(o);
    options.retain(|x| x.split(':').next().unwrap_or(x) != key);
    options.push(o.to_string());
}

impl fmt::Display for ResolvConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ns in &self.nameservers {
            writeln!(f, "nameserver {ns}")?;
        }
        if !self.searches.is_empty() {
            writeln!(f, "search {}", self.searches.join(" "))?;
        }
        if !self.options.is_empty() {
            writeln!(f, "options {}", self.options.join(" "))?;
        }
        Ok(())
    }
}

/// The resolv.conf the kubelet gives `pod`.
pub fn for_pod(pod: &PodInfo, dns_ip: IpAddr, domain: &str, node: &ResolvConf) -> ResolvConf {
    let policy = pod.spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = ResolvConf {
        nameservers: vec![dns_ip],
        searches: [
            format!("{}.svc.{domain}", pod.namespace),
            format!("svc.{domain}"),
            domain.to_string(),
        ]
        .into_iter()
        .chain(node.searches.iter().cloned())
        .collect(),
        options: vec!["ndots:5".to_string()],
    };
    let mut r = match policy {
        "ClusterFirstWithHostNet" => cluster,
        "ClusterFirst" if !pod.host_network => cluster,
        "None" => ResolvConf::default(),
        // "Default", and ClusterFirst on the host's network.
        _ => node.clone(),
    };
    if let Some(c) = &pod.spec.dns_config {
        for ns in c.nameservers.iter().flatten() {
            if let Ok(ip) = ns.parse::<IpAddr>() {
                if !r.nameservers.contains(&ip) {
                    r.nameservers.push(ip);
                }
            }
        }
        for s in c.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in c.options.iter().flatten() {
            let Some(name) = &o.name else { continue };
            let text = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            merge_option(&mut r.options, &text);
        }
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    r
}

/// The `/etc/hosts` the kubelet writes for a pod that is not on the host's network.
pub fn hosts_file(pod: &PodInfo, domain: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (podnet lab).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = pod
        .hostname
        .clone()
        .unwrap_or_else(|| truncated_hostname(&pod.name));
    for ip in &pod.ips {
        match &pod.subdomain {
            Some(sd) if !sd.is_empty() => s.push_str(&format!(
                "{ip}\t{host}.{sd}.{}.svc.{domain}\t{host}\n",
                pod.namespace
            )),
            _ => s.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    for a in pod.spec.host_aliases.iter().flatten() {
        s.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            a.ip,
            a.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    s
}

/// The kubelet's hostname for a pod without `spec.hostname`: its name, cut to 63 characters
/// without a trailing '-' or '.' (`truncateHostname`).
pub fn truncated_hostname(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    name[..63].trim_end_matches(['-', '.']).to_string()
}
