//! The lab as a container runtime: it reads a node's CNI configuration list and runs each
//! plugin as libcni does (CNI_* variables, the plugin's configuration on stdin with `name`,
//! `cniVersion`, `runtimeConfig` for declared capabilities and `prevResult`), from inside the
//! node's network namespace.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use podnet_cni::spec::{AddResult, NetConf, NetConfList};
use podnet_node::sys;
use serde_json::json;

use crate::plan::{NodePlan, PodPlan};
use crate::LabError;

pub use podnet_cni::spec::CONFLIST;

/// The configuration list of a node; with the agent's socket, ADD waits for the agent.
pub fn conflist(node: &NodePlan, ipam_dir: &Path, agent_socket: Option<&Path>) -> NetConfList {
    NetConfList::podnet(&node.pod_cidrs, ipam_dir, node.pod_mtu, None, agent_socket)
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

impl Op {
    fn command(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

impl Runtime {
    /// Runs `op` for a pod through every plugin of the list; returns the final result (ADD)
    /// or the previous one (DEL, CHECK).
    pub fn run(
        &self,
        op: Op,
        pod: &PodPlan,
        prev: Option<&AddResult>,
    ) -> Result<Option<AddResult>, LabError> {
        let path = self.conf_dir.join(CONFLIST);
        let text = std::fs::read(&path).map_err(|source| LabError::Io {
            what: path.display().to_string(),
            source,
        })?;
        let list: NetConfList = serde_json::from_slice(&text).map_err(|source| LabError::Json {
            what: path.display().to_string(),
            source,
        })?;
        let mut result = prev.cloned();
        let mut plugins = list.plugins.clone();
        if op == Op::Del {
            plugins.reverse();
        }
        for mut conf in plugins {
            let caps = conf.capabilities.take().unwrap_or_default();
            conf.cni_version = list.cni_version.clone();
            conf.name = list.name.clone();
            if caps.get("ips") == Some(&true) && !pod.planned_ips.is_empty() {
                let ips: Vec<String> = pod
                    .planned_ips
                    .iter()
                    .map(|ip| format!("{ip}/{}", podnet_model::IpFamily::of(*ip).bits()))
                    .collect();
                conf.runtime_config = Some(json!({ "ips": ips }));
            }
            conf.prev_result = result
                .as_ref()
                .map(|r| serde_json::to_value(r).expect("serializes"));
            let out = self.exec(op, pod, &conf)?;
            if op == Op::Add {
                result = Some(out);
            }
        }
        Ok(result)
    }

    fn exec(&self, op: Op, pod: &PodPlan, conf: &NetConf) -> Result<AddResult, LabError> {
        let bin = self.cni_path.join(&conf.plugin_type);
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", op.command())
            .env("CNI_CONTAINERID", &pod.container_id)
            .env("CNI_NETNS", sys::netns_path(&pod.netns))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                    pod.namespace, pod.name, pod.container_id
                ),
            );
        let input = serde_json::to_vec(conf).expect("serializes");
        let node = sys::netns_path(&self.node_ns);
        let out = sys::in_netns(&node, || sys::output(&mut cmd, Some(&input)))?;
        let cni_err = |msg: String| LabError::Cni {
            pod: pod.key(),
            op: op.command(),
            msg,
        };
        if !out.status.success() {
            let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            return Err(cni_err(format!(
                "{} {}",
                err["msg"].as_str().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if op != Op::Add {
            return Ok(AddResult::default());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| cni_err(format!("the ADD result does not decode: {e}")))
    }
}

/// The pod's addresses in an ADD result, in its order (the primary first).
pub fn result_ips(result: &AddResult) -> Vec<IpAddr> {
    result.ips.iter().map(|c| c.address.addr()).collect()
}
