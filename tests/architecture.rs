//! The layering of issue 26, enforced: every `crate::`/`super::` path in `src/**/*.rs` (test
//! modules left out, as the project's layers.py cycle finder does) may name only a module of a lower
//! layer, or of its own. docs/architecture.md quotes [`LAYERS`] and explains it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level module of `src/` -> (rank, layer). Imports run from higher ranks to lower ones.
/// Two layers of the same rank are independent: one may use the other only through [`SIBLINGS`].
const LAYERS: &[(&str, u8, &str)] = &[
    ("cli", 9, "cli"),
    ("main", 9, "cli"),
    ("train", 8, "train"),
    ("eval", 8, "eval"),
    ("bench", 8, "bench"),
    ("interp", 7, "interp"),
    ("onnx", 7, "onnx"),
    ("runtime", 7, "runtime"),
    ("train_step", 7, "train_step"),
    ("torch", 7, "torch"),
    ("check", 6, "model"),
    ("model", 6, "model"),
    ("graph", 5, "graph"),
    ("params", 5, "graph"),
    ("ops", 4, "ops"),
    ("dsl", 3, "dsl"),
    ("recipe", 2, "recipe"),
    ("kernels", 1, "kernels"),
    ("onnx_ir", 1, "onnx_ir"),
    ("diffusion", 1, "diffusion"),
    ("data", 1, "data"),
    ("base", 0, "base"),
];

/// Layers of the same rank that one may use the other, and why (permanent, part of the map).
const SIBLINGS: &[(&str, &str, &str)] = &[
    ("runtime", "onnx", "onnxruntime runs what the exporter wrote: its input names and ModelInfo metadata"),
    ("bench", "train", "`mdc bench` times a training step with the trainer's AdamW"),
];

/// Known violations that other branches of issue 26 remove: (file, imported top-level module).
/// The lead deletes each entry when the branch that fixes it is merged; an entry that no longer
/// matches anything fails [`allow_list_has_no_stale_entries`], so none outlives its fix.
const ALLOWED: &[(&str, &str)] = &[];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    line: usize,
    path: String,
    /// The top-level module the path names.
    target: String,
}

fn layer(module: &str) -> Option<(u8, &'static str)> {
    LAYERS.iter().find(|(m, _, _)| *m == module).map(|&(_, rank, name)| (rank, name))
}

