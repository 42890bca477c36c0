//! The CNI specification 1.1.0: environment, network configuration, results and errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The spec's well-known error codes (§5 Error).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const NOT_AVAILABLE_LIMITED: u32 = 51;
    /// podnet's own: the address pool is exhausted.
    pub const POOL_EXHAUSTED: u32 = 100;
    /// podnet's own: a netlink operation failed.
    pub const NETLINK: u32 = 101;
}

/// The Error structure, printed on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub struct CniError {
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: "1.1.0".into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
}

pub type CniResult<T> = Result<T, CniError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The CNI_* environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Option<String>,
}

impl Env {
    /// Reads the variables from a lookup function (the process environment, or a test's map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        Env {
            command: nonempty("CNI_COMMAND"),
            container_id: nonempty("CNI_CONTAINERID"),
            netns: nonempty("CNI_NETNS"),
            ifname: nonempty("CNI_IFNAME"),
            args: nonempty("CNI_ARGS"),
            path: nonempty("CNI_PATH"),
        }
    }

    pub fn command(&self) -> CniResult<Command> {
        match self.command.as_deref() {
            Some("ADD") => Ok(Command::Add),
            Some("DEL") => Ok(Command::Del),
            Some("CHECK") => Ok(Command::Check),
            Some("STATUS") => Ok(Command::Status),
            Some("GC") => Ok(Command::Gc),
            Some("VERSION") => Ok(Command::Version),
            Some(other) => Err(CniError::new(code::INVALID_ENV, format!("CNI_COMMAND: unknown command {other:?}; expected ADD, DEL, CHECK, STATUS, GC or VERSION"))),
            None => Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND is required")),
        }
    }

    /// Checks what a command requires (§2 Parameters) and returns the container ID.
    pub fn require_for(&self, cmd: Command) -> CniResult<()> {
        let need = |name: &str, v: &Option<String>| -> CniResult<()> {
            if v.is_none() {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("{name} is required for {}", command_name(cmd)),
                ));
            }
            Ok(())
        };
        match cmd {
            Command::Add | Command::Check => {
                need("CNI_CONTAINERID", &self.container_id)?;
                need("CNI_NETNS", &self.netns)?;
                need("CNI_IFNAME", &self.ifname)?;
            }
            Command::Del => {
                need("CNI_CONTAINERID", &self.container_id)?;
                need("CNI_IFNAME", &self.ifname)?;
            }
            Command::Gc | Command::Status | Command::Version => {}
        }
        if let Some(id) = &self.container_id {
            valid_container_id(id)?;
        }
        if let Some(ifname) = &self.ifname {
            valid_ifname(ifname)?;
        }
        Ok(())
    }

    /// `K=V;K2=V2`.
    pub fn args_map(&self) -> BTreeMap<String, String> {
        self.args
            .as_deref()
            .unwrap_or("")
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// `CNI_CONTAINERID`: alphanumeric first, then alphanumerics, `_`, `.` or `-`.
pub fn valid_container_id(id: &str) -> CniResult<()> {
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(code::INVALID_ENV, format!("CNI_CONTAINERID {id:?} is invalid: it must start with an alphanumeric character, followed by alphanumerics, '_', '.' or '-'")))
    }
}

/// `CNI_IFNAME`: a Linux interface name: 1 to 15 bytes, no '/', whitespace or ':', not "." or "..".
pub fn valid_ifname(name: &str) -> CniResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::new(code::INVALID_ENV, format!("CNI_IFNAME {name:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)")))
    }
}

/// DNS settings (§1 and the result's `dns`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The IPAM section of podnet's plugin configuration (`type: podnet-ipam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub ipam_type: String,
    /// The node's pod CIDR (single-stack); or `ranges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<ipnet::IpNet>,
    /// The node's pod CIDRs, one range set per family, the primary first, as host-local
    /// writes them (`[[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]`):
    /// an attachment gets one address from each. One subnet per set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Vec<RangeConf>>,
    /// Where reservations are kept; default `/var/lib/cni/networks`.
    #[serde(default)]
    pub data_dir: Option<String>,
}

