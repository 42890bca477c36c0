//! Printing the plan: kubectl-like tables, JSON and YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use podnet_model::{Cluster, ServiceInfo, ServiceType, TargetPort};
use saphyr::{Scalar, Yaml, YamlEmitter};
use serde_json::Value;

/// Left-aligned columns separated by three spaces, as kubectl prints them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}   ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A table of `items`, one row each.
pub fn table_of<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    table(header, &items.iter().map(row).collect::<Vec<_>>())
}

/// `80:30080/TCP`, as `kubectl get svc` prints PORT(S).
pub fn ports_column(s: &ServiceInfo) -> String {
    list(s.ports.iter().map(|p| match p.node_port {
        Some(np) => format!("{}:{np}/{}", p.port, p.protocol),
        None => format!("{}/{}", p.port, p.protocol),
    }))
}

fn target_column(s: &ServiceInfo) -> String {
    list(s.ports.iter().map(|p| match &p.target_port {
        TargetPort::Number(n) => n.to_string(),
        TargetPort::Name(n) => n.clone(),
    }))
}

/// Items separated by commas, as kubectl's columns have them; `<none>` for none.
fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() {
        "<none>".into()
    } else {
        items.join(",")
    }
}

/// `ip:port` of the ready endpoints, as `kubectl get endpoints` prints them.
pub fn endpoints_column(s: &ServiceInfo) -> String {
    if s.service_type == ServiceType::ExternalName {
        return "<external>".into();
    }
    let mut items = Vec::new();
    for (slice, ep) in s.endpoints() {
        if !ep.ready {
            continue;
        }
        for a in &ep.addresses {
            if slice.ports.is_empty() {
                items.push(a.to_string());
            }
            for p in &slice.ports {
                items.push(std::net::SocketAddr::new(*a, p.port as u16).to_string());
            }
        }
    }
    if items.is_empty() {
        return "<none>".into();
    }
    let n = items.len();
    if n > 3 {
        format!("{} + {} more...", items[..3].join(","), n - 3)
    } else {
        items.join(",")
    }
}

fn external_column(s: &ServiceInfo) -> String {
    let mut v: Vec<String> = s
        .load_balancer_ips
        .iter()
        .chain(&s.external_ips)
        .map(ToString::to_string)
        .collect();
    if let Some(n) = &s.external_name {
        v.push(n.clone());
    }
    if v.is_empty() {
        if s.service_type == ServiceType::LoadBalancer {
            "<pending>".into()
        } else {
            "<none>".into()
        }
    } else {
        v.join(",")
    }
}

fn labels(l: &podnet_model::Labels) -> String {
    list(l.iter().map(|(k, v)| format!("{k}={v}")))
}

