//! The commands and outputs shown in README.md and docs/**/*.md are checked here, so the pages
//! cannot go stale (`cargo test --test tests docs_commands`). What each kind of fenced block gets:
//!
//! - **Parsed**: every `mdc ...` line of a `sh` block (or an unlabelled one) and every `$ mdc ...`
//!   line of a `console` block, and `cargo run --release -- ...`, goes through mdc's own clap
//!   definitions (`mdc::cli::Cli::try_parse_from`), value parsers included: a renamed flag or a
//!   value out of range fails here. `cargo run --example X`, `cargo bench --bench X`,
//!   `cargo test --test X FILTER` and `python3 PATH` must name a target, test or file that exists.
//!   Other tools' lines (`sed`, `for`) are not mdc's and are left alone; a loop variable (`$k` of
//!   `for k in 0 1 ...`) takes the loop's first value.
//! - **Run**: a `$ mdc check`, `$ mdc graph` or `$ mdc export` line of a `console` block whose
//!   `.toml`/`.safetensors` arguments ship with the repository (they take milliseconds) runs against
//!   the built binary in a scratch folder holding a copy of `models/` and `tests/fixtures/`, and its
//!   output (standard output, then standard error) must match the lines under it. In the page, a
//!   line `...` stands for any number of lines and `[..]` for any text within a line; a timing such
//!   as `(0.2 ms)` is not compared. A comment `# after setting KEY = VALUE in [SECTION]` on the
//!   command line edits the copy of the file first.
//! - **Only parsed**: `train`, `sample`, `eval`, `bench`, and an export from a checkpoint, need a
//!   trained run or take seconds to minutes; their lines are parsed, not run.
//! - **Python**: a page's `python` blocks run in order as one script (each continues the one before),
//!   in a scratch folder where the `.onnx` files they open were exported by the built mdc from the
//!   shipped model of the same name (fresh weights), when python3 can import numpy and onnxruntime;
//!   otherwise they are only compiled (`python3 -m py_compile`).
//! - **README excerpt**: the README's `toml` block must be a run of lines of `models/unet.toml`.
//! - **Links**: every relative link must point at a file that exists, and an `#anchor` at a heading
//!   of the page it names.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages: README.md and every .md under docs/, as paths relative to the repository root.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    let mut out = vec![PathBuf::from("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// A fenced block: where it starts (page, 1-based line of its first content line), its language, its lines.
struct Block {
    at: String,
    first_line: usize,
    lang: String,
    lines: Vec<String>,
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join(page)).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, open.take()) {
            (Some(lang), None) => {
                let at = page.display().to_string();
                open =
                    Some(Block { at, first_line: i + 2, lang: lang.trim().to_string(), lines: Vec::new() });
            }
            (Some(_), Some(block)) => out.push(block),
            (None, Some(mut block)) => {
                block.lines.push(line.to_string());
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{}: a fenced block is not closed", page.display());
    out
}

/// The words of a shell line: quotes removed, a `#` comment dropped, `&&`, `||`, `;` and `|` as
/// words of their own, redirections (`> file`, `2> file`, `< file`) dropped with their targets.
fn shell_words(line: &str) -> Vec<String> {
    let mut w = Words::default();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (w.quote, c) {
            (Some(q), c) if c == q => w.quote = None,
            (Some(_), c) => w.word.push(c),
            (None, '\'' | '"') => (w.quote, w.in_word) = (Some(c), true),
            (None, '#') if !w.in_word => break,
            (None, c) if c.is_whitespace() => w.end(),
            (None, '>' | '<') => {
                if w.word == "2" {
                    w.word.clear();
                    w.in_word = false;
                }
                w.end();
                while chars.peek() == Some(&'>') {
                    chars.next();
                }
                w.skip_next = true;
            }
            (None, ';' | '|' | '&') => {
                w.end();
                let mut op = c.to_string();
                while chars.peek() == Some(&c) {
                    op.push(c);
                    chars.next();
                }
                w.words.push(op);
            }
            (None, c) => {
                w.word.push(c);
                w.in_word = true;
            }
        }
    }
    w.end();
    w.words
}

