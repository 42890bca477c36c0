//! The Gateway API's semantics, table-level (no proxy, no lab): attachment and its reasons,
//! listener conflicts and certificates, ReferenceGrant, hostname intersection, the spec's
//! precedence across routes, and what requests are served by.

use podnet_gateway::{compute, Computed};
use podnet_model::NsName;
use podnet_routes::routes::{Action, Served};

fn cluster(yaml: &str) -> podnet_model::Cluster {
    let docs = podnet_model::parse_documents("test.yaml", yaml).unwrap();
    podnet_emulator::build(&docs, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

const BACKENDS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: b}}
---
apiVersion: v1
kind: Service
metadata: {name: v1}
spec: {selector: {app: v1}, ports: [{port: 8080, targetPort: 3000}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v1, labels: {app: v1}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: v2}
spec: {selector: {app: v2}, ports: [{port: 8080, targetPort: 3000}]}
---
apiVersion: v1
kind: Pod
metadata: {name: v2, labels: {app: v2}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: other}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: http, port: 80, protocol: HTTP}
"#;

/// The route's status condition `type` for parent `gw`: (status, reason).
fn route_condition(c: &Computed, route: &str, t: &str) -> (String, String) {
    let r = c
        .routes
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(route))
        .unwrap();
    let p = &r.status.as_ref().expect("a status").parents[0];
    let cond = p.conditions.iter().find(|x| x.type_ == t).unwrap();
    (cond.status.clone(), cond.reason.clone())
}

/// What serves `host` `path` (with headers) on port 80 of gateway `gw`: the first backend's
/// Service name, "500", "redirect <code>", or None (404).
fn served(c: &Computed, host: &str, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    let config = &c.configs[&NsName::new("default", "gw")];
    let port = config.ports.get(&80)?;
    let l = port.listener(host)?;
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match l.table.serve_request(host, path, "GET", &h)? {
        Served::Route(r) => Some(match &r.action {
            Action::Redirect { redirect, .. } => format!("redirect {}", redirect.status),
            Action::Forward { backends, .. } => {
                match backends.first().and_then(|b| b.backend.as_ref()) {
                    Some(b) => b.service.name.clone(),
                    None => "500".into(),
                }
            }
        }),
        Served::Default(b, _) => Some(b.service.name.clone()),
    }
}

#[test]
fn the_class_is_ours_and_the_gateway_gets_its_address_and_conditions() {
    let c = compute(&cluster(BACKENDS));
    let class = &c.classes[0];
    assert_eq!(class.metadata.name.as_deref(), Some("podnet"));
    assert_eq!(
        class.status.as_ref().unwrap().conditions[0].reason,
        "Accepted"
    );
    let gw = c.gateways[0].status.as_ref().unwrap();
    assert_eq!(gw.addresses.len(), 1, "{gw:?}");
    assert!(gw.conditions.iter().all(|x| x.status == "True"), "{gw:?}");
    assert_eq!(gw.listeners[0].attached_routes, 0);
}

#[test]
fn attachment_reasons_as_the_spec_names_them() {
    let yaml = format!(
        "{BACKENDS}{}",
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ok}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-port}
spec:
  parentRefs: [{name: gw, port: 8080}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-namespace, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: elsewhere, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-grant}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: elsewhere, namespace: other, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: nothing, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: not-a-service}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{group: example.com, kind: Bucket, name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: with-mirror}
spec:
  parentRefs: [{name: gw}]
  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 8080}}}], backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extension}
spec:
  parentRefs: [{name: gw}]
  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: x}}], backendRefs: [{name: v1, port: 8080}]}]