/// How a node reaches the other nodes' pods (as its agent programs it): those routed natively,
/// those over VXLAN (a node named with a family when only that family's pods go that way), and
/// its pods' MTU.
fn routing_of(c: &Cluster, node: &str) -> (String, String, String) {
    let Some(dp) = podnet_node::dataplane::NodeDataplane::overlay(c, node, "eth0") else {
        return ("-".into(), "-".into(), "-".into());
    };
    let mut by_node: BTreeMap<&str, Vec<(bool, &'static str)>> = BTreeMap::new();
    for r in &dp.remotes {
        let family = podnet_model::IpFamily::of_net(&r.pod_cidr).as_str();
        by_node
            .entry(&r.name)
            .or_default()
            .push((r.gateway.is_some(), family));
    }
    let side = |native: bool| {
        let names: Vec<String> = by_node
            .iter()
            .filter_map(|(name, paths)| {
                let mine: Vec<&str> = paths
                    .iter()
                    .filter(|(n, _)| *n == native)
                    .map(|(_, f)| *f)
                    .collect();
                match mine.len() {
                    0 => None,
                    n if n == paths.len() => Some(name.to_string()),
                    _ => Some(format!("{name}({})", mine.join(","))),
                }
            })
            .collect();
        list(names)
    };
    (side(true), side(false), dp.pod_mtu.to_string())
}

/// The whole plan as tables.
pub fn tables(c: &Cluster) -> String {
    let mut out = String::new();
    out.push_str("NODES\n");
    out.push_str(&table_of(
        &[
            "NAME",
            "INTERNAL-IP",
            "POD-CIDR",
            "NATIVE-TO",
            "VXLAN-TO",
            "POD-MTU",
        ],
        &c.nodes,
        |n| {
            let cidrs: Vec<String> = n.pod_cidrs.iter().map(ToString::to_string).collect();
            let ips: Vec<String> = std::iter::once(n.internal_ip)
                .chain(n.internal_ipv6)
                .map(|ip| ip.to_string())
                .collect();
            let (native, vxlan, mtu) = routing_of(c, &n.name);
            vec![
                n.name.clone(),
                ips.join(","),
                cidrs.join(","),
                native,
                vxlan,
                mtu,
            ]
        },
    ));

    out.push_str("\nPODS\n");
    let rows: Vec<_> = c
        .pods
        .iter()
        .map(|p| {
            vec![
                p.namespace.clone(),
                p.name.clone(),
                p.node.clone().unwrap_or_else(|| "<none>".into()),
                list(&p.ips),
                if p.terminating {
                    "Terminating".into()
                } else {
                    p.phase.clone()
                },
                if p.ready {
                    "true".into()
                } else {
                    "false".into()
                },
                labels(&p.labels),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NAMESPACE",
            "NAME",
            "NODE",
            "IP",
            "STATUS",
            "READY",
            "LABELS",
        ],
        &rows,
    ));

    out.push_str("\nSERVICES\n");
    let rows: Vec<_> = c
        .services
        .iter()
        .map(|s| {
            let cip = if s.headless {
                "None".to_string()
            } else {
                list(&s.cluster_ips)
            };
            vec![
                s.namespace.clone(),
                s.name.clone(),
                s.service_type.as_str().to_string(),
                cip,
                external_column(s),
                ports_column(s),
                target_column(s),
                endpoints_column(s),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "NAMESPACE",
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "TARGET-PORT(S)",
            "ENDPOINTS",
        ],
        &rows,
    ));
    if !c.cluster_network_policies.is_empty() {
        out.push_str("\nCLUSTER NETWORK POLICIES\n");
        out.push_str(&cluster_policies_table(c));
    }
    out
}

/// The ClusterNetworkPolicies in evaluation order (Admin by priority, then Baseline), with
/// the pods each selects and its rules per direction.
fn cluster_policies_table(c: &Cluster) -> String {
    use podnet_model::cnp::{subject_matches, ClusterPolicies};
    let tiers = ClusterPolicies::of(c);
    let rows: Vec<Vec<String>> = tiers
        .admin
        .iter()
        .chain(&tiers.baseline)
        .map(|p| {
            let rules = |v: Vec<podnet_model::policy_api::Action>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
                }
            };
            let subject = &p.spec.subject;
            let subject = match (&subject.namespaces, &subject.pods) {
                (Some(ns), _) => format!("namespaces {}", selector_text(ns)),
                (_, Some(np)) => format!(
                    "pods {} in namespaces {}",
                    selector_text(&np.pod_selector),
                    selector_text(&np.namespace_selector)
                ),
                _ => "<none>".into(),
            };
            vec![
                p.name().to_string(),
                p.spec.tier.map_or("<none>", |t| t.as_str()).to_string(),
                p.spec.priority.to_string(),
                subject,
                c.pods
                    .iter()
                    .filter(|pod| subject_matches(c, p, pod))
                    .count()
                    .to_string(),
                rules(p.spec.ingress.iter().filter_map(|r| r.action).collect()),
                rules(p.spec.egress.iter().filter_map(|r| r.action).collect()),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "TIER", "PRIORITY", "SUBJECT", "PODS", "INGRESS", "EGRESS",
        ],
        &rows,
    )
}

/// A label selector as `kubectl` writes one: `k=v,k2 in (a,b)`, `<all>` when empty.
fn selector_text(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    if parts.is_empty() {
        "<all>".into()
    } else {
        parts.join(",")
    }
}

