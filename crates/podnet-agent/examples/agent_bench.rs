//! What one watch event costs the agent, at scale: 10,000 Services (each with one pod behind
//! it), 10,000 pods on 3 nodes and 1,000 NetworkPolicies, as the API serves them. Each event
//! goes the agent's way: the object's JSON into the model ([`ApiModel::apply`]), the node's
//! dataplane updated part by part ([`Live::update`]) and the change handed to the kernel
//! ([`podnet_node::apply_delta`], one nftables transaction through the node's long-lived
//! `nft`), as root in a namespace of its own. Without root the kernel's part is left out, and
//! said.
//!   cargo run --release -p podnet-agent --example agent_bench -- [SERVICES] [POLICIES] [EVENTS]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use podnet_model::{ApiKey, ApiModel, ConfigOverrides};
use podnet_node::effects::{Effects, Linux, Recording};
use podnet_node::live::Live;
use podnet_node::Held;
use serde_json::{json, Value};

#[path = "shared/mod.rs"]
mod shared;

/// Node-0's uplink inside a bench namespace (a veth pair with nowhere to go), with node-0's
/// address for the VXLAN device to send from.
fn with_uplink(ns: &podnet_node::sys::Scratch) {
    podnet_node::sys::run_in(
        &ns.path,
        std::process::Command::new("ip").args(["-batch", "-"]),
        Some(b"link add eth0 type veth peer name eth0peer\nlink set eth0 up\naddr add 172.18.0.2/16 dev eth0\n"),
    )
    .unwrap();
}

/// p50 and p99 of a sample, in ms.
fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// The agent's state: model, dataplane and what the node holds.
struct Agent {
    model: ApiModel,
    live: Live,
    held: Held,
    fx: Box<dyn Effects>,
}

