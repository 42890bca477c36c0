//! The OpenAPI v3 documents of what the lab serves, as far as clients read them: kubectl's
//! `apply`, `create` and `replace` first download `/openapi/v3` to learn whether the server
//! validates fields itself (the `fieldValidation` parameter of each kind's PATCH); without
//! these documents they stop at "failed to download openapi" and never reach the API's own
//! answer (this lab is read-only: change it with `podnet lab apply`).
//!
//! Each group-version's document has a path per collection and per object, with each verb's
//! operation tagged with its kind (`x-kubernetes-group-version-kind`) and the write
//! operations' query parameters (`dryRun`, `fieldManager`, `fieldValidation`), as the API
//! server's do. Schemas are left open (`type: object`): the server answers writes itself.

use serde_json::{json, Map, Value};

use crate::resources::{Resource, RESOURCES};

/// The document's key of a group-version: `api/v1` or `apis/<group>/<version>`.
fn gv_key(r: &Resource) -> String {
    r.base().trim_start_matches('/').to_string()
}

/// A stable hash of the documents (clients cache by it).
const HASH: &str = "podnet-1";

/// `/openapi/v3`: where each group-version's document is.
pub fn discovery() -> Value {
    let mut paths = Map::new();
    for r in RESOURCES {
        let key = gv_key(r);
        paths.insert(
            key.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={HASH}") }),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<api/v1 | apis/g/v>`: the document of one group-version, if it is served.
pub fn document(gv: &str) -> Option<Value> {
    let kinds: Vec<&Resource> = RESOURCES
        .iter()
        .copied()
        .filter(|r| gv_key(r) == gv)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in kinds {
        let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
        let body = format!("#/components/schemas/{}", schema_name(r));
        let op = |action: &str, writes: bool| -> Value {
            let mut params = Vec::new();
            if writes {
                for name in ["dryRun", "fieldManager", "fieldValidation"] {
                    params.push(json!({
                        "name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}
                    }));
                }
            }
            let mut o = json!({
                "operationId": format!("{action}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK",
                    "content": {"application/json": {"schema": {"$ref": body}}}}},
            });
            if writes {
                o["requestBody"] = json!({"content": {"*/*": {"schema": {"$ref": body}}}});
            }
            o
        };
        let (collection, object) = if r.namespaced {
            (
                format!("{}/namespaces/{{namespace}}/{}", r.base(), r.plural),
                format!(
                    "{}/namespaces/{{namespace}}/{}/{{name}}",
                    r.base(),
                    r.plural
                ),
            )
        } else {
            (
                format!("{}/{}", r.base(), r.plural),
                format!("{}/{}/{{name}}", r.base(), r.plural),
            )
        };
        paths.insert(
            collection,
            json!({ "get": op("list", false), "post": op("post", true) }),
        );
        paths.insert(
            object,
            json!({
                "get": op("get", false),
                "put": op("put", true),
                "patch": op("patch", true),
                "delete": op("delete", false),
            }),
        );
        schemas.insert(
            schema_name(r),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (podnet's lab)", "version": "v1.34.0-podnet"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The schema's name as the API server's: `io.k8s.api.core.v1.Service`.
fn schema_name(r: &Resource) -> String {
    let group = match r.group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{group}.{}.{}", r.version, r.kind)
}
