//! Label selector matching (`metav1.LabelSelectorAsSelector`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// An object's labels (and a map selector's pairs).
pub type Labels = std::collections::BTreeMap<String, String>;

/// Whether a map selector matches a label set (every pair present).
pub fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `sel` selects an object with `labels`. An empty selector selects everything; all of
/// `matchLabels` and every `matchExpressions` requirement must hold.
pub fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &sel.match_labels {
        if !selector_matches(ml, labels) {
            return false;
        }
    }
    sel.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let got = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            // Validation rejects other operators before matching happens.
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement as R;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")]).into_iter().collect()),
            match_expressions: Some(vec![
                R {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["fe".into(), "be".into()]),
                },
                R {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                R {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["prod".into()]),
                },
            ]),
        };
        assert!(matches(&sel, &labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "db")])));
        assert!(!matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "fe"), ("canary", "1")])
        ));
        assert!(!matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "fe"), ("env", "prod")])
        ));
        assert!(matches(&LabelSelector::default(), &labels(&[])));
    }
}