/// [`shell_words`]' state: the words so far and the one being read.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
    quote: Option<char>,
    /// The word being read is a redirection's target: dropped.
    skip_next: bool,
}

impl Words {
    fn end(&mut self) {
        if self.in_word && !std::mem::take(&mut self.skip_next) {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.word.clear();
        self.in_word = false;
    }
}

/// A block's lines as commands: continuation lines joined, each line split at `&&`, `;` and `|`,
/// `VAR=value` prefixes dropped, loop variables replaced by the loop's first value.
fn commands(lines: &[String]) -> Vec<Vec<String>> {
    let mut joined: Vec<String> = Vec::new();
    let mut carry = String::new();
    for line in lines {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(head) => carry.push_str(head),
            None => joined.push(std::mem::take(&mut carry) + line),
        }
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for line in joined {
        let words = shell_words(&line);
        if let [f, var, in_, first, ..] = &words[..] {
            if f == "for" && in_ == "in" {
                vars.push((format!("${var}"), first.clone()));
            }
        }
        for cmd in words.split(|w| matches!(w.as_str(), "&&" | "||" | ";" | "|")) {
            let cmd: Vec<String> = cmd
                .iter()
                .skip_while(|w| {
                    w.split_once('=')
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                })
                .map(|w| vars.iter().fold(w.clone(), |w, (name, value)| w.replace(name, value)))
                .collect();
            if !cmd.is_empty() {
                out.push(cmd);
            }
        }
    }
    out
}

/// Checks one command without running it; `Ok(true)` when it was mdc's (parsed by its clap CLI).
fn check_command(words: &[String]) -> Result<bool, String> {
    let arg = |flag: &str| words.iter().position(|w| w == flag).and_then(|i| words.get(i + 1));
    match words[0].as_str() {
        "mdc" => parse_mdc(&words[1..]).map(|()| true),
        "cargo" if words.get(1).is_some_and(|w| w == "run") => {
            if let Some(example) = arg("--example") {
                let file = root().join("examples").join(format!("{example}.rs"));
                return file.is_file().then_some(false).ok_or(format!("no example {}", file.display()));
            }
            let dashes = words.iter().position(|w| w == "--").ok_or("`cargo run` without `--`")?;
            parse_mdc(&words[dashes + 1..]).map(|()| true)
        }
        "cargo" if words.get(1).is_some_and(|w| w == "bench") => {
            let bench = arg("--bench").ok_or("`cargo bench` without `--bench NAME`")?;
            cargo_target("bench", bench).map(|()| false)
        }
        "cargo" if words.get(1).is_some_and(|w| w == "test") => {
            if let Some(test) = arg("--test") {
                cargo_target("test", test)?;
                let filter = words.iter().skip_while(|w| *w != test).nth(1);
                if let Some(filter) = filter.filter(|f| !f.starts_with('-')) {
                    test_filter_exists(filter)?;
                }
            }
            Ok(false)
        }
        "python3" | "python" if words.get(1).is_some_and(|w| !w.starts_with('-')) => {
            let file = root().join(&words[1]);
            file.is_file().then_some(false).ok_or(format!("no script {}", file.display()))
        }
        _ => Ok(false),
    }
}

fn parse_mdc(args: &[String]) -> Result<(), String> {
    match mdc::cli::Cli::try_parse_from(std::iter::once("mdc").chain(args.iter().map(String::as_str))) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A `[[test]]` or `[[bench]]` target of that name in Cargo.toml.
fn cargo_target(kind: &str, name: &str) -> Result<(), String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let declared = format!("[[{kind}]]\nname = \"{name}\"");
    manifest.contains(&declared).then_some(()).ok_or(format!("Cargo.toml declares no {kind} target `{name}`"))
}

/// Some test function or module under tests/ whose name contains `filter`.
fn test_filter_exists(filter: &str) -> Result<(), String> {
    let dir = root().join("tests");
    let found = std::fs::read_dir(&dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        stem.contains(filter) || text.lines().any(|l| l.trim_start().starts_with("fn ") && l.contains(filter))
    });
    found.then_some(()).ok_or(format!("no test under tests/ matches the filter `{filter}`"))
}

