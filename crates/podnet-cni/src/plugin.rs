//! The plugin's commands (§2 Execution Protocol), over a [`Datapath`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::datapath::{Attach, Datapath};
use crate::ipam::{Store, DEFAULT_DATA_DIR};
use crate::spec::*;

/// The default MTU: 1500 less VXLAN's 50 bytes of headers.
pub const DEFAULT_MTU: u32 = 1450;
pub const IPAM_TYPE: &str = "podnet-ipam";

/// Runs one invocation. Ok holds what to print on stdout (nothing for DEL, GC and STATUS).
pub fn run(env: &Env, stdin: &[u8], dp: &dyn Datapath) -> CniResult<Option<Value>> {
    let cmd = env.command()?;
    if cmd == Command::Version {
        let v: Value = if stdin.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(stdin).map_err(|e| {
                CniError::new(
                    code::DECODE_FAILURE,
                    format!("stdin is not valid JSON: {e}"),
                )
            })?
        };
        let version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.1.0");
        return Ok(Some(
            json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}),
        ));
    }
    env.require_for(cmd)?;
    let conf = NetConf::parse(stdin)?;
    let v = conf.cni_version.clone();
    let r = match cmd {
        Command::Add => add(env, &conf, dp).map(Some),
        Command::Del => del(env, &conf, dp).map(|()| None),
        Command::Check => check(env, &conf, dp).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Gc => gc(&conf, dp).map(|()| None),
        Command::Version => unreachable!("handled above"),
    };
    r.map_err(|e| e.with_version(&v))
}

struct Ipam {
    subnets: Vec<IpNet>,
    data_dir: PathBuf,
}

fn ipam(conf: &NetConf) -> CniResult<Ipam> {
    let Some(i) = &conf.ipam else {
        return Err(CniError::new(code::INVALID_CONFIG, format!("the network configuration needs an ipam section of type {IPAM_TYPE:?} with a subnet")));
    };
    if i.ipam_type != IPAM_TYPE {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "ipam type {:?} is not supported: podnet-cni has its own IPAM, type {IPAM_TYPE:?}",
                i.ipam_type
            ),
        ));
    }
    if conf.name.is_empty() || conf.name.contains('/') {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!("network name {:?} is invalid", conf.name),
        ));
    }
    Ok(Ipam {
        subnets: i.subnets()?,
        data_dir: PathBuf::from(
            i.data_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string()),
        ),
    })
}

fn attachment(env: &Env) -> Attachment {
    Attachment {
        container_id: env.container_id.clone().unwrap_or_default(),
        ifname: env.ifname.clone().unwrap_or_default(),
    }
}

/// The addresses the runtime asks for (at most one per family): `runtimeConfig.ips` (the
/// `ips` capability) or `CNI_ARGS IP=` (comma separated, as host-local takes it).
fn requested_ips(env: &Env, conf: &NetConf) -> CniResult<Vec<IpAddr>> {
    let from_rc: Option<Vec<String>> = conf
        .runtime_config
        .as_ref()
        .and_then(|rc| rc.get("ips"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
    let raw: Vec<String> = match from_rc {
        Some(l) => l,
        None => env
            .args_map()
            .get("IP")
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for s in raw {
        let ip = s
            .split('/')
            .next()
            .unwrap_or("")
            .parse::<IpAddr>()
            .map_err(|_| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!("requested IP {s:?} is not an IP address"),
                )
            })?;
        if ips.iter().any(|i| i.is_ipv4() == ip.is_ipv4()) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("requested IPs: {ip} is a second address of one family"),
            ));
        }
        ips.push(ip);
    }
    Ok(ips)
}

/// Well-known keys podnet does not implement are refused rather than ignored (§1: a plugin
/// that uses a well-known key respects its meaning; code 2 names the key and value).
fn refuse_unsupported(conf: &NetConf) -> CniResult<()> {
    if let Some(v) = conf
        .other
        .get("ipMasq")
        .filter(|v| **v == Value::Bool(true))
    {
        return Err(CniError::new(code::UNSUPPORTED_FIELD, format!("unsupported field: ipMasq={v}: podnet-cni does not masquerade pod traffic (pods reach each other without NAT)")));
    }
    Ok(())
}

