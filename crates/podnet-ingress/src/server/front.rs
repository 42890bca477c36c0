//! The request's front: what is refused before routing (`Host`, lengths, smuggling), the
//! hop-by-hop headers, the forwarded headers, the request id.

use super::*;

/// Why the front refuses a request (400, and the connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("more than one Content-Length")]
    ContentLengths,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("more than one Host")]
    Hosts,
    #[error("a Host that is not text")]
    HostNotText,
    #[error("no Host")]
    NoHost,
    #[error("an invalid Host")]
    InvalidHost,
}

/// The request front: what every request must pass before it is routed, and the host it is
/// for. Refused (400, and the connection closed):
/// - request smuggling: `Transfer-Encoding` with `Content-Length`, or more than one
///   `Content-Length` (RFC 9112 6.3: a message a proxy must not forward);
/// - no host (HTTP/1.1 without `Host`), more than one `Host`, or a host that is not a valid
///   authority (RFC 9110 7.2: a server must answer 400).
pub fn front(version: Version, headers: &HeaderMap, uri: &hyper::Uri) -> Result<String, Refused> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err(Refused::ContentLengths);
    }
    if lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(Refused::LengthAndChunked);
    }
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    if hosts.len() > 1 {
        return Err(Refused::Hosts);
    }
    let host = match (uri.authority(), hosts.first()) {
        (Some(a), _) if version == Version::HTTP_2 => a.as_str().to_string(),
        (_, Some(h)) => h.to_str().map_err(|_| Refused::HostNotText)?.to_string(),
        (Some(a), None) => a.as_str().to_string(),
        (None, None) if version == Version::HTTP_10 => String::new(),
        (None, None) => return Err(Refused::NoHost),
    };
    if !host.is_empty() && !valid_authority(&host) {
        return Err(Refused::InvalidHost);
    }
    Ok(host)
}

/// `host[:port]`: a DNS name or an IP literal, and a port of digits.
pub(super) fn valid_authority(h: &str) -> bool {
    if h.contains('@') {
        return false;
    }
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => ("x", Some(p)),
            None if after.is_empty() => ("x", None),
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with('.')
        && !name.contains("..")
}

/// An HTTP/1.1 request that asks to switch protocols (WebSocket and others).
pub(super) fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

pub(super) fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Hop-by-hop headers (RFC 9110 7.6.1), and those the `Connection` header names.
pub(super) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(h)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// The headers sent to the backend: the client's without hop-by-hop ones (but the upgrade's),
/// `Host` as the client gave it, and the `X-Forwarded-*` set.
pub(super) fn forwarded(
    mut h: HeaderMap,
    host: &str,
    conn: &Conn,
    id: &HeaderValue,
    upgrade: bool,
) -> HeaderMap {
    let upgrade_to = h.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut h);
    if upgrade {
        if let Some(u) = upgrade_to {
            h.insert(header::UPGRADE, u);
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert(header::HOST, v);
    }
    let ip = conn.peer.ip().to_string();
    let xff = match h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
    {
        prior if prior.is_empty() => ip.clone(),
        prior => format!("{}, {ip}", prior.join(", ")),
    };
    let set = |h: &mut HeaderMap, name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut h, "x-forwarded-for", &xff);
    set(&mut h, "x-real-ip", &ip);
    set(
        &mut h,
        "x-forwarded-proto",
        if conn.tls { "https" } else { "http" },
    );
    set(&mut h, "x-forwarded-host", host);
    set(&mut h, "x-forwarded-port", &conn.local.port().to_string());
    h.insert(HeaderName::from_static("x-request-id"), id.clone());
    h
}

/// The client's `X-Request-ID`, when it is a sane one.
pub(super) fn request_id(h: &HeaderMap) -> Option<HeaderValue> {
    let v = h.get("x-request-id")?;
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic())).then(|| v.clone())
}
