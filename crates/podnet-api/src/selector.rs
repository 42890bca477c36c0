//! Label and field selectors, as the API server reads them from `labelSelector` and
//! `fieldSelector` (k8s.io/apimachinery `labels.Parse` and `fields.ParseSelector`).

use podnet_model::Kind;
use serde_json::Value;

/// Why a selector is refused (400, with the API server's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("expected a list in parentheses, found {0:?}")]
    NotAList(String),
    #[error("invalid label key {0:?}")]
    LabelKey(String),
    #[error("invalid selector: {0:?}; expected field=value")]
    NotATerm(String),
    #[error("field label not supported: {0}")]
    UnknownField(String),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Requirements that must all hold; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelReq>);

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn values(list: &str) -> Result<Vec<String>, SelectorError> {
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| SelectorError::NotAList(list.to_string()))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn key(k: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    let valid = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(k.to_string())
    } else {
        Err(SelectorError::LabelKey(k.to_string()))
    }
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top(s) {
            let part = part.trim();
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(key(k)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEquals(key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Equals(key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Equals(key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                LabelReq::NotIn(key(k)?, values(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                LabelReq::In(key(k)?, values(v)?)
            } else {
                LabelReq::Exists(key(part)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object (its JSON) carries matching labels.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

/// A field selector: `field=value` or `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

/// The fields a kind can be selected by, besides `metadata.name` and `metadata.namespace`
/// (as the API server's field label conversion functions allow them).
fn kind_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Kind::Node => &["spec.unschedulable"],
        Kind::Secret => &["type"],
        Kind::Namespace => &["status.phase"],
        Kind::Service => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a selector for objects of `kind`; an unknown field is refused as the API
    /// server refuses it.
    pub fn parse(s: &str, kind: Kind) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(terms));
        }
        for part in s.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::NotATerm(part.to_string()));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace")
                || kind_fields(kind).contains(&field);
            if !known {
                return Err(SelectorError::UnknownField(field.to_string()));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let mut v = obj;
            for step in field.split('.') {
                v = &v[step];
            }
            let got = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                // An absent field reads as empty, as the API server's field sets have it.
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_as_kubectl_writes_them() {
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let yes = [
            "",
            "app=web",
            "app==web",
            "app",
            "!missing",
            "tier!=back",
            "app in (web, api)",
            "app notin (db)",
            "missing notin (x)",
            "app=web,tier in (front)",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
        let no = [
            "app=api",
            "!app",
            "missing",
            "app in (db)",
            "app notin (web)",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&pod), "{s}");
        }
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors_and_the_fields_each_kind_allows() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        let sel = FieldSelector::parse("spec.nodeName=node-1,metadata.name!=q", Kind::Pod).unwrap();
        assert!(sel.matches(&pod));
        assert!(!FieldSelector::parse("status.phase=Pending", Kind::Pod)
            .unwrap()
            .matches(&pod));
        let err = FieldSelector::parse("spec.nodeName=x", Kind::Service).unwrap_err();
        assert_eq!(err, SelectorError::UnknownField("spec.nodeName".into()));
        assert_eq!(err.to_string(), "field label not supported: spec.nodeName");
    }
}
