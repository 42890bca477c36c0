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

/// Deletes a namespace and its `/etc/netns/<name>` files.
pub fn netns_del(name: &str) -> Result<(), LabError> {
    etc_remove(name)?;
    run(Command::new("ip").args(["netns", "del", name]), None).map(drop)
}

/// Where `ip netns exec` looks for a namespace's own configuration files: it bind-mounts each
/// file of `/etc/netns/<name>/` over its `/etc/` twin in a private mount namespace
/// (ip-netns(8)). This is how a pod's resolv.conf and hosts reach commands run in it.
pub const ETC_NETNS: &str = "/etc/netns";

/// Writes a namespace's configuration files (`resolv.conf`, `hosts`, ...).
pub fn etc_write(name: &str, files: &[(&str, &str)]) -> Result<(), LabError> {
    let dir = std::path::Path::new(ETC_NETNS).join(name);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Io(format!("{}: {e}", dir.display())))?;
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .map_err(|e| LabError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

pub fn etc_remove(name: &str) -> Result<(), LabError> {
    let dir = std::path::Path::new(ETC_NETNS).join(name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LabError::Io(format!("{}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

/// The `/etc/netns` directories whose names start with `prefix` (crash leftovers included).
pub fn etc_list(prefix: &str) -> Vec<String> {
    std::fs::read_dir(ETC_NETNS)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
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
