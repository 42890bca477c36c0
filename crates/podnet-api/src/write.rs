//! The writes the API takes: a controller's status, through the `status` subresource of the
//! kinds whose status controllers write ([`Kind::status_by_controllers`]: Ingress,
//! GatewayClass, Gateway, HTTPRoute), as a cluster's API server takes them:
//! - `PATCH` with a JSON merge patch (RFC 7386, `application/merge-patch+json`, what kube-rs'
//!   `Patch::Merge` and `kubectl patch --type=merge --subresource=status` send; for the
//!   built-in Ingress also `application/strategic-merge-patch+json`, which for its status
//!   merges the same way);
//! - `PUT` of the whole object (its `metadata.resourceVersion`, when given, must be the
//!   current one: 409 Conflict otherwise, as optimistic concurrency asks).
//!
//! Through `status`, only the status changes: what else a body says is ignored, as the API
//! server ignores it. Every other write is refused (405): the lab changes through
//! `podnet lab apply`.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use podnet_model::Kind;

use crate::resources::Resource;
use crate::server::Api;
use crate::store::{Key, StatusError};

/// The largest body taken (the API server's own limit is 3 MiB).
pub const MAX_BODY: usize = 3 << 20;

/// A refusal, as the API's `Status`.
pub struct Refused {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

fn refused(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        reason,
        message: message.into(),
    }
}

/// The status a write gives the object now served as `current`.
fn new_status(method: &Method, current: &Value, body: &Value) -> Result<Value, Refused> {
    if !body.is_object() {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
        ));
    }
    if *method == Method::PATCH {
        let mut doc = current.clone();
        json_patch::merge(&mut doc, body);
        return Ok(doc.get("status").cloned().unwrap_or(Value::Null));
    }
    let have = current["metadata"]["resourceVersion"].as_str();
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != have => {
            return Err(refused(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version (resourceVersion {} now, not {rv})",
                    have.unwrap_or("")
                ),
            ))
        }
        _ => {}
    }
    for field in ["kind", "apiVersion"] {
        if !body[field].is_null() && body[field] != current[field] {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "{field} {} is not the object's {}",
                    body[field], current[field]
                ),
            ));
        }
    }
    Ok(body.get("status").cloned().unwrap_or(Value::Null))
}

/// Whether the body's media type is one this write takes.
fn media_type_ok(method: &Method, r: &Resource, content_type: &str) -> bool {
    let mt = content_type.split(';').next().unwrap_or("").trim();
    if *method == Method::PUT {
        return mt == "application/json" || mt.is_empty();
    }
    mt == "application/merge-patch+json"
        || (mt == "application/strategic-merge-patch+json"
            && r.group != podnet_model::kind::GATEWAY_GROUP)
}

/// Answers a `PATCH` or `PUT` of `.../name/status`.
pub async fn status(
    api: &Api,
    req: Request<Incoming>,
    r: &'static Resource,
    key: Key,
) -> Result<Value, Refused> {
    let method = req.method().clone();
    if !r.kind.status_by_controllers() {
        return Err(refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "this lab's API takes only the status that controllers write (of {}), not {}'s: change the lab with `podnet lab apply`",
                status_kinds(),
                r.plural
            ),
        ));
    }
    let content_type = crate::server::header_text(req.headers(), hyper::header::CONTENT_TYPE);
    if !media_type_ok(&method, r, &content_type) {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of a {method} of {}/status may not be {content_type:?}",
                r.plural
            ),
        ));
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("the request body is larger than {MAX_BODY} bytes"),
            ))
        }
        Err(e) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("reading the body: {e}"),
            ))
        }
    };
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let name = key.name.clone();
    api.write_status(&key, |current| new_status(&method, current, &body))
        .map_err(|e| match e {
            Written::Refused(r) => r,
            Written::Store(StatusError::NotFound) => refused(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{name}\" not found", r.plural),
            ),
            Written::Store(StatusError::NotWritable) => refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{}'s status is not written through this API", r.plural),
            ),
        })
}

/// Why [`Api::write_status`] wrote nothing.
pub enum Written {
    Refused(Refused),
    Store(StatusError),
}

/// The kinds whose status is written, for messages: `ingresses, gateways, ...`.
fn status_kinds() -> String {
    Kind::ALL
        .iter()
        .filter(|k| k.status_by_controllers())
        .map(|k| k.info().plural)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Discovery's entry for a kind's `status` subresource, when controllers write it.
pub fn discovery(r: &Resource) -> Option<Value> {
    r.kind.status_by_controllers().then(|| {
        json!({
            "name": format!("{}/status", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": r.name,
            "verbs": ["get", "patch", "update"],
        })
    })
}