"#
    );
    let c = compute(&cluster(&yaml));
    let t = |s: &str, r: &str| (s.to_string(), r.to_string());
    assert_eq!(route_condition(&c, "ok", "Accepted"), t("True", "Accepted"));
    assert_eq!(
        route_condition(&c, "ok", "ResolvedRefs"),
        t("True", "ResolvedRefs")
    );
    assert_eq!(
        route_condition(&c, "wrong-section", "Accepted"),
        t("False", "NoMatchingParent")
    );
    assert_eq!(
        route_condition(&c, "wrong-port", "Accepted"),
        t("False", "NoMatchingParent")
    );
    assert_eq!(
        route_condition(&c, "other-namespace", "Accepted"),
        t("False", "NotAllowedByListeners")
    );
    assert_eq!(
        route_condition(&c, "no-grant", "ResolvedRefs"),
        t("False", "RefNotPermitted")
    );
    assert_eq!(
        route_condition(&c, "missing", "ResolvedRefs"),
        t("False", "BackendNotFound")
    );
    assert_eq!(
        route_condition(&c, "not-a-service", "ResolvedRefs"),
        t("False", "InvalidKind")
    );
    // RequestMirror is served (issue 26); an ExtensionRef is not, so not Accepted rather than
    // served otherwise than written.
    assert_eq!(
        route_condition(&c, "with-mirror", "Accepted"),
        t("True", "Accepted")
    );
    assert_eq!(
        route_condition(&c, "extension", "Accepted"),
        t("False", "UnsupportedValue")
    );
    // Attached: the routes accepted by the listener (not those refused): ok, no-grant,
    // missing, not-a-service and with-mirror.
    let gw = c.gateways[0].status.as_ref().unwrap();
    assert_eq!(gw.listeners[0].attached_routes, 5, "{gw:?}");
    // Every accepted route matches every request alike: the first by namespace and name
    // (missing) serves (the spec's last tie-break), and its unusable reference answers 500.
    assert_eq!(served(&c, "x", "/", &[]).as_deref(), Some("500"));
}

#[test]
fn a_reference_grant_lets_a_route_reach_another_namespace() {
    let route = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: elsewhere, namespace: other, port: 8080}]}]
"#;
    let grant = |to_name: &str| {
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {{name: g, namespace: other}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}}]
  to: [{{group: "", kind: Service{to_name}}}]
"#
        )
    };
    for (g, ok) in [
        (String::new(), false),
        (grant(""), true),
        (grant(", name: elsewhere"), true),
        (grant(", name: another"), false),
    ] {
        let c = compute(&cluster(&format!("{BACKENDS}{route}{g}")));
        let (status, _) = route_condition(&c, "r", "ResolvedRefs");
        assert_eq!(status == "True", ok, "{g}");
        let want = if ok { "elsewhere" } else { "500" };
        assert_eq!(served(&c, "x", "/", &[]).as_deref(), Some(want), "{g}");
    }
}

#[test]
fn precedence_across_routes_as_httproute_rule_documents_it() {
    let yaml = format!(
        "{BACKENDS}{}",
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-broad}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a/very/long/prefix}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-one, value: "1"}, {name: x-two, value: "2"}]}]
    backendRefs: [{name: v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-exact}
spec:
  parentRefs: [{name: gw}]
  hostnames: [exact.example.com, "*.example.com"]
  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-one, value: "1"}]}]
    backendRefs: [{name: v1, port: 8080}]
"#
    );
    let c = compute(&cluster(&yaml));
    // An Exact path before any PathPrefix, whatever its length.
    assert_eq!(
        served(&c, "exact.example.com", "/a", &[]).as_deref(),
        Some("v2")
    );
    // A matching hostname (exact, then wildcard) before none: the wildcard host's routes
    // come first, even over a longer path of a route without hostnames.
    assert_eq!(
        served(
            &c,
            "foo.bar.example.com",
            "/a/very/long/prefix",
            &[("x-one", "1")]
        )
        .as_deref(),
        Some("v1"),
    );
    // Without a hostname match, the longest prefix.
    assert_eq!(
        served(&c, "other.org", "/a/very/long/prefix/x", &[]).as_deref(),
        Some("v1")
    );
    // More header matches first.
    assert_eq!(
        served(&c, "other.org", "/b", &[("x-one", "1"), ("x-two", "2")]).as_deref(),
        Some("v2")
    );
    assert_eq!(served(&c, "other.org", "/b", &[("x-one", "1")]), None);
}

#[test]
fn listeners_on_one_port_conflict_and_certificates_need_grants() {
    let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: certs}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: b, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: c, port: 81, protocol: HTTP}
  - {name: d, port: 81, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}
  - {name: e, port: 82, protocol: TCP}
  - {name: f, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: x, namespace: certs}]}}