/// A `console` block's `$ ` commands, each with the output lines shown under it.
fn transcript(block: &Block) -> Vec<(usize, String, Vec<String>)> {
    let mut out: Vec<(usize, String, Vec<String>)> = Vec::new();
    for (i, line) in block.lines.iter().enumerate() {
        match (line.strip_prefix("$ "), out.last_mut()) {
            (Some(cmd), _) => out.push((block.first_line + i, cmd.to_string(), Vec::new())),
            (None, Some(last)) => last.2.push(line.clone()),
            (None, None) => {}
        }
    }
    out
}

/// Every command of every page; returns (mdc commands parsed, problems).
fn check_all_commands() -> (usize, Vec<String>) {
    let (mut parsed, mut problems) = (0, Vec::new());
    for page in pages() {
        for block in blocks(&page) {
            let cmds = match block.lang.as_str() {
                "console" => {
                    transcript(&block).into_iter().flat_map(|(_, cmd, _)| commands(&[cmd])).collect()
                }
                "sh" | "bash" | "" => commands(&block.lines),
                _ => continue,
            };
            for cmd in cmds {
                match check_command(&cmd) {
                    Ok(mdc) => parsed += usize::from(mdc),
                    Err(e) => problems.push(format!(
                        "{} (block at line {}): `{}`:\n{e}",
                        block.at,
                        block.first_line,
                        cmd.join(" ")
                    )),
                }
            }
        }
    }
    (parsed, problems)
}

#[test]
fn every_command_parses() {
    let (parsed, problems) = check_all_commands();
    assert!(problems.is_empty(), "commands in the docs that mdc would refuse:\n\n{}", problems.join("\n\n"));
    assert!(parsed > 50, "only {parsed} mdc commands found in README.md and docs/");
}

/// A fresh scratch folder with copies of `models/` and `tests/fixtures/`.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["models", "tests/fixtures"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(root().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

/// Applies `KEY = VALUE in [SECTION]` (of a comment `# after setting ...`) to `file`.
fn apply_edit(file: &Path, comment: &str) -> Result<(), String> {
    let spec = comment.trim();
    let (assignment, section) =
        spec.rsplit_once(" in ").ok_or(format!("edit `{comment}` names no [section]"))?;
    let (key, value) = assignment.split_once(" = ").ok_or(format!("edit `{comment}` is not KEY = VALUE"))?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (mut current, mut done) = (String::new(), false);
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            current = trimmed.split(']').next().unwrap_or("").to_string() + "]";
        }
        let is_key = trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
        if current == section.trim() && is_key && !done {
            let eq = line.find('=').unwrap();
            let rest = line[eq + 1..].trim_start();
            let old_len = rest.find(|c: char| c.is_whitespace() || c == '#').unwrap_or(rest.len());
            lines.push(format!("{}= {value}{}", &line[..eq], &rest[old_len..]));
            done = true;
        } else {
            lines.push(line.to_string());
        }
    }
    if !done {
        return Err(format!("{} has no `{key}` in {section}", file.display()));
    }
    std::fs::write(file, lines.join("\n") + "\n").map_err(|e| e.to_string())
}

/// Masks timings such as `(0.2 ms)` or `(1.5 s)`, which differ from run to run.
fn mask_timings(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let unit = [" ms)", " s)"].into_iter().find(|u| rest[digits..].starts_with(u));
        if let (true, Some(unit)) = (digits > 0, unit) {
            out.push_str("<time>)");
            rest = &rest[digits + unit.len()..];
        }
    }
    out + rest
}

