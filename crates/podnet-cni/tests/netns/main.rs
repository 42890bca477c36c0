//! The plugin for real, in network namespaces this test creates (`unshare(CLONE_NEWNET)` on
//! parked threads; nothing is named, nothing touches the host's namespace). Needs root: without
//! CAP_NET_ADMIN each test says why it skips, and under `CI=true` a skip is a failure.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{setns, unshare, CloneFlags};
use serde_json::{json, Value};

/// A network namespace held open by a parked thread.
struct Ns {
    path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ns {
    fn new() -> Option<Ns> {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                tx.send(Err(e.to_string())).unwrap();
                return;
            }
            let path = PathBuf::from(format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            ));
            tx.send(Ok(path)).unwrap();
            let _ = stop_rx.recv();
        });
        match rx.recv().unwrap() {
            Ok(path) => Some(Ns {
                path,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(e) => {
                thread.join().unwrap();
                skip(&format!(
                    "cannot create a network namespace ({e}): needs root / CAP_NET_ADMIN"
                ));
                None
            }
        }
    }

    /// Runs `f` on a fresh thread inside this namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(&self.path).unwrap();
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("skipped under CI=true: {why}");
    }
    eprintln!("SKIP: {why}");
}

struct Net {
    node: Ns,
    dir: PathBuf,
}