"#;
    let c = compute(&cluster(yaml));
    let st = c.gateways[0].status.as_ref().unwrap();
    let reason = |l: &str, t: &str| {
        let ls = st.listeners.iter().find(|x| x.name == l).unwrap();
        let cond = ls.conditions.iter().find(|x| x.type_ == t).unwrap();
        format!("{} {}", cond.status, cond.reason)
    };
    assert_eq!(reason("a", "Conflicted"), "True HostnameConflict");
    assert_eq!(reason("c", "Conflicted"), "True ProtocolConflict");
    assert_eq!(reason("d", "ResolvedRefs"), "False InvalidCertificateRef");
    assert_eq!(reason("e", "Accepted"), "False UnsupportedProtocol");
    assert_eq!(reason("f", "ResolvedRefs"), "False RefNotPermitted");
    assert_eq!(reason("f", "Programmed"), "False Invalid");
    // Nothing is served on a port whose listeners all conflict or cannot be programmed.
    let config = &c.configs[&NsName::new("default", "gw")];
    assert!(config.ports.is_empty(), "{:?}", config.ports.keys());
}

#[test]
fn hostnames_intersect_with_the_listeners() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: wild, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: exact, port: 80, protocol: HTTP, hostname: www.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: v1}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw, sectionName: wild}]
  hostnames: ["*.a.example.com", other.org]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: none}
spec:
  parentRefs: [{name: gw, sectionName: exact}]
  hostnames: ["*.other.org"]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
"#;
    let c = compute(&cluster(yaml));
    assert_eq!(
        route_condition(&c, "none", "Accepted").1,
        "NoMatchingListenerHostname"
    );
    assert_eq!(
        served(&c, "x.a.example.com", "/", &[]).as_deref(),
        Some("v1")
    );
    assert_eq!(
        served(&c, "y.x.a.example.com", "/", &[]).as_deref(),
        Some("v1")
    );
    // The listener's *.example.com takes the request; the route's hosts do not cover it.
    assert_eq!(served(&c, "b.example.com", "/", &[]), None);
    assert_eq!(served(&c, "other.org", "/", &[]), None);
    // www.example.com goes to the exact listener, which has no route.
    assert_eq!(served(&c, "www.example.com", "/", &[]), None);
}

#[test]
fn gateways_of_other_classes_are_left_alone() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: theirs
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
"#;
    let m = cluster(yaml);
    // No proxy is provisioned for it, and no status is written.
    assert!(m.services.iter().all(|s| !s.name.starts_with("gw-")));
    let c = compute(&m);
    let gw = c
        .gateways
        .iter()
        .find(|g| g.metadata.name.as_deref() == Some("gw"))
        .unwrap();
    assert!(gw.status.is_none());
    assert!(c.routes[0].status.is_none());
    assert!(c
        .classes
        .iter()
        .find(|x| x.metadata.name.as_deref() == Some("theirs"))
        .unwrap()
        .status
        .is_none());
}