/// The file's module path: src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]; src/main.rs -> [main].
fn module_path(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> =
        rel.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// The code of a file with comments and string and char literals blanked (newlines kept, so
/// offsets still give line numbers), cut at its first `#[cfg(test)]`.
fn code_only(text: &str) -> String {
    let text = &text[..text.find("#[cfg(test)]").unwrap_or(text.len())];
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                i += 2 + hashes;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            // a char literal ('x', '\n', '\u{..}'); a lifetime ('a) has no closing quote
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            _ => {
                i += 1;
                continue;
            }
        }
        blank(&mut out, start, i.min(b.len()));
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e].
fn expand(tree: &str) -> Vec<String> {
    let tree =
        tree.split_whitespace().collect::<Vec<_>>().join(" ").replace(" ::", "::").replace(":: ", "::");
    let Some(open) = tree.find('{') else { return vec![tree.trim().to_string()] };
    let (head, body) = (tree[..open].trim(), &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())]);
    let (mut parts, mut depth, mut cur) = (vec![], 0, String::new());
    for c in body.chars() {
        match c {
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            '{' | '}' => {
                depth += if c == '{' { 1 } else { -1 };
                cur.push(c);
            }
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{head}{p}")))
        .collect()
}

/// The top-level module a path names from the module `here`, or None for another crate or a
/// path that stays inside `here`'s own top-level module.
fn target(here: &[String], path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let abs: Vec<String> = match segs.first()? {
        &"crate" | &"$crate" | &"mdc" => segs[1..].iter().map(|s| s.to_string()).collect(),
        &"super" | &"self" => {
            let mut base = here.to_vec();
            let mut rest = &segs[..];
            while let Some(&s) = rest.first() {
                match s {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().map(|s| s.to_string()));
            base
        }
        _ => return None, // another crate, or a child module of this one
    };
    let top = abs.first()?.clone();
    (Some(&top) != here.first()).then_some(top)
}

fn line_of(code: &str, pos: usize) -> usize {
    code[..pos].matches('\n').count() + 1
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Every path the file's code names outside its own top-level module: `use` trees expanded,
/// then `crate::`/`super::`/`self::` paths written inline.
fn imports(here: &[String], text: &str) -> Vec<Import> {
    let code = code_only(text);
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut masked = b.to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("use ").map(|p| p + from) {
        from = at + 4;
        if at > 0 && is_ident(b[at - 1]) {
            continue;
        }
        let Some(end) = code[at..].find(';').map(|p| p + at) else { break };
        for path in expand(&code[at + 4..end]) {
            let path = path.split(" as ").next().unwrap_or(&path).to_string();
            if let Some(target) = target(here, &path) {
                found.push(Import { line: line_of(&code, at), path, target });
            }
        }
        masked[at..end].fill(b' ');
    }
    let masked = String::from_utf8_lossy(&masked).into_owned();
    let mb = masked.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = masked[from..].find(start).map(|p| p + from) {
            from = at + start.len();
            let at = if at > 0 && mb[at - 1] == b'$' { at - 1 } else { at };
            if (at > 0 && is_ident(mb[at - 1])) || (at > 1 && &mb[at - 2..at] == b"::") {
                continue; // part of a longer path (`super::super::x`, `a::self::b`) or identifier
            }
            let end = at + masked[at..].bytes().take_while(|&c| is_ident(c) || c == b':').count();
            let path = masked[at..end].trim_end_matches(':').to_string();
            if let Some(target) = target(here, &path) {
                found.push(Import { line: line_of(&masked, at), path, target });
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (file relative to the crate, its module path, its text) for every source file.
fn sources() -> Vec<(String, Vec<String>, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let here = module_path(f.strip_prefix(root.join("src")).unwrap());
            (rel, here, std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// Whether a file of module `from` may import the top-level module `to`.
fn allowed(from: &str, to: &str) -> Result<(), String> {
    let (Some((fr, fl)), Some((tr, tl))) = (layer(from), layer(to)) else {
        return Err(format!(
            "`{}` has no layer in tests/architecture.rs LAYERS",
            if layer(from).is_none() { from } else { to }
        ));
    };
    if tr < fr || fl == tl || SIBLINGS.iter().any(|&(a, b, _)| a == fl && b == tl) {
        return Ok(());
    }
    Err(format!("layer {fl} ({fr}) may not import layer {tl} ({tr})"))
}

/// Every import that breaks the layering: `file:line: path: why`.
fn violations(files: &[(String, Vec<String>, String)]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (rel, here, text) in files {
        let Some(from) = here.first() else { continue }; // lib.rs declares the modules
        for imp in imports(here, text) {
            if let Err(why) = allowed(from, &imp.target) {
                out.push((
                    rel.clone(),
                    imp.target.clone(),
                    format!("{rel}:{}: `{}`: {why}", imp.line, imp.path),
                ));
            }
        }
    }
    out
}

#[test]
fn imports_run_down_the_layers() {
    let bad: Vec<String> = violations(&sources())
        .into_iter()
        .filter(|(file, target, _)| !ALLOWED.contains(&(file.as_str(), target.as_str())))
        .map(|(_, _, msg)| msg)
        .collect();
    assert!(bad.is_empty(), "imports against the layering (docs/architecture.md):\n{}", bad.join("\n"));
}

#[test]
fn allow_list_has_no_stale_entries() {
    let seen: BTreeSet<(String, String)> =
        violations(&sources()).into_iter().map(|(f, t, _)| (f, t)).collect();
    for &(file, target) in ALLOWED {
        assert!(
            seen.contains(&(file.to_string(), target.to_string())),
            "{file} no longer imports `{target}`: delete its ALLOWED entry in tests/architecture.rs"
        );
    }
}

#[test]
fn every_module_has_a_layer() {
    for (rel, here, _) in sources() {
        if let Some(top) = here.first() {
            assert!(
                layer(top).is_some(),
                "{rel}: module `{top}` has no layer in tests/architecture.rs LAYERS"
            );
        }
    }
}

/// The map as docs/architecture.md shows it: one row per layer, highest first.
fn layer_table() -> String {
    let mut out = String::from("| rank | layer | modules (under `src/`) |\n|---|---|---|\n");
    let mut done = BTreeSet::new();
    for &(_, rank, name) in LAYERS {
        if done.insert(name) {
            let modules: Vec<String> =
                LAYERS.iter().filter(|l| l.2 == name).map(|l| format!("`{}`", l.0)).collect();
            out += &format!("| {rank} | {name} | {} |\n", modules.join(", "));
        }
    }
    out
}

#[test]
fn the_guide_quotes_the_map() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let table = layer_table();
    assert!(
        doc.contains(&table),
        "docs/architecture.md must quote the layer table of tests/architecture.rs:\n{table}"
    );
}

#[test]
fn the_checker_reads_paths_as_rustc_does() {
    let here: Vec<String> = vec!["ops".into(), "conv2d".into()];
    let text = r#"
use std::fmt;
use crate::base::Shape;
use super::super::graph::{Graph, Node as N};
use crate::{kernels::Real, interp::{Executor, Engine}};
// use crate::train::Commented;
/// [`crate::cli::DocLink`]
fn f() { let s = "crate::train::InAString"; crate::onnx::export(); let c = '"'; super::add::x(); }
#[cfg(test)]
mod tests { use crate::train::InATest; }
"#;
    let got: Vec<(usize, String, String)> =
        imports(&here, text).into_iter().map(|i| (i.line, i.path, i.target)).collect();
    let want = [
        (3, "crate::base::Shape", "base"),
        (4, "super::super::graph::Graph", "graph"),
        (4, "super::super::graph::Node", "graph"),
        (5, "crate::interp::Engine", "interp"),
        (5, "crate::interp::Executor", "interp"),
        (5, "crate::kernels::Real", "kernels"),
        (8, "crate::onnx::export", "onnx"),
    ];
    let want: Vec<(usize, String, String)> =
        want.iter().map(|&(l, p, t)| (l, p.to_string(), t.to_string())).collect();
    assert_eq!(got, want);
    assert!(allowed("ops", "base").is_ok());
    assert_eq!(allowed("ops", "graph").unwrap_err(), "layer ops (4) may not import layer graph (5)");
    assert_eq!(
        allowed("kernels", "diffusion").unwrap_err(),
        "layer kernels (1) may not import layer diffusion (1)"
    );
    assert!(allowed("params", "graph").is_ok());
}
