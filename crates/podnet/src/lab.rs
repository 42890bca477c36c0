//! `podnet lab …`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::output::table_of;
use crate::{build_model, build_model_around, LabCommand, LabInput};

pub fn run(cmd: LabCommand) -> Result<ExitCode> {
    match cmd {
        LabCommand::Up(input) => up(input),
        LabCommand::Fault {
            lab,
            end_watches,
            expire,
            delay_ms,
            for_secs,
            refuse,
            fail_writes,
        } => {
            let spec = podnet_api::faults::FaultSpec {
                end_watches,
                expire: expire.map(Duration::from_secs),
                delay: delay_ms
                    .zip(for_secs)
                    .map(|(d, f)| (Duration::from_millis(d), Duration::from_secs(f))),
                refuse: refuse.map(Duration::from_secs),
                fail_writes: fail_writes.map(Duration::from_secs),
            };
            let in_force = api_faults(&lab.name, &spec)?;
            println!("{}", serde_json::to_string_pretty(&in_force)?);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { lab } => {
            need_root()?;
            match podnet_lab::down(&lab.name)? {
                podnet_lab::Down::Removed => println!("lab {:?} is down", lab.name),
                podnet_lab::Down::NoSuchLab => {
                    println!("there is no lab {:?}; nothing to remove", lab.name)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Kubeconfig { lab } => {
            println!("{}", podnet_lab::kubeconfig(&lab.name)?.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { lab, output } => {
            let st = podnet_lab::status(&lab.name)?;
            crate::output::emit(output, &st, || status_tables(&st))?;
            if !st.servers_running {
                eprintln!("warning: the test servers are not running");
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec {
            lab,
            target,
            command,
        } => {
            let st = podnet_lab::load_state(&lab.name)?;
            let ns = podnet_lab::exec_target(&st, &target)?;
            // `ip netns exec` also bind-mounts /etc/netns/<ns>/{resolv.conf,hosts} over /etc in a
            // private mount namespace: the pod's own resolver configuration, as the kubelet
            // gives it.
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(&command)
                .exec();
            bail!("running ip netns exec: {err}")
        }
        LabCommand::Observe { lab, flows } => {
            let filter = crate::flows::filter(flows.pod, &flows.verdict)?;
            crate::flows::print(flows.output, |each| {
                podnet_lab::observe::observe(&lab.name, &filter, flows.follow, each)?;
                Ok(())
            })
        }
        LabCommand::Ui { lab, listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("a runtime")?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let at = listener.local_addr()?;
                podnet_lab::ui::serve(&lab.name, listener, || {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "serving the map of lab {} at http://{at}/", lab.name);
                    let _ = out.flush();
                })
                .await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Probe {
            lab,
            port,
            protocol,
            family,
            timeout_ms,
            output,
        } => {
            let st = podnet_lab::load_state(&lab.name)?;
            let family = match family.as_deref() {
                None => None,
                Some(f) => Some(
                    podnet_model::IpFamily::parse(f)
                        .ok_or_else(|| anyhow::anyhow!("--family {f:?}: IPv4 or IPv6"))?,
                ),
            };
            let m = podnet_lab::probe::probe(
                &st,
                port,
                &protocol.to_uppercase(),
                family,
                Duration::from_millis(timeout_ms),
            )?;
            crate::output::emit(output, &m, || m.render())?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Keep { lab } => {
            podnet_lab::keep(&lab.name)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Serve { lab } => {
            podnet_lab::serve::run(&lab.name)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Apply(input) => apply(input),
    }
}

/// `podnet lab up`.
fn up(input: LabInput) -> Result<ExitCode> {
    let (lab, manifests, cluster) = (&input.lab, &input.manifests, &input.cluster);
    let Some(model) = build_model(&manifests.files, cluster)? else {
        eprintln!("nothing was created");
        return Ok(ExitCode::FAILURE);
    };
    need_root()?;
    let start = Instant::now();
    let exe = std::env::current_exe().context("finding the podnet binary")?;
    let st = podnet_lab::up_with(&lab.name, &model, &exe, !input.no_agents)?;
    let pods = st.plan.pods.len();
    println!(
        "lab {:?} is up in {:.2}s: {} nodes, {pods} pods, external client at {}",
        lab.name,
        start.elapsed().as_secs_f64(),
        st.plan.nodes.len(),
        st.plan.external.ip
    );
    println!("try: podnet lab status --name {0}; podnet lab probe --name {0}; podnet lab down --name {0}", lab.name);
    Ok(ExitCode::SUCCESS)
}

/// `podnet lab apply`.
fn apply(input: LabInput) -> Result<ExitCode> {
    let (lab, manifests, cluster) = (&input.lab, &input.manifests, &input.cluster);
    if input.no_agents {
        bail!(
            "--no-agents is a `lab up` flag: a running lab keeps how its nodes are programmed (lab down, then lab up --no-agents)"
        );
    }
    // Running pods stay where they are, as the scheduler never moves them.
    let running = podnet_lab::load_state(&lab.name)?.placements();
    // The lab's own settings (its families, ranges), the flags given over them.
    let settings = podnet_lab::agents::saved_settings(&lab.name)?.over(&cluster.overrides());
    let Some(model) = build_model_around(&manifests.files, &settings, &running)? else {
        eprintln!("nothing was changed");
        return Ok(ExitCode::FAILURE);
    };
    need_root()?;
    let start = Instant::now();
    let r = podnet_lab::apply(&lab.name, &model)?;
    for p in &r.removed {
        println!("pod {p} deleted");
    }
    for (p, ms) in &r.cni_add_ms {
        println!("pod {p} created (namespace and CNI ADD: {ms:.1} ms)");
    }
    println!(
        "applied in {:.0} ms: {} created, {} deleted, {} unchanged",
        start.elapsed().as_secs_f64() * 1000.0,
        r.added.len(),
        r.removed.len(),
        r.unchanged
    );
    Ok(ExitCode::SUCCESS)
}

fn status_tables(st: &podnet_lab::Status) -> String {
    let nodes = table_of(
        &["NAME", "INTERNAL-IP", "POD-CIDR", "READY"],
        &st.nodes,
        |n| {
            vec![
                n.name.clone(),
                std::iter::once(n.ip)
                    .chain(n.ip6)
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                n.pod_cidrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                ready(n.ready),
            ]
        },
    );
    let pods = table_of(
        &["NAMESPACE", "NAME", "NODE", "IP", "READY"],
        &st.pods,
        |p| {
            vec![
                p.namespace.clone(),
                p.name.clone(),
                p.node.clone(),
                if p.ips.is_empty() {
                    "<none>".into()
                } else {
                    p.ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
                ready(p.ready),
            ]
        },
    );
    format!("NODES\n{nodes}\nPODS\n{pods}")
}

fn ready(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

fn need_root() -> Result<()> {
    if !nix_is_root() {
        bail!("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Puts `spec` in force on the lab's API (its loopback listener) and returns what is in force.
fn api_faults(lab: &str, spec: &podnet_api::faults::FaultSpec) -> Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let file = podnet_lab::serve::api_addr_file(lab);
    let addr = std::fs::read_to_string(&file)
        .with_context(|| format!("the lab {lab:?} serves no API ({})", file.display()))?;
    let addr = addr.trim().to_string();
    let query = spec.query();
    let method = if query.is_empty() { "GET" } else { "POST" };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .with_context(|| format!("connecting to the lab's API at {addr}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("/podnet/faults?{query}"))
            .header(hyper::header::HOST, &addr)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let ok = resp.status().is_success();
        let body = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the API's answer: {}", String::from_utf8_lossy(&body)))?;
        if !ok {
            bail!("the lab's API refused: {}", v["message"]);
        }
        Ok(v)
    })
}