/// One range of an IPAM range set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RangeConf {
    pub subnet: ipnet::IpNet,
}

impl IpamConf {
    /// The ranges to allocate from, the primary first: `subnet`, or each set of `ranges`.
    /// Empty, or more than one subnet of a family, is a configuration error.
    pub fn subnets(&self) -> CniResult<Vec<ipnet::IpNet>> {
        let bad = |m: String| CniError::new(code::INVALID_CONFIG, m);
        let nets: Vec<ipnet::IpNet> = match (&self.subnet, self.ranges.as_slice()) {
            (Some(s), []) => vec![*s],
            (None, sets) if !sets.is_empty() => {
                let mut nets = Vec::new();
                for (i, set) in sets.iter().enumerate() {
                    match set.as_slice() {
                        [one] => nets.push(one.subnet),
                        _ => return Err(bad(format!("ipam.ranges[{i}]: podnet-ipam takes exactly one subnet per range set, not {}", set.len()))),
                    }
                }
                nets
            }
            (Some(_), _) => return Err(bad("ipam: give subnet or ranges, not both".into())),
            (None, _) => return Err(bad("ipam: a subnet (or ranges) is needed".into())),
        };
        if nets.len() > 2
            || (nets.len() == 2 && nets[0].addr().is_ipv4() == nets[1].addr().is_ipv4())
        {
            return Err(bad("ipam.ranges: at most one range per IP family".into()));
        }
        Ok(nets)
    }
}

/// The network configuration a runtime sends on stdin (one plugin of a list, with `name`,
/// `cniVersion` and maybe `prevResult` and `runtimeConfig` added).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    pub ipam: Option<IpamConf>,
    pub dns: Option<Dns>,
    /// MTU of both ends of the veth pair; the overlay's (VXLAN takes 50 bytes).
    pub mtu: Option<u32>,
    /// In a configuration list: the `runtimeConfig` keys the plugin accepts (§3). The runtime
    /// removes it and sends `runtimeConfig` instead.
    pub capabilities: Option<BTreeMap<String, bool>>,
    pub prev_result: Option<Value>,
    pub runtime_config: Option<Value>,
    /// GC: `cni.dev/valid-attachments`.
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Everything else is passed through and ignored.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A network configuration list, as a runtime reads it from its configuration directory (§1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConfList {
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<NetConf>,
}

/// The file whose presence says the node's agent is ready (a key of podnet's configuration):
/// STATUS answers 50 (not available) while it is missing.
pub const READY_FILE_KEY: &str = "podnet.dev/readyFile";

/// The name of podnet's configuration list in a runtime's configuration directory.
pub const CONFLIST: &str = "10-podnet.conflist";

impl NetConfList {
    /// podnet's configuration list for a node: the plugin with the node's pod CIDR as its
    /// IPAM range and the overlay's MTU; with `ready_file`, STATUS reports the agent's
    /// readiness; with `agent_socket`, ADD waits for the agent to program the pod
    /// ([`crate::agent`]).
    pub fn podnet(
        pod_cidrs: &[ipnet::IpNet],
        ipam_dir: &std::path::Path,
        mtu: u32,
        ready_file: Option<&std::path::Path>,
        agent_socket: Option<&std::path::Path>,
    ) -> NetConfList {
        let path =
            |k: &str, f: &std::path::Path| (k.to_string(), Value::String(f.display().to_string()));
        let other = ready_file
            .map(|f| path(READY_FILE_KEY, f))
            .into_iter()
            .chain(agent_socket.map(|f| path(crate::agent::AGENT_SOCKET_KEY, f)))
            .collect();
        NetConfList {
            cni_version: "1.1.0".into(),
            name: "podnet".into(),
            plugins: vec![NetConf {
                plugin_type: "podnet-cni".into(),
                mtu: Some(mtu),
                ipam: Some(IpamConf {
                    ipam_type: "podnet-ipam".into(),
                    subnet: (pod_cidrs.len() == 1).then(|| pod_cidrs[0]),
                    ranges: match pod_cidrs {
                        [_] => Vec::new(),
                        more => more
                            .iter()
                            .map(|c| vec![RangeConf { subnet: *c }])
                            .collect(),
                    },
                    data_dir: Some(ipam_dir.display().to_string()),
                }),
                capabilities: Some([("ips".to_string(), true)].into()),
                other,
                ..Default::default()
            }],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    /// Parses stdin: code 6 for JSON that does not decode, code 1 for an unsupported version.
    pub fn parse(stdin: &[u8]) -> CniResult<NetConf> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        check_version(&version)?;
        let conf: NetConf = serde_json::from_value(v).map_err(|e| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("invalid network configuration: {e}"),
            )
            .with_version(&version)
        })?;
        Ok(conf)
    }
}

