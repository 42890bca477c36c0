//! Manifest text to JSON values that remember where every field came from.
//!
//! YAML (and JSON, which is YAML 1.2) is parsed with `saphyr` into marked nodes, then turned into
//! `serde_json::Value`s so that the typed Kubernetes objects can be decoded with their own serde
//! implementations. Beside each value we keep a [`PathIndex`]: field path → line and column, so
//! that a decoding or validation error found later can name the exact place in the file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Location};

/// Where a document came from: a file path, or `<stdin>`.
pub type SourceName = Arc<str>;

/// Field path → location, for one document.
#[derive(Debug, Clone, Default)]
pub struct PathIndex {
    file: SourceName,
    entries: HashMap<String, (u32, u32)>,
}

impl PathIndex {
    /// The index of an object that was not read from text: every location is `origin`.
    pub fn empty(origin: &str) -> PathIndex {
        PathIndex {
            file: Arc::from(origin),
            entries: HashMap::new(),
        }
    }

    /// The location of `path` (`spec.ports[1].port`), or of its nearest ancestor that exists.
    pub fn locate(&self, path: &str) -> Location {
        let mut p = path;
        loop {
            if let Some(&(line, column)) = self.entries.get(p) {
                return Location {
                    file: self.file.clone(),
                    line,
                    column,
                };
            }
            if p.is_empty() {
                return Location {
                    file: self.file.clone(),
                    line: 0,
                    column: 0,
                };
            }
            p = parent_path(p);
        }
    }

    /// Whether the document really contains `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// The index of a sub-document (an item of a `kind: List`), with paths relative to it.
    fn sub_index(&self, prefix: &str) -> PathIndex {
        let mut entries = HashMap::new();
        for (k, v) in &self.entries {
            if k == prefix {
                entries.insert(String::new(), *v);
            } else if let Some(rest) = k.strip_prefix(prefix) {
                if let Some(rest) = rest.strip_prefix('.') {
                    entries.insert(rest.to_string(), *v);
                }
            }
        }
        PathIndex {
            file: self.file.clone(),
            entries,
        }
    }
}

/// The parent of a field path: `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
pub fn parent_path(p: &str) -> &str {
    if p.ends_with(']') {
        if let Some(i) = p.rfind('[') {
            return &p[..i];
        }
    }
    match p.rfind('.') {
        Some(i) => &p[..i],
        None => "",
    }
}

/// Joins a field path and a key. Keys that are not plain identifiers are quoted, as kubectl does
/// for label keys: `metadata.labels[app.kubernetes.io/name]`.
pub fn join_key(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    match (base.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{base}.{key}"),
        (_, false) => format!("{base}[{key}]"),
    }
}

/// Joins a field path and a list index: `spec.ports` + 1 → `spec.ports[1]`.
pub fn join_index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// One document of a manifest file, as JSON, with its locations.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    pub value: Value,
    pub index: Arc<PathIndex>,
    /// Where the document (or list item) starts.
    pub start: Location,
}