impl Net {
    fn new(name: &str) -> Option<Net> {
        let node = Ns::new()?;
        // A node has an address of its own (its InternalIP); here on lo.
        node.run(|| {
            for args in [
                &["link", "set", "lo", "up"][..],
                &["addr", "add", "172.18.0.2/32", "dev", "lo"][..],
            ] {
                assert!(Command::new("ip").args(args).status().unwrap().success());
            }
        });
        let dir =
            std::env::temp_dir().join(format!("podnet-cni-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Some(Net { node, dir })
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = json!({"cniVersion": "1.1.0", "name": "podnet", "type": "podnet-cni", "mtu": 1450,
            "ipam": {"type": "podnet-ipam", "subnet": "10.244.1.0/24", "dataDir": self.dir}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// Runs the plugin binary from the node's namespace, as a runtime does.
    /// `ip -o link` in the node's namespace.
    fn links(&self) -> String {
        self.node.run(|| {
            String::from_utf8(
                Command::new("ip")
                    .args(["-o", "link"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
        })
    }

    fn cni(&self, cmd: &str, id: &str, netns: Option<&Path>, conf: &Value) -> (bool, Value) {
        self.cni_if(cmd, id, "eth0", netns, conf)
    }

    fn cni_if(
        &self,
        cmd: &str,
        id: &str,
        ifname: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> (bool, Value) {
        let bin = env!("CARGO_BIN_EXE_podnet-cni");
        let stdin = serde_json::to_vec(conf).unwrap();
        let (cmd, id, ifname) = (cmd.to_string(), id.to_string(), ifname.to_string());
        let netns = netns.map(|p| p.display().to_string());
        self.node.run(move || {
            let mut c = Command::new(bin);
            c.env_clear()
                .env("CNI_COMMAND", &cmd)
                .env("CNI_IFNAME", &ifname)
                .env("CNI_PATH", "/opt/cni/bin")
                .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p");
            if !id.is_empty() {
                c.env("CNI_CONTAINERID", &id);
            }
            if let Some(n) = &netns {
                c.env("CNI_NETNS", n);
            }
            let mut child = c
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&stdin).unwrap();
            let out = child.wait_with_output().unwrap();
            let v = if out.stdout.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "stdout is not JSON ({e}): {}",
                        String::from_utf8_lossy(&out.stdout)
                    )
                })
            };
            (out.status.success(), v)
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pod_ip(result: &Value) -> IpAddr {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A TCP server in `ns` that answers each connection with the peer's address.
fn serve_clientip(ns: &Ns, port: u16) {
    let (tx, rx) = mpsc::channel();
    let file = std::fs::File::open(&ns.path).unwrap();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for s in l.incoming().take(4) {
            let mut s = s.unwrap();
            let peer = s.peer_addr().unwrap();
            let _ = s.write_all(peer.ip().to_string().as_bytes());
        }
    });
    rx.recv().unwrap();
}

fn tcp_get(ns: &Ns, to: SocketAddr) -> std::io::Result<String> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf)
    })
}

#[test]
fn two_pods_talk_tcp_and_udp_without_nat() {
    let Some(net) = Net::new("talk") else { return };
    let (a, b) = (Ns::new().unwrap(), Ns::new().unwrap());
    let (ok, ra) = net.cni("ADD", "pod-a", Some(&a.path), &net.conf(json!({})));
    assert!(ok, "{ra}");
    let (ok, rb) = net.cni("ADD", "pod-b", Some(&b.path), &net.conf(json!({})));
    assert!(ok, "{rb}");
    let (ipa, ipb) = (pod_ip(&ra), pod_ip(&rb));
    assert_ne!(ipa, ipb);
    assert_eq!(ra["interfaces"][1]["sandbox"], a.path.display().to_string());
    assert_eq!(ra["interfaces"][1]["mtu"], 1450);

    serve_clientip(&b, 8080);
    let seen = tcp_get(&a, SocketAddr::new(ipb, 8080)).expect("pod a reaches pod b over TCP");
    assert_eq!(
        seen,
        ipa.to_string(),
        "the server sees the client pod's own IP: no NAT"
    );

    // UDP echo.
    let (tx, rx) = mpsc::channel();
    let file = std::fs::File::open(&b.path).unwrap();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        s.send_to(&buf[..n], from).unwrap();
    });
    rx.recv().unwrap();
    let got = a.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"hello", SocketAddr::new(ipb, 5353)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    assert_eq!(got, b"hello");

    // The node reaches its pods too.
    serve_clientip(&a, 9090);
    let seen = tcp_get(&net.node, SocketAddr::new(ipa, 9090)).expect("the node reaches pod a");
    assert_eq!(seen, "172.18.0.2", "the pod sees the node's own address");
}

#[test]
fn containers_of_a_pod_share_localhost() {
    let Some(net) = Net::new("lo") else { return };
    let pod = Ns::new().unwrap();
    let (ok, r) = net.cni("ADD", "pod", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    serve_clientip(&pod, 7070);
    let seen =
        tcp_get(&pod, "127.0.0.1:7070".parse().unwrap()).expect("localhost works inside the pod");
    assert_eq!(seen, "127.0.0.1");
}

#[test]
fn check_del_and_errors() {
    let Some(net) = Net::new("check") else { return };
    let pod = Ns::new().unwrap();
    let (ok, r) = net.cni("ADD", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    let (ok, e) = net.cni(
        "CHECK",
        "c1",
        Some(&pod.path),
        &net.conf(json!({"prevResult": r})),
    );
    assert!(ok, "CHECK right after ADD: {e}");
    // A second ADD of the same interface name into the same pod is refused.
    let (ok, e) = net.cni("ADD", "c2", Some(&pod.path), &net.conf(json!({})));
    assert!(!ok);
    assert!(e["msg"].as_str().unwrap().contains("already exists"), "{e}");
    assert!(e["code"].as_u64().is_some());
    // Break the pod: remove its address; CHECK must notice.
    let ip = pod_ip(&r);
    pod.run(move || {
        let st = Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", "eth0"])
            .status()
            .unwrap();
        assert!(st.success());
    });
    let (ok, e) = net.cni(
        "CHECK",
        "c1",
        Some(&pod.path),
        &net.conf(json!({"prevResult": r})),
    );
    assert!(!ok, "CHECK must fail when the pod lost its address");
    assert!(e["msg"].as_str().unwrap().contains("lacks"), "{e}");
    // DEL twice, DEL with no netns, DEL of something never added.
    for netns in [Some(pod.path.as_path()), Some(pod.path.as_path()), None] {
        let (ok, e) = net.cni("DEL", "c1", netns, &net.conf(json!({})));
        assert!(ok, "{e}");
        assert!(e.is_null(), "DEL prints nothing");
    }
    let (ok, _) = net.cni(
        "DEL",
        "never",
        Some(Path::new("/proc/1/task/999999999/ns/net")),
        &net.conf(json!({})),
    );
    assert!(ok, "DEL with a namespace that is gone succeeds");
    // The host side is gone.
    let host = podnet_cni::datapath::host_ifname("c1", "eth0");
    let links = net.links();
    assert!(!links.contains(&host), "{links}");
    // Errors: version, decode, environment.
    let (ok, e) = net.cni(
        "ADD",
        "c3",
        Some(&pod.path),
        &json!({"cniVersion": "9.9.9", "name": "n", "type": "podnet-cni"}),
    );
    assert!(!ok);
    assert_eq!(e["code"], 1);
    let (ok, e) = net.cni("ADD", "", Some(&pod.path), &net.conf(json!({})));
    assert!(!ok);
    assert_eq!(e["code"], 4);
    assert!(e["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
    let (ok, v) = net.cni("VERSION", "", None, &json!({"cniVersion": "1.0.0"}));
    assert!(ok);
    assert_eq!(v["cniVersion"], "1.0.0");
    for ver in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == ver));
    }
}

#[test]
fn concurrent_adds_get_unique_addresses_and_gc_reclaims() {
    let Some(net) = Net::new("conc") else { return };
    let net = std::sync::Arc::new(net);
    let pods: Vec<Ns> = (0..32).map(|_| Ns::new().unwrap()).collect();
    let handles: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let net = net.clone();
            let path = p.path.clone();
            std::thread::spawn(move || {
                net.cni("ADD", &format!("c{i}"), Some(&path), &net.conf(json!({})))
            })
        })
        .collect();
    let mut ips = std::collections::BTreeSet::new();
    for h in handles {
        let (ok, r) = h.join().unwrap();
        assert!(ok, "{r}");
        ips.insert(pod_ip(&r));
    }
    assert_eq!(ips.len(), 32, "32 concurrent ADDs, 32 distinct addresses");
    // GC with only c0 and c1 valid releases the other 30 and their interfaces.
    let valid =
        json!([{"containerID": "c0", "ifname": "eth0"}, {"containerID": "c1", "ifname": "eth0"}]);
    let (ok, out) = net.cni(
        "GC",
        "",
        None,
        &net.conf(json!({"cni.dev/valid-attachments": valid})),
    );
    assert!(ok, "{out}");
    assert!(out.is_null(), "GC prints nothing on success");
    let reserved = std::fs::read_dir(net.dir.join("podnet"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("10.")
        })
        .count();
    assert_eq!(reserved, 2);
    let links = net.links();
    assert_eq!(links.matches(": pn").count(), 2, "{links}");
    let (ok, e) = net.cni("STATUS", "", None, &net.conf(json!({})));
    assert!(ok, "{e}");
}