impl Agent {
    /// One watch event, the agent's way; its time in ms: in all, and in the model, the
    /// dataplane and the kernel.
    fn event(&mut self, key: &ApiKey, obj: Option<&Value>) -> [f64; 4] {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let out = self.model.apply(key, obj);
        assert!(out.refused.is_none(), "{key}: {:?}", out.why());
        let m = ms(t);
        let t1 = Instant::now();
        let delta = self
            .live
            .update(self.model.cluster(), &out.changed)
            .unwrap();
        let d = ms(t1);
        let t2 = Instant::now();
        let held = std::mem::take(&mut self.held);
        let a = podnet_node::apply_delta(held, self.live.dataplane(), &delta, &mut *self.fx);
        assert!(a.failures.is_empty(), "{:?}", a.failures);
        self.held = a.held;
        [ms(t), m, d, ms(t2)]
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let services: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let policies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let events: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let o = ConfigOverrides {
        nodes: Some(3),
        node_cidr_mask_size: Some(18),
        ..Default::default()
    };
    let objects: Vec<Value> = shared::objects(services, policies, &o);
    let n_objects = objects.len();
    let t = Instant::now();
    let (model, skipped) = ApiModel::of_objects(&objects, &o).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let model_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let live = Live::new(model.cluster(), "node-0", "eth0").unwrap();
    let live_ms = t.elapsed().as_secs_f64() * 1e3;
    let taken: BTreeSet<std::net::IpAddr> = live
        .dataplane()
        .proxy
        .services
        .keys()
        .chain(&live.dataplane().proxy.no_endpoints)
        .map(|k| k.ip)
        .collect();
    // The pod of a Service that is added and deleted, for its slice.
    let pod = objects
        .iter()
        .find(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == "node-1")
        .unwrap()
        .clone();
    let (pod_ip, pod_name) = (
        pod["status"]["podIP"].as_str().unwrap().to_string(),
        pod["metadata"]["name"].as_str().unwrap().to_string(),
    );
    let relabel_pod = objects
        .iter()
        .find(|v| v["kind"] == "Pod" && v["spec"]["nodeName"] == "node-0")
        .unwrap()
        .clone();
    let slice = objects
        .iter()
        .find(|v| {
            v["kind"] == "EndpointSlice"
                && v["metadata"]["name"].as_str().unwrap().starts_with("s1-")
        })
        .unwrap()
        .clone();
    eprintln!(
        "{n_objects} API objects: the model from them {model_ms:.0} ms, node-0's dataplane {live_ms:.0} ms; RSS of the model and dataplane {:.0} MB",
        shared::rss_mb("self")
    );

    let scratch = podnet_node::sys::Scratch::new();
    let (fx, kernel): (Box<dyn Effects>, bool) = match &scratch {
        Ok(s) => {
            with_uplink(s);
            (Box::new(Linux::at(s.path.clone())), true)
        }
        Err(e) => {
            eprintln!(
                "no namespace of its own ({e}): the kernel's part is LEFT OUT of these times"
            );
            (Box::new(Recording::default()), false)
        }
    };
    let mut agent = Agent {
        model,
        live,
        held: Held::default(),
        fx,
    };
    let t = Instant::now();
    let a = podnet_node::apply(&agent.held, agent.live.dataplane(), &mut *agent.fx);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    agent.held = a.held;
    eprintln!(
        "first load of node-0 {}: {:.0} ms",
        if kernel {
            "into the kernel"
        } else {
            "(recorded)"
        },
        t.elapsed().as_secs_f64() * 1e3
    );

    let (mut add_svc, mut add_slice, mut del_svc, mut flip, mut relabel, mut ready) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // The pod whose labels and readiness change, as the API has it now.
    let mut pod_now = relabel_pod.clone();
    let mut free = (0u32..).map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 255, 254)) - i));
    for i in 0..events {
        // A Service added (no endpoint yet), its EndpointSlice, then both deleted.
        let ip = free
            .by_ref()
            .find(|ip| !taken.contains(&std::net::IpAddr::V4(*ip)))
            .unwrap();
        let name = format!("bench-{i}");
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()], "type": "ClusterIP",
                     "selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        let es = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [pod_ip], "conditions": {"ready": true, "serving": true, "terminating": false},
                           "nodeName": "node-1", "targetRef": {"kind": "Pod", "namespace": "default", "name": pod_name}}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]
        });
        let (sk, ek) = (ApiKey::of(&svc).unwrap(), ApiKey::of(&es).unwrap());
        add_svc.push(agent.event(&sk, Some(&svc)));
        add_slice.push(agent.event(&ek, Some(&es)));
        let (a, b) = (agent.event(&ek, None), agent.event(&sk, None));
        del_svc.push([0, 1, 2, 3].map(|i| a[i] + b[i]));
        // An existing Service's endpoint stops being ready, then is ready again.
        let mut s2 = slice.clone();
        s2["endpoints"][0]["conditions"]["ready"] = json!(i % 2 == 1);
        flip.push(agent.event(&ApiKey::of(&s2).unwrap(), Some(&s2)));
        // A pod of this node changes its labels (NetworkPolicy selects by them).
        if i < events / 4 {
            pod_now["metadata"]["labels"]["tier"] = json!(format!("t{}", (i + 1) % 100));
            relabel.push(agent.event(&ApiKey::of(&pod_now).unwrap(), Some(&pod_now)));
        }
        {
            // The same pod's readiness (its endpoint's change comes as its EndpointSlice's).
            let status = if i % 2 == 0 { "False" } else { "True" };
            pod_now["status"]["conditions"] = json!([{"type": "Ready", "status": status}]);
            ready.push(agent.event(&ApiKey::of(&pod_now).unwrap(), Some(&pod_now)));
        }
    }
    let kernel_note = if kernel { "" } else { " (kernel LEFT OUT)" };
    println!(
        "event → programmed on node-0 at {services} Services, {services} pods, {policies} policies{kernel_note}:"
    );
    for (what, v) in [
        ("Service added", add_svc),
        ("its EndpointSlice added", add_slice),
        ("Service and slice deleted", del_svc),
        ("an endpoint's readiness", flip),
        ("a local pod's readiness", ready),
        ("a local pod's labels (policy)", relabel),
    ] {
        let n = v.len();
        let part = |i: usize| quantiles(v.iter().map(|x: &[f64; 4]| x[i]).collect()).0;
        let (m, d, k) = (part(1), part(2), part(3));
        let (p50, p99, max) = quantiles(v.iter().map(|x| x[0]).collect());
        println!("  {what:<30} p50 {p50:6.2} ms  p99 {p99:6.2} ms  max {max:6.2} ms  ({n} events; p50 of the model {m:.2}, dataplane {d:.2}, kernel {k:.2})");
    }
    println!("RSS of this process: {:.0} MB", shared::rss_mb("self"));
    if let (true, Ok(ns)) = (kernel, &scratch) {
        verify_passes(&mut agent, ns);
    }
    drop(agent);
    match (std::env::var_os("PODNET_BIN"), kernel) {
        (Some(bin), true) => real_agent(bin.into(), objects, events.min(100)),
        (None, _) => println!("the agent as a process: set PODNET_BIN to the podnet binary"),
        (_, false) => println!("the agent as a process: LEFT OUT (no namespace of its own)"),
    }
}

