//! The lab's test server (agnhost-like) over HTTP/1: any bytes a client sends, through hyper and
//! the request handling, must never panic the server (issue 10, defect 10).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podnet_lab::serve::agnhost::serve_bytes(data);
});
