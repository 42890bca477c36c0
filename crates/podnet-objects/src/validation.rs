//! The API server's validation rules for the fields podnet uses, with the API server's wording.
//!
//! Each function returns `Err(Invalid)`: what is wrong and what is allowed, in the API
//! server's words (its validation functions return messages too).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// What is wrong with a value and what is allowed, as the API server says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_string())
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

impl From<Invalid> for String {
    fn from(i: Invalid) -> String {
        i.0
    }
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// RFC 1123 label: lower case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub fn dns1123_label(s: &str) -> Result<(), Invalid> {
    const WHAT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
    if s.is_empty() || s.len() > DNS1123_LABEL_MAX {
        return Err(format!("must be 1 to {DNS1123_LABEL_MAX} characters long; {WHAT}").into());
    }
    if !label_chars(s) {
        return Err(WHAT.into());
    }
    Ok(())
}

/// The characters of an RFC 1123 label, whatever its length: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn label_chars(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_label_char) && !s.starts_with('-') && !s.ends_with('-')
}

/// RFC 1123 subdomain, as the API server's `IsDNS1123Subdomain`: dot-separated parts with the
/// characters of RFC 1123 labels, ≤ 253 in all. (Like upstream, no part has a length limit of
/// its own.)
pub fn dns1123_subdomain(s: &str) -> Result<(), Invalid> {
    const WHAT: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
    if s.is_empty() || s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!("must be 1 to {DNS1123_SUBDOMAIN_MAX} characters long; {WHAT}").into());
    }
    if s.split('.').all(label_chars) {
        Ok(())
    } else {
        Err(WHAT.into())
    }
}

/// RFC 1035 label: like an RFC 1123 label, but starting with a letter. Service names use it.
/// A hostname as Ingress rules and the Gateway API take it: a DNS-1123 subdomain, optionally
/// after `*.` (one wildcard label); no IP address.
pub fn wildcard_hostname(s: &str) -> Result<(), Invalid> {
    let name = s.strip_prefix("*.").unwrap_or(s);
    dns1123_subdomain(name).map_err(|e| {
        format!(
            "Invalid value: {s:?}: a hostname is a DNS-1123 subdomain, optionally after '*.' ({e})"
        )
    })?;
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("Invalid value: {s:?}: must be a DNS name, not an IP address").into());
    }
    Ok(())
}

pub fn dns1035_label(s: &str) -> Result<(), Invalid> {
    const WHAT: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')";
    if s.is_empty() || s.len() > DNS1123_LABEL_MAX {
        return Err(format!("must be 1 to {DNS1123_LABEL_MAX} characters long; {WHAT}").into());
    }
    if dns1123_label(s).is_err() || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(WHAT.into());
    }
    Ok(())
}

/// IANA_SVC_NAME (RFC 6335): ≤ 15 characters, lower case alphanumerics and '-', at least one
/// letter, no leading, trailing or double '-'. Named container ports and named targetPorts use it.
pub fn iana_svc_name(s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > 15 {
        return Err("must be no more than 15 characters (IANA_SVC_NAME, RFC 6335)".into());
    }
    if !s.chars().all(is_label_char) {
        return Err("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-) (IANA_SVC_NAME)".into());
    }
    if s.contains("--") {
        return Err("must not contain consecutive hyphens (IANA_SVC_NAME)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not begin or end with a hyphen (IANA_SVC_NAME)".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z) (IANA_SVC_NAME)".into());
    }
    Ok(())
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key (qualified name): `[prefix/]name`, where prefix is a DNS subdomain.
pub fn label_key(k: &str) -> Result<(), Invalid> {
    const WHAT: &str = "a valid label key is a name of at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if dns1123_subdomain(p).is_err() {
            return Err(format!("prefix part: {WHAT}").into());
        }
    }
    if !qualified_name_part(name) {
        return Err(WHAT.into());
    }
    Ok(())
}

/// A label value: empty, or ≤ 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
pub fn label_value(v: &str) -> Result<(), Invalid> {
    if v.is_empty() || qualified_name_part(v) {
        Ok(())
    } else {
        Err("a valid label value must be an empty string or at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')".into())
    }
}

/// Validates a label map; returns (field path suffix, reason) pairs.
pub fn labels(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (k, v) in map {
        if let Err(e) = label_key(k) {
            errs.push((k.clone(), format!("invalid label key {k:?}: {e}")));
        }
        if let Err(e) = label_value(v) {
            errs.push((k.clone(), format!("invalid label value {v:?}: {e}")));
        }
    }
    errs
}

/// Validates a label selector; returns (field path suffix, reason) pairs.
pub fn label_selector(sel: &LabelSelector) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if let Some(ml) = &sel.match_labels {
        for (k, why) in labels(ml) {
            errs.push((crate::source::join_key("matchLabels", &k), why));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let base = format!("matchExpressions[{i}]");
        if let Err(why) = label_key(&e.key) {
            errs.push((
                format!("{base}.key"),
                format!("invalid key {:?}: {why}", e.key),
            ));
        }
        let n = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if n == 0 => errs.push((
                format!("{base}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'".to_string(),
            )),
            "Exists" | "DoesNotExist" if n > 0 => errs.push((
                format!("{base}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {
                for (j, v) in e.values.iter().flatten().enumerate() {
                    if let Err(why) = label_value(v) {
                        errs.push((format!("{base}.values[{j}]"), why.into()));
                    }
                }
            }
            other => errs.push((
                format!("{base}.operator"),
                format!("Unsupported value: {other:?}: supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\""),
            )),
        }
    }
    errs
}

/// A port number: 1 to 65535.
pub fn port_number(p: i32) -> Result<(), Invalid> {
    if (1..=65535).contains(&p) {
        Ok(())
    } else {
        Err(format!("Invalid value: {p}: must be between 1 and 65535, inclusive").into())
    }
}

/// TCP, UDP or SCTP.
pub fn protocol(p: &str) -> Result<(), Invalid> {
    match p {
        "TCP" | "UDP" | "SCTP" => Ok(()),
        other => Err(format!(
            "Unsupported value: {other:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label("my-app-1").is_ok());
        assert!(dns1123_label("My-app").is_err());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1035_label("1abc").is_err());
        assert!(dns1035_label("abc1").is_ok());
    }

    #[test]
    fn iana() {
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("http-alt").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("a--b").is_err());
        assert!(iana_svc_name("abcdefghijklmnop").is_err());
        assert!(iana_svc_name("Http").is_err());
    }

    #[test]
    fn label_rules() {
        assert!(label_key("app").is_ok());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("App_Name.x").is_ok());
        assert!(label_key("bad key").is_err());
        assert!(label_key("Example.com/x").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3-x").is_ok());
        assert!(label_value("-x").is_err());
        assert!(label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn selectors() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement as R;
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                R {
                    key: "a".into(),
                    operator: "In".into(),
                    values: None,
                },
                R {
                    key: "b".into(),
                    operator: "Exists".into(),
                    values: Some(vec!["x".into()]),
                },
                R {
                    key: "c".into(),
                    operator: "Gt".into(),
                    values: None,
                },
            ]),
        };
        let errs = label_selector(&sel);
        let paths: Vec<_> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "matchExpressions[0].values",
                "matchExpressions[1].values",
                "matchExpressions[2].operator"
            ]
        );
    }

    #[test]
    fn ports_and_protocols() {
        assert!(port_number(0).is_err());
        assert!(port_number(65536).is_err());
        assert!(port_number(443).is_ok());
        assert!(protocol("TCP").is_ok());
        assert!(protocol("tcp").is_err());
    }
}