/// The agent's socket and the bound of the wait, when the conflist names an agent.
fn agent_of(conf: &NetConf) -> CniResult<Option<(PathBuf, std::time::Duration)>> {
    let Some(v) = conf.other.get(crate::agent::AGENT_SOCKET_KEY) else {
        return Ok(None);
    };
    let socket = v.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            format!(
                "{}: {v} is not the path of the agent's socket",
                crate::agent::AGENT_SOCKET_KEY
            ),
        )
    })?;
    let wait = match conf.other.get(crate::agent::AGENT_WAIT_KEY) {
        None => crate::agent::DEFAULT_WAIT,
        Some(w) => w
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "{}: {w} is not a number of seconds between 0 and 600",
                        crate::agent::AGENT_WAIT_KEY
                    ),
                )
            })?,
    };
    Ok(Some((PathBuf::from(socket), wait)))
}

/// The pod, as the runtime names it in `CNI_ARGS` (the kubelet always does).
fn pod_of(env: &Env) -> CniResult<(String, String)> {
    let args = env.args_map();
    match (args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
            Ok((ns.clone(), name.clone()))
        }
        _ => Err(CniError::new(
            code::INVALID_ENV,
            "CNI_ARGS must name the pod (K8S_POD_NAMESPACE and K8S_POD_NAME): the node's agent programs a pod by its name",
        )),
    }
}

/// The agent to wait for: its socket, the bound of the wait, and the pod it is asked about.
type Agent = (PathBuf, std::time::Duration, (String, String));

/// With an agent in the conflist: returns once it has programmed the pod at `ip`.
fn wait_for_agent(env: &Env, agent: Option<Agent>, ip: IpAddr) -> CniResult<()> {
    let Some((socket, wait, (namespace, name))) = agent else {
        return Ok(());
    };
    let req = crate::agent::Request {
        op: crate::agent::Op::Add,
        namespace,
        name,
        container_id: env.container_id.clone().unwrap_or_default(),
        ip: Some(ip),
        wait_ms: wait.as_millis() as u64,
    };
    crate::agent::ask(&socket, &req, wait)
}

/// With an agent in the conflist: tells it the pod's address is gone. Best effort: a DEL
/// succeeds whether or not the agent runs (it forgets the address anyway once the API has
/// the pod's own, or the pod is gone).
fn tell_agent_del(env: &Env, conf: &NetConf) {
    let (Ok(Some((socket, _))), Ok((namespace, name))) = (agent_of(conf), pod_of(env)) else {
        return;
    };
    let req = crate::agent::Request {
        op: crate::agent::Op::Del,
        namespace,
        name,
        container_id: env.container_id.clone().unwrap_or_default(),
        ip: None,
        wait_ms: 0,
    };
    let _ = crate::agent::ask(&socket, &req, std::time::Duration::from_secs(2));
}

