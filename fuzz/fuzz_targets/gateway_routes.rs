//! The Gateway API's route matcher: routes (host, path, method, headers) and a request from
//! arbitrary text. Whatever serves must match the request, and no matching route may come
//! first in the spec's precedence (hostname, Exact before PathPrefix, path length, method,
//! header count, then the source's order).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_routes::routes::{
    normalize_host, Action, Backend, BackendPort, Conditions, HostMatch, PathMatch, Route,
    RouteTable, Served, Source,
};
use podnet_model::NsName;

fn rank(r: &Route) -> ((u8, usize), (u8, usize), bool, usize, usize) {
    let path = match &r.path {
        PathMatch::Exact(p) => (1, p.len()),
        PathMatch::Prefix(p) => (0, p.len()),
    };
    (
        r.host.specificity(),
        path,
        r.when.method.is_some(),
        r.when.headers.len(),
        r.when.query.len(),
    )
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let host = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let method = parts.next().unwrap_or("GET");
    let mut headers = hyper::HeaderMap::new();
    for h in parts.next().unwrap_or("").split(';') {
        if let Some((k, v)) = h.split_once('=') {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                headers.append(k, v);
            }
        }
    }
    let routes: Vec<Route> = parts
        .enumerate()
        .map(|(i, line)| {
            let mut f = line.split(' ');
            let h = f.next().filter(|h| !h.is_empty());
            let p = f.next().filter(|p| p.starts_with('/')).unwrap_or("/");
            let exact = f.next() == Some("e");
            let m = f.next().filter(|m| !m.is_empty()).map(str::to_string);
            let hs = f
                .next()
                .unwrap_or("")
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            Route {
                host: HostMatch::gateway(h),
                path: if exact {
                    PathMatch::Exact(p.to_string())
                } else {
                    PathMatch::Prefix(p.trim_end_matches('/').to_string())
                },
                when: Conditions { method: m, headers: hs, query: Vec::new() },
                action: Action::to(Backend {
                    service: NsName::new("ns", &format!("s{i}")),
                    port: BackendPort::Number(80),
                }),
                source: Source { kind: "HTTPRoute", object: NsName::new("ns", "r"), rule: i, path: 0 },
                created: None,
            }
        })
        .collect();
    let table = RouteTable::gateway(routes.clone());
    let h = normalize_host(host);
    let p = path.split(['?', '#']).next().unwrap_or(path);
    let matches = |r: &Route| {
        r.host.matches(&h)
            && r.path.matches(p)
            && r.when.method.as_deref().is_none_or(|m| m == method)
            && r.when.headers.iter().all(|(k, v)| {
                headers.get(k.as_str()).is_some_and(|x| x.as_bytes() == v.as_bytes())
            })
    };
    let matching: Vec<&Route> = routes.iter().filter(|r| matches(r)).collect();
    match table.serve_request(host, path, method, &headers) {
        Some(Served::Route(r)) => {
            assert!(matches(r), "{r:?}");
            assert!(matching.iter().all(|m| rank(m) <= rank(r)), "{r:?} over {matching:?}");
        }
        Some(Served::Default(..)) => unreachable!("no default backend"),
        None => assert!(matching.is_empty(), "{matching:?}"),
    }
});
