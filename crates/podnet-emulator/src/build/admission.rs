//! What the API server does with each object before anything is computed from it: decoding,
//! defaulting (a namespaced object without a namespace goes to `default`) and validation,
//! duplicates included.

use super::*;

/// Decodes documents into objects; what cannot be decoded becomes a diagnostic.
pub(super) fn decode_into(
    docs: &[SourceDoc],
    objects: &mut Vec<Object>,
    diags: &mut Vec<Diagnostic>,
) {
    for d in docs {
        match decode(d, diags) {
            Ok(Some(o)) => objects.push(o),
            Ok(None) => {}
            Err(e) => diags.push(e),
        }
    }
}

/// Whether `o` is the object `<ns>/<name>`.
pub(super) fn is_named(o: &Object, ns: &str, name: &str) -> bool {
    meta_of(o)
        .is_some_and(|m| m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name))
}

/// Namespaced objects without a namespace go to `default`.
pub(super) fn normalize(objects: &mut [Object]) {
    for o in objects.iter_mut() {
        let kind = kind_of(o);
        let Some(meta) = podnet_model::objects::meta_mut(o) else {
            continue;
        };
        if kind.namespaced() {
            if meta.namespace.as_deref().is_none_or(str::is_empty) {
                meta.namespace = Some("default".to_string());
            }
        } else {
            meta.namespace = None;
        }
    }
}

/// Per-object validation and duplicate detection.
pub(super) fn check_all(objects: &[Object], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<ObjectRef, Location> = HashMap::new();
    for o in objects {
        let oref = oref_of(o);
        podnet_model::checks::check_object(o, oref.clone(), diags);
        if matches!(o, Object::ClusterConfig(_)) || oref.name.is_empty() {
            continue;
        }
        if matches!(o, Object::Pod(p) if p.obj.metadata.name.as_deref().is_none_or(str::is_empty)) {
            continue; // generateName
        }
        let here = start_of(o);
        if let Some(first) = seen.get(&oref) {
            diags.push(
                Diagnostic::error(
                    here,
                    format!("AlreadyExists: {oref} is defined twice; the first is at {first}"),
                )
                .with_object(oref.clone()),
            );
        } else {
            seen.insert(oref, here);
        }
    }
}
