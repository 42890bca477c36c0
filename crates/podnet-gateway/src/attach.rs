//! Which listeners a route (HTTPRoute, TLSRoute) attaches to: parentRefs, allowed namespaces and kinds,
//! intersecting hostnames; the route's status per parent.

use super::*;

/// The hostnames a route serves through a listener: the intersection of the route's and the
/// listener's (None: no intersection).
pub(super) fn intersect(route: &[String], listener: &HostMatch) -> Option<Vec<HostMatch>> {
    if route.is_empty() {
        return Some(vec![listener.clone()]);
    }
    let mut out = Vec::new();
    for h in route {
        let h = HostMatch::gateway(Some(h));
        let both = match (&h, listener) {
            (_, HostMatch::Any) => Some(h.clone()),
            (HostMatch::Exact(a), HostMatch::Exact(b)) => (a == b).then(|| h.clone()),
            (HostMatch::Exact(a), l) => l.matches(a).then(|| h.clone()),
            (HostMatch::Suffix(_), HostMatch::Exact(b)) => h.matches(b).then(|| listener.clone()),
            (HostMatch::Suffix(a), HostMatch::Suffix(b)) => {
                if a.ends_with(b.as_str()) {
                    Some(h.clone())
                } else if b.ends_with(a.as_str()) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(b) = both {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a listener admits routes of `route_ns` (`Same`: the namespace of the listener's
/// Gateway or ListenerSet, `owner_ns`).
pub(super) fn admits(c: &Cluster, owner_ns: &str, l: &Listener, route_ns: &str) -> bool {
    let from = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => route_ns == owner_ns,
        "Selector" => {
            let Some(sel) = from.and_then(|f| f.selector.as_ref()) else {
                return false;
            };
            let labels = c
                .namespaces
                .get(route_ns)
                .map(|n| n.labels.clone())
                .unwrap_or_default();
            podnet_model::selector::matches(sel, &labels)
        }
        _ => false,
    }
}

/// Attaches an HTTPRoute to its parents' listeners; returns its status per parent of
/// podnet's.
pub(super) fn attach(
    c: &Cluster,
    r: &HTTPRoute,
    listeners: &mut BTreeMap<NsName, Vec<ListenerState>>,
) -> Vec<RouteParentStatus> {
    attach_as(c, r, "HTTPRoute", None, listeners)
}

/// Attaches an HTTPRoute, or a GRPCRoute as the HTTPRoute it comes to (`kind` GRPCRoute,
/// with what of it cannot be served); returns its status per parent of podnet's.
pub(super) fn attach_as(
    c: &Cluster,
    r: &HTTPRoute,
    kind: &'static str,
    unsupported_too: Option<String>,
    listeners: &mut BTreeMap<NsName, Vec<ListenerState>>,
) -> Vec<RouteParentStatus> {
    let route_key = key_of(&r.metadata);
    // Backends, resolved once for every parent.
    let (resolved, backend_problem) = resolve_backends(c, r, kind);
    let view = RouteView {
        meta: &r.metadata,
        kind,
        parent_refs: &r.spec.parent_refs,
        hostnames: &r.spec.hostnames,
        unsupported: unsupported_too.or_else(|| unsupported(r)),
        backend_problem,
    };
    attach_to(c, &view, listeners, |st, hosts| {
        st.routes
            .extend(routes_of(r, kind, &route_key, &hosts, &resolved));
    })
}

/// Attaches a TLSRoute to its parents' TLS listeners; returns its status per parent of
/// podnet's.
pub(super) fn attach_tls(
    c: &Cluster,
    r: &TLSRoute,
    listeners: &mut BTreeMap<NsName, Vec<ListenerState>>,
) -> Vec<RouteParentStatus> {
    let route_ns = ns_of(&r.metadata);
    let mut problem: Option<(&'static str, String)> = None;
    let backends: Vec<(Option<Backend>, u32)> = r
        .spec
        .rules
        .iter()
        .flat_map(|rule| &rule.backend_refs)
        .map(|b| {
            let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
            let to = BackendTo {
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                namespace: b.namespace.as_deref(),
                name: &b.name,
                port: b.port,
            };
            match resolve_to(c, "TLSRoute", route_ns, &to) {
                Ok(b) => (Some(b), weight),
                Err(p) => {
                    problem.get_or_insert(p);
                    (None, weight)
                }
            }
        })
        .collect();
    let view = RouteView {
        meta: &r.metadata,
        kind: "TLSRoute",
        parent_refs: &r.spec.parent_refs,
        hostnames: &r.spec.hostnames,
        unsupported: None,
        backend_problem: problem,
    };
    let name = key_of(&r.metadata).to_string();
    attach_to(c, &view, listeners, |st, hosts| {
        st.streams.extend(hosts.into_iter().map(|host| StreamRoute {
            route: name.clone(),
            host,
            backends: backends.clone(),
        }));
    })
}

/// A route as attaching sees it, whatever its kind.
pub(super) struct RouteView<'a> {
    pub meta: &'a ObjectMeta,
    /// `HTTPRoute`, `TLSRoute`: the kind a listener must allow.
    pub kind: &'static str,
    pub parent_refs: &'a [ParentReference],
    pub hostnames: &'a [String],
    /// Why the route cannot be served as written (not Accepted: UnsupportedValue).
    pub unsupported: Option<String>,
    /// The first backend reference that cannot be used (ResolvedRefs False).
    pub backend_problem: Option<(&'static str, String)>,
}

/// Attaches a route to its parents' listeners, handing each listener it attaches to and the
/// hostnames it serves there to `add`; returns its status per parent of podnet's.
pub(super) fn attach_to(
    c: &Cluster,
    r: &RouteView<'_>,
    listeners: &mut BTreeMap<NsName, Vec<ListenerState>>,
    mut add: impl FnMut(&mut ListenerState, Vec<HostMatch>),
) -> Vec<RouteParentStatus> {
    let m = r.meta;
    let route_ns = ns_of(m);
    let mut out = Vec::new();
    let backend_problem = &r.backend_problem;
    let unsupported = &r.unsupported;
    let mut seen: Vec<&ParentReference> = Vec::new();
    for p in r.parent_refs {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        if p.group.as_deref().unwrap_or(GROUP) != GROUP
            || !matches!(kind, "Gateway" | "ListenerSet")
        {
            continue;
        }
        let ref_key = NsName::new(p.namespace.as_deref().unwrap_or(route_ns), &p.name);
        // A Gateway's own listeners, or a ListenerSet's (among its Gateway's).
        let (gw_key, owner) = if kind == "Gateway" {
            (ref_key, None)
        } else {
            let Some(set) = c
                .listener_sets
                .iter()
                .find(|s| key_of(&s.obj.metadata) == ref_key)
            else {
                continue;
            };
            (listener_sets::parent_of(&set.obj), Some(ref_key))
        };
        let Some(g) = c
            .gateways
            .iter()
            .find(|g| key_of(&g.obj.metadata) == gw_key)
        else {
            continue;
        };
        let Some(states) = listeners.get_mut(&gw_key) else {
            continue; // not one of podnet's
        };
        let g = &g.obj;
        let owner_ns = owner
            .as_ref()
            .map_or(ns_of(&g.metadata), |o| o.namespace.as_str());
        let parent = if owner.is_some() {
            "ListenerSet"
        } else {
            "Gateway"
        };
        let mut candidates: Vec<usize> = states
            .iter()
            .enumerate()
            .filter(|(_, st)| st.owner == owner)
            .filter(|(_, st)| {
                p.section_name
                    .as_ref()
                    .is_none_or(|s| *s == st.listener.name)
            })
            .filter(|(_, st)| p.port.is_none_or(|port| port == st.listener.port))
            .map(|(i, _)| i)
            .collect();
        let accepted: Result<(), (&str, String)> = if candidates.is_empty() {
            Err((
                "NoMatchingParent",
                if owner.is_some() && !states.iter().any(|st| st.owner == owner) {
                    "the ListenerSet is not attached to its Gateway".into()
                } else {
                    format!("no listener of the {parent} matches sectionName and port")
                },
            ))
        } else {
            candidates.retain(|i| {
                let st = &states[*i];
                st.attachable
                    && st.kinds.iter().any(|k| k.kind == r.kind)
                    && admits(c, owner_ns, &st.listener, route_ns)
            });
            if candidates.is_empty() {
                Err((
                    "NotAllowedByListeners",
                    format!("no listener of the {parent} admits this route"),
                ))
            } else {
                candidates.retain(|i| intersect(r.hostnames, &states[*i].host).is_some());
                if candidates.is_empty() {
                    Err((
                        "NoMatchingListenerHostname",
                        "no listener's hostname intersects the route's hostnames".into(),
                    ))
                } else if let Some(why) = &unsupported {
                    Err(("UnsupportedValue", why.clone()))
                } else {
                    Ok(())
                }
            }
        };
        let mut conditions = vec![match &accepted {
            Ok(()) => condition(m, "Accepted", true, "Accepted", ""),
            Err((reason, msg)) => condition(m, "Accepted", false, reason, msg),
        }];
        conditions.push(match &backend_problem {
            Some((reason, msg)) => condition(m, "ResolvedRefs", false, reason, msg),
            None => condition(m, "ResolvedRefs", true, "ResolvedRefs", ""),
        });
        if accepted.is_ok() {
            for i in candidates {
                let st = &mut states[i];
                st.attached += 1;
                let hosts = intersect(r.hostnames, &st.host).unwrap_or_default();
                add(st, hosts);
            }
        }
        // The parentRef written out: the group and kind the API defaults, the namespace the
        // route's own when unset.
        let mut parent_ref = p.clone();
        parent_ref.group.get_or_insert_with(|| GROUP.into());
        parent_ref.kind.get_or_insert_with(|| kind.into());
        parent_ref
            .namespace
            .get_or_insert_with(|| route_ns.to_string());
        out.push(RouteParentStatus {
            parent_ref,
            controller_name: CONTROLLER.into(),
            conditions,
        });
    }
    out
}

/// Why a route cannot be served as written (a feature podnet does not serve), if it cannot.
pub(super) fn unsupported(r: &HTTPRoute) -> Option<String> {
    for rule in r.spec.rules.iter().flatten() {
        for m in rule.matches.iter().flatten() {
            if m.path.as_ref().and_then(|p| p.type_.as_deref()) == Some("RegularExpression")
                || m.headers
                    .iter()
                    .chain(&m.query_params)
                    .any(|h| h.type_.as_deref() == Some("RegularExpression"))
            {
                return Some("RegularExpression matches are not served".into());
            }
        }
        for f in &rule.filters {
            if !matches!(
                f.type_.as_str(),
                "RequestHeaderModifier"
                    | "ResponseHeaderModifier"
                    | "RequestRedirect"
                    | "URLRewrite"
                    | "CORS"
                    | "RequestMirror"
            ) {
                return Some(format!("filter {} is not served", f.type_));
            }
        }
        // A backendRef's ResponseHeaderModifier is not applied: not Accepted rather than
        // ignored.
        for f in rule.backend_refs.iter().flatten().flat_map(|b| &b.filters) {
            if !matches!(
                f.type_.as_str(),
                "RequestHeaderModifier" | "RequestRedirect" | "URLRewrite"
            ) {
                return Some(format!("filter {} on a backendRef is not served", f.type_));
            }
        }
    }
    None
}