/// One line against a shown line, where `[..]` matches any text.
fn line_matches(shown: &str, actual: &str) -> bool {
    let parts: Vec<&str> = shown.split("[..]").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return shown == actual;
    }
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The output against the shown lines, where a line `...` matches any number of lines.
fn output_matches(shown: &[String], actual: &[String]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((s, rest)) if s.trim() == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((s, rest)) => {
            actual.split_first().is_some_and(|(a, tail)| line_matches(s, a) && output_matches(rest, tail))
        }
    }
}

fn normalised(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| mask_timings(l.trim_end())).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether a `$ mdc` command is run: a fast command whose input files ship with the repository.
fn runnable(words: &[String], scratch: &Path) -> bool {
    let fast =
        words.len() > 1 && words[0] == "mdc" && matches!(words[1].as_str(), "check" | "graph" | "export");
    let inputs_ship = words
        .iter()
        .filter(|w| w.ends_with(".toml") || w.ends_with(".safetensors"))
        .all(|w| scratch.join(w).is_file());
    fast && inputs_ship
}

#[test]
fn shown_outputs_match() {
    let (mut ran, mut problems) = (0, Vec::new());
    for page in pages() {
        for block in blocks(&page).into_iter().filter(|b| b.lang == "console") {
            for (line, cmd, shown) in transcript(&block) {
                let dir = scratch();
                let words = shell_words(&cmd);
                if !runnable(&words, dir.path()) {
                    continue;
                }
                let at = format!("{}:{line}", block.at);
                if let Some((_, comment)) = cmd.split_once("# after setting ") {
                    let edited =
                        words.iter().find(|w| w.ends_with(".toml")).expect("an edit needs a model file");
                    if let Err(e) = apply_edit(&dir.path().join(edited), comment) {
                        problems.push(format!("{at}: {e}"));
                        continue;
                    }
                }
                let out = Command::new(env!("CARGO_BIN_EXE_mdc"))
                    .args(&words[1..])
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                let actual = normalised(&format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
                let shown = normalised(&shown.join("\n"));
                if !output_matches(&shown, &actual) {
                    problems.push(format!(
                        "{at}: `{cmd}` printed\n{}\n--- but the page shows\n{}",
                        actual.join("\n"),
                        shown.join("\n")
                    ));
                }
                ran += 1;
            }
        }
    }
    assert!(problems.is_empty(), "outputs in the docs that differ from mdc's:\n\n{}", problems.join("\n\n"));
    assert!(ran >= 4, "only {ran} commands of the docs were run");
}

/// The `"NAME.onnx"` files a script opens.
fn onnx_files(script: &str) -> Vec<String> {
    let mut out: Vec<String> = script
        .split('"')
        .filter(|s| s.ends_with(".onnx") && !s.contains(char::is_whitespace))
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn python_snippets_run() {
    let has_ort = Command::new("python3")
        .args(["-c", "import numpy, onnxruntime"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut pages_with_python = 0;
    for page in pages() {
        let script: Vec<String> =
            blocks(&page).into_iter().filter(|b| b.lang == "python").map(|b| b.lines.join("\n")).collect();
        if script.is_empty() {
            continue;
        }
        pages_with_python += 1;
        let script = script.join("\n\n");
        let dir = scratch();
        let file = dir.path().join("snippet.py");
        std::fs::write(&file, &script).unwrap();
        let mut cmd = Command::new("python3");
        if has_ort {
            for onnx in onnx_files(&script) {
                let model = format!("models/{}.toml", onnx.trim_end_matches(".onnx"));
                let export = Command::new(env!("CARGO_BIN_EXE_mdc"))
                    .args(["export", "onnx", &model, "-o", &onnx])
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                assert!(
                    export.status.success(),
                    "{}: exporting {model} for {onnx}: {export:?}",
                    page.display()
                );
            }
            cmd.arg(&file);
        } else {
            cmd.args(["-m", "py_compile"]).arg(&file);
        }
        let out = cmd.current_dir(dir.path()).output().expect("python3 runs");
        assert!(
            out.status.success(),
            "{}: the Python snippets fail:\n{}\n{}",
            page.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(pages_with_python > 0, "no Python snippets found in the docs");
}

/// GitHub's anchor of a heading: lower case, spaces as `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap();
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        in_code ^= line.trim_start().starts_with("```");
        if let Some(h) = line.strip_prefix('#').filter(|_| !in_code) {
            out.push(anchor(h.trim_start_matches('#').trim()));
        }
    }
    out
}

/// The `](target)` links of a page, outside fenced blocks.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        in_code ^= line.trim_start().starts_with("```");
        let mut rest = line;
        while let (false, Some(at)) = (in_code, rest.find("](")) {
            let target = &rest[at + 2..];
            let end = target.find(')').unwrap_or(target.len());
            out.push(target[..end].to_string());
            rest = &target[end..];
        }
    }
    out
}

#[test]
fn links_resolve() {
    let (mut checked, mut problems) = (0, Vec::new());
    for page in pages() {
        let text = std::fs::read_to_string(root().join(&page)).unwrap();
        for link in links(&text).into_iter().filter(|l| !l.contains("://") && !l.starts_with("mailto:")) {
            checked += 1;
            let (path, hash) = link.split_once('#').map_or((link.as_str(), None), |(p, h)| (p, Some(h)));
            let target = if path.is_empty() {
                root().join(&page)
            } else {
                root().join(page.parent().unwrap()).join(path)
            };
            if !target.exists() {
                problems.push(format!("{}: `{link}` points at a file that does not exist", page.display()));
                continue;
            }
            if let Some(hash) = hash.filter(|_| target.extension().is_some_and(|e| e == "md")) {
                if !anchors(&target).iter().any(|a| a == hash) {
                    problems.push(format!("{}: `{link}`: no heading with anchor #{hash}", page.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "broken links in the docs:\n{}", problems.join("\n"));
    assert!(checked > 30, "only {checked} links found in the docs");
}

/// The README's model excerpt is a run of lines of `models/unet.toml`, as written there.
#[test]
fn readme_model_excerpt_is_models_unet_toml() {
    let model = std::fs::read_to_string(root().join("models/unet.toml")).unwrap();
    let excerpt =
        blocks(Path::new("README.md")).into_iter().find(|b| b.lang == "toml").expect("a toml block");
    assert!(excerpt.lines.len() >= 10, "the excerpt has {} lines", excerpt.lines.len());
    assert!(
        model.contains(&(excerpt.lines.join("\n") + "\n")),
        "README.md's model excerpt is not in models/unet.toml"
    );
}

#[test]
fn the_harness_reads_shell_and_patterns_as_documented() {
    let words = shell_words(r#"MDC_X=1 mdc check "a b.toml" --format json > out.json 2> err # note"#);
    assert_eq!(words, ["MDC_X=1", "mdc", "check", "a b.toml", "--format", "json"]);
    let cmds =
        commands(&["for k in 3 4; do".into(), "  mdc eval c$k.png \\".into(), "   --class $k && ls".into()]);
    assert_eq!(
        cmds,
        [
            vec!["for", "k", "in", "3", "4"],
            vec!["do"],
            vec!["mdc", "eval", "c3.png", "--class", "3"],
            vec!["ls"]
        ]
    );
    assert_eq!(mask_timings("ok: 2 blocks (0.2 ms), (x) (3 s)"), "ok: 2 blocks (<time>), (x) (<time>)");
    let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    assert!(output_matches(&lines("a\n...\nd [..] f"), &lines("a\nb\nc\nd e f")));
    assert!(output_matches(&lines("a\n...\nb"), &lines("a\nb")));
    assert!(!output_matches(&lines("a\n...\nd [..] f"), &lines("a\nb\nd e g")));
    assert!(!output_matches(&lines("a"), &lines("a\nb")));
    assert!(parse_mdc(&["check".into(), "--nope".into()]).is_err());
}
