//! Typed Kubernetes objects decoded from [`SourceDoc`]s.
//!
//! Decoding is strict like `kubectl apply` (whose default is `--validate=strict`): a wrong type
//! or an unknown field is an error that names the line and the field path. A kind podnet does not
//! use is skipped with a warning.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::ClusterConfigDoc;
use crate::diag::{Diagnostic, Location, ObjectRef};
use crate::kind::Kind;
use crate::source::{join_index, join_key, PathIndex, SourceDoc};

/// An object with the place it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub obj: T,
    pub index: Arc<PathIndex>,
    pub start: Location,
}

impl<T> Sourced<T> {
    /// The location of a field path inside this object.
    pub fn locate(&self, path: &str) -> Location {
        self.index.locate(path)
    }
}

/// Every kind podnet reads.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Sourced<Namespace>),
    Node(Sourced<Node>),
    Pod(Sourced<Pod>),
    Deployment(Sourced<Deployment>),
    ReplicaSet(Sourced<ReplicaSet>),
    StatefulSet(Sourced<StatefulSet>),
    DaemonSet(Sourced<DaemonSet>),
    Service(Sourced<Service>),
    EndpointSlice(Sourced<EndpointSlice>),
    Endpoints(Sourced<Endpoints>),
    NetworkPolicy(Sourced<NetworkPolicy>),
    Ingress(Sourced<Ingress>),
    IngressClass(Sourced<IngressClass>),
    Secret(Sourced<Secret>),
    ConfigMap(Sourced<ConfigMap>),
    GatewayClass(Sourced<crate::gateway_api::GatewayClass>),
    Gateway(Sourced<crate::gateway_api::Gateway>),
    HTTPRoute(Sourced<crate::gateway_api::HTTPRoute>),
    GRPCRoute(Sourced<crate::gateway_api::GRPCRoute>),
    TLSRoute(Sourced<crate::gateway_api::TLSRoute>),
    BackendTLSPolicy(Sourced<crate::gateway_api::BackendTLSPolicy>),
    ReferenceGrant(Sourced<crate::gateway_api::ReferenceGrant>),
    ListenerSet(Sourced<crate::gateway_api::ListenerSet>),
    ClusterNetworkPolicy(Sourced<crate::policy_api::ClusterNetworkPolicy>),
    ClusterConfig(Sourced<ClusterConfigDoc>),
}

/// Whether objects of `kind` live in a namespace.
pub fn is_namespaced(kind: &str) -> bool {
    Kind::parse(kind).is_none_or(Kind::namespaced)
}

