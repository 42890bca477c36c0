//! Negative answers, truncation, forwarding, and malformed input.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use podnet_dns::ClusterDns;
use proptest::prelude::*;

use crate::{query, service, slice, zone_of, Running};

fn web() -> Vec<podnet_model::ServiceInfo> {
    let mut s = service(
        &serde_json::json!({"name": "web", "namespace": "shop", "clusterIP": "10.3.0.5", "ports": [{"name": "http", "port": 80}]}),
    );
    s.namespace = "shop".into();
    vec![s]
}

#[test]
fn search_path_expansions_get_nxdomain_and_empty_names_nodata() {
    let svcs = web();
    let srv =
        Running::start(ClusterDns::new(zone_of(&svcs, &["shop", "default"]), vec![]).unwrap());
    let c = srv.client();
    // What glibc asks for `web.shop` from a pod in `default` (ndots:5): the first expansions
    // do not exist, the third does.
    for (name, rcode, n) in [
        (
            "web.shop.default.svc.cluster.local.",
            ResponseCode::NXDomain,
            0,
        ),
        ("web.shop.svc.cluster.local.", ResponseCode::NoError, 1),
        ("web.shop.cluster.local.", ResponseCode::NXDomain, 0),
        // Empty non-terminals exist: NODATA.
        ("shop.svc.cluster.local.", ResponseCode::NoError, 0),
        ("svc.cluster.local.", ResponseCode::NoError, 0),
        ("_tcp.web.shop.svc.cluster.local.", ResponseCode::NoError, 0),
        ("default.svc.cluster.local.", ResponseCode::NoError, 0),
        // A namespace that does not exist.
        ("nope.svc.cluster.local.", ResponseCode::NXDomain, 0),
    ] {
        for r in [
            c.udp(&query(name, RecordType::A, false)),
            c.tcp(&query(name, RecordType::A, false)),
        ] {
            assert_eq!(r.metadata.response_code, rcode, "{name}");
            assert_eq!(r.answers.len(), n, "{name}");
            if n == 0 {
                // RFC 2308 3: negative answers carry the zone's SOA.
                assert_eq!(r.authorities.len(), 1, "{name}: SOA in authority");
                assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
            }
        }
    }
    // The name exists with an A record only: AAAA is NODATA, not NXDOMAIN.
    let r = c.udp(&query(
        "web.shop.svc.cluster.local.",
        RecordType::AAAA,
        false,
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // Every answer carries the zone's TTL.
    let r = c.udp(&query("web.shop.svc.cluster.local.", RecordType::A, false));
    assert_eq!(r.answers[0].ttl, 30);
    // Pod records: well-formed addresses only.
    let r = c.udp(&query(
        "10-244-1-5.shop.pod.cluster.local.",
        RecordType::A,
        false,
    ));
    assert_eq!(r.answers[0].data.to_string(), "10.244.1.5");
    let r = c.udp(&query(
        "10-244-1-500.shop.pod.cluster.local.",
        RecordType::A,
        false,
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let r = c.udp(&query(
        "fd00-10-244-1--5.shop.pod.cluster.local.",
        RecordType::AAAA,
        false,
    ));
    assert_eq!(r.answers[0].data.to_string(), "fd00:10:244:1::5");
}

#[test]
fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let mut s = service(
        &serde_json::json!({"name": "big", "namespace": "default", "clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    );
    let eps: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"addresses": [format!("10.4.{}.{}", i / 200, i % 200 + 1)], "conditions": {"ready": true}}))
        .collect();
    s.endpoint_slices.push(slice(&serde_json::json!({"name": "big-1", "addressType": "IPv4", "ports": [{"name": "http", "port": 80}], "endpoints": eps})));
    let srv = Running::start(ClusterDns::new(zone_of(&[s], &["default"]), vec![]).unwrap());
    let c = srv.client();
    let name = "big.default.svc.cluster.local.";
    let r = c.udp(&query(name, RecordType::A, false));
    assert!(
        r.metadata.truncation,
        "200 A records don't fit in 512 bytes"
    );
    assert!(r.answers.len() < 200);
    let raw = c
        .udp_raw(&query(name, RecordType::A, false).to_vec().unwrap())
        .unwrap();
    assert!(raw.len() <= 512);
    let r = c.udp(&query(name, RecordType::A, true));
    assert!(r.metadata.truncation, "nor in 1232");
    let r = c.tcp(&query(name, RecordType::A, false));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 200);
}

#[test]
fn outside_names_are_refused_at_once_without_upstreams() {
    let srv = Running::start(ClusterDns::new(zone_of(&web(), &["shop"]), vec![]).unwrap());
    let c = srv.client();
    for name in ["example.com.", "1.0.0.127.in-addr.arpa.", "local."] {
        for tcp in [false, true] {
            let t = Instant::now();
            let q = query(name, RecordType::A, false);
            let r = if tcp { c.tcp(&q) } else { c.udp(&q) };
            assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
            assert!(t.elapsed() < Duration::from_millis(400));
            assert!(!r.metadata.recursion_available);
        }
    }
    // Counted, by protocol and response code.
    let m = srv.dns.metrics.render();
    for proto in ["udp", "tcp"] {
        let line = format!("podnet_dns_queries_total{{protocol=\"{proto}\",rcode=\"REFUSED\"}} 3");
        assert!(m.contains(&line), "{line} not in {m}");
    }
}

#[test]
fn outside_names_are_forwarded_to_the_upstream() {
    // The upstream is another server, authoritative for example.com, on loopback.
    let mut ext = service(&serde_json::json!({"name": "x", "clusterIP": "192.0.2.7", "ports": []}));
    ext.namespace = "y".into();
    let upstream_zone = podnet_model::dns::DnsZone::new(&podnet_model::dns::ZoneInput {
        domain: "example.com",
        dns_ip: None,
        services: &[ext],
        namespaces: vec!["y"],
        ttl: 60,
    });
    let up = Running::start(ClusterDns::new(upstream_zone, vec![]).unwrap());
    let srv = Running::start(ClusterDns::new(zone_of(&web(), &["shop"]), vec![up.udp]).unwrap());
    let c = srv.client();
    for r in [
        c.udp(&query("x.y.svc.example.com.", RecordType::A, false)),
        c.tcp(&query("x.y.svc.example.com.", RecordType::A, true)),
    ] {
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers[0].data.to_string(), "192.0.2.7");
        assert!(!r.metadata.authoritative);
        assert!(r.metadata.recursion_available);
    }
    let r = c.udp(&query("nope.example.com.", RecordType::A, false));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // Cluster names are still ours.
    let r = c.udp(&query("web.shop.svc.cluster.local.", RecordType::A, false));
    assert!(r.metadata.authoritative);
}

#[test]
fn a_silent_upstream_gives_servfail_after_the_timeout() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = ClusterDns::new(
        zone_of(&web(), &["shop"]),
        vec![silent.local_addr().unwrap()],
    )
    .unwrap()
    .with_timeout(Duration::from_millis(200));
    let srv = Running::start(dns);
    let c = srv.client();
    for tcp in [false, true] {
        let t = Instant::now();
        let q = query("example.com.", RecordType::A, false);
        let r = if tcp { c.tcp(&q) } else { c.udp(&q) };
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(r.metadata.recursion_available);
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_the_server_goes_on() {
    let srv = Running::start(ClusterDns::new(zone_of(&web(), &["shop"]), vec![]).unwrap());
    let c = srv.client();
    // Too short for a header: no answer.
    assert!(c.udp_raw(&[1, 2, 3]).is_none());
    // A header that promises a question that is not there: FORMERR.
    let raw = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let r = hickory_proto::op::Message::from_vec(&c.udp_raw(&raw).unwrap()).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // Two questions: FORMERR (RFC 9619).
    let mut m = query("web.shop.svc.cluster.local.", RecordType::A, false);
    m.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("x.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(c.udp(&m).metadata.response_code, ResponseCode::FormErr);
    // Still serving.
    let r = c.udp(&query("web.shop.svc.cluster.local.", RecordType::A, false));
    assert_eq!(r.answers.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Whatever bytes come in, the query path returns (an answer or nothing) without panicking,
    /// and an answer is a well-formed DNS message with the query's ID.
    #[test]
    fn any_bytes_are_answered_or_dropped(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_any(&raw)?;
    }
}

#[test]
fn repeated_questions_are_answered_as_asked() {
    let srv = Running::start(ClusterDns::new(zone_of(&web(), &["shop"]), vec![]).unwrap());
    let c = srv.client();
    let mut first = query("web.shop.svc.cluster.local.", RecordType::A, true);
    first.metadata.recursion_desired = true;
    let a = c.udp(&first);
    // The same question in other letters, without RD, with CD: the cached answer is made this
    // query's own.
    let mut second = query("WeB.sHoP.svc.cluster.LOCAL.", RecordType::A, true);
    second.metadata.recursion_desired = false;
    second.metadata.checking_disabled = true;
    let b = c.udp(&second);
    assert_eq!(b.metadata.id, second.metadata.id);
    assert_ne!(a.metadata.id, b.metadata.id);
    // hickory's Name compares without case: compare the text.
    assert_eq!(
        b.queries[0].name().to_string(),
        "WeB.sHoP.svc.cluster.LOCAL.",
        "the client's letter case (RFC 4343)"
    );
    assert!(!b.metadata.recursion_desired && b.metadata.checking_disabled);
    assert!(a.metadata.recursion_desired && !a.metadata.checking_disabled);
    assert_eq!(a.answers, b.answers);
    assert_eq!(b.edns.as_ref().unwrap().max_payload(), 1232);
    // Another type of the same name is another question.
    let r = c.udp(&query(
        "web.shop.svc.cluster.local.",
        RecordType::AAAA,
        true,
    ));
    assert!(r.answers.is_empty());
}

#[test]
fn a_cached_answer_never_exceeds_the_clients_buffer() {
    let mut s = service(
        &serde_json::json!({"name": "mid", "namespace": "default", "clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    );
    // About 40 A records: more than 512 bytes, less than 1232.
    let eps: Vec<serde_json::Value> = (1..=40)
        .map(|i| serde_json::json!({"addresses": [format!("10.4.0.{i}")], "conditions": {"ready": true}}))
        .collect();
    s.endpoint_slices.push(slice(&serde_json::json!({"name": "mid-1", "addressType": "IPv4", "ports": [{"name": "http", "port": 80}], "endpoints": eps})));
    let srv = Running::start(ClusterDns::new(zone_of(&[s], &["default"]), vec![]).unwrap());
    let c = srv.client();
    let name = "mid.default.svc.cluster.local.";
    for _ in 0..2 {
        let big = c.udp(&query(name, RecordType::A, true));
        assert!(!big.metadata.truncation);
        assert_eq!(big.answers.len(), 40);
        // EDNS, but a 512-byte buffer: truncated, whatever was cached for the bigger one.
        let mut small = query(name, RecordType::A, true);
        let mut e = hickory_proto::op::Edns::new();
        e.set_max_payload(512);
        small.set_edns(e);
        let raw = c.udp_raw(&small.to_vec().unwrap()).unwrap();
        assert!(raw.len() <= 512);
        assert!(
            hickory_proto::op::Message::from_vec(&raw)
                .unwrap()
                .metadata
                .truncation
        );
        // No EDNS: 512 bytes at most, again and again (truncated answers are not cached).
        let r = c.udp(&query(name, RecordType::A, false));
        assert!(r.metadata.truncation);
    }
}

fn check_any(raw: &[u8]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dns = std::sync::Arc::new(ClusterDns::new(zone_of(&web(), &["shop"]), vec![]).unwrap());
    let tcp = rt.block_on(dns.answer_bytes(raw, false));
    let mut udp = podnet_dns::UdpPath::new(dns);
    let (first, second) = (udp.answer(raw), udp.answer(raw));
    prop_assert_eq!(&first, &second);
    for out in [first, tcp].into_iter().flatten() {
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        prop_assert_eq!(&out[..2], &raw[..2]);
        prop_assert_eq!(
            m.metadata.message_type,
            hickory_proto::op::MessageType::Response
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    /// Real queries with a few bytes changed: closer to the parser's edges than random bytes.
    #[test]
    fn damaged_queries_are_answered_or_dropped(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..4),
        cut in any::<u16>(),
    ) {
        let names = [
            ("web.shop.svc.cluster.local.", RecordType::A, true),
            ("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV, false),
            ("10-1-2-3.shop.pod.cluster.local.", RecordType::A, true),
            ("5.0.3.10.in-addr.arpa.", RecordType::PTR, false),
            ("nope.cluster.local.", RecordType::AAAA, true),
            ("example.com.", RecordType::A, false),
        ];
        let (n, t, edns) = names[which];
        let mut raw = query(n, t, edns).to_vec().unwrap();
        for (at, b) in edits {
            let i = usize::from(at) % raw.len();
            raw[i] = b;
        }
        if cut % 4 == 0 {
            raw.truncate(usize::from(cut) % raw.len());
        }
        check_any(&raw)?;
    }
}

/// Inputs cargo-fuzz found (fuzz/fuzz_targets/dns_query.rs): a query whose answer is a header
/// without the question (FORMERR) was cached and then patched as if it had one, and panicked.
#[test]
fn inputs_the_fuzzer_found_are_answered_or_dropped() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns/fuzz-finds");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        check_any(&raw).unwrap();
        n += 1;
    }
    assert!(n >= 2, "the finds are in {}", dir.display());
}
