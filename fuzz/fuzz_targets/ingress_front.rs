//! The Ingress controller's request front: any bytes a client sends, through hyper's parsers,
//! the front's checks and the routing, must never panic the proxy, and every answer is HTTP/1.1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = podnet_ingress::server::serve_bytes(data);
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
});