#[test]
fn bad_gateway_api_objects_are_refused_with_their_line_and_field() {
    let cases = [
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  hostnames: [\"bad host!\"]\n", "spec.hostnames[0]"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{backendRefs: [{name: v1}]}]\n", "spec.rules[0].backendRefs[0].port"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{matches: [{path: {type: Exact, value: relative}}]}]\n", "spec.rules[0].matches[0].path.value"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]}]\n", "spec.rules[0].filters[0].requestRedirect.statusCode"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{backendRefs: [{name: v1, port: 80, weight: -1}]}]\n", "spec.rules[0].backendRefs[0].weight"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rulez: []\n", "spec.rulez"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 70000, protocol: HTTP}]\n", "spec.listeners[0].port"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}, {name: a, port: 81, protocol: HTTP}]\n", "spec.listeners[1].name"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 443, protocol: HTTPS}]\n", "spec.listeners[0].tls"),
        ("kind: Gateway\nmetadata: {name: \"g\\\"x: y\"}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n", "metadata.name"),
        // Issue 26's fields: durations, retries, CORS, mirrors.
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{timeouts: {request: 1d}}]\n", "spec.rules[0].timeouts.request"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{timeouts: {request: 999999s}}]\n", "spec.rules[0].timeouts.request"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{timeouts: {request: 1s, backendRequest: 2s}}]\n", "spec.rules[0].timeouts.backendRequest"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{retry: {codes: [200]}}]\n", "spec.rules[0].retry.codes[0]"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{retry: {attempts: -1}}]\n", "spec.rules[0].retry.attempts"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{retry: {backoff: \"5\"}}]\n", "spec.rules[0].retry.backoff"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: CORS, cors: {allowOrigins: [\"https://a*b.com\"]}}]}]\n", "spec.rules[0].filters[0].cors.allowOrigins[0]"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: CORS, cors: {allowMethods: [GET, \"*\"]}}]}]\n", "spec.rules[0].filters[0].cors.allowMethods"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: CORS, cors: {maxAge: 0}}]}]\n", "spec.rules[0].filters[0].cors.maxAge"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v, port: 80}, percent: 150}}]}]\n", "spec.rules[0].filters[0].requestMirror.percent"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v, port: 80}, fraction: {numerator: 3, denominator: 2}}}]}]\n", "spec.rules[0].filters[0].requestMirror.fraction"),
        ("kind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: v}}}]}]\n", "spec.rules[0].filters[0].requestMirror.backendRef.port"),
        // TLSRoute and BackendTLSPolicy, as their CRDs refuse them.
        ("kind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames: [10.0.0.1]\n  rules: [{backendRefs: [{name: v1, port: 443}]}]\n", "spec.hostnames[0]"),
        ("kind: TLSRoute\nmetadata: {name: t}\nspec:\n  rules: [{backendRefs: [{name: v1, port: 443}]}]\n", "spec.hostnames"),
        ("kind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames: [a.example]\n  rules: [{backendRefs: [{name: v1}]}]\n", "spec.rules[0].backendRefs[0].port"),
        ("kind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames: [a.example]\n  rules: [{backendRefs: [{name: v1, port: 1}]}, {backendRefs: [{name: v2, port: 1}]}]\n", "spec.rules"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 443, protocol: TLS}]\n", "spec.listeners[0].tls"),
        ("kind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: v1}]\n  validation: {caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}\n", "spec.validation.hostname"),
        ("kind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: v1}]\n  validation: {hostname: a.example}\n", "spec.validation"),
        ("kind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: v1}]\n  validation: {hostname: a.example, wellKnownCACertificates: System, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}\n", "spec.validation"),
        ("kind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: v1}, {group: \"\", kind: Service, name: v1}]\n  validation: {hostname: a.example, wellKnownCACertificates: System}\n", "spec.targetRefs[0].sectionName"),
        ("kind: BackendTLSPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: v1}]\n  validation: {hostname: a.example, wellKnownCACertificates: System, subjectAltNames: [{type: Hostname, uri: \"spiffe://a\"}]}\n", "spec.validation.subjectAltNames[0]"),
        // Addresses, as the Gateway's CRD refuses them.
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  addresses: [{type: IPAddress, value: not-an-ip}]\n", "spec.addresses[0].value"),
        // ListenerSets, as their CRD refuses them.
        ("kind: ListenerSet\nmetadata: {name: s}\nspec:\n  parentRef: {name: gw}\n  listeners: []\n", "spec.listeners"),
        ("kind: ListenerSet\nmetadata: {name: s}\nspec:\n  parentRef: {name: gw, kind: Service}\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n", "spec.parentRef"),
        ("kind: ListenerSet\nmetadata: {name: s}\nspec:\n  parentRef: {name: gw}\n  listeners: [{name: a, port: 80, protocol: HTTP}, {name: a, port: 81, protocol: HTTP}]\n", "spec.listeners[1].name"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  allowedListeners: {namespaces: {from: Everywhere}}\n", "spec.allowedListeners.namespaces.from"),
        // Frontend client certificate validation, as the Gateway's CRD refuses it.
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  tls: {frontend: {default: {validation: {caCertificateRefs: []}}}}\n", "spec.tls.frontend.default.validation.caCertificateRefs"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  tls: {frontend: {default: {validation: {mode: AllowAll, caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}]}}}}\n", "spec.tls.frontend.default.validation.mode"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  tls: {frontend: {default: {}, perPort: [{port: 443, tls: {}}, {port: 443, tls: {}}]}}\n", "spec.tls.frontend.perPort[1].port"),
        ("kind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: podnet\n  listeners: [{name: a, port: 80, protocol: HTTP}]\n  tls: {frontend: {default: {}, perPort: [{port: 0, tls: {}}]}}\n", "spec.tls.frontend.perPort[0].port"),
    ];
    for (doc, field) in cases {
        let text = format!("apiVersion: gateway.networking.k8s.io/v1\n{doc}");
        let docs = podnet_model::parse_documents("bad.yaml", &text).unwrap();
        let err = podnet_emulator::build(&docs, &Default::default()).expect_err(doc);
        let msg = err.to_string();
        assert!(msg.contains(field), "{field}: {msg}");
        assert!(msg.contains("bad.yaml:"), "{msg}");
    }
}