/// Checklist 3.5: one container may join with several interface names.
/// Checklist 5.2: CHECK allows a later plugin to have added routes.
/// Checklist 5.4: CHECK fails on an untracked condition that leaves the pod unreachable.
#[test]
fn two_interfaces_extra_routes_and_forwarding() {
    let Some(net) = Net::new("multi") else { return };
    let pod = Ns::new().unwrap();
    let (ok, r0) = net.cni_if("ADD", "c1", "eth0", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r0}");
    let (ok, r1) = net.cni_if("ADD", "c1", "net1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r1}");
    assert_ne!(pod_ip(&r0), pod_ip(&r1));
    assert_eq!(r0["routes"][0]["dst"], "0.0.0.0/0");
    assert!(
        r1["routes"].as_array().is_none_or(Vec::is_empty),
        "the second attachment leaves the default route alone: {r1}"
    );
    // A chained plugin adds a route; CHECK still passes.
    pod.run(|| {
        assert!(Command::new("ip")
            .args([
                "route",
                "add",
                "192.0.2.0/24",
                "via",
                "169.254.1.1",
                "dev",
                "eth0"
            ])
            .status()
            .unwrap()
            .success())
    });
    let (ok, e) = net.cni_if(
        "CHECK",
        "c1",
        "eth0",
        Some(&pod.path),
        &net.conf(json!({"prevResult": r0})),
    );
    assert!(ok, "{e}");
    // Forwarding off on the node leaves pods unreachable: CHECK says so.
    net.node
        .run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap());
    let (ok, e) = net.cni_if(
        "CHECK",
        "c1",
        "eth0",
        Some(&pod.path),
        &net.conf(json!({"prevResult": r0})),
    );
    assert!(!ok);
    assert!(e["msg"].as_str().unwrap().contains("forwarding"), "{e}");
    for ifname in ["net1", "eth0"] {
        let (ok, e) = net.cni_if("DEL", "c1", ifname, Some(&pod.path), &net.conf(json!({})));
        assert!(ok, "{e}");
    }
}

