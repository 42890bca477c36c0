//! What the tests in namespaces share.

use podnet_node::sys::Scratch;

/// A network namespace of the test's own; None (saying why) without root, which is a failure
/// under `CI=true`.
pub fn scratch() -> Option<Scratch> {
    match Scratch::new() {
        Ok(s) => Some(s),
        Err(e) => {
            let why = format!("needs root / CAP_NET_ADMIN: {}", podnet_node::chain(&e));
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "skipped under CI=true: {why}"
            );
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIP: {why}");
            None
        }
    }
}