/// CPU seconds used so far by this process and by its children that were waited for (the
/// `nft`, `ip` and `bridge` a verify pass runs).
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let secs = |who| {
        let u = getrusage(who).unwrap();
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    };
    secs(UsageWho::RUSAGE_SELF) + secs(UsageWho::RUSAGE_CHILDREN)
}

/// The agent's verify pass at this scale: the kernel read back and compared (no drift), then
/// one element deleted behind its back and the pass that repairs it.
fn verify_passes(agent: &mut Agent, ns: &podnet_node::sys::Scratch) {
    let want = agent.live.dataplane().clone();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (t, c) = (Instant::now(), cpu_seconds());
        let v = podnet_node::verify::verify(&agent.held, &want, &mut *agent.fx).unwrap();
        assert!(v.drift.is_empty(), "{:?}", v.drift);
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_seconds() - c) * 1e3);
        agent.held = v.held;
    }
    let (w50, _, wmax) = quantiles(wall);
    let (c50, _, cmax) = quantiles(cpu);
    println!(
        "verify pass, nothing drifted (5 passes): wall p50 {w50:.0} ms max {wmax:.0} ms; CPU (agent + nft/ip/bridge) p50 {c50:.0} ms max {cmax:.0} ms"
    );
    // Its parts: the ruleset read (nft's structure, the elements over netlink), then decoded.
    let (t, c) = (Instant::now(), cpu_seconds());
    let ruleset = podnet_node::nlnft::ruleset(&ns.path).unwrap();
    let (read_ms, read_cpu) = (t.elapsed().as_secs_f64() * 1e3, (cpu_seconds() - c) * 1e3);
    let t = Instant::now();
    let tables = podnet_node::observe::tables_of(&ruleset).unwrap();
    let decode_ms = t.elapsed().as_secs_f64() * 1e3;
    let n = tables
        .proxy
        .as_ref()
        .map_or(0, |p| p.content.iter().count());
    println!(
        "  of which: the ruleset read {read_ms:.0} ms (CPU {read_cpu:.0} ms), decoded {decode_ms:.0} ms ({n} proxy elements)"
    );
    let mut repair = Vec::new();
    for (set, elem) in [
        (
            "ip podnet-policy egress",
            want.policy.egress.keys().next().map(ToString::to_string),
        ),
        (
            "ip podnet-proxy services",
            want.proxy
                .services
                .keys()
                .next()
                .map(|k| format!("{} . {} . {}", k.ip, k.proto.lower(), k.port)),
        ),
    ] {
        let Some(elem) = elem else { continue };
        let mut args: Vec<&str> = vec!["delete", "element"];
        args.extend(set.split(' '));
        let e = format!("{{ {elem} }}");
        args.push(&e);
        ns.run(std::process::Command::new("nft").args(&args), None)
            .unwrap();
        let t = Instant::now();
        let v = podnet_node::verify::verify(&agent.held, &want, &mut *agent.fx).unwrap();
        assert_eq!(v.drift.len(), 1, "{:?}", v.drift);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
        repair.push((set, t.elapsed().as_secs_f64() * 1e3));
        agent.held = v.held;
    }
    for (set, ms) in repair {
        println!("  one element of {set} deleted: found and repaired by one pass in {ms:.0} ms");
    }
}