impl SourceDoc {
    /// A document that was not read from text (an object from the Kubernetes API): every
    /// field it has is known to be there, and every location is `origin` alone.
    pub fn from_value(origin: &str, value: Value) -> SourceDoc {
        fn walk(v: &Value, path: String, out: &mut HashMap<String, (u32, u32)>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        walk(x, join_key(&path, k), out);
                    }
                }
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, join_index(&path, i), out);
                    }
                }
                _ => {}
            }
            out.insert(path, (0, 0));
        }
        let file: SourceName = Arc::from(origin);
        let mut entries = HashMap::new();
        walk(&value, String::new(), &mut entries);
        SourceDoc {
            value,
            index: Arc::new(PathIndex {
                file: file.clone(),
                entries,
            }),
            start: Location {
                file,
                line: 0,
                column: 0,
            },
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// The deepest nesting of mappings and sequences a manifest may have. Real manifests stay far
/// below it (a Deployment's deepest field is about 15 levels down); deeper input is refused
/// before it is loaded, so that hostile input can neither exhaust the stack nor (each field's
/// path being kept for messages) grow memory with the square of its depth.
pub const MAX_DEPTH: usize = 100;
/// The most aliases (`*name`) a text may use: each is a copy of what it names, so a few nested
/// ones can multiply a small text into gigabytes ("billion laughs").
pub const MAX_ALIASES: usize = 1000;

/// Checks the nesting depth and the number of aliases with the streaming parser, which keeps
/// its own stack and so never overflows; syntax errors are left to the loader, which says more.
fn check_shape(file: &SourceName, text: &str) -> Result<(), Diagnostic> {
    use saphyr_parser::{Event, Parser};
    let (mut depth, mut aliases) = (0usize, 0usize);
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else {
            return Ok(());
        };
        let at = || Location {
            file: file.clone(),
            line: span.start.line() as u32,
            column: span.start.col() as u32 + 1,
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Diagnostic::error(
                        at(),
                        format!("nesting deeper than {MAX_DEPTH} levels: manifests are refused beyond that depth"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Alias(_) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(Diagnostic::error(
                        at(),
                        format!("more than {MAX_ALIASES} YAML aliases: refused, each one copies what it names"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses all documents of a YAML or JSON text. `kind: List` documents are expanded into their
/// items. Empty documents are skipped. Nesting beyond [`MAX_DEPTH`] and more than
/// [`MAX_ALIASES`] aliases are errors.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<SourceDoc>, Diagnostic> {
    let file: SourceName = Arc::from(file);
    check_shape(&file, text)?;
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let m = e.marker();
        Diagnostic::error(
            Location {
                file: file.clone(),
                line: m.line() as u32,
                column: m.col() as u32 + 1,
            },
            format!("YAML syntax error: {}", e.info()),
        )
    })?;
    let mut out = Vec::new();
    for doc in docs {
        let mut index = PathIndex {
            file: file.clone(),
            entries: HashMap::new(),
        };
        let value = to_json(&doc, "", &mut index)?;
        if value.is_null() {
            continue;
        }
        let start = index.locate("");
        let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
            || value
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List") && value.get("items").is_some());
        if is_list {
            let Some(items) = value.get("items").and_then(Value::as_array) else {
                return Err(Diagnostic::error(
                    index.locate("items"),
                    "a List must have an `items` array".to_string(),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let prefix = join_index("items", i);
                let sub = index.sub_index(&prefix);
                let start = sub.locate("");
                out.push(SourceDoc {
                    value: item.clone(),
                    index: Arc::new(sub),
                    start,
                });
            }
        } else {
            out.push(SourceDoc {
                value,
                index: Arc::new(index),
                start,
            });
        }
    }
    Ok(out)
}

fn loc_of(node: &MarkedYaml<'_>) -> (u32, u32) {
    (
        node.span.start.line() as u32,
        node.span.start.col() as u32 + 1,
    )
}

fn to_json(node: &MarkedYaml<'_>, path: &str, index: &mut PathIndex) -> Result<Value, Diagnostic> {
    index
        .entries
        .entry(path.to_string())
        .or_insert(loc_of(node));
    Ok(match &node.data {
        YamlData::Value(s) => scalar_to_json(s),
        YamlData::Representation(raw, _, _) => Value::String(raw.to_string()),
        YamlData::Tagged(_, inner) => to_json(inner, path, index)?,
        YamlData::Sequence(items) => {
            let mut v = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                v.push(to_json(item, &join_index(path, i), index)?);
            }
            Value::Array(v)
        }
        YamlData::Mapping(map) => {
            let mut m = Map::new();
            for (k, v) in map {
                let key = match &k.data {
                    YamlData::Value(s) => scalar_key(s),
                    YamlData::Representation(raw, _, _) => raw.to_string(),
                    _ => {
                        let (line, column) = loc_of(k);
                        return Err(Diagnostic::error(
                            Location {
                                file: index.file.clone(),
                                line,
                                column,
                            },
                            "mapping keys must be scalars".to_string(),
                        ));
                    }
                };
                let child = join_key(path, &key);
                let val = to_json(v, &child, index)?;
                // Point the field at its value, but a null value at its key.
                if val.is_null() {
                    index.entries.insert(child.clone(), loc_of(k));
                }
                m.insert(key, val);
            }
            Value::Object(m)
        }
        YamlData::Alias(_) => {
            return Err(Diagnostic::error(
                index.locate(path),
                "YAML aliases (*name) are not supported in manifests".to_string(),
            ))
        }
        YamlData::BadValue => {
            return Err(Diagnostic::error(
                index.locate(path),
                "this value cannot be read as its tagged type".to_string(),
            ))
        }
    })
}

fn scalar_to_json(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => {
            serde_json::Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
        }
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

fn scalar_key(s: &Scalar<'_>) -> String {
    match s {
        Scalar::Null => "null".to_string(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.to_string(),
        Scalar::String(s) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_locations() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n  - port: 81\n    targetPort: web\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 1);
        let idx = &docs[0].index;
        let l = idx.locate("spec.ports[1].targetPort");
        assert_eq!((l.line, l.column), (9, 17));
        let l = idx.locate("spec.ports[1].nodePort");
        assert_eq!(
            (l.line, l.column),
            (8, 5),
            "missing field falls back to its parent"
        );
        assert_eq!(idx.locate("metadata.name").line, 4);
    }

    #[test]
    fn multi_document_and_list() {
        let text = "---\nkind: A\n---\n# only a comment\n---\nkind: List\nitems:\n- kind: B\n  metadata: {name: x}\n- kind: C\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(docs[1].start.line, 8);
        assert_eq!(docs[1].index.locate("metadata.name").line, 9);
        assert_eq!(docs[2].index.locate("").line, 10);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse_documents("bad.yaml", "a: b\n  c: d\n: [\n").unwrap_err();
        assert_eq!(&*err.location.as_ref().unwrap().file, "bad.yaml");
        assert!(err.location.as_ref().unwrap().line >= 2, "{err:?}");
        assert!(err.message.contains("YAML syntax error"));
    }

    #[test]
    fn json_is_yaml() {
        let docs =
            parse_documents("f.json", "{\"kind\": \"Pod\",\n \"spec\": {\"x\": 1}}").unwrap();
        assert_eq!(docs[0].value["spec"]["x"], 1);
        assert_eq!(docs[0].index.locate("spec.x").line, 2);
    }

    #[test]
    fn label_keys_are_bracketed() {
        assert_eq!(
            join_key("metadata.labels", "app.kubernetes.io/name"),
            "metadata.labels[app.kubernetes.io/name]"
        );
        assert_eq!(
            parent_path("metadata.labels[app.kubernetes.io/name]"),
            "metadata.labels"
        );
        assert_eq!(parent_path("spec.ports[0]"), "spec.ports");
    }
}
