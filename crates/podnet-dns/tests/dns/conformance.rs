//! Every case of `../shared/conformance/dns/spec_cases.yaml`, asked over UDP and over TCP.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use podnet_dns::ClusterDns;
use serde_json::Value;

use crate::{query, services, text, zone_of, Running};

fn spec_file() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/dns/spec_cases.yaml");
    p.exists().then_some(p)
}

fn load() -> Option<Value> {
    let Some(path) = spec_file() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "../shared/conformance/dns/spec_cases.yaml is missing, and CI=true"
        );
        eprintln!("SKIP: ../shared/conformance/dns/spec_cases.yaml is not beside the repository");
        return None;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = podnet_model::parse_documents(&path.display().to_string(), &text).unwrap();
    Some(docs.into_iter().next().unwrap().value)
}

/// Whether a record's presentation form matches an expected line, where `<ttl>`, `<prio>`,
/// `<weight>` and `<addr>` match any one token.
fn matches_line(got: &str, want: &str) -> bool {
    let g: Vec<&str> = got.split_whitespace().collect();
    let w: Vec<&str> = want.split_whitespace().collect();
    // "name IN A x" (no TTL) is allowed in additional_may_contain.
    let w: Vec<&str> = if w.get(1) == Some(&"IN") {
        let mut v = vec![w[0], "<ttl>"];
        v.extend_from_slice(&w[1..]);
        v
    } else {
        w
    };
    g.len() == w.len()
        && g.iter().zip(&w).all(|(g, w)| {
            (w.starts_with('<') && w.ends_with('>'))
                || g.eq_ignore_ascii_case(w.trim_matches('"'))
                || g.trim_matches('"')
                    .eq_ignore_ascii_case(w.trim_matches('"'))
        })
}

fn rcode(s: &str) -> ResponseCode {
    match s {
        "NOERROR" => ResponseCode::NoError,
        "NXDOMAIN" => ResponseCode::NXDomain,
        "SERVFAIL" => ResponseCode::ServFail,
        "REFUSED" => ResponseCode::Refused,
        other => panic!("unknown rcode {other}"),
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Checks one answer against a case's `expect`; returns what is wrong.
fn check(m: &Message, expect: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let answers: Vec<String> = m.answers.iter().map(text).collect();
    let rdata: BTreeSet<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    if let Some(rc) = expect["rcode"].as_str() {
        if m.metadata.response_code != rcode(rc) {
            bad.push(format!("rcode {} (want {rc})", m.metadata.response_code));
        }
    }
    if let Some(want) = expect["answer"].as_array() {
        let want: Vec<String> = want
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let every_got_wanted = answers
            .iter()
            .all(|g| want.iter().any(|w| matches_line(g, w)));
        let every_wanted_got = want
            .iter()
            .all(|w| answers.iter().any(|g| matches_line(g, w)));
        if answers.len() != want.len() || !every_got_wanted || !every_wanted_got {
            bad.push(format!("answer {answers:?} (want {want:?})"));
        }
    }
    for key in ["answer_rdata", "answer_rdata_set"] {
        if expect[key].is_array() {
            let want: BTreeSet<String> = strs(&expect[key]).into_iter().collect();
            if rdata != want {
                bad.push(format!("rdata {rdata:?} (want {want:?})"));
            }
        }
    }
    for no in strs(&expect["must_not_contain"]) {
        if rdata.contains(&no) {
            bad.push(format!("answer contains {no}"));
        }
    }
    let srvs: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_string())),
            _ => None,
        })
        .collect();
    if let Some(n) = expect["srv_count"].as_u64() {
        if srvs.len() as u64 != n {
            bad.push(format!("{} SRV (want {n})", srvs.len()));
        }
    }
    if let Some(p) = expect["srv_port"].as_u64() {
        if srvs.is_empty() || srvs.iter().any(|(port, _)| u64::from(*port) != p) {
            bad.push(format!("SRV ports {srvs:?} (want {p})"));
        }
    }
    for t in strs(&expect["srv_targets_include"]) {
        if !srvs.iter().any(|(_, target)| *target == t) {
            bad.push(format!("no SRV target {t} in {srvs:?}"));
        }
    }
    if let Some(p) = expect["answer_pattern"].as_str() {
        let re = regex::Regex::new(p).unwrap();
        if answers.is_empty() || !answers.iter().all(|a| re.is_match(a)) {
            bad.push(format!("answer {answers:?} does not match {p}"));
        }
    }
    if let Some(first) = expect["answer_first"].as_str() {
        match answers.first() {
            Some(a) if matches_line(a, first) => {
                let follow = expect["answer_may_follow"].as_str();
                for rest in &answers[1..] {
                    if !follow.is_some_and(|f| matches_line(rest, f)) {
                        bad.push(format!("unexpected answer {rest} after the first"));
                    }
                }
            }
            _ => bad.push(format!("answer {answers:?} does not start with {first}")),
        }
    }
    if let Some(may) = expect["additional_may_contain"].as_array() {
        let allowed: Vec<String> = may
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        for a in m.additionals.iter().map(text) {
            if !allowed.iter().any(|w| matches_line(&a, w)) {
                bad.push(format!("additional {a} is not one of {allowed:?}"));
            }
        }
    }
    bad
}