/// The Ingresses as `kubectl get ingress` lists them, then what podnet's controller serves:
/// each route in precedence order with its backend's endpoints, and what it could not use.
pub fn ingress_tables(
    ingresses: &[k8s_openapi::api::networking::v1::Ingress],
    edge: &podnet_routes::edge::EdgeConfig,
) -> String {
    use podnet_routes::edge::{describe, Upstream};
    use podnet_routes::routes::PathMatch;
    let mut out = String::from("\nINGRESSES\n");
    let rows: Vec<_> = ingresses
        .iter()
        .map(|i| {
            let spec = i.spec.clone().unwrap_or_default();
            let hosts: Vec<String> = spec
                .rules
                .iter()
                .flatten()
                .map(|r| r.host.clone().unwrap_or_else(|| "*".into()))
                .collect();
            let address: Vec<String> = i
                .status
                .iter()
                .flat_map(|s| s.load_balancer.iter())
                .flat_map(|l| l.ingress.iter().flatten())
                .filter_map(|x| x.ip.clone().or(x.hostname.clone()))
                .collect();
            let tls = spec.tls.as_ref().is_some_and(|t| !t.is_empty());
            vec![
                i.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                i.metadata.name.clone().unwrap_or_default(),
                spec.ingress_class_name
                    .unwrap_or_else(|| "<default>".into()),
                if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                },
                if address.is_empty() {
                    "<none>".into()
                } else {
                    address.join(",")
                },
                if tls { "80, 443" } else { "80" }.into(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["NAMESPACE", "NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS"],
        &rows,
    ));
    out.push_str("\nINGRESS ROUTES (podnet.dev/ingress, in precedence order)\n");
    let endpoints = |b: &podnet_routes::routes::Backend| match edge.upstreams.get(b) {
        Some(Upstream::Ready(e)) => e
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        Some(Upstream::Unavailable(why)) => format!("503: {why}"),
        None => "<none>".into(),
    };
    let mut rows: Vec<Vec<String>> = edge
        .table
        .routes()
        .iter()
        .map(|r| {
            let host = r.host.to_string();
            let (path, kind) = match &r.path {
                PathMatch::Exact(p) => (p.clone(), "Exact"),
                PathMatch::Prefix(p) if p.is_empty() => ("/".to_string(), "Prefix"),
                PathMatch::Prefix(p) => (p.clone(), "Prefix"),
            };
            let tls = if edge.cert_for(&host).is_some() {
                "yes"
            } else {
                "no"
            };
            vec![
                host,
                path,
                kind.into(),
                r.backends().next().map(describe).unwrap_or_default(),
                r.backends().next().map(endpoints).unwrap_or_default(),
                tls.into(),
                r.source.object.to_string(),
            ]
        })
        .collect();
    if let Some(b) = edge.table.default_backend() {
        rows.push(vec![
            "(default)".into(),
            "".into(),
            "".into(),
            describe(b),
            endpoints(b),
            "".into(),
            "".into(),
        ]);
    }
    out.push_str(&table(
        &[
            "HOST",
            "PATH",
            "TYPE",
            "BACKEND",
            "ENDPOINTS",
            "TLS",
            "INGRESS",
        ],
        &rows,
    ));
    for w in &edge.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// A node's proxy: each frontend and what new connections to it get.
pub fn proxy_table(plan: &podnet_proxy::ProxyPlan) -> String {
    use podnet_proxy::Dispatch;
    let show = |d: &Dispatch| match d {
        Dispatch::Endpoints { endpoints, .. } => endpoints
            .iter()
            .map(|(ip, port)| std::net::SocketAddr::new(*ip, *port).to_string())
            .collect::<Vec<_>>()
            .join(","),
        Dispatch::Reject => "reject (no endpoints)".into(),
        Dispatch::Drop => "drop (no local endpoint)".into(),
    };
    let masq = |d: &Dispatch| {
        matches!(
            d,
            Dispatch::Endpoints {
                masquerade: true,
                ..
            }
        )
        .to_string()
    };
    let aff = |svc: &podnet_model::NsName| {
        plan.affinity
            .get(svc)
            .map_or("-".into(), |t| format!("ClientIP {t}s"))
    };
    let mut rows: Vec<Vec<String>> = plan
        .frontends
        .iter()
        .map(|(f, (o, d))| {
            vec![
                format!(
                    "{}/{}",
                    std::net::SocketAddr::new(f.ip, f.port),
                    f.proto.lower()
                ),
                o.service.to_string(),
                masq(d),
                aff(&o.service),
                show(d),
            ]
        })
        .collect();
    let dual = plan
        .node_ports
        .keys()
        .any(|(f, _, _)| *f == podnet_model::IpFamily::Ipv6);
    rows.extend(
        plan.node_ports
            .iter()
            .map(|((family, proto, port), (o, d))| {
                // On a cluster with IPv6, which of the node's addresses: `<node>` or `<node6>`.
                let node = match (dual, family) {
                    (true, podnet_model::IpFamily::Ipv6) => "[<node6>]",
                    (true, podnet_model::IpFamily::Ipv4) => "<node4>",
                    _ => "<node>",
                };
                vec![
                    format!("{node}:{port}/{}", proto.lower()),
                    o.service.to_string(),
                    masq(d),
                    aff(&o.service),
                    show(d),
                ]
            }),
    );
    format!(
        "PROXY {}\n{}",
        plan.node,
        table(
            &["FRONTEND", "SERVICE", "MASQUERADE", "AFFINITY", "BACKENDS"],
            &rows
        )
    )
}

/// Prints `value` as JSON or YAML, or as the tables `table` renders.
pub fn emit<T: serde::Serialize>(
    format: crate::OutputFormat,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match format {
        crate::OutputFormat::Table => print!("{}", table()),
        crate::OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        crate::OutputFormat::Yaml => print!("{}", to_yaml(&serde_json::to_value(value)?)),
    }
    Ok(())
}

/// JSON to YAML, through saphyr's emitter.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    let y = json_to_yaml(v);
    YamlEmitter::new(&mut out)
        .dump(&y)
        .expect("writing to a String does not fail");
    out.push('\n');
    out
}

fn json_to_yaml(v: &Value) -> Yaml<'static> {
    match v {
        Value::Null => Yaml::Value(Scalar::Null),
        Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or(0.0).into())),
        },
        Value::String(s) => Yaml::Value(Scalar::String(s.clone().into())),
        Value::Array(a) => Yaml::Sequence(a.iter().map(json_to_yaml).collect()),
        Value::Object(m) => {
            let mut map = saphyr::Mapping::new();
            for (k, v) in m {
                map.insert(
                    Yaml::Value(Scalar::String(k.clone().into())),
                    json_to_yaml(v),
                );
            }
            Yaml::Mapping(map)
        }
    }
}

