//! GRPCRoute, as the HTTPRoute it comes to: a gRPC call is an HTTP/2 POST to
//! `/{service}/{method}`, so a method match is a path match (service and method: the exact
//! path; a service alone: the path prefix `/{service}/`), header matches and the filters
//! (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror) are HTTPRoute's, and the
//! precedence the GRPCRoute spec gives (the longest service, then method, then the most
//! header matches) is the route table's for exact paths and prefixes. Its backends are
//! spoken to over HTTP/2 (cleartext, or TLS by a BackendTLSPolicy).
//!
//! Not served (the route is not Accepted, UnsupportedValue): RegularExpression method
//! matches, and a method match without a service (`/*/{method}` is no path match of the
//! table's).

use podnet_model::gateway_api::{
    GRPCRoute, HTTPHeaderMatch, HTTPPathMatch, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec,
};

use super::*;

/// The HTTPRoute a GRPCRoute comes to, and what of it cannot be served, if anything.
pub(super) fn as_http(r: &GRPCRoute) -> (HTTPRoute, Option<String>) {
    let mut unsupported = None;
    let rules = r
        .spec
        .rules
        .iter()
        .map(|rule| {
            let matches: Vec<HTTPRouteMatch> = rule
                .matches
                .iter()
                .map(|m| {
                    let path = match &m.method {
                        None => None,
                        Some(mm) => {
                            if mm.type_.as_deref().unwrap_or("Exact") != "Exact" {
                                unsupported.get_or_insert_with(|| {
                                    "RegularExpression method matches are not served".to_string()
                                });
                            }
                            match (mm.service.as_deref(), mm.method.as_deref()) {
                                (Some(s), Some(me)) => Some(HTTPPathMatch {
                                    type_: Some("Exact".into()),
                                    value: Some(format!("/{s}/{me}")),
                                }),
                                (Some(s), None) => Some(HTTPPathMatch {
                                    type_: Some("PathPrefix".into()),
                                    value: Some(format!("/{s}")),
                                }),
                                (None, _) => {
                                    unsupported.get_or_insert_with(|| {
                                        "a method match without a service is not served".to_string()
                                    });
                                    None
                                }
                            }
                        }
                    };
                    let headers: Vec<HTTPHeaderMatch> = m.headers.clone();
                    HTTPRouteMatch {
                        path,
                        headers,
                        query_params: Vec::new(),
                        method: None,
                    }
                })
                .collect();
            HTTPRouteRule {
                name: rule.name.clone(),
                matches: (!matches.is_empty()).then_some(matches),
                filters: rule.filters.clone(),
                backend_refs: Some(rule.backend_refs.clone()),
                timeouts: None,
                retry: None,
                session_persistence: rule.session_persistence.clone(),
            }
        })
        .collect();
    let http = HTTPRoute {
        api_version: r.api_version.clone(),
        kind: Some("GRPCRoute".into()),
        metadata: r.metadata.clone(),
        spec: HTTPRouteSpec {
            parent_refs: r.spec.parent_refs.clone(),
            hostnames: r.spec.hostnames.clone(),
            rules: Some(rules),
        },
        status: None,
    };
    (http, unsupported)
}