/// Decodes one document. `Ok(None)` is a kind podnet does not use (a warning is pushed).
pub fn decode(doc: &SourceDoc, diags: &mut Vec<Diagnostic>) -> Result<Option<Object>, Diagnostic> {
    let index = doc.index.clone();
    let at = |p: &str| index.locate(p);
    let Some(map) = doc.value.as_object() else {
        return Err(Diagnostic::error(
            at(""),
            "a manifest document must be a mapping (an object)".into(),
        ));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        Some(_) => {
            return Err(
                Diagnostic::error(at("kind"), "kind must be a non-empty string".into())
                    .with_field("kind"),
            )
        }
        None => {
            return Err(
                Diagnostic::error(at(""), "Object 'Kind' is missing".into()).with_field("kind")
            )
        }
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.as_str(),
        _ => {
            return Err(Diagnostic::error(
                at("apiVersion"),
                format!("Object 'apiVersion' is missing in a {kind}"),
            )
            .with_field("apiVersion"))
        }
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let oref = ObjectRef::new(
        kind,
        namespace
            .as_deref()
            .or(is_namespaced(kind).then_some("default")),
        &name,
    );

    let Some(known) = Kind::parse(kind) else {
        diags.push(
            Diagnostic::warning(
                Some(doc.start.clone()),
                format!("kind {kind} ({api_version}) is not used by podnet; skipped"),
            )
            .with_object(oref),
        );
        return Ok(None);
    };
    let want_version = known.api_version();
    // The Gateway API's standard channel serves v1beta1 beside v1 (the same schema).
    let also_served = known.is_gateway_api() && api_version == "gateway.networking.k8s.io/v1beta1";
    if api_version != want_version && !also_served {
        return Err(Diagnostic::error(
            at("apiVersion"),
            format!("no matches for kind {kind:?} in version {api_version:?}: podnet reads {kind} as {want_version:?}"),
        )
        .with_object(oref)
        .with_field("apiVersion"));
    }

    let v = &doc.value;
    macro_rules! s {
        ($e:expr) => {
            Sourced {
                obj: $e,
                index: index.clone(),
                start: doc.start.clone(),
            }
        };
    }
    let decoded = match known {
        Kind::Namespace => Object::Namespace(s!(typed(v, &index, &oref)?)),
        Kind::Node => Object::Node(s!(typed(v, &index, &oref)?)),
        Kind::Pod => Object::Pod(s!(typed(v, &index, &oref)?)),
        Kind::Service => Object::Service(s!(typed(v, &index, &oref)?)),
        Kind::Endpoints => Object::Endpoints(s!(typed(v, &index, &oref)?)),
        Kind::Secret => Object::Secret(s!(typed(v, &index, &oref)?)),
        Kind::ConfigMap => Object::ConfigMap(s!(typed(v, &index, &oref)?)),
        Kind::Deployment => Object::Deployment(s!(typed(v, &index, &oref)?)),
        Kind::ReplicaSet => Object::ReplicaSet(s!(typed(v, &index, &oref)?)),
        Kind::StatefulSet => Object::StatefulSet(s!(typed(v, &index, &oref)?)),
        Kind::DaemonSet => Object::DaemonSet(s!(typed(v, &index, &oref)?)),
        Kind::EndpointSlice => Object::EndpointSlice(s!(typed(v, &index, &oref)?)),
        Kind::NetworkPolicy => Object::NetworkPolicy(s!(typed(v, &index, &oref)?)),
        Kind::Ingress => Object::Ingress(s!(typed(v, &index, &oref)?)),
        Kind::IngressClass => Object::IngressClass(s!(typed(v, &index, &oref)?)),
        Kind::GatewayClass => Object::GatewayClass(s!(typed(v, &index, &oref)?)),
        Kind::Gateway => Object::Gateway(s!(typed(v, &index, &oref)?)),
        Kind::HTTPRoute => Object::HTTPRoute(s!(typed(v, &index, &oref)?)),
        Kind::GRPCRoute => Object::GRPCRoute(s!(typed(v, &index, &oref)?)),
        Kind::TLSRoute => Object::TLSRoute(s!(typed(v, &index, &oref)?)),
        Kind::BackendTLSPolicy => Object::BackendTLSPolicy(s!(typed(v, &index, &oref)?)),
        Kind::ListenerSet => Object::ListenerSet(s!(typed(v, &index, &oref)?)),
        Kind::ReferenceGrant => Object::ReferenceGrant(s!(typed(v, &index, &oref)?)),
        Kind::ClusterNetworkPolicy => Object::ClusterNetworkPolicy(s!(typed(v, &index, &oref)?)),
        Kind::ClusterConfig => Object::ClusterConfig(s!(cluster_config(v, &index, &oref)?)),
    };
    Ok(Some(decoded))
}

/// A `ClusterConfig` document: its settings decoded on their own, so that an error in one names
/// its line and field (the document type flattens them in, and serde's flatten loses the path
/// of an error: `routing: sideways` was reported at 1:1).
fn cluster_config(
    v: &Value,
    index: &PathIndex,
    oref: &ObjectRef,
) -> Result<ClusterConfigDoc, Diagnostic> {
    let mut settings = v.clone();
    let mut head = serde_json::Map::new();
    if let Value::Object(m) = &mut settings {
        for k in ["apiVersion", "kind", "metadata"] {
            if let Some(x) = m.remove(k) {
                head.insert(k.to_string(), x);
            }
        }
    }
    let settings: crate::config::ConfigOverrides = typed(&settings, index, oref)?;
    let head: ClusterConfigDoc = typed(&Value::Object(head), index, oref)?;
    Ok(ClusterConfigDoc { settings, ..head })
}

/// Decodes a value into `T`, strictly: wrong types and unknown fields are errors at their line.
fn typed<T: DeserializeOwned + Serialize>(
    v: &Value,
    index: &PathIndex,
    oref: &ObjectRef,
) -> Result<T, Diagnostic> {
    let obj: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = path_string(e.path());
        let msg = e.inner().to_string();
        Diagnostic::error(index.locate(&path), msg)
            .with_object(oref.clone())
            .with_field(path)
    })?;
    let back = serde_json::to_value(&obj).expect("k8s objects serialize");
    let mut unknown = Vec::new();
    unknown_fields(v, &back, "", &mut unknown);
    if let Some(path) = unknown.into_iter().next() {
        let field = path
            .rsplit(['.', '['])
            .next()
            .unwrap_or(&path)
            .trim_end_matches(']')
            .to_string();
        return Err(Diagnostic::error(
            index.locate(&path),
            format!("unknown field {field:?}: it is not part of the {} schema (check the spelling and indentation)", oref.kind),
        )
        .with_object(oref.clone())
        .with_field(path));
    }
    Ok(obj)
}

