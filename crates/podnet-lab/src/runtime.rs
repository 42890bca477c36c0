//! The lab as a container runtime: it reads a node's CNI configuration list and runs each
//! plugin as libcni does (CNI_* variables, the plugin's configuration on stdin with `name`,
//! `cniVersion`, `runtimeConfig` for declared capabilities and `prevResult`), from inside the
//! node's network namespace.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::plan::{NodePlan, PodPlan, POD_MTU};
use crate::LabError;

pub const CONFLIST: &str = "10-podnet.conflist";

/// The configuration list of a node.
pub fn conflist(node: &NodePlan, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "podnet",
        "plugins": [{
            "type": "podnet-cni",
            "mtu": POD_MTU,
            "ipam": {"type": "podnet-ipam", "subnet": node.pod_cidr, "dataDir": ipam_dir},
            "capabilities": {"ips": true}
        }]
    })
}

pub struct Runtime {
    /// CNI_PATH: where the plugin binaries are.
    pub cni_path: PathBuf,
    /// The node's `net.d` directory.
    pub conf_dir: PathBuf,
    pub node_ns: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
}

impl Runtime {
    /// Runs `op` for a pod through every plugin of the list; returns the final result.
    pub fn run(&self, op: Op, pod: &PodPlan, prev: Option<&Value>) -> Result<Value, LabError> {
        let text = std::fs::read_to_string(self.conf_dir.join(CONFLIST)).map_err(|e| {
            LabError::Io(format!("{}: {e}", self.conf_dir.join(CONFLIST).display()))
        })?;
        let list: Value =
            serde_json::from_str(&text).map_err(|e| LabError::Io(format!("{CONFLIST}: {e}")))?;
        let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
        let mut result = prev.cloned();
        let order: Vec<&Value> = if op == Op::Del {
            plugins.iter().rev().collect()
        } else {
            plugins.iter().collect()
        };
        for p in order {
            let mut conf = p.clone();
            let caps = conf
                .as_object_mut()
                .and_then(|o| o.remove("capabilities"))
                .unwrap_or(json!({}));
            conf["cniVersion"] = list["cniVersion"].clone();
            conf["name"] = list["name"].clone();
            if caps["ips"] == true {
                if let Some(ip) = pod.planned_ip {
                    let plen = if ip.is_ipv4() { 32 } else { 128 };
                    conf["runtimeConfig"] = json!({"ips": [format!("{ip}/{plen}")]});
                }
            }
            if let Some(r) = &result {
                conf["prevResult"] = r.clone();
            }
            let plugin_type = conf["type"].as_str().unwrap_or("").to_string();
            let out = self.exec(op, pod, &plugin_type, &conf)?;
            if op == Op::Add {
                result = Some(out);
            }
        }
        Ok(result.unwrap_or(Value::Null))
    }

    fn exec(&self, op: Op, pod: &PodPlan, plugin: &str, conf: &Value) -> Result<Value, LabError> {
        let bin = self.cni_path.join(plugin);
        let command = match op {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        };
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.node_ns))
            .arg("--")
            .arg(&bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &pod.container_id)
            .env("CNI_NETNS", format!("/run/netns/{}", pod.netns))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}", pod.namespace, pod.name, pod.container_id))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Io(format!("running {}: {e}", bin.display())))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(&serde_json::to_vec(conf).expect("serializes"))
            .map_err(|e| LabError::Io(e.to_string()))?;
        let out = child
            .wait_with_output()
            .map_err(|e| LabError::Io(e.to_string()))?;
        let stdout: Value = if out.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
        };
        if !out.status.success() {
            return Err(LabError::Cni {
                pod: format!("{}/{}", pod.namespace, pod.name),
                op: command.into(),
                msg: format!(
                    "{} {}",
                    stdout["msg"].as_str().unwrap_or(""),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(stdout)
    }
}

/// The pod's first address in an ADD result.
pub fn result_ip(result: &Value) -> Option<IpAddr> {
    result["ips"][0]["address"]
        .as_str()?
        .split('/')
        .next()?
        .parse()
        .ok()
}
