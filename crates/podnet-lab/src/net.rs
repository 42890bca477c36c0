//! Linux effects of the lab, through iproute2. Every command names the namespace it works in
//! (`ip -n NS`); none runs in the host's root namespace except creating and deleting the lab's
//! own named namespaces.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::LabError;

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String, LabError> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Command {
            cmd: shown.clone(),
            msg: e.to_string(),
        })?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| LabError::Command {
                cmd: shown.clone(),
                msg: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::Command {
        cmd: shown.clone(),
        msg: e.to_string(),
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(LabError::Command { cmd: shown, msg });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

pub fn netns_add(name: &str) -> Result<(), LabError> {
    run(Command::new("ip").args(["netns", "add", name]), None).map(drop)
}

pub fn netns_del(name: &str) -> Result<(), LabError> {
    run(Command::new("ip").args(["netns", "del", name]), None).map(drop)
}

/// The named namespaces whose names start with `prefix`.
pub fn netns_list(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// `ip -n NS -batch -`: one process for many changes.
pub fn ip_batch(ns: &str, script: &str) -> Result<(), LabError> {
    run(
        Command::new("ip").args(["-n", ns, "-batch", "-"]),
        Some(script),
    )
    .map(drop)
}

/// `bridge -n NS -batch -`.
pub fn bridge_batch(ns: &str, script: &str) -> Result<(), LabError> {
    if script.is_empty() {
        return Ok(());
    }
    run(
        Command::new("bridge").args(["-n", ns, "-batch", "-"]),
        Some(script),
    )
    .map(drop)
}

/// A sysctl inside a namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    run(
        Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]),
        None,
    )
    .map(drop)
}

/// A command's output inside a namespace (for status and tests).
pub fn output_in(ns: &str, args: &[&str]) -> Result<String, LabError> {
    run(
        Command::new("nsenter")
            .arg(format!("--net={}", netns_path(ns)))
            .arg("--")
            .args(args),
        None,
    )
}
