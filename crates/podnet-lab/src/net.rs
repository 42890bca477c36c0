//! The lab's named network namespaces and their `/etc/netns` files. Nothing here runs in the
//! host's root namespace except creating and deleting the lab's own named namespaces; work
//! inside a namespace goes through [`podnet_node::sys`].

use std::path::Path;
use std::process::Command;

use podnet_node::sys;

use crate::LabError;

pub fn netns_add(name: &str) -> Result<(), LabError> {
    sys::run(Command::new("ip").args(["netns", "add", name]), None)?;
    Ok(())
}

/// Deletes a namespace and its `/etc/netns/<name>` files.
pub fn netns_del(name: &str) -> Result<(), LabError> {
    etc_remove(name)?;
    sys::run(Command::new("ip").args(["netns", "del", name]), None)?;
    Ok(())
}

/// Where `ip netns exec` looks for a namespace's own configuration files: it bind-mounts each
/// file of `/etc/netns/<name>/` over its `/etc/` twin in a private mount namespace
/// (ip-netns(8)). This is how a pod's resolv.conf and hosts reach commands run in it.
pub const ETC_NETNS: &str = "/etc/netns";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        what: path.display().to_string(),
        source,
    }
}

/// Writes a namespace's configuration files (`resolv.conf`, `hosts`, ...).
pub fn etc_write(name: &str, files: &[(&str, &str)]) -> Result<(), LabError> {
    let dir = Path::new(ETC_NETNS).join(name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

pub fn etc_remove(name: &str) -> Result<(), LabError> {
    let dir = Path::new(ETC_NETNS).join(name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
        _ => Ok(()),
    }
}

/// The entries of `dir` whose names start with `prefix`, sorted.
fn list(dir: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The `/etc/netns` directories whose names start with `prefix` (crash leftovers included).
pub fn etc_list(prefix: &str) -> Vec<String> {
    list(ETC_NETNS, prefix)
}

/// The named namespaces whose names start with `prefix`.
pub fn netns_list(prefix: &str) -> Vec<String> {
    list(sys::NETNS_DIR, prefix)
}

/// A command's output inside a namespace (for status and tests).
pub fn output_in(ns: &str, args: &[&str]) -> Result<String, LabError> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| LabError::Invalid("output_in: no command".into()))?;
    Ok(sys::run_in(
        &sys::netns_path(ns),
        Command::new(program).args(rest),
        None,
    )?)
}