fn add(env: &Env, conf: &NetConf, dp: &dyn Datapath) -> CniResult<Value> {
    // A conflist that names an agent needs the pod's name: refused before anything is done.
    let agent = match agent_of(conf)? {
        Some((socket, wait)) => Some((socket, wait, pod_of(env)?)),
        None => None,
    };
    refuse_unsupported(conf)?;
    let ip_conf = ipam(conf)?;
    let att = attachment(env);
    let store = Store::new(&ip_conf.data_dir, &conf.name, &ip_conf.subnets);
    // What this call reserves, as opposed to a reservation the attachment already had (a
    // repeated ADD): only the former is released if the ADD fails.
    let (ips, reserved_here) = {
        let locked = store.lock()?;
        let had = locked.find(&att)?;
        (
            locked.allocate(&att, &requested_ips(env, conf)?)?,
            had.is_empty(),
        )
    };
    let netns = PathBuf::from(env.netns.clone().unwrap_or_default());
    let mtu = conf.mtu.unwrap_or(DEFAULT_MTU);
    let wired = match dp.add(&Attach {
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        netns: netns.clone(),
        ips: ips.clone(),
        mtu,
    }) {
        Ok(w) => w,
        Err(e) => {
            // Undo this call's reservation so a failed ADD leaks nothing (§4), and leave an
            // earlier one alone: it belongs to a live attachment.
            if reserved_here {
                if let Ok(l) = store.lock() {
                    let _ = l.release(&att);
                }
            }
            return Err(e);
        }
    };
    // The pod starts only once its node's agent has programmed it: on failure nothing of
    // this ADD is left (the wiring and this call's reservation are undone).
    if let Err(e) = wait_for_agent(env, agent, ips[0]) {
        if reserved_here {
            let _ = dp.del(&att.container_id, &att.ifname, Some(&netns));
            if let Ok(l) = store.lock() {
                let _ = l.release(&att);
            }
        }
        return Err(e);
    }
    let mut result = match &conf.prev_result {
        Some(prev) => serde_json::from_value::<AddResult>(prev.clone())
            .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("prevResult: {e}")))?,
        None => AddResult::default(),
    };
    result.cni_version = conf.cni_version.clone();
    let base = result.interfaces.len();
    result.interfaces.push(Interface {
        name: wired.host_ifname,
        mac: wired.host_mac,
        mtu: Some(mtu),
        sandbox: String::new(),
    });
    result.interfaces.push(Interface {
        name: att.ifname.clone(),
        mac: wired.pod_mac,
        mtu: Some(mtu),
        sandbox: netns.display().to_string(),
    });
    for ip in &ips {
        let gateway = crate::datapath::gateway_of(*ip);
        result.ips.push(IpConfig {
            address: IpNet::new(*ip, crate::datapath::host_prefix(*ip))
                .expect("full-length prefix"),
            gateway: Some(gateway),
            interface: Some(base + 1),
        });
        if wired.default_route {
            let dst = if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            result.routes.push(Route {
                dst: dst.parse().expect("literal"),
                gw: Some(gateway),
            });
        }
    }
    if let Some(d) = &conf.dns {
        if result.dns == Dns::default() {
            result.dns = d.clone();
        }
    }
    let mut v = serde_json::to_value(&result).expect("results serialize");
    if conf.cni_version.starts_with("0.") {
        // 0.3.x and 0.4.0 results carry the address family as `version`.
        for ipv in v["ips"].as_array_mut().into_iter().flatten() {
            let fam = if ipv["address"].as_str().is_some_and(|a| a.contains(':')) {
                "6"
            } else {
                "4"
            };
            ipv["version"] = json!(fam);
        }
    }
    Ok(v)
}

fn del(env: &Env, conf: &NetConf, dp: &dyn Datapath) -> CniResult<()> {
    let att = attachment(env);
    let netns = env.netns.as_deref().map(Path::new);
    // Best effort: release the address even when the namespace is gone (§4 DEL).
    tell_agent_del(env, conf);
    let dp_result = dp.del(&att.container_id, &att.ifname, netns);
    if let Ok(ip_conf) = ipam(conf) {
        let store = Store::new(&ip_conf.data_dir, &conf.name, &ip_conf.subnets);
        store.lock()?.release(&att)?;
    }
    dp_result
}

fn check(env: &Env, conf: &NetConf, dp: &dyn Datapath) -> CniResult<()> {
    let ip_conf = ipam(conf)?;
    let att = attachment(env);
    let netns = PathBuf::from(env.netns.clone().unwrap_or_default());
    let store = Store::new(&ip_conf.data_dir, &conf.name, &ip_conf.subnets);
    let reserved = store.lock()?.find(&att)?;
    if reserved.is_empty() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "no address is reserved for container {} {}",
                att.container_id, att.ifname
            ),
        ));
    }
    // prevResult says which addresses to expect; they must be the ones reserved.
    if let Some(prev) = &conf.prev_result {
        let res: AddResult = serde_json::from_value(prev.clone())
            .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("prevResult: {e}")))?;
        let sandbox = netns.display().to_string();
        let mut ours: Vec<IpAddr> = res
            .ips
            .iter()
            .filter(|i| {
                i.interface
                    .and_then(|n| res.interfaces.get(n))
                    .is_some_and(|itf| itf.sandbox == sandbox && itf.name == att.ifname)
            })
            .map(|i| i.address.addr())
            .collect();
        if ours.is_empty() {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "prevResult lists no address for {} in {sandbox}",
                    att.ifname
                ),
            ));
        }
        let mut want = reserved.clone();
        ours.sort();
        want.sort();
        if ours != want {
            let show = |l: &[IpAddr]| {
                l.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "prevResult has {} but {} is reserved",
                    show(&ours),
                    show(&want)
                ),
            ));
        }
    }
    dp.check(&Attach {
        container_id: att.container_id,
        ifname: att.ifname,
        netns,
        ips: reserved,
        mtu: conf.mtu.unwrap_or(DEFAULT_MTU),
    })
}