fn path_string(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in p.iter() {
        s = match seg {
            Segment::Seq { index } => join_index(&s, *index),
            Segment::Map { key } => join_key(&s, key),
            Segment::Enum { variant } => join_key(&s, variant),
            Segment::Unknown => s,
        };
    }
    s
}

/// Paths present (and non-null) in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = join_key(path, k);
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(x, y, &join_index(path, i), out);
            }
        }
        _ => {}
    }
}

/// Calls `$m!` with every variant of [`Object`] that has Kubernetes metadata (all but
/// `ClusterConfig`): the one list of them.
macro_rules! with_api_kinds {
    ($m:ident) => {
        $m!(
            Namespace,
            Node,
            Pod,
            Deployment,
            ReplicaSet,
            StatefulSet,
            DaemonSet,
            Service,
            EndpointSlice,
            Endpoints,
            NetworkPolicy,
            Ingress,
            IngressClass,
            Secret,
            ConfigMap,
            GatewayClass,
            Gateway,
            HTTPRoute,
            GRPCRoute,
            TLSRoute,
            BackendTLSPolicy,
            ReferenceGrant,
            ListenerSet,
            ClusterNetworkPolicy
        )
    };
}

/// The metadata of any decoded object, to change (the fields the API server sets, cleared).
pub fn meta_mut(o: &mut Object) -> Option<&mut ObjectMeta> {
    macro_rules! m {
        ($($v:ident),*) => {
            match o {
                $(Object::$v(x) => Some(&mut x.obj.metadata),)*
                Object::ClusterConfig(_) => None,
            }
        };
    }
    with_api_kinds!(m)
}

/// A kind's own type: the [`Object`] it makes. The API's watches hand these over typed (no
/// text to parse, no lines to point at).
pub trait Typed: DeserializeOwned + Serialize + Sized {
    const KIND: Kind;
    fn into_object(s: Sourced<Self>) -> Object;
}

macro_rules! typed_kinds {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl Typed for $t {
            const KIND: Kind = Kind::$v;
            fn into_object(s: Sourced<Self>) -> Object {
                Object::$v(s)
            }
        })*
    };
}

typed_kinds!(
    Namespace => Namespace,
    Node => Node,
    Pod => Pod,
    Deployment => Deployment,
    ReplicaSet => ReplicaSet,
    StatefulSet => StatefulSet,
    DaemonSet => DaemonSet,
    Service => Service,
    EndpointSlice => EndpointSlice,
    Endpoints => Endpoints,
    NetworkPolicy => NetworkPolicy,
    Ingress => Ingress,
    IngressClass => IngressClass,
    Secret => Secret,
    ConfigMap => ConfigMap,
    crate::gateway_api::GatewayClass => GatewayClass,
    crate::gateway_api::Gateway => Gateway,
    crate::gateway_api::HTTPRoute => HTTPRoute,
    crate::gateway_api::GRPCRoute => GRPCRoute,
    crate::gateway_api::TLSRoute => TLSRoute,
    crate::gateway_api::BackendTLSPolicy => BackendTLSPolicy,
    crate::gateway_api::ReferenceGrant => ReferenceGrant,
    crate::gateway_api::ListenerSet => ListenerSet,
    crate::policy_api::ClusterNetworkPolicy => ClusterNetworkPolicy,
);

/// An object the Kubernetes API served, typed already; `origin` names it in diagnostics
/// (`api:Pod/default/web`: an API object has no lines).
pub fn from_api<T: Typed>(obj: T, origin: &str) -> Object {
    let index = PathIndex::empty(origin);
    let start = index.locate("");
    T::into_object(Sourced {
        obj,
        index: Arc::new(index),
        start,
    })
}

/// An object the Kubernetes API served as JSON (a custom resource), decoded into its type as
/// strictly as a manifest (a wrong type or an unknown field is an error naming the field).
pub fn from_api_json<T: Typed>(v: &Value, origin: &str) -> Result<Object, Diagnostic> {
    let index = PathIndex::empty(origin);
    let meta = &v["metadata"];
    let oref = ObjectRef::new(
        T::KIND.as_str(),
        meta["namespace"].as_str(),
        meta["name"].as_str().unwrap_or(""),
    );
    let obj: T = typed(v, &index, &oref)?;
    Ok(from_api(obj, origin))
}