#[test]
fn one_gateways_proxy_computes_the_same_statuses_and_its_own_configuration() {
    let yaml = format!(
        "{BACKENDS}{}",
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw2}
spec:
  gatewayClassName: podnet
  listeners:
  - {name: http, port: 8080, protocol: HTTP, hostname: b.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: both}
spec:
  parentRefs: [{name: gw}, {name: gw2}]
  rules: [{backendRefs: [{name: v1, port: 8080}]}]
"#
    );
    let c = cluster(&yaml);
    let all = compute(&c);
    assert_eq!(all.configs.len(), 2);
    fn json(v: &impl serde::Serialize) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }
    for name in ["gw", "gw2"] {
        let key = NsName::new("default", name);
        let one = podnet_gateway::compute_one(&c, &key);
        assert_eq!(one.configs.keys().collect::<Vec<_>>(), vec![&key]);
        assert_eq!(one.configs[&key].summary(), all.configs[&key].summary());
        assert!(!one.configs[&key].ports.is_empty());
        assert_eq!(json(&one.gateways), json(&all.gateways));
        assert_eq!(json(&one.routes), json(&all.routes));
        assert_eq!(json(&one.classes), json(&all.classes));
    }
}

/// BackendTLSPolicy: a backend takes the policy naming its port over one naming only its
/// Service, and of two alike the oldest; the others are Conflicted. A policy's ancestors are
/// the Gateways sending to its targets; with no valid CA it is not Accepted and the backend
/// is unusable.
#[test]
fn backend_tls_policies_by_specificity_then_age_with_their_status_per_gateway() {
    let policy = |name: &str, created: &str, section: Option<&str>, ca: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: tls{}}}]\n  validation: {{caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: {ca}}}], hostname: {name}.example}}\n",
            section.map(|s| format!(", sectionName: {s}")).unwrap_or_default()
        )
    };
    let (ca, _) = {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["ca.example".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k)
    };
    let yaml = format!(
        "{BACKENDS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: tls}}\nspec: {{ports: [{{name: https, port: 443}}, {{name: other, port: 8443}}]}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca}}\ndata: {{ca.crt: {}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: empty}}\ndata: {{}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: tls, port: 443}}, {{name: tls, port: 8443}}]}}]\n{}{}{}{}",
        serde_json::to_string(&ca).unwrap(),
        policy("old", "2026-01-01T00:00:00Z", None, "ca"),
        policy("young", "2026-02-01T00:00:00Z", None, "ca"),
        policy("port", "2026-03-01T00:00:00Z", Some("https"), "ca"),
        policy("broken", "2026-04-01T00:00:00Z", Some("other"), "empty"),
    );
    let c = compute(&cluster(&yaml));
    let cond = |name: &str, t: &str| -> (String, String) {
        let p = c
            .backend_tls_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        let a = &p
            .status
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no status"))
            .ancestors;
        assert_eq!(a.len(), 1, "{name}: {a:?}");
        assert_eq!(a[0].ancestor_ref.name, "gw");
        let x = a[0].conditions.iter().find(|x| x.type_ == t).unwrap();
        (x.status.clone(), x.reason.clone())
    };
    // Port 443: "port" names it; "old" and "young" name only the Service (less specific:
    // neither is Conflicted there). Port 8443: "broken" names it, and has no valid CA.
    assert_eq!(cond("port", "Accepted"), ("True".into(), "Accepted".into()));
    assert_eq!(
        cond("broken", "Accepted"),
        ("False".into(), "NoValidCACertificate".into())
    );
    assert_eq!(
        cond("broken", "ResolvedRefs"),
        ("False".into(), "InvalidCACertificateRef".into())
    );
    for name in ["old", "young"] {
        let p = c
            .backend_tls_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        assert!(
            p.status.is_none(),
            "{name} serves no backend: {:?}",
            p.status
        );
    }
    let config = &c.configs[&NsName::new("default", "gw")];
    let tls_of = |port: i32| {
        config
            .backend_tls
            .iter()
            .find(|(b, _)| b.port == podnet_routes::routes::BackendPort::Number(port))
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    assert!(
        matches!(tls_of(443), podnet_routes::edge::BackendTls::To { ref hostname, .. } if hostname == "port.example")
    );
    assert!(matches!(
        tls_of(8443),
        podnet_routes::edge::BackendTls::Unusable { .. }
    ));

    // Without the port's own policies, the older of the two alike serves; the younger is
    // Conflicted.
    let yaml = yaml
        .replace(
            &policy("port", "2026-03-01T00:00:00Z", Some("https"), "ca"),
            "",
        )
        .replace(
            &policy("broken", "2026-04-01T00:00:00Z", Some("other"), "empty"),
            "",
        );
    let c = compute(&cluster(&yaml));
    let cond = |name: &str| -> (String, String) {
        let p = c
            .backend_tls_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        let a = &p.status.as_ref().unwrap().ancestors[0];
        let x = a.conditions.iter().find(|x| x.type_ == "Accepted").unwrap();
        (x.status.clone(), x.reason.clone())
    };
    assert_eq!(cond("old"), ("True".into(), "Accepted".into()));
    assert_eq!(cond("young"), ("False".into(), "Conflicted".into()));
}

