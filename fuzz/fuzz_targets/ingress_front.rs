//! The Ingress controller's request front: any bytes a client sends, through hyper's parsers,
//! the front's checks and the routing, must never panic the proxy, and every answer is HTTP/1.x
//! (HTTP/2 frames after HTTP/2's connection preface: prior knowledge on plain HTTP).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = podnet_ingress::server::serve_bytes(data);
    let h2 = data.starts_with(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..data.len().min(24)]);
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 ") || h2);
});