/// The metadata of any decoded object, for naming and namespacing.
pub fn meta_of(o: &Object) -> Option<&ObjectMeta> {
    macro_rules! m {
        ($($v:ident),*) => {
            match o {
                $(Object::$v(x) => Some(&x.obj.metadata),)*
                Object::ClusterConfig(_) => None,
            }
        };
    }
    with_api_kinds!(m)
}

/// The object's reference (kind, namespace, name or generateName).
pub fn oref_of(o: &Object) -> ObjectRef {
    let (kind, meta) = match o {
        Object::ClusterConfig(_) => return ObjectRef::new("ClusterConfig", None, ""),
        _ => (
            kind_of(o).as_str(),
            meta_of(o).expect("all but ClusterConfig have metadata"),
        ),
    };
    let name = meta
        .name
        .clone()
        .or_else(|| meta.generate_name.clone())
        .unwrap_or_default();
    ObjectRef::new(kind, meta.namespace.as_deref(), &name)
}

/// The object's kind, as manifests spell it.
pub fn kind_of(o: &Object) -> Kind {
    macro_rules! k {
        ($($v:ident),*) => {
            match o {
                $(Object::$v(_) => Kind::$v,)*
                Object::ClusterConfig(_) => Kind::ClusterConfig,
            }
        };
    }
    with_api_kinds!(k)
}

/// Where the object starts in its file.
pub fn start_of(o: &Object) -> Location {
    macro_rules! s {
        ($($v:ident),*) => {
            match o {
                $(Object::$v(x) => x.start.clone(),)*
                Object::ClusterConfig(x) => x.start.clone(),
            }
        };
    }
    with_api_kinds!(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_documents;

    fn one(text: &str) -> (Result<Option<Object>, Diagnostic>, Vec<Diagnostic>) {
        let docs = parse_documents("t.yaml", text).unwrap();
        let mut w = Vec::new();
        let r = decode(&docs[0], &mut w);
        (r, w)
    }

    #[test]
    fn wrong_type_names_line_and_path() {
        let (r, _) = one("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: eighty\n");
        let e = r.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.ports[0].port"));
        assert_eq!(e.location.as_ref().unwrap().line, 7);
        assert_eq!(e.object.as_ref().unwrap().to_string(), "Service/default/s");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let (r, _) = one("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    targetport: 8080\n");
        let e = r.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("spec.ports[0].targetport"));
        assert_eq!(e.location.as_ref().unwrap().line, 8);
        assert!(
            e.message.contains("unknown field \"targetport\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_cluster_config_error_names_its_line_and_field() {
        let text =
            "apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\nnodes: 2\nrouting: sideways\n";
        let e = one(text).0.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("routing"));
        assert_eq!(e.location.as_ref().unwrap().line, 4);
        assert!(e.message.contains("auto, native or vxlan"), "{}", e.message);
        let e = one("apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\n\nipFamily: both\n")
            .0
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ipFamily"));
        assert_eq!(e.location.as_ref().unwrap().line, 4);
        let e = one(
            "apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\nnodes: 2\nrouteing: native\n",
        )
        .0
        .unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 4, "{e}");
        assert!(e.message.contains("routeing"), "{}", e.message);
        // A good one decodes whole.
        let Some(Object::ClusterConfig(c)) =
            one("apiVersion: podnet.dev/v1alpha1\nkind: ClusterConfig\nmetadata:\n  name: lab\nrouting: vxlan\n")
                .0
                .unwrap()
        else {
            panic!("not a ClusterConfig")
        };
        assert_eq!(c.obj.settings.routing, Some(crate::config::Routing::Vxlan));
        assert_eq!(c.obj.kind.as_deref(), Some("ClusterConfig"));
        assert!(c.obj.metadata.is_some());
    }

    #[test]
    fn unused_kind_is_a_warning() {
        let (r, w) = one("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: c\n");
        assert!(r.unwrap().is_none());
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("PersistentVolumeClaim"));
        assert_eq!(w[0].location.as_ref().unwrap().line, 1);
    }

    #[test]
    fn wrong_api_version() {
        let (r, _) = one("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: i\n");
        let e = r.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        assert!(e.message.contains("networking.k8s.io/v1"));
    }

    #[test]
    fn missing_kind() {
        let (r, _) = one("apiVersion: v1\nmetadata:\n  name: c\n");
        assert!(r.unwrap_err().message.contains("'Kind' is missing"));
    }
}
