//! Hostile input (issue 10): deep nesting and alias bombs are refused before they are loaded,
//! with an error that names the place, and memory and time stay bounded.

use podnet_model::parse_documents;
use podnet_model::source::{MAX_ALIASES, MAX_DEPTH};

/// A ConfigMap holding a block sequence nested `depth` deep: `- - - … x`.
fn deep(depth: usize) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: |\n    y\nextra:\n",
    );
    s.push_str(&"- ".repeat(depth));
    s.push_str("x\n");
    s
}

#[test]
fn nesting_20000_deep_is_an_error_not_a_crash() {
    // Before: a stack overflow (SIGABRT) in check, lab up and lab apply.
    let e = parse_documents("deep.yaml", &deep(20_000)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("deep.yaml:8:"),
        "the line of the deep item: {msg}"
    );
    assert!(
        msg.contains(&format!("nesting deeper than {MAX_DEPTH} levels")),
        "{msg}"
    );
}

#[test]
fn the_limit_is_exact_and_deep_input_is_refused_fast() {
    // The document's own mapping is one level, `extra` a second: MAX_DEPTH - 1 sequences fit.
    assert!(parse_documents("ok.yaml", &deep(MAX_DEPTH - 1)).is_ok());
    assert!(parse_documents("no.yaml", &deep(MAX_DEPTH)).is_err());
    // Before: 10,000 deep took 348 MB; now it stops at the limit, after reading 100 levels.
    let start = std::time::Instant::now();
    assert!(parse_documents("deep.yaml", &deep(1_000_000)).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn flow_style_nesting_counts_too() {
    let text = format!("a: {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    // The streaming parser stops flow collections at its own recursion limit.
    let msg = parse_documents("flow.yaml", &text).unwrap_err().to_string();
    assert!(
        msg.contains("nesting deeper") || msg.contains("recursion limit exceeded"),
        "{msg}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = "a".to_string();
    for i in 0..(MAX_ALIASES / 10 + 5) {
        let name = format!("b{i}");
        text += &format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        );
        prev = name;
    }
    let msg = parse_documents("bomb.yaml", &text).unwrap_err().to_string();
    assert!(msg.contains("YAML aliases"), "{msg}");
}
