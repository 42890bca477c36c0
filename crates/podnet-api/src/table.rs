//! Server-side printing: what `kubectl get` asks for (`Accept: application/json;as=Table;
//! v=v1;g=meta.k8s.io`) and prints as it comes, with the columns the API server gives each
//! kind (priority 1 columns are the ones `-o wide` adds).

use podnet_model::Kind;
use serde_json::{json, Value};

use crate::resources::Resource;

/// Whether the client asked for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// (name, type, priority, description) of a kind's columns.
fn columns(kind: Kind) -> Vec<(&'static str, &'static str, u8)> {
    let mut c = vec![("Name", "string", 0)];
    c.extend(match kind {
        Kind::Pod => vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        Kind::Service => vec![
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        Kind::Node => vec![
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("Pod-CIDRs", "string", 1),
        ],
        Kind::Namespace => vec![("Status", "string", 0), ("Age", "string", 0)],
        Kind::EndpointSlice => vec![
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        Kind::NetworkPolicy => vec![("Pod-Selector", "string", 0), ("Age", "string", 0)],
        Kind::Secret => vec![
            ("Type", "string", 0),
            ("Data", "string", 0),
            ("Age", "string", 0),
        ],
        Kind::Ingress => vec![
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        Kind::IngressClass => vec![("Controller", "string", 0), ("Age", "string", 0)],
        // The Gateway API CRDs' additionalPrinterColumns.
        Kind::GatewayClass => vec![
            ("Controller", "string", 0),
            ("Accepted", "string", 0),
            ("Age", "string", 0),
            ("Description", "string", 1),
        ],
        Kind::Gateway => vec![
            ("Class", "string", 0),
            ("Address", "string", 0),
            ("Programmed", "string", 0),
            ("Age", "string", 0),
        ],
        Kind::HTTPRoute | Kind::GRPCRoute | Kind::TLSRoute => {
            vec![("Hostnames", "string", 0), ("Age", "string", 0)]
        }
        Kind::ClusterNetworkPolicy => vec![
            ("Tier", "string", 0),
            ("Priority", "string", 0),
            ("Age", "string", 0),
        ],
        Kind::ListenerSet => vec![
            ("Parent", "string", 0),
            ("Accepted", "string", 0),
            ("Programmed", "string", 0),
            ("Age", "string", 0),
        ],
        _ => vec![("Age", "string", 0)],
    });
    c
}

/// kubectl's short durations: `45s`, `3m20s`, `17m`, `5h3m`, `20h`, `3d4h`, `12d`.
fn age(o: &Value) -> String {
    let Some(created) = o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    let s = (jiff::Timestamp::now().as_second() - created.as_second()).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn join(v: &Value, f: impl Fn(&Value) -> Option<String>) -> String {
    let parts: Vec<String> = v
        .as_array()
        .map(|a| a.iter().filter_map(&f).collect())
        .unwrap_or_default();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn selector(v: &Value) -> String {
    let Some(m) = v.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    m.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The status of the object's condition of type `t` ("" when it has none), as the CRDs'
/// JSONPath columns print it.
fn condition(o: &Value, t: &str) -> String {
    o["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn cells(kind: Kind, o: &Value) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let s = |v: &Value| v.as_str().unwrap_or("<none>").to_string();
    let rest: Vec<String> = match kind {
        Kind::Pod => {
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = o["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            vec![
                format!("{}/{total}", if ready { total } else { 0 }),
                s(&o["status"]["phase"]),
                "0".into(),
                age(o),
                s(&o["status"]["podIP"]),
                s(&o["spec"]["nodeName"]),
                "<none>".into(),
                "<none>".into(),
            ]
        }
        Kind::Service => service_cells(o),
        Kind::Node => vec![
            "Ready".into(),
            "<none>".into(),
            age(o),
            "v1.34.0-podnet".into(),
            join(&o["status"]["addresses"], |a| {
                (a["type"] == "InternalIP").then(|| a["address"].as_str().unwrap_or("").into())
            }),
            join(&o["spec"]["podCIDRs"], |c| c.as_str().map(String::from)),
        ],
        Kind::Namespace => vec![s(&o["status"]["phase"]), age(o)],
        Kind::EndpointSlice => vec![
            s(&o["addressType"]),
            join(&o["ports"], |p| p["port"].as_i64().map(|p| p.to_string())),
            join(&o["endpoints"], |e| {
                e["addresses"][0].as_str().map(String::from)
            }),
            age(o),
        ],
        Kind::NetworkPolicy => vec![
            match selector(&o["spec"]["podSelector"]["matchLabels"]).as_str() {
                "<none>" => "<none>".to_string(),
                sel => sel.to_string(),
            },
            age(o),
        ],
        Kind::Secret => vec![
            s(&o["type"]),
            o["data"]
                .as_object()
                .map_or(0, serde_json::Map::len)
                .to_string(),
            age(o),
        ],
        Kind::Ingress => vec![
            s(&o["spec"]["ingressClassName"]),
            join(&o["spec"]["rules"], |r| {
                r["host"].as_str().map(String::from)
            })
            .replace("<none>", "*"),
            join(&o["status"]["loadBalancer"]["ingress"], |i| {
                i["ip"].as_str().map(String::from)
            })
            .replace("<none>", ""),
            if o["spec"]["tls"].as_array().is_some_and(|t| !t.is_empty()) {
                "80, 443".into()
            } else {
                "80".into()
            },
            age(o),
        ],
        Kind::IngressClass => vec![s(&o["spec"]["controller"]), age(o)],
        Kind::GatewayClass => vec![
            s(&o["spec"]["controllerName"]),
            condition(o, "Accepted"),
            age(o),
            s(&o["spec"]["description"]),
        ],
        Kind::Gateway => vec![
            s(&o["spec"]["gatewayClassName"]),
            join(&o["status"]["addresses"], |a| {
                a["value"].as_str().map(String::from)
            })
            .replace("<none>", ""),
            condition(o, "Programmed"),
            age(o),
        ],
        Kind::HTTPRoute | Kind::GRPCRoute | Kind::TLSRoute => vec![
            join(&o["spec"]["hostnames"], |h| h.as_str().map(String::from)).replace("<none>", ""),
            age(o),
        ],
        Kind::ClusterNetworkPolicy => vec![
            s(&o["spec"]["tier"]),
            o["spec"]["priority"]
                .as_i64()
                .map_or("<none>".into(), |p| p.to_string()),
            age(o),
        ],
        Kind::ListenerSet => vec![
            s(&o["spec"]["parentRef"]["name"]),
            condition(o, "Accepted"),
            condition(o, "Programmed"),
            age(o),
        ],
        _ => vec![age(o)],
    };
    std::iter::once(name)
        .chain(rest.into_iter().map(Value::String))
        .collect()
}

/// A Service's row: type, cluster IP, external addresses, ports, age, selector.
fn service_cells(o: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().unwrap_or("<none>").to_string();
    let spec = &o["spec"];
    let external = match spec["type"].as_str() {
        Some("ExternalName") => s(&spec["externalName"]),
        _ => {
            let mut ips: Vec<String> = spec["externalIPs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            ips.extend(
                o["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v["ip"].as_str().map(String::from))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            );
            if ips.is_empty() {
                if spec["type"] == "LoadBalancer" {
                    "<pending>".into()
                } else {
                    "<none>".into()
                }
            } else {
                ips.join(",")
            }
        }
    };
    let ports = join(&spec["ports"], |p| {
        let port = p["port"].as_i64()?;
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        Some(match p["nodePort"].as_i64() {
            Some(np) => format!("{port}:{np}/{proto}"),
            None => format!("{port}/{proto}"),
        })
    });
    vec![
        s(&spec["type"]),
        s(&spec["clusterIP"]),
        external,
        ports,
        age(o),
        selector(&spec["selector"]),
    ]
}

/// The row's object, as `includeObject` asks (the default: the object's metadata).
fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o["metadata"],
        }),
    }
}

/// A Table of `items`.
pub fn table(r: &Resource, items: &[Value], rv: &str, include: &str, with_columns: bool) -> Value {
    let defs: Vec<Value> = columns(r.kind)
        .into_iter()
        .map(|(name, ty, priority)| {
            json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": name, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(r.kind, o), "object": row_object(o, include)}))
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(defs);
    }
    t
}

/// A watch event whose object becomes a one-row Table (bookmarks and errors stay as they
/// are); only the first event carries the column definitions.
pub fn event_table(r: &Resource, mut ev: Value, include: &str, first: bool) -> Value {
    if matches!(ev["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED")) {
        let o = ev["object"].take();
        let rv = o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        ev["object"] = table(r, &[o], &rv, include, first);
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21, item 10: `kubectl get gateway` showed NAME and AGE only; the Gateway API
    /// CRDs print the class, the addresses and whether it is programmed.
    #[test]
    fn gateways_print_the_crds_columns() {
        let r = crate::resources::RESOURCES
            .iter()
            .find(|r| r.kind == Kind::Gateway)
            .unwrap();
        let gw = json!({
            "metadata": {"name": "edge", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"gatewayClassName": "podnet"},
            "status": {
                "addresses": [{"type": "IPAddress", "value": "172.18.255.200"}],
                "conditions": [
                    {"type": "Accepted", "status": "True"},
                    {"type": "Programmed", "status": "True"}
                ]
            }
        });
        let t = table(r, &[gw], "1", "", true);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Class", "Address", "Programmed", "Age"]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "edge");
        assert_eq!(cells[1], "podnet");
        assert_eq!(cells[2], "172.18.255.200");
        assert_eq!(cells[3], "True");
        let route = crate::resources::RESOURCES
            .iter()
            .find(|r| r.kind == Kind::HTTPRoute)
            .unwrap();
        let hr =
            json!({"metadata": {"name": "r"}, "spec": {"hostnames": ["a.example", "b.example"]}});
        let t = table(route, &[hr], "1", "", true);
        assert_eq!(t["rows"][0]["cells"][1], "a.example,b.example");
    }
}
