//! Reading manifests from files, directories and standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use podnet_model::{parse_documents, Diagnostic, SourceDoc};

/// The files a `-f` argument names: a file, every .yaml/.yml/.json below a directory (sorted,
/// recursive), or `-` for standard input.
pub fn expand(arg: &Path) -> Result<Vec<PathBuf>> {
    if arg == Path::new("-") {
        return Ok(vec![arg.to_path_buf()]);
    }
    let meta = std::fs::metadata(arg).with_context(|| format!("{}: cannot read", arg.display()))?;
    if !meta.is_dir() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![arg.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("{}: cannot list", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries.into_iter().rev() {
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: no .yaml, .yml or .json files in this directory",
            arg.display()
        );
    }
    Ok(out)
}

/// Reads and parses every manifest the arguments name. Syntax errors are collected, not fatal
/// one by one, so that the user sees all of them.
pub fn load(args: &[PathBuf]) -> Result<(Vec<SourceDoc>, Vec<Diagnostic>)> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    if args.is_empty() {
        bail!("no manifests: give -f FILE, -f DIR or -f - (standard input)");
    }
    for arg in args {
        for file in expand(arg)? {
            let (name, text) = if file == Path::new("-") {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading standard input")?;
                ("<stdin>".to_string(), s)
            } else {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("{}: cannot read", file.display()))?;
                (file.display().to_string(), text)
            };
            match parse_documents(&name, &text) {
                Ok(d) => docs.extend(d),
                Err(e) => errors.push(e),
            }
        }
    }
    Ok((docs, errors))
}
