//! The route matcher: routes and a request from arbitrary text. Whatever serves must match the
//! request's host and path, and no matching route may be more specific (host, then path
//! length, then Exact before Prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podnet_routes::routes::{
    normalize_host, Action, Backend, BackendPort, HostMatch, PathMatch, Route, RouteTable, Served,
    Source,
};
use podnet_model::NsName;

fn rank(r: &Route) -> (u8, usize, usize, u8) {
    let (h, hl) = match &r.host {
        HostMatch::Any => (0, 0),
        HostMatch::Wildcard(s) | HostMatch::Suffix(s) => (1, s.len()),
        HostMatch::Exact(s) => (2, s.len()),
    };
    let (pl, exact) = match &r.path {
        PathMatch::Exact(p) => (p.trim_end_matches('/').len(), 1),
        PathMatch::Prefix(p) => (p.len(), 0),
    };
    (h, hl, pl, exact)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let host = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let routes: Vec<Route> = parts
        .enumerate()
        .map(|(i, line)| {
            let mut f = line.split(' ');
            let h = f.next().filter(|h| !h.is_empty());
            let p = f.next();
            let kind = if f.next() == Some("e") { "Exact" } else { "Prefix" };
            Route {
                host: HostMatch::of(h),
                path: PathMatch::of(p, kind),
                when: Default::default(),
                action: Action::to(Backend {
                    service: NsName::new("ns", &format!("s{i}")),
                    port: BackendPort::Number(80),
                }),
                created: None,
                source: Source {
                    kind: "Ingress",
                    object: NsName::new("ns", "i"),
                    rule: 0,
                    path: i,
                },
            }
        })
        .collect();
    let table = RouteTable::new(routes.clone(), vec![]);
    let h = normalize_host(host);
    let p = path.split(['?', '#']).next().unwrap_or(path);
    let matching: Vec<&Route> = routes
        .iter()
        .filter(|r| r.host.matches(&h) && r.path.matches(p))
        .collect();
    match table.serve(host, path) {
        Some(Served::Route(r)) => {
            assert!(r.host.matches(&h) && r.path.matches(p));
            assert!(matching.iter().all(|m| rank(m) <= rank(r)));
        }
        Some(Served::Default(..)) => unreachable!("no default backend"),
        None => assert!(matching.is_empty()),
    }
});