fn status(conf: &NetConf) -> CniResult<()> {
    if let Some(ready) = conf
        .other
        .get(crate::spec::READY_FILE_KEY)
        .and_then(|v| v.as_str())
    {
        if !std::path::Path::new(ready).exists() {
            return Err(CniError::new(
                code::NOT_AVAILABLE,
                format!("the podnet agent is not ready ({ready} is missing)"),
            ));
        }
    }
    let ip_conf = ipam(conf)?;
    let store = Store::new(&ip_conf.data_dir, &conf.name, &ip_conf.subnets);
    let free = store
        .lock()
        .map_err(|e| {
            CniError::new(
                code::NOT_AVAILABLE,
                format!("the IPAM store is unusable: {}", e.msg),
            )
        })?
        .free()?;
    if free == 0 {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            format!(
                "no free address left in {}",
                ip_conf
                    .subnets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    Ok(())
}

fn gc(conf: &NetConf, dp: &dyn Datapath) -> CniResult<()> {
    let ip_conf = ipam(conf)?;
    // Without the list, every reservation would look stale: release nothing, and say so.
    let Some(valid) = conf.valid_attachments.clone() else {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments (the attachments still in use); without it nothing is released",
        ));
    };
    let store = Store::new(&ip_conf.data_dir, &conf.name, &ip_conf.subnets);
    let released = store.lock()?.gc(&valid)?;
    // Keep going after errors and report them all (§ GC); an attachment with an address of
    // each family is removed once.
    let mut errors = Vec::new();
    let mut attachments: Vec<Attachment> = released.into_iter().map(|(_, a)| a).collect();
    attachments.dedup();
    for att in attachments {
        if let Err(e) = dp.del(&att.container_id, &att.ifname, None) {
            errors.push(e.msg);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::IO_FAILURE,
            format!("GC: {}", errors.join("; ")),
        ))
    }
}