#[test]
fn spec_cases_over_udp_and_tcp() {
    let Some(doc) = load() else { return };
    let fixtures = doc["fixtures"].as_array().unwrap();
    let svcs = services(fixtures);
    let zone = zone_of(&svcs, &["default", "ns1"]);
    let srv = Running::start(ClusterDns::new(zone, vec![]).unwrap());
    let c = srv.client();
    let mut failures = Vec::new();
    let mut asked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let Some(q) = case["query"].as_object() else {
            // dns-spec-3-01 is informative: "the RRs above must be a subset of what is served",
            // which every other case checks.
            continue;
        };
        let ty: RecordType = q["type"].as_str().unwrap().parse().unwrap();
        let name = q["name"].as_str().unwrap();
        // Each UDP form twice: the second answer comes from the answer cache.
        for (proto, edns) in [
            ("udp", false),
            ("udp, again", false),
            ("udp+edns", true),
            ("udp+edns, again", true),
            ("tcp", false),
        ] {
            let m = query(name, ty, edns);
            let r = if proto == "tcp" { c.tcp(&m) } else { c.udp(&m) };
            assert_eq!(
                r.queries[0].name().to_string(),
                m.queries[0].name().to_string(),
                "{id}: the question as asked, in its letter case"
            );
            assert_eq!(r.metadata.id, m.metadata.id);
            assert!(r.metadata.authoritative, "{id}: not authoritative");
            for why in check(&r, &case["expect"]) {
                failures.push(format!("{id} over {proto}: {why}"));
            }
        }
        asked += 1;
    }
    assert_eq!(asked, 29, "29 cases with a query (and one informative)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checker_rejects_wrong_answers() {
    // The checker above must be able to fail: a wrong answer for a known case is reported.
    let Some(doc) = load() else { return };
    let fixtures = doc["fixtures"].as_array().unwrap();
    let mut svcs = services(fixtures);
    // Move kubernetes.default to another address: 2.3.1-01 and the PTR case must fail.
    let k = svcs.iter_mut().find(|s| s.name == "kubernetes").unwrap();
    k.cluster_ips = vec!["10.3.0.2".parse().unwrap()];
    let srv = Running::start(ClusterDns::new(zone_of(&svcs, &["default", "ns1"]), vec![]).unwrap());
    let c = srv.client();
    let case = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "dns-spec-2.3.1-01")
        .unwrap();
    let r = c.udp(&query(
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
        false,
    ));
    assert!(!check(&r, &case["expect"]).is_empty());
}