/// A value of the agent's /metrics.
fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
}

/// The real agent, `podnet agent`, as a process against a Kubernetes API (podnet's own, on
/// loopback) that serves the objects: how long it takes to program node-0 from nothing, its
/// memory, and for Services added through the API, the time from the API's change to the
/// node programmed (the agent's /metrics polled every 0.2 ms).
fn real_agent(bin: std::path::PathBuf, objects: Vec<Value>, events: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = podnet_api::server::Api::new();
    api.replace(objects.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(api.clone().serve(listener));
    let dir = std::env::temp_dir().join(format!("podnet-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        podnet_api::kubeconfig("bench", &addr.to_string()),
    )
    .unwrap();
    let ns = podnet_node::sys::Scratch::new().unwrap();
    with_uplink(&ns);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let mut child = std::process::Command::new(&bin)
        .args(["agent", "--node", "node-0", "--uplink", "eth0"])
        // VERIFY_EVERY=60m: no periodic verify pass during the events (one takes 350-500 ms on
        // the agent's loop at this size, and an event that comes meanwhile waits for it).
        .args(
            std::env::var("VERIFY_EVERY")
                .map(|v| vec!["--verify-every".to_string(), v])
                .unwrap_or_default(),
        )
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--netns")
        .arg(&ns.path)
        .arg("--state-dir")
        .arg(&dir)
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(std::env::temp_dir().join("podnet-agent-bench.log")).unwrap())
        .spawn()
        .unwrap();
    let ready = dir.join("node-0.ready");
    while !ready.exists() {
        assert!(t.elapsed().as_secs() < 300, "the agent did not get ready");
        assert!(child.try_wait().unwrap().is_none(), "the agent ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ready_s = t.elapsed().as_secs_f64();
    let rss = |pid: u32| shared::rss_mb(&pid.to_string());
    let rss_ready = rss(child.id());
    // And once settled: the first verify pass follows the first programming.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let rss_settled = rss(child.id());
    let base = metric(port, "podnet_agent_programmed_endpoints").unwrap();
    let mut times = Vec::new();
    let mut objs = objects;
    for i in 0..events {
        let ip = format!("10.111.{}.{}", i / 250, 1 + i % 250);
        let name = format!("e2e-{i}");
        objs.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }));
        objs.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-1"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.64.9"], "conditions": {"ready": true}}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]
        }));
        api.replace(objs.clone());
        let t = Instant::now();
        let want = base + (i + 1) as f64;
        while metric(port, "podnet_agent_programmed_endpoints") != Some(want) {
            assert!(t.elapsed().as_secs() < 10, "event {i} not programmed");
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        // Quiet, as events come on a cluster: the agent writes its record meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let rss_after = rss(child.id());
    // And once the records written after the last event are done, and their copies' pages
    // given back (the records' writer trims 2 s after its writes quieten).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let rss_after_settled = rss(child.id());
    // The same number of /metrics reads again with no event: what the reads alone cost.
    let reads = std::env::var("SCRAPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..reads {
        metric(port, "podnet_agent_programmed_endpoints");
    }
    if reads > 0 {
        println!(
            "  after {reads} more /metrics reads with no event: RSS {:.0} MB",
            rss(child.id())
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (p50, p99, max) = quantiles(times);
    println!("podnet agent as a process, against the API on loopback:");
    println!("  from start to node-0 programmed: {ready_s:.1} s; RSS then {rss_ready:.0} MB, 3 s later {rss_settled:.0} MB, after the events {rss_after:.0} MB, 3 s later {rss_after_settled:.0} MB");
    println!("  a Service and its EndpointSlice added through the API → programmed: p50 {p50:.2} ms  p99 {p99:.2} ms  max {max:.2} ms  ({events} events)");
}
