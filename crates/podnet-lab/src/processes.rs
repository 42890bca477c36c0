//! The lab's processes: its server (the API, the pods' servers, the agents) and the keeper
//! of its sockets; started, reloaded, found and stopped.

use super::*;

/// Starts the lab's process (`podnet lab serve`, kept running by `podnet lab keep`) in the
/// background and waits until every listener is bound; returns the server's pid.
pub(super) fn start_servers(lab: &str, exe: &Path) -> Result<i32, LabError> {
    use std::os::unix::process::CommandExt;
    let log_path = lab_dir(lab).join("serve.log");
    let log = std::fs::File::create(&log_path).map_err(io(log_path.display()))?;
    let mut child = Command::new(exe)
        .args(["lab", "keep", "--name", lab])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io("starting the test servers"))?;
    // Recorded before it serves: whatever happens next, down finds it.
    let pid_file = lab_dir(lab).join("keep.pid");
    std::fs::write(&pid_file, child.id().to_string()).map_err(io(pid_file.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(io("waiting for the test servers"))?;
    if line.trim() != "ready" {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(LabError::Servers(format!("they did not start: {log}")));
    }
    serve_pid(lab).ok_or_else(|| LabError::Servers("ready, but no serve.pid".into()))
}

/// The running server's pid, as it recorded it (it changes when the keeper starts it again).
pub fn serve_pid(lab: &str) -> Option<i32> {
    std::fs::read_to_string(lab_dir(lab).join("serve.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| is_server_of(*p, lab))
}

/// Keeps `podnet lab serve --name <lab>` running, as a node's init keeps its kubelet: started
/// again whenever it exits (killed, crashed), for as long as the lab exists. The first
/// server's `ready` goes to this process's standard output (`lab up` waits for it); each
/// server records its own pid (`serve.pid`) before it serves. The server takes back the
/// agents and pods' processes that outlived the one before ([`agents`]).
pub fn keep(lab: &str) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(io("the podnet binary"))?;
    let log_path = lab_dir(lab).join("serve.log");
    // The servers' sockets outlive each server ([`podnet_fdstore`]).
    let store = podnet_fdstore::Store::default();
    let store_path = lab_dir(lab).join("fds.sock");
    store
        .listen(&store_path)
        .map_err(io(format!("the socket store {}", store_path.display())))?;
    let mut first = true;
    loop {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(log_path.display()))?;
        let mut child = Command::new(&exe)
            .args(["lab", "serve", "--name", lab])
            .env(podnet_fdstore::ENV, &store_path)
            .stdin(Stdio::null())
            .stdout(if first { Stdio::piped() } else { Stdio::null() })
            .stderr(log)
            .spawn()
            .map_err(io("starting the lab's server"))?;
        if first {
            first = false;
            let mut line = String::new();
            let stdout = child.stdout.take().expect("piped");
            let _ = BufReader::new(stdout).read_line(&mut line);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        let started = Instant::now();
        let status = child.wait().map_err(io("waiting for the lab's server"))?;
        if !lab_dir(lab).join("state.json").exists() {
            return Ok(());
        }
        eprintln!("the lab's server exited ({status}); starting it again");
        if started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub(super) fn reload_servers(lab: &str, pid: Option<i32>) -> Result<(), LabError> {
    use nix::sys::signal::{kill, Signal};
    let Some(pid) = pid else {
        return Err(LabError::Servers("not running".into()));
    };
    let gen_file = lab_dir(lab).join("serve.gen");
    let before = std::fs::read_to_string(&gen_file).unwrap_or_default();
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| LabError::Io {
        what: "signalling the test servers".into(),
        source: e.into(),
    })?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(&gen_file).unwrap_or_default() != before {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(LabError::Servers(
        "they did not reload in 10 s (see serve.log)".into(),
    ))
}

/// The lab's server processes: the one its state and its pid file name, and any other whose
/// command line is exactly `<podnet> lab serve --name <lab>` (one whose pid was never recorded,
/// if `lab up` died at the wrong moment).
pub fn server_processes(lab: &str) -> Vec<i32> {
    let mut pids: BTreeSet<i32> = BTreeSet::new();
    pids.extend(load_state(lab).ok().and_then(|st| st.serve_pid));
    for file in ["serve.pid", "keep.pid"] {
        pids.extend(
            std::fs::read_to_string(lab_dir(lab).join(file))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok()),
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        pids.extend(dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()));
    }
    pids.into_iter()
        .filter(|p| is_keeper_of(*p, lab) || is_server_of(*p, lab) || agents::is_agent_of(*p, lab))
        .collect()
}

/// Whether process `pid` is `podnet lab <verb> --name <lab>`.
pub(super) fn is_lab_process(pid: i32, verb: &str, lab: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    args.len() == 5 && args[1..] == [&b"lab"[..], verb.as_bytes(), b"--name", lab.as_bytes()]
}

/// Whether process `pid` is `podnet lab serve --name <lab>`.
pub(super) fn is_server_of(pid: i32, lab: &str) -> bool {
    is_lab_process(pid, "serve", lab)
}

/// Whether process `pid` is `podnet lab keep --name <lab>`.
pub(super) fn is_keeper_of(pid: i32, lab: &str) -> bool {
    is_lab_process(pid, "keep", lab)
}

/// Whether process `pid` has exited and only waits to be reaped (a zombie: `kill(pid, 0)`
/// still succeeds on one). The lab's agents and pods' processes outlive the process that
/// started them, and whoever adopts them may reap them late, or never.
pub(crate) fn exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_none_or(|state| state == "Z" || state == "X")
}

pub(super) fn stop_process(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let start = Instant::now();
    while kill(p, None).is_ok() && !exited(pid) && start.elapsed() < Duration::from_secs(2) {
        // Reap it if it is our child (lab up's own), so that it does not linger as a zombie.
        let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
}
