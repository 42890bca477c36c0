use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn the_front_refuses_smuggling_and_bad_hosts() {
    let uri: hyper::Uri = "/".parse().unwrap();
    let v = Version::HTTP_11;
    let ok = |h: &[(&str, &str)]| front(v, &headers(h), &uri);
    assert_eq!(ok(&[("host", "a.example.com")]).unwrap(), "a.example.com");
    assert_eq!(
        ok(&[("host", "a.example.com:8080")]).unwrap(),
        "a.example.com:8080"
    );
    assert_eq!(ok(&[("host", "[::1]:80")]).unwrap(), "[::1]:80");
    assert_eq!(ok(&[]), Err(Refused::NoHost), "HTTP/1.1 without Host");
    assert_eq!(ok(&[("host", "a"), ("host", "b")]), Err(Refused::Hosts));
    for bad in ["a b", "a/b", "user@a", "a:http", "[zz]"] {
        assert_eq!(ok(&[("host", bad)]), Err(Refused::InvalidHost), "{bad}");
    }
    assert_eq!(
        ok(&[
            ("host", "a"),
            ("content-length", "1"),
            ("content-length", "1")
        ]),
        Err(Refused::ContentLengths)
    );
    assert_eq!(
        ok(&[
            ("host", "a"),
            ("content-length", "1"),
            ("transfer-encoding", "chunked")
        ]),
        Err(Refused::LengthAndChunked)
    );
    assert!(ok(&[("host", "a"), ("transfer-encoding", "chunked")]).is_ok());
    assert!(front(Version::HTTP_10, &HeaderMap::new(), &uri).is_ok());
}

#[test]
fn forwarded_headers_append_and_set() {
    let conn = Conn {
        peer: "192.0.2.7:5555".parse().unwrap(),
        local: "10.96.0.20:443".parse().unwrap(),
        tls: true,
        sni: None,
    };
    let h = forwarded(
        headers(&[
            ("host", "x.example.com"),
            ("x-forwarded-for", "203.0.113.1"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "1"),
            ("keep-alive", "timeout=5"),
        ]),
        "x.example.com",
        &conn,
        &HeaderValue::from_static("abc"),
        false,
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
    assert_eq!(h["x-real-ip"], "192.0.2.7");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "x.example.com");
    assert_eq!(h["x-forwarded-port"], "443");
    assert_eq!(h["x-request-id"], "abc");
    assert!(!h.contains_key("x-drop") && !h.contains_key("keep-alive"));
    assert!(!h.contains_key("connection"));
}

#[test]
fn requests_in_memory_get_the_proxys_answers() {
    let out = String::from_utf8(serve_bytes(
        b"GET /x HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
    ))
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("server: podnet"), "{out}");
    let out = String::from_utf8(serve_bytes(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    let out = String::from_utf8(serve_bytes(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

proptest::proptest! {
    /// Any bytes: an answer or a closed connection, never a panic; a 400 or a 431 from
    /// the front closes the connection.
    #[test]
    fn no_input_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                       path in "[ -~]{0,40}", host in "[ -~]{0,40}") {
        let _ = serve_bytes(&raw);
        let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let out = serve_bytes(req.as_bytes());
        let text = String::from_utf8_lossy(&out);
        proptest::prop_assert!(out.is_empty() || text.starts_with("HTTP/1.1 "), "{}", text);
    }

    /// The front's host is always a valid authority, or empty (an empty `Host` is allowed
    /// for a request without an authority, RFC 9112 3.2).
    #[test]
    fn the_fronts_host_is_sane(host in "\\PC{0,30}") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(header::HOST, v);
            if let Ok(got) = front(Version::HTTP_11, &h, &"/".parse().unwrap()) {
                proptest::prop_assert!(got.is_empty() || valid_authority(&got));
                proptest::prop_assert!(got.is_ascii());
            }
        }
    }
}

#[test]
fn request_ids_differ() {
    let ids = RequestIds::new();
    let a = ids.next();
    let b = ids.next();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}
