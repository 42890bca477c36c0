//! One fixture per class of bad input, under `tests/errors/`. Each fixture starts with lines
//! `# expect: line=N field=PATH object=KIND/NS/NAME contains=TEXT` (every key optional but
//! line); each must match an error, and the build must fail as a whole.

use std::path::Path;

use podnet_emulator::build;
use podnet_model::{parse_documents, ConfigOverrides, Diagnostic};

struct Expect {
    line: u32,
    field: Option<String>,
    object: Option<String>,
    contains: Option<String>,
}

fn parse_expect(line: &str) -> Option<Expect> {
    let rest = line.strip_prefix("# expect:")?;
    let mut e = Expect {
        line: 0,
        field: None,
        object: None,
        contains: None,
    };
    // `contains=` takes the rest of the line.
    let (head, contains) = match rest.split_once("contains=") {
        Some((h, c)) => (h, Some(c.trim().to_string())),
        None => (rest, None),
    };
    e.contains = contains;
    for kv in head.split_whitespace() {
        let (k, v) = kv.split_once('=').expect("key=value");
        match k {
            "line" => e.line = v.parse().expect("line number"),
            "field" => e.field = Some(v.to_string()),
            "object" => e.object = Some(v.to_string()),
            other => panic!("unknown expect key {other}"),
        }
    }
    Some(e)
}

fn errors_of(path: &Path, text: &str) -> Vec<Diagnostic> {
    let name = path.file_name().unwrap().to_str().unwrap();
    match parse_documents(name, text) {
        Err(d) => vec![d],
        Ok(docs) => match build(&docs, &ConfigOverrides::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .diagnostics()
                .iter()
                .filter(|d| d.is_error())
                .cloned()
                .collect(),
        },
    }
}

#[test]
fn every_error_class_names_file_line_and_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "fixtures: {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expects: Vec<_> = text.lines().filter_map(parse_expect).collect();
        assert!(!expects.is_empty(), "{}: no # expect: line", f.display());
        let errs = errors_of(f, &text);
        let name = f.file_name().unwrap().to_str().unwrap();
        if errs.is_empty() {
            failures.push(format!("{name}: built without error"));
            continue;
        }
        for e in &expects {
            let hit = errs.iter().any(|d| {
                let loc = d.location.as_ref();
                loc.is_some_and(|l| l.line == e.line && &*l.file == name)
                    && e.field.as_ref().is_none_or(|f| d.field.as_ref() == Some(f))
                    && e.object.as_ref().is_none_or(|o| {
                        d.object.as_ref().map(ToString::to_string).as_ref() == Some(o)
                    })
                    && e.contains
                        .as_ref()
                        .is_none_or(|c| d.message.contains(c.as_str()))
            });
            if !hit {
                failures.push(format!(
                    "{name}: no error at line {} field {:?} containing {:?}; got:\n    {}",
                    e.line,
                    e.field,
                    e.contains,
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n    ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
