//! Diagnostics: every error and warning names the file, line and column, the object and the
//! field path, what is wrong and what is allowed.

use std::fmt;

use serde::Serialize;

use crate::source::SourceName;

/// A place in a manifest file. `line` and `column` are 1-based; `line == 0` means the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    #[serde(serialize_with = "ser_arc_str")]
    pub file: SourceName,
    pub line: u32,
    pub column: u32,
}

fn ser_arc_str<S: serde::Serializer>(s: &SourceName, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// `Kind/namespace/name` of the object a diagnostic is about.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Option<Location>,
    pub object: Option<Box<ObjectRef>>,
    /// The field path, as kubectl prints it: `spec.ports[1].targetPort`.
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(location: Location, message: String) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: Some(location),
            object: None,
            field: None,
            message,
        }
    }

    /// An error that belongs to no one place in the manifests (a full address range, a flag).
    pub fn global_error(message: String) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: None,
            object: None,
            field: None,
            message,
        }
    }

    pub fn warning(location: Option<Location>, message: String) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location,
            object: None,
            field: None,
            message,
        }
    }

    pub fn with_object(mut self, object: ObjectRef) -> Self {
        self.object = Some(Box::new(object));
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.field = if f.is_empty() { None } else { Some(f) };
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        write!(f, "{sev}: ")?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// The model crate's one error type.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The input is invalid. Nothing was built. Holds every error found (and the warnings).
    #[error("{} error(s) in the manifests:\n{}", count_errors(.0), render(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ModelError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ModelError::Invalid(d) => d,
        }
    }
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .filter(|d| d.is_error())
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error with its causes, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}
