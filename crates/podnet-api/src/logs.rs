//! Pods' logs, as the `log` subresource of a pod serves them (`kubectl logs`): what the lab's
//! test servers print for each request they answer, the latest [`LINES`] per pod.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many lines are kept per pod.
pub const LINES: usize = 4096;

/// Every pod's latest lines, by namespace and name (shared by the servers that write them and
/// the API that reads them).
#[derive(Debug, Clone, Default)]
pub struct PodLogs(Arc<Mutex<Logs>>);

/// Lines by (namespace, name).
type Logs = HashMap<(String, String), VecDeque<String>>;

impl PodLogs {
    /// Appends a line to the pod's log (the oldest goes past [`LINES`]).
    pub fn line(&self, namespace: &str, name: &str, line: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let log = m
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        if log.len() == LINES {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The pod's log as text (each line ended), its last `tail` lines when given.
    pub fn read(&self, namespace: &str, name: &str, tail: Option<usize>) -> String {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(log) = m.get(&(namespace.to_string(), name.to_string())) else {
            return String::new();
        };
        let skip = tail.map_or(0, |t| log.len().saturating_sub(t));
        let mut out = String::new();
        for l in log.iter().skip(skip) {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Forgets a pod's log (the pod went).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(namespace.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_per_pod_and_bounded() {
        let l = PodLogs::default();
        for i in 0..LINES + 5 {
            l.line("ns", "a", format!("line {i}"));
        }
        l.line("ns", "b", "other".into());
        let a = l.read("ns", "a", None);
        assert_eq!(a.lines().count(), LINES);
        assert!(a.starts_with("line 5\n"));
        assert_eq!(
            l.read("ns", "a", Some(2)),
            format!("line {}\nline {}\n", LINES + 3, LINES + 4)
        );
        assert_eq!(l.read("ns", "b", None), "other\n");
        assert_eq!(l.read("ns", "c", None), "");
    }
}