/// The plugin executable: CNI_* variables from the environment, the configuration on stdin,
/// the result or the Error structure on stdout, logs on stderr. Used by the `podnet-cni`
/// binary and by `podnet` when it is invoked under that name.
pub fn main() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let env = Env::from_lookup(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    let result = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&env, &stdin, &crate::datapath::Netlink),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("reading stdin: {e}"),
        )),
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnet-cni: {:?}: {e}", env.command);
            let _ = writeln!(out, "{}", serde_json::to_string(&e).unwrap_or_default());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::Wired;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Records what the plugin asked of Linux.
    #[derive(Default)]
    struct Fake {
        wired: RefCell<BTreeMap<(String, String), Vec<IpAddr>>>,
        fail_add: bool,
    }

    impl Datapath for Fake {
        fn add(&self, a: &Attach) -> CniResult<Wired> {
            if self.fail_add {
                return Err(CniError::new(code::NETLINK, "injected failure"));
            }
            self.wired
                .borrow_mut()
                .insert((a.container_id.clone(), a.ifname.clone()), a.ips.clone());
            Ok(Wired {
                host_ifname: crate::datapath::host_ifname(&a.container_id, &a.ifname),
                host_mac: "aa:aa:aa:aa:aa:aa".into(),
                pod_mac: "bb:bb:bb:bb:bb:bb".into(),
                default_route: true,
            })
        }
        fn del(&self, c: &str, i: &str, _: Option<&Path>) -> CniResult<()> {
            self.wired
                .borrow_mut()
                .remove(&(c.to_string(), i.to_string()));
            Ok(())
        }
        fn check(&self, a: &Attach) -> CniResult<()> {
            match self
                .wired
                .borrow()
                .get(&(a.container_id.clone(), a.ifname.clone()))
            {
                Some(ips) if *ips == a.ips => Ok(()),
                _ => Err(CniError::new(code::NETLINK, "not wired")),
            }
        }
    }

    fn env(cmd: &str, id: &str) -> Env {
        let m: BTreeMap<&str, String> = [
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", id.to_string()),
            ("CNI_NETNS", "/run/netns/x".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", "/opt/cni/bin".into()),
        ]
        .into();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    fn conf(dir: &Path, extra: Value) -> Vec<u8> {
        let mut c = json!({"cniVersion": "1.1.0", "name": "podnet", "type": "podnet-cni", "ipam": {"type": IPAM_TYPE, "subnet": "10.244.1.0/24", "dataDir": dir}, "dns": {"nameservers": ["10.96.0.10"]}});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&c).unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podnet-plugin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn add_check_del_round_trip() {
        let dir = tmp("rt");
        let dp = Fake::default();
        let out = run(&env("ADD", "c1"), &conf(&dir, json!({})), &dp)
            .unwrap()
            .unwrap();
        assert_eq!(out["cniVersion"], "1.1.0");
        assert_eq!(out["interfaces"][1]["sandbox"], "/run/netns/x");
        assert_eq!(
            out["interfaces"][0].get("sandbox"),
            None,
            "the host interface has no sandbox"
        );
        assert_eq!(out["ips"][0]["interface"], 1);
        assert_eq!(out["ips"][0]["address"], "10.244.1.2/32");
        assert_eq!(out["dns"]["nameservers"][0], "10.96.0.10");
        let with_prev = conf(&dir, json!({"prevResult": out}));
        run(&env("CHECK", "c1"), &with_prev, &dp).unwrap();
        run(&env("DEL", "c1"), &conf(&dir, json!({})), &dp).unwrap();
        run(&env("DEL", "c1"), &conf(&dir, json!({})), &dp).expect("DEL twice succeeds");
        run(&env("DEL", "never-added"), &conf(&dir, json!({})), &dp)
            .expect("DEL without ADD succeeds");
        assert_eq!(
            run(&env("CHECK", "c1"), &with_prev, &dp).unwrap_err().code,
            code::UNKNOWN_CONTAINER
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dual_stack_ranges_give_an_address_gateway_and_default_route_per_family() {
        let dir = tmp("dual");
        let dp = Fake::default();
        let ipam = json!({"ipam": {"type": IPAM_TYPE, "dataDir": dir, "ranges": [
            [{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]}});
        let out = run(&env("ADD", "c1"), &conf(&dir, ipam.clone()), &dp)
            .unwrap()
            .unwrap();
        assert_eq!(out["ips"][0]["address"], "10.244.1.2/32");
        assert_eq!(out["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(out["ips"][1]["address"], "fd00:10:244:1::2/128");
        assert_eq!(out["ips"][1]["gateway"], "fe80::1");
        assert_eq!(out["ips"][1]["interface"], 1);
        assert_eq!(
            out["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::1"}])
        );
        let mut with_prev = ipam.clone();
        with_prev["prevResult"] = out.clone();
        run(&env("CHECK", "c1"), &conf(&dir, with_prev), &dp).unwrap();
        // A requested IPv6 address is honoured; the IPv4 one allocated beside it.
        let mut asked = ipam.clone();
        asked["runtimeConfig"] = json!({"ips": ["fd00:10:244:1::77/128"]});
        let out2 = run(&env("ADD", "c2"), &conf(&dir, asked), &dp)
            .unwrap()
            .unwrap();
        assert_eq!(out2["ips"][1]["address"], "fd00:10:244:1::77/128");
        assert_eq!(out2["ips"][0]["address"], "10.244.1.3/32");
        // Two ranges of one family are refused.
        let bad = json!({"ipam": {"type": IPAM_TYPE, "dataDir": dir, "ranges": [
            [{"subnet": "10.244.1.0/24"}], [{"subnet": "10.244.2.0/24"}]]}});
        assert_eq!(
            run(&env("ADD", "c3"), &conf(&dir, bad), &dp)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        run(&env("DEL", "c1"), &conf(&dir, ipam.clone()), &dp).unwrap();
        let store = Store::new(
            &dir,
            "podnet",
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
        );
        let left: Vec<IpAddr> = store
            .lock()
            .unwrap()
            .reservations()
            .unwrap()
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        assert_eq!(
            left.len(),
            2,
            "c1's two addresses are released, c2's kept: {left:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failed_add_leaks_no_address() {
        let dir = tmp("fail");
        let dp = Fake {
            fail_add: true,
            ..Default::default()
        };
        assert!(run(&env("ADD", "c1"), &conf(&dir, json!({})), &dp).is_err());
        let store = Store::new(&dir, "podnet", &["10.244.1.0/24".parse().unwrap()]);
        assert!(store.lock().unwrap().reservations().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requested_ip_prev_result_and_old_versions() {
        let dir = tmp("req");
        let dp = Fake::default();
        let prev =
            json!({"cniVersion": "0.4.0", "interfaces": [{"name": "x"}], "ips": [], "dns": {}});
        let c = conf(
            &dir,
            json!({"cniVersion": "0.4.0", "runtimeConfig": {"ips": ["10.244.1.77/24"]}, "prevResult": prev}),
        );
        let out = run(&env("ADD", "c1"), &c, &dp).unwrap().unwrap();
        assert_eq!(out["ips"][0]["address"], "10.244.1.77/32");
        assert_eq!(out["ips"][0]["version"], "4");
        assert_eq!(out["interfaces"][0]["name"], "x", "prevResult is kept");
        assert_eq!(out["ips"][0]["interface"], 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn status_is_not_available_until_the_agent_is_ready() {
        let dir = tmp("ready");
        let dp = Fake::default();
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("node-0.ready");
        let c = conf(
            &dir,
            json!({"podnet.dev/readyFile": ready.display().to_string()}),
        );
        let err = run(&env("STATUS", ""), &c, &dp).unwrap_err();
        assert_eq!(err.code, code::NOT_AVAILABLE);
        assert!(err.msg.contains("not ready"), "{}", err.msg);
        std::fs::write(&ready, "").unwrap();
        run(&env("STATUS", ""), &c, &dp).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn status_and_gc() {
        let dir = tmp("gc");
        let dp = Fake::default();
        run(&env("ADD", "a"), &conf(&dir, json!({})), &dp).unwrap();
        run(&env("ADD", "b"), &conf(&dir, json!({})), &dp).unwrap();
        run(&env("STATUS", ""), &conf(&dir, json!({})), &dp).unwrap();
        let gc = conf(
            &dir,
            json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}),
        );
        assert!(
            run(&env("GC", ""), &gc, &dp).unwrap().is_none(),
            "GC prints nothing"
        );
        let store = Store::new(&dir, "podnet", &["10.244.1.0/24".parse().unwrap()]);
        let left: Vec<_> = store
            .lock()
            .unwrap()
            .reservations()
            .unwrap()
            .into_iter()
            .map(|(_, a)| a.container_id)
            .collect();
        assert_eq!(left, ["a"]);
        assert_eq!(dp.wired.borrow().len(), 1, "b's interfaces were removed");
        // A full pool makes STATUS fail with code 50.
        let small = serde_json::to_vec(&json!({"cniVersion": "1.1.0", "name": "tiny", "type": "podnet-cni", "ipam": {"type": IPAM_TYPE, "subnet": "10.244.9.0/30", "dataDir": dir}})).unwrap();
        run(&env("ADD", "only"), &small, &dp).unwrap();
        assert_eq!(
            run(&env("STATUS", ""), &small, &dp).unwrap_err().code,
            code::NOT_AVAILABLE
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn well_known_keys_we_do_not_implement_are_refused_and_others_pass() {
        let dir = tmp("keys");
        let dp = Fake::default();
        let e = run(&env("ADD", "c1"), &conf(&dir, json!({"ipMasq": true})), &dp).unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("ipMasq=true"), "{}", e.msg);
        run(
            &env("ADD", "c1"),
            &conf(&dir, json!({"ipMasq": false, "someVendorKey": {"x": 1}})),
            &dp,
        )
        .expect("unknown keys pass");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn add_and_del_work_while_status_fails() {
        let dir = tmp("status");
        let dp = Fake::default();
        let small = serde_json::to_vec(&json!({"cniVersion": "1.1.0", "name": "tiny", "type": "podnet-cni", "ipam": {"type": IPAM_TYPE, "subnet": "10.244.9.0/30", "dataDir": dir}})).unwrap();
        run(&env("ADD", "a"), &small, &dp).unwrap();
        assert_eq!(
            run(&env("STATUS", ""), &small, &dp).unwrap_err().code,
            code::NOT_AVAILABLE
        );
        run(&env("DEL", "a"), &small, &dp).expect("DEL works while STATUS fails");
        run(&env("ADD", "b"), &small, &dp).expect("ADD works again");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn version_and_bad_input() {
        let dp = Fake::default();
        let out = run(&env("VERSION", ""), br#"{"cniVersion":"1.1.0"}"#, &dp)
            .unwrap()
            .unwrap();
        assert_eq!(out["cniVersion"], "1.1.0");
        assert!(out["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "0.3.1"));
        assert_eq!(
            run(&env("ADD", "c"), b"{", &dp).unwrap_err().code,
            code::DECODE_FAILURE
        );
        let e = run(&env("ADD", "c"), br#"{"cniVersion":"1.1.0","name":"n","type":"t","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#, &dp).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
    }
}
