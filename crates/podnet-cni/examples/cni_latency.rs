//! CNI ADD and DEL latency over N pods: podnet-cni against the reference `bridge` + `host-local`
//! plugins (Debian's containernetworking-plugins), in the same run, on the same machine.
//!
//! `cargo run --release -p podnet-cni --example cni_latency -- <podnet-cni binary> [pods] [reference dir]`
//!
//! Runs as root. Every namespace is anonymous (unshare on a parked thread) and goes away at the
//! end; nothing touches the host's namespace.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use serde_json::{json, Value};

struct Ns {
    path: PathBuf,
    _stop: mpsc::Sender<()>,
}

fn ns() -> Ns {
    let (tx, rx) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
        tx.send(PathBuf::from(format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            nix::unistd::gettid()
        )))
        .unwrap();
        let _ = stop_rx.recv();
    });
    Ns {
        path: rx.recv().unwrap(),
        _stop: stop,
    }
}

fn in_ns<T: Send + 'static>(ns: &Ns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(&ns.path).unwrap();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Runs one plugin invocation from inside `node`; returns its wall time.
fn invoke(
    node: &Ns,
    bin: &str,
    cni_path: &str,
    cmd: &str,
    id: &str,
    netns: &str,
    conf: &Value,
) -> Duration {
    let (bin, cni_path, cmd, id, netns) = (
        bin.to_string(),
        cni_path.to_string(),
        cmd.to_string(),
        id.to_string(),
        netns.to_string(),
    );
    let stdin = serde_json::to_vec(conf).unwrap();
    in_ns(node, move || {
        let t = Instant::now();
        let mut c = Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", &cmd)
            .env("CNI_CONTAINERID", &id)
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&stdin).unwrap();
        let out = c.wait_with_output().unwrap();
        let d = t.elapsed();
        assert!(
            out.status.success(),
            "{bin} {cmd}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        d
    })
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Run {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn run(name: &str, pods: usize, bin: &str, cni_path: &str, conf: &Value) -> Run {
    let node = ns();
    in_ns(&node, || {
        let _ = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        let _ = Command::new("ip")
            .args(["addr", "add", "172.18.0.2/32", "dev", "lo"])
            .status();
    });
    let netns: Vec<Ns> = (0..pods).map(|_| ns()).collect();
    let mut add = Vec::new();
    for (i, p) in netns.iter().enumerate() {
        add.push(invoke(
            &node,
            bin,
            cni_path,
            "ADD",
            &format!("{name}-{i}"),
            p.path.to_str().unwrap(),
            conf,
        ));
    }
    let mut del = Vec::new();
    for (i, p) in netns.iter().enumerate() {
        del.push(invoke(
            &node,
            bin,
            cni_path,
            "DEL",
            &format!("{name}-{i}"),
            p.path.to_str().unwrap(),
            conf,
        ));
    }
    Run { add, del }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ours = args
        .get(1)
        .expect("usage: cni_latency <podnet-cni binary> [pods] [reference dir]")
        .clone();
    let pods: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let refdir = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "/usr/lib/cni".into());
    let data = std::env::temp_dir().join(format!("podnet-cni-bench-{}", std::process::id()));
    let our_conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "podnet-cni", "mtu": 1450,
        "ipam": {"type": "podnet-ipam", "subnet": "10.244.1.0/24", "dataDir": data.join("ours")}});
    let ref_conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0", "isGateway": true, "mtu": 1450,
        "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": data.join("ref")}});
    let ours_bin_dir = PathBuf::from(&ours).parent().unwrap().display().to_string();
    // Warm the page cache for both binaries, then measure.
    let _ = run("warm-ours", 3, &ours, &ours_bin_dir, &our_conf);
    let _ = run(
        "warm-ref",
        3,
        &format!("{refdir}/bridge"),
        &refdir,
        &ref_conf,
    );
    let mut o = run("ours", pods, &ours, &ours_bin_dir, &our_conf);
    let mut r = run("ref", pods, &format!("{refdir}/bridge"), &refdir, &ref_conf);
    let _ = std::fs::remove_dir_all(&data);
    println!("pods: {pods}");
    println!("| plugin | ADD p50 | ADD p99 | DEL p50 | DEL p99 |");
    println!("|---|---|---|---|---|");
    let (oa50, oa99, od50, od99) = (
        pct(&mut o.add, 0.5),
        pct(&mut o.add, 0.99),
        pct(&mut o.del, 0.5),
        pct(&mut o.del, 0.99),
    );
    let (ra50, ra99, rd50, rd99) = (
        pct(&mut r.add, 0.5),
        pct(&mut r.add, 0.99),
        pct(&mut r.del, 0.5),
        pct(&mut r.del, 0.99),
    );
    println!("| podnet-cni (routed veth, podnet-ipam) | {oa50:.2} ms | {oa99:.2} ms | {od50:.2} ms | {od99:.2} ms |");
    println!("| bridge + host-local (reference) | {ra50:.2} ms | {ra99:.2} ms | {rd50:.2} ms | {rd99:.2} ms |");
    println!(
        "| ratio podnet / reference | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
        oa50 / ra50,
        oa99 / ra99,
        od50 / rd50,
        od99 / rd99
    );
}