#[test]
fn client_certificate_validation_per_port_with_its_reasons() {
    let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Secret
metadata: {name: cert}
type: kubernetes.io/tls
stringData: {tls.crt: CRT, tls.key: KEY}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ca}
data: {ca.crt: CRT}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: no-pem}
data: {ca.crt: "not a certificate"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ca, namespace: other}
data: {ca.crt: CRT}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
      perPort:
      - {port: 80, tls: {validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: missing}]}}}
      - {port: 8443, tls: {validation: {mode: AllowInsecureFallback, caCertificateRefs: [{group: "", kind: ConfigMap, name: no-pem}, {group: "", kind: ConfigMap, name: ca}]}}}
      - {port: 7443, tls: {validation: {caCertificateRefs: [{group: "", kind: Secret, name: cert}]}}}
      - {port: 6443, tls: {validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: ca, namespace: other}]}}}
      - {port: 5443, tls: {}}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
  - {name: partial, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
  - {name: kind, port: 7443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
  - {name: grant, port: 6443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
  - {name: none, port: 5443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
"#;
    let cert = rcgen::generate_simple_self_signed(vec!["gw.example".to_string()]).unwrap();
    let (crt, key) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let yaml = yaml
        .replace("CRT", &serde_json::to_string(&crt).unwrap())
        .replace("KEY", &serde_json::to_string(&key).unwrap());
    let c = compute(&cluster(&yaml));
    let st = c.gateways[0].status.as_ref().unwrap();
    let reason = |l: &str, t: &str| {
        let ls = st.listeners.iter().find(|x| x.name == l).unwrap();
        let cond = ls.conditions.iter().find(|x| x.type_ == t).unwrap();
        format!("{} {}", cond.status, cond.reason)
    };
    // An HTTP listener is untouched, even with an entry for its port.
    assert_eq!(reason("http", "ResolvedRefs"), "True ResolvedRefs");
    assert_eq!(reason("http", "Programmed"), "True Programmed");
    assert_eq!(reason("https", "Programmed"), "True Programmed");
    // One reference of two cannot be used: ResolvedRefs False, served with the other.
    assert_eq!(
        reason("partial", "ResolvedRefs"),
        "False InvalidCACertificateRef"
    );
    assert_eq!(reason("partial", "Accepted"), "True Accepted");
    assert_eq!(reason("partial", "Programmed"), "True Programmed");
    // None usable: not Accepted, not served.
    assert_eq!(
        reason("kind", "ResolvedRefs"),
        "False InvalidCACertificateKind"
    );
    assert_eq!(reason("kind", "Accepted"), "False NoValidCACertificate");
    assert_eq!(reason("kind", "Programmed"), "False Invalid");
    assert_eq!(reason("grant", "ResolvedRefs"), "False RefNotPermitted");
    assert_eq!(reason("grant", "Accepted"), "False NoValidCACertificate");
    // A port's entry without validation: none, whatever the default says.
    assert_eq!(reason("none", "Programmed"), "True Programmed");
    // The Gateway says a port falls back to serving clients without a valid certificate.
    let insecure = st
        .conditions
        .iter()
        .find(|x| x.type_ == "InsecureFrontendValidationMode")
        .expect("InsecureFrontendValidationMode");
    assert_eq!(
        (insecure.status.as_str(), insecure.reason.as_str()),
        ("True", "ConfigurationChanged")
    );
    // What each port serves.
    let config = &c.configs[&NsName::new("default", "gw")];
    let v = |port: u16| config.ports.get(&port).map(|p| p.client_validation.clone());
    assert_eq!(v(80), Some(None));
    let strict = v(443).flatten().expect("443 validates");
    assert!(!strict.insecure_fallback && strict.ca.len() == 1);
    let fallback = v(8443).flatten().expect("8443 validates");
    assert!(fallback.insecure_fallback && fallback.ca.len() == 1);
    assert_eq!(v(7443), None, "not served");
    assert_eq!(v(6443), None, "not served");
    assert_eq!(v(5443), Some(None));
}

#[test]
fn listener_sets_merge_by_precedence_and_take_their_own_routes() {
    let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {tenant: yes}}
---
apiVersion: v1
kind: Namespace
metadata: {name: outsider}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  allowedListeners: {namespaces: {from: Selector, selector: {matchLabels: {tenant: "yes"}}}}
  listeners:
  - {name: main, port: 80, protocol: HTTP, hostname: main.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: older, namespace: team, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRef: {name: gw, namespace: default}
  listeners:
  - {name: a, port: 80, protocol: HTTP, hostname: a.example, allowedRoutes: {namespaces: {from: Same}}}
  - {name: same-as-gateway, port: 80, protocol: HTTP, hostname: main.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: newer, namespace: team, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRef: {name: gw, namespace: default}
  listeners:
  - {name: a, port: 80, protocol: HTTP, hostname: a.example}
  - {name: tls, port: 80, protocol: HTTPS, hostname: b.example, tls: {certificateRefs: [{name: missing}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: outsider}
spec:
  parentRef: {name: gw, namespace: default}
  listeners:
  - {name: c, port: 80, protocol: HTTP, hostname: c.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-set, namespace: team}
spec:
  parentRefs: [{kind: ListenerSet, group: gateway.networking.k8s.io, name: older}]
  rules: [{backendRefs: [{name: web, namespace: default, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-gateway}
spec:
  parentRefs: [{name: gw, sectionName: a}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: from-default}
spec:
  parentRefs: [{kind: ListenerSet, name: older, namespace: team, sectionName: a}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: to-web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team}]
  to: [{group: "", kind: Service}]
"#;
    let c = compute(&cluster(yaml));
    let set = |name: &str| {
        c.listener_sets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap()
            .status
            .clone()
            .expect("a status")
    };
    let cond = |conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str| {
        let c = conds.iter().find(|x| x.type_ == t).unwrap();
        format!("{} {}", c.status, c.reason)
    };
    let listener = |s: &str, l: &str, t: &str| {
        let st = set(s);
        let ls = st.listeners.iter().find(|x| x.name == l).unwrap();
        cond(&ls.conditions, t)
    };
    // Not admitted by the selector.
    assert_eq!(
        cond(&set("elsewhere").conditions, "Accepted"),
        "False NotAllowed"
    );
    // The older set's listener takes a.example; the newer's loses, as does the older's copy
    // of the Gateway's own hostname.
    assert_eq!(listener("older", "a", "Programmed"), "True Programmed");
    assert_eq!(
        listener("older", "same-as-gateway", "Conflicted"),
        "True HostnameConflict"
    );
    assert_eq!(
        listener("older", "same-as-gateway", "Accepted"),
        "False HostnameConflict"
    );
    assert_eq!(listener("newer", "a", "Accepted"), "False HostnameConflict");
    assert_eq!(
        listener("newer", "tls", "Accepted"),
        "False ProtocolConflict"
    );
    // A set with a listener served is Accepted; one with none is not.
    assert_eq!(cond(&set("older").conditions, "Accepted"), "True Accepted");
    assert_eq!(
        cond(&set("newer").conditions, "Accepted"),
        "False ListenersNotValid"
    );
    assert_eq!(
        cond(&set("newer").conditions, "Programmed"),
        "False ListenersNotValid"
    );
    let gw = c.gateways[0].status.as_ref().unwrap();
    assert_eq!(gw.attached_listener_sets, Some(1));
    assert_eq!(
        gw.listeners.len(),
        1,
        "the Gateway's status lists its own listeners"
    );
    // Routes: through the set only when their parentRef names it, `Same` from the set's
    // namespace; a Gateway parentRef does not reach a set's listener.
    assert_eq!(
        route_condition(&c, "via-set", "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        route_condition(&c, "via-gateway", "Accepted"),
        ("False".into(), "NoMatchingParent".into())
    );
    assert_eq!(
        route_condition(&c, "from-default", "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    let via = c
        .routes
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("via-set"))
        .unwrap();
    let p = &via.status.as_ref().unwrap().parents[0].parent_ref;
    assert_eq!(
        (
            p.group.as_deref(),
            p.kind.as_deref(),
            p.namespace.as_deref()
        ),
        (
            Some("gateway.networking.k8s.io"),
            Some("ListenerSet"),
            Some("team")
        ),
        "the parentRef written out"
    );
    // What the proxy serves: the set's host with the set's route, the Gateway's own host.
    assert!(served(&c, "a.example", "/", &[]).is_some());
    assert!(
        served(&c, "main.example", "/", &[]).is_none(),
        "no route on the Gateway's own listener"
    );
}

#[test]
fn requested_addresses_are_served_or_said_unusable() {
    let gw = |name: &str, addresses: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  gatewayClassName: podnet\n  addresses: {addresses}\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n"
        )
    };
    let yaml = [
        gw("in-pool", "[{type: IPAddress, value: 172.18.255.249}]"),
        gw("outside", "[{value: 192.0.2.1}]"),
        gw("hostname", "[{type: Hostname, value: gw.example}]"),
        gw("any", "[{type: IPAddress}]"),
    ]
    .join("---\n");
    let c = compute(&cluster(&yaml));
    let st = |name: &str| {
        c.gateways
            .iter()
            .find(|g| g.metadata.name.as_deref() == Some(name))
            .unwrap()
            .status
            .clone()
            .unwrap()
    };
    let cond = |name: &str, t: &str| {
        let s = st(name);
        let c = s.conditions.iter().find(|x| x.type_ == t).unwrap().clone();
        format!("{} {}", c.status, c.reason)
    };
    let addrs = |name: &str| -> Vec<String> {
        st(name).addresses.iter().map(|a| a.value.clone()).collect()
    };
    // The address asked for, from the pool, and it alone.
    assert_eq!(cond("in-pool", "Programmed"), "True Programmed");
    assert_eq!(addrs("in-pool"), vec!["172.18.255.249".to_string()]);
    // Outside the pool: accepted, not programmed, no address.
    assert_eq!(cond("outside", "Accepted"), "True Accepted");
    assert_eq!(cond("outside", "Programmed"), "False AddressNotUsable");
    assert!(addrs("outside").is_empty());
    // A type podnet does not serve: not accepted, nothing served.
    assert_eq!(cond("hostname", "Accepted"), "False UnsupportedAddress");
    assert!(c.configs[&NsName::new("default", "hostname")]
        .ports
        .is_empty());
    // No value: any address.
    assert_eq!(cond("any", "Programmed"), "True Programmed");
    assert_eq!(addrs("any").len(), 1);
}

#[test]
fn infrastructure_labels_and_annotations_are_carried_by_the_gateways_service_and_pods() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: podnet
  infrastructure:
    labels: {team: edge, podnet.dev/gateway: not-this}
    annotations: {metallb.universe.tf/address-pool: public}
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;
    let c = cluster(yaml);
    let g = &c.gateways[0].obj;
    let text = podnet_model::gateway::infra_manifests(g);
    let docs = podnet_model::parse_documents("infra.yaml", &text).unwrap();
    let objects: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| serde_json::to_value(&d.value).unwrap())
        .collect();
    let infra = podnet_model::gateway::infra_name(&NsName::new("default", "gw"));
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        let metas = if kind == "Deployment" {
            vec![&o["metadata"], &o["spec"]["template"]["metadata"]]
        } else {
            vec![&o["metadata"]]
        };
        for m in metas {
            assert_eq!(m["labels"]["team"], "edge", "{kind}: {m}");
            assert_eq!(
                m["labels"]["gateway.networking.k8s.io/gateway-name"], "gw",
                "{kind}: {m}"
            );
            // podnet's own label is not overridden: its selector still finds its pods.
            assert_eq!(
                m["labels"]["podnet.dev/gateway"],
                infra.as_str(),
                "{kind}: {m}"
            );
            assert_eq!(
                m["annotations"]["metallb.universe.tf/address-pool"], "public",
                "{kind}: {m}"
            );
        }
    }
    assert_eq!(objects.len(), 2);
    // The cluster built with them (the generated objects valid) serves the Gateway.
    assert!(compute(&c).configs[&NsName::new("default", "gw")]
        .ports
        .contains_key(&80));
}