impl CniError {
    pub fn with_version(mut self, v: &str) -> Self {
        if SUPPORTED_VERSIONS.contains(&v) {
            self.cni_version = v.to_string();
        }
        self
    }
}

pub fn check_version(v: &str) -> CniResult<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI version {v:?}: this plugin supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// The ADD Success result (§5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfig {
    pub address: ipnet::IpNet,
    pub gateway: Option<std::net::IpAddr>,
    pub interface: Option<usize>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub dst: ipnet::IpNet,
    pub gw: Option<std::net::IpAddr>,
}

fn command_name(c: Command) -> &'static str {
    match c {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Status => "STATUS",
        Command::Gc => "GC",
        Command::Version => "VERSION",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn commands_and_required_variables() {
        assert_eq!(
            env(&[("CNI_COMMAND", "FOO")]).command().unwrap_err().code,
            code::INVALID_ENV
        );
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let err = e.require_for(Command::Add).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("CNI_CONTAINERID"), "{}", err.msg);
        // DEL does not need CNI_NETNS.
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert!(e.require_for(Command::Del).is_ok());
        // STATUS needs nothing.
        assert!(env(&[("CNI_COMMAND", "STATUS")])
            .require_for(Command::Status)
            .is_ok());
    }

    #[test]
    fn container_ids_and_ifnames() {
        assert!(valid_container_id("abc-1.2_x").is_ok());
        assert_eq!(
            valid_container_id("-abc").unwrap_err().code,
            code::INVALID_ENV
        );
        assert!(valid_container_id("-abc")
            .unwrap_err()
            .msg
            .contains("CNI_CONTAINERID"));
        assert!(valid_ifname("eth0").is_ok());
        assert!(valid_ifname("a-very-long-ifname").is_err());
        assert!(valid_ifname("a/b").is_err());
    }

    #[test]
    fn cni_args() {
        let e = env(&[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p")]);
        let m = e.args_map();
        assert_eq!(m["K8S_POD_NAME"], "p");
        assert_eq!(m["IgnoreUnknown"], "1");
    }

    #[test]
    fn config_errors_have_their_codes() {
        assert_eq!(
            NetConf::parse(b"{not json").unwrap_err().code,
            code::DECODE_FAILURE
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#)
                .unwrap_err()
                .code,
            code::INCOMPATIBLE_VERSION
        );
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"podnet-cni","custom":1,"ipam":{"type":"podnet-ipam","subnet":"10.244.1.0/24"}}"#).unwrap();
        assert_eq!(
            c.ipam.unwrap().subnets().unwrap()[0].to_string(),
            "10.244.1.0/24"
        );
        let bad = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t","ipam":{"type":"podnet-ipam","subnet":"nope"}}"#).unwrap_err();
        assert_eq!(bad.code, code::INVALID_CONFIG);
    }
}