/// Issue 10, defect 7: CHECK verifies everything ADD set up. Deleting the pod's permanent
/// neighbour entry on the node left CHECK passing while pings were all lost; so did the pod's
/// gateway entry and the pod interface's MTU.
#[test]
fn check_notices_missing_neighbours_and_a_wrong_mtu() {
    let Some(net) = Net::new("checkneigh") else {
        return;
    };
    let pod = Ns::new().unwrap();
    let (ok, r) = net.cni("ADD", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    let check = |what: &str, want: &str| {
        let (ok, e) = net.cni(
            "CHECK",
            "c1",
            Some(&pod.path),
            &net.conf(json!({"prevResult": r})),
        );
        assert!(!ok, "CHECK must fail: {what}");
        assert!(e["msg"].as_str().unwrap().contains(want), "{what}: {e}");
    };
    let host = podnet_cni::datapath::host_ifname("c1", "eth0");
    let ip = pod_ip(&r);
    let h = host.clone();
    net.node.run(move || {
        let st = Command::new("ip")
            .args(["neigh", "del", &ip.to_string(), "dev", &h])
            .status()
            .unwrap();
        assert!(st.success());
    });
    check(
        "the node's entry for the pod is gone",
        "permanent neighbour entry for",
    );
    // Put it back with the plugin (ADD again is idempotent for an attachment it holds).
    let (ok, r2) = net.cni("DEL", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r2}");
    let (ok, r) = net.cni("ADD", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    let check_now = |r: &Value| {
        net.cni(
            "CHECK",
            "c1",
            Some(&pod.path),
            &net.conf(json!({"prevResult": r})),
        )
    };
    let (ok, e) = check_now(&r);
    assert!(ok, "{e}");
    pod.run(|| {
        assert!(Command::new("ip")
            .args(["neigh", "del", "169.254.1.1", "dev", "eth0"])
            .status()
            .unwrap()
            .success());
    });
    let (ok, e) = check_now(&r);
    assert!(!ok);
    assert!(
        e["msg"].as_str().unwrap().contains("gateway 169.254.1.1"),
        "{e}"
    );
    pod.run(|| {
        assert!(Command::new("ip")
            .args(["link", "set", "eth0", "mtu", "1400"])
            .status()
            .unwrap()
            .success());
    });
    let (ok, e) = check_now(&r);
    assert!(!ok);
    assert!(e["msg"].as_str().unwrap().contains("MTU"), "{e}");
}

/// Issue 10, defect 8: a repeated ADD that fails (here: its namespace is gone) releases only
/// what it reserved itself, never the live attachment's address; so a third ADD asking for
/// that address is refused, and no two pods share one.
#[test]
fn a_failed_repeat_add_keeps_the_live_reservation() {
    let Some(net) = Net::new("repeat") else {
        return;
    };
    let pod = Ns::new().unwrap();
    let (ok, r) = net.cni("ADD", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    let ip = pod_ip(&r);
    let gone = Path::new("/proc/1/task/999999999/ns/net");
    let (ok, e) = net.cni("ADD", "c1", Some(gone), &net.conf(json!({})));
    assert!(!ok);
    assert_eq!(e["code"], 3, "{e}");
    let other = Ns::new().unwrap();
    let ask = json!({"runtimeConfig": {"ips": [format!("{ip}/32")]}});
    let (ok, e) = net.cni("ADD", "c2", Some(&other.path), &net.conf(ask));
    assert!(!ok, "the address is still c1's: {e}");
    assert!(
        e["msg"].as_str().unwrap().contains("already reserved"),
        "{e}"
    );
    // A failed first ADD leaks nothing.
    let (ok, _) = net.cni("ADD", "c3", Some(gone), &net.conf(json!({})));
    assert!(!ok);
    let reserved = std::fs::read_dir(net.dir.join("podnet"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("10.")
        })
        .count();
    assert_eq!(reserved, 1, "only c1's reservation");
}

/// GC without `cni.dev/valid-attachments` releases nothing and says why.
#[test]
fn gc_without_the_valid_attachments_releases_nothing() {
    let Some(net) = Net::new("gcnone") else {
        return;
    };
    let pod = Ns::new().unwrap();
    let (ok, r) = net.cni("ADD", "c1", Some(&pod.path), &net.conf(json!({})));
    assert!(ok, "{r}");
    let (ok, e) = net.cni("GC", "", None, &net.conf(json!({})));
    assert!(!ok);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("cni.dev/valid-attachments"),
        "{e}"
    );
    let links = net.links();
    assert_eq!(
        links.matches(": pn").count(),
        1,
        "c1's interface is still there: {links}"
    );
    let (ok, e) = net.cni(
        "CHECK",
        "c1",
        Some(&pod.path),
        &net.conf(json!({"prevResult": r})),
    );
    assert!(ok, "{e}");
}