/// The Gateway API's objects, with the status podnet's controller gives them, and what each
/// of podnet's Gateways serves.
pub fn gateway_tables(g: &podnet_gateway::Computed) -> String {
    let cond = |c: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str| {
        c.iter()
            .find(|c| c.type_ == t)
            .map(|c| {
                if c.status == "True" {
                    "True".to_string()
                } else {
                    format!("False ({})", c.reason)
                }
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut out = String::from("\nGATEWAY CLASSES\n");
    let rows: Vec<Vec<String>> = g
        .classes
        .iter()
        .map(|c| {
            vec![
                c.metadata.name.clone().unwrap_or_default(),
                c.spec.controller_name.clone(),
                cond(
                    c.status.as_ref().map_or(&[][..], |s| &s.conditions),
                    "Accepted",
                ),
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "CONTROLLER", "ACCEPTED"], &rows));
    out.push_str("\nGATEWAYS\n");
    let mut rows = Vec::new();
    for gw in &g.gateways {
        let st = gw.status.clone().unwrap_or_default();
        let addresses: Vec<String> = st.addresses.iter().map(|a| a.value.clone()).collect();
        for l in &gw.spec.listeners {
            let ls = st.listeners.iter().find(|x| x.name == l.name);
            rows.push(vec![
                gw.metadata.namespace.clone().unwrap_or_default(),
                gw.metadata.name.clone().unwrap_or_default(),
                gw.spec.gateway_class_name.clone(),
                if addresses.is_empty() {
                    "<none>".into()
                } else {
                    addresses.join(",")
                },
                l.name.clone(),
                format!("{}/{}", l.port, l.protocol),
                l.hostname.clone().unwrap_or_else(|| "*".into()),
                ls.map_or("-".into(), |s| s.attached_routes.to_string()),
                ls.map_or("-".into(), |s| cond(&s.conditions, "Programmed")),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "NAMESPACE",
            "NAME",
            "CLASS",
            "ADDRESS",
            "LISTENER",
            "PORT",
            "HOSTNAME",
            "ROUTES",
            "PROGRAMMED",
        ],
        &rows,
    ));
    // ListenerSets: each listener with its set's acceptance and its own state.
    let mut rows = Vec::new();
    for s in &g.listener_sets {
        let st = s.status.clone().unwrap_or_default();
        let parent = &s.spec.parent_ref;
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        for l in &s.spec.listeners {
            let ls = st.listeners.iter().find(|x| x.name == l.name);
            rows.push(vec![
                ns.clone(),
                s.metadata.name.clone().unwrap_or_default(),
                format!(
                    "{}/{}",
                    parent.namespace.as_deref().unwrap_or(&ns),
                    parent.name
                ),
                cond(&st.conditions, "Accepted"),
                l.name.clone(),
                format!("{}/{}", l.port, l.protocol),
                l.hostname.clone().unwrap_or_else(|| "*".into()),
                ls.map_or("-".into(), |s| s.attached_routes.to_string()),
                ls.map_or("-".into(), |s| cond(&s.conditions, "Programmed")),
            ]);
        }
    }
    if !rows.is_empty() {
        out.push_str("\nLISTENER SETS\n");
        out.push_str(&table(
            &[
                "NAMESPACE",
                "NAME",
                "GATEWAY",
                "ACCEPTED",
                "LISTENER",
                "PORT",
                "HOSTNAME",
                "ROUTES",
                "PROGRAMMED",
            ],
            &rows,
        ));
    }
    out.push_str("\nROUTES (status per parent Gateway)\n");
    let mut rows = Vec::new();
    let routes = g
        .routes
        .iter()
        .map(|r| ("HTTPRoute", &r.metadata, &r.status))
        .chain(
            g.grpc_routes
                .iter()
                .map(|r| ("GRPCRoute", &r.metadata, &r.status)),
        )
        .chain(
            g.tls_routes
                .iter()
                .map(|r| ("TLSRoute", &r.metadata, &r.status)),
        );
    for (kind, meta, status) in routes {
        for p in status.iter().flat_map(|s| &s.parents) {
            rows.push(vec![
                kind.to_string(),
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
                format!(
                    "{}{}{}",
                    match p.parent_ref.kind.as_deref() {
                        Some("ListenerSet") => "listenerset/",
                        _ => "",
                    },
                    p.parent_ref.name,
                    p.parent_ref
                        .section_name
                        .as_ref()
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default()
                ),
                cond(&p.conditions, "Accepted"),
                cond(&p.conditions, "ResolvedRefs"),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "KIND",
            "NAMESPACE",
            "NAME",
            "PARENT",
            "ACCEPTED",
            "RESOLVED-REFS",
        ],
        &rows,
    ));
    if !g.backend_tls_policies.is_empty() {
        out.push_str("\nBACKEND TLS POLICIES (status per ancestor Gateway)\n");
        let mut rows = Vec::new();
        for p in &g.backend_tls_policies {
            let targets: Vec<String> = p
                .spec
                .target_refs
                .iter()
                .map(|t| {
                    format!(
                        "{}{}",
                        t.name,
                        t.section_name
                            .as_ref()
                            .map(|s| format!(":{s}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let row = |ancestor: String, accepted: String, resolved: String| {
                vec![
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                    targets.join(","),
                    p.spec.validation.hostname.clone(),
                    ancestor,
                    accepted,
                    resolved,
                ]
            };
            let ancestors = p.status.iter().flat_map(|s| &s.ancestors);
            let mut any = false;
            for a in ancestors {
                any = true;
                rows.push(row(
                    a.ancestor_ref.name.clone(),
                    cond(&a.conditions, "Accepted"),
                    cond(&a.conditions, "ResolvedRefs"),
                ));
            }
            if !any {
                // No Gateway of podnet's sends to its targets.
                rows.push(row("<none>".into(), "-".into(), "-".into()));
            }
        }
        out.push_str(&table(
            &[
                "NAMESPACE",
                "NAME",
                "TARGETS",
                "HOSTNAME",
                "ANCESTOR",
                "ACCEPTED",
                "RESOLVED-REFS",
            ],
            &rows,
        ));
    }
    for (gw, config) in &g.configs {
        out.push_str(&format!("\nGATEWAY {gw} ROUTES (in precedence order)\n"));
        let mut rows = Vec::new();
        for (port, p) in &config.ports {
            for l in &p.listeners {
                for r in l.table.routes() {
                    rows.push(vec![
                        format!("{port}/{}", if p.tls { "HTTPS" } else { "HTTP" }),
                        l.name.rsplit('/').next().unwrap_or_default().to_string(),
                        podnet_routes::edge::route_line(r),
                        r.source.object.to_string(),
                    ]);
                }
            }
            for l in &p.streams {
                for r in &l.routes {
                    rows.push(vec![
                        format!("{port}/TLS"),
                        l.name.rsplit('/').next().unwrap_or_default().to_string(),
                        podnet_routes::edge::stream_line(r, l.terminate),
                        r.route.clone(),
                    ]);
                }
            }
        }
        out.push_str(&table(&["PORT", "LISTENER", "ROUTE", "FROM"], &rows));
        for (port, p) in &config.ports {
            if let Some(v) = &p.client_validation {
                out.push_str(&format!(
                    "port {port}: client certificates {}\n",
                    v.describe()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips_through_our_parser() {
        let v = serde_json::json!({
            "a": "1", "b": 1, "c": "true", "d": true, "e": null, "f": ["x", "", "on"],
            "g": {"k.io/name": "v: w", "n": -3}, "h": "10.96.0.1", "i": "0x10", "j": 1.5
        });
        let text = to_yaml(&v);
        let back = podnet_model::parse_documents("t", &text).unwrap();
        assert_eq!(back[0].value, v, "{text}");
    }

    #[test]
    fn columns_are_aligned() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A     BB\nxxx   y\n");
    }
}
