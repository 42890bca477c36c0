//! Issue 21, item 7: every command of the README's console blocks, run as written (the lab's
//! name `demo` aside: each test lab has its own), in order, with the output the README shows
//! checked line by line. What varies from run to run is normalized on both sides: times,
//! ephemeral ports, and which replica a Service picked.

use std::process::Command;

use super::{can_run, root_dir};

/// One command of the README and the output it shows (possibly none).
#[derive(Debug)]
struct Step {
    command: String,
    output: Vec<String>,
}

/// The README's console blocks, as steps: a line starting `# podnet`, `# kubectl` or `$ ` is
/// a command (its trailing `# comment` dropped), the lines after it its output.
fn steps() -> Vec<Step> {
    let text = std::fs::read_to_string(root_dir().join("README.md")).unwrap();
    let mut out: Vec<Step> = Vec::new();
    let mut inside = false;
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.starts_with("```") {
            inside = line == "```console";
            continue;
        }
        if !inside {
            continue;
        }
        let command = line.strip_prefix("$ ").or_else(|| {
            line.strip_prefix("# ")
                .filter(|l| l.starts_with("podnet ") || l.starts_with("kubectl "))
        });
        match command {
            Some(c) => {
                let c = match c.find("  #").or_else(|| c.find(" # ")) {
                    Some(at) => c[..at].trim_end(),
                    None => c,
                };
                out.push(Step {
                    command: c.to_string(),
                    output: Vec::new(),
                });
            }
            None => {
                if let Some(s) = out.last_mut() {
                    s.output.push(line.to_string());
                }
            }
        }
    }
    out
}

/// Durations ("0.52s", "248 ms") as `T`.
fn durations(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        let starts_number =
            c[i].is_ascii_digit() && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '.'));
        if !starts_number {
            out.push(c[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
            i += 1;
        }
        let rest: String = c[i..].iter().take(3).collect();
        if rest.starts_with("s:") || rest.starts_with("s ") || rest.starts_with(" ms") {
            out.push('T');
        } else {
            out.extend(&c[start..i]);
        }
    }
    out
}

/// What varies between runs, made the same on both sides.
fn normal(line: &str, lab: &str) -> String {
    let mut s = line.replace(&format!("\"{lab}\""), "\"demo\"");
    s = durations(&s);
    // An ephemeral client port: "10.244.1.3:37682".
    if let Some(at) = s.find("\"clientIP\":\"") {
        let from = at + "\"clientIP\":\"".len();
        if let Some(colon) = s[from..].find(':') {
            let p0 = from + colon + 1;
            let p1 = s[p0..].find('"').map_or(s.len(), |e| p0 + e);
            s.replace_range(p0..p1, "PORT");
        }
    }
    s
}

#[test]
fn every_command_of_the_readme_works_as_written() {
    if !can_run() {
        return;
    }
    let lab = format!("t{}-readme", std::process::id() % 100_000);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_podnet"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let steps = steps();
    assert!(steps.len() >= 15, "{steps:#?}");
    assert!(steps
        .iter()
        .any(|s| s.command.starts_with("podnet lab up --name demo")));
    // The lab comes down whatever happens.
    struct Down(String, String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .args(["-c", &format!("podnet lab down --name {}", self.0)])
                .env("PATH", &self.1)
                .current_dir(root_dir())
                .output();
        }
    }
    let _down = Down(lab.clone(), path.clone());
    // The lab's commands run once it is up (the README's order: up first).
    let up = steps
        .iter()
        .position(|s| s.command.starts_with("podnet lab up"))
        .unwrap();
    let order: Vec<&Step> = steps[up..]
        .iter()
        .chain(&steps[..up])
        .filter(|s| !s.command.starts_with("podnet lab down"))
        .chain(
            steps
                .iter()
                .filter(|s| s.command.starts_with("podnet lab down")),
        )
        .collect();
    for step in order {
        let cmd = step
            .command
            .replace("--name demo", &format!("--name {lab}"));
        let out = Command::new("timeout")
            .args(["60", "sh", "-c", &cmd])
            .env("PATH", &path)
            .current_dir(root_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let failing = step.command.contains("examples/errors/");
        assert_eq!(
            out.status.success(),
            !failing,
            "{cmd}: {}\n{stdout}{stderr}",
            out.status
        );
        // What the README shows, line by line ("..." skips any lines); a Service's pick of
        // replica may differ, so a my-app pod's name stands for any of them.
        let got: Vec<String> = stdout
            .lines()
            .chain(stderr.lines())
            .map(|l| normal(l.trim_end(), &lab))
            .collect();
        let through_service = cmd.contains("my-service") || cmd.contains("10.96.69.75");
        let mut at = 0;
        let mut skipping = false;
        for want in &step.output {
            if want == "..." {
                skipping = true;
                continue;
            }
            let want = normal(want, &lab);
            let matches = |g: &String| {
                if through_service && want.starts_with("my-app-") {
                    g.starts_with("my-app-69ff9b5875-") && g.len() == want.len()
                } else {
                    *g == want
                }
            };
            let found = if skipping {
                got[at..].iter().position(matches).map(|i| at + i)
            } else {
                got.get(at).filter(|g| matches(g)).map(|_| at)
            };
            match found {
                Some(i) => at = i + 1,
                None => panic!(
                    "{cmd}: the README shows {want:?}; the command printed:\n{}",
                    got.join("\n")
                ),
            }
            skipping = false;
        }
    }
}
