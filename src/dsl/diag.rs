//! Diagnostics: what the checker tells a person, pointing at a line of their model file.
//!
//! Rendered like rustc/cargo: a headline, `--> file:line:col`, the source line with a caret
//! under the offending text, then `= expected ..., found ...`, notes and a `= help:`.

use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, anchored at a byte range of the model file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Byte range in the source; an empty range at 0 means "the file as a whole".
    pub span: Range<usize>,
    /// The user's block (`enc1`) or section (`[input]`) the finding is about.
    pub block: Option<String>,
    pub field: Option<String>,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: Range<usize>) -> Self {
        Self::new(Severity::Error, message.into(), span)
    }

    pub fn warning(message: impl Into<String>, span: Range<usize>) -> Self {
        Self::new(Severity::Warning, message.into(), span)
    }

    fn new(severity: Severity, message: String, span: Range<usize>) -> Self {
        Diagnostic {
            severity,
            message,
            span,
            block: None,
            field: None,
            expected: None,
            found: None,
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn block(mut self, block: impl Into<String>) -> Self {
        self.block = Some(block.into());
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// Sets the help only when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The headline: `block `enc1`, field `groups`: <message>`.
    pub fn headline(&self) -> String {
        let block = self.block.as_deref().map(|b| {
            if b.starts_with('[') {
                b.to_string()
            } else {
                format!("block `{b}`")
            }
        });
        match (&block, &self.field) {
            (Some(b), Some(f)) => format!("{b}, field `{f}`: {}", self.message),
            (Some(b), None) => format!("{b}: {}", self.message),
            (None, Some(f)) => format!("field `{f}`: {}", self.message),
            (None, None) => self.message.clone(),
        }
    }
}

/// Maps byte offsets to 1-based line and column (in characters).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// (line, column), both 1-based; offsets past the end clamp to the end.
    pub fn locate(&self, source: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col = source[self.starts[line]..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The text of 1-based `line`, without its newline.
    pub fn line_text<'s>(&self, source: &'s str, line: usize) -> &'s str {
        let start = self.starts[line - 1];
        let end = self.starts.get(line).copied().unwrap_or(source.len());
        source[start..end].trim_end_matches(['\n', '\r'])
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// All findings for one file, with what is needed to render them.
#[derive(Debug, Clone)]
pub struct Report {
    /// The path as the user gave it (what `-->` lines show).
    pub path: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// A diagnostic with its position resolved, for JSON output.
#[derive(Debug, Serialize)]
pub struct LocatedDiagnostic<'a> {
    pub severity: Severity,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub block: Option<&'a str>,
    pub field: Option<&'a str>,
    pub expected: Option<&'a str>,
    pub found: Option<&'a str>,
    pub notes: &'a [String],
    pub help: Option<&'a str>,
    /// The whole rendered text, as `mdc check` prints it.
    pub rendered: String,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    pub fn located(&self) -> Vec<LocatedDiagnostic<'_>> {
        let index = LineIndex::new(&self.source);
        self.diagnostics
            .iter()
            .map(|d| {
                let (line, column) = index.locate(&self.source, d.span.start);
                let (end_line, end_column) = index.locate(&self.source, d.span.end);
                LocatedDiagnostic {
                    severity: d.severity,
                    message: &d.message,
                    file: &self.path,
                    line,
                    column,
                    end_line,
                    end_column,
                    block: d.block.as_deref(),
                    field: d.field.as_deref(),
                    expected: d.expected.as_deref(),
                    found: d.found.as_deref(),
                    notes: &d.notes,
                    help: d.help.as_deref(),
                    rendered: self.render_one(&index, d),
                }
            })
            .collect()
    }

    /// Every diagnostic, rendered, separated by blank lines.
    pub fn render(&self) -> String {
        let index = LineIndex::new(&self.source);
        let parts: Vec<String> = self.diagnostics.iter().map(|d| self.render_one(&index, d)).collect();
        parts.join("\n")
    }

    /// The one-line summary cargo prints last, e.g. `3 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        format!("{}, {}", plural(self.errors(), "error"), plural(self.warnings(), "warning"))
    }

    fn render_one(&self, index: &LineIndex, d: &Diagnostic) -> String {
        let mut out = String::new();
        let label = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", d.headline());
        let (line, col) = index.locate(&self.source, d.span.start);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {}:{line}:{col}", self.path);
        if !self.source.is_empty() {
            let text = index.line_text(&self.source, line);
            // The caret covers the span's part of its first line (at least one character).
            let (end_line, end_col) = index.locate(&self.source, d.span.end);
            let width = if end_line == line {
                end_col.saturating_sub(col).max(1)
            } else {
                (text.chars().count() + 1).saturating_sub(col).max(1)
            };
            let (shown, caret_col, width) = window(text, col, width);
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{line} | {}", shown.replace('\t', " "));
            let _ = writeln!(out, "{pad} | {}{}", " ".repeat(caret_col - 1), "^".repeat(width));
        }
        match (&d.expected, &d.found) {
            (Some(e), Some(f)) => {
                let _ = writeln!(out, "{pad} = expected {e}, found {f}");
            }
            (Some(e), None) => {
                let _ = writeln!(out, "{pad} = expected {e}");
            }
            (None, Some(f)) => {
                let _ = writeln!(out, "{pad} = found {f}");
            }
            (None, None) => {}
        }
        for n in &d.notes {
            let _ = writeln!(out, "{pad} = note: {n}");
        }
        if let Some(h) = &d.help {
            let _ = writeln!(out, "{pad} = help: {h}");
        }
        out
    }
}

/// Longest source line shown whole; longer ones are cut around the caret.
const MAX_SHOWN: usize = 120;

/// The part of `text` to show, the caret's column in it and the caret's width.
fn window(text: &str, col: usize, width: usize) -> (String, usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_SHOWN {
        return (text.to_string(), col, width);
    }
    let start = col.saturating_sub(MAX_SHOWN / 2).min(chars.len().saturating_sub(MAX_SHOWN));
    let end = (start + MAX_SHOWN).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret_col = col - start;
    if start > 0 {
        shown.insert_str(0, "...");
        caret_col += 3;
    }
    if end < chars.len() {
        shown.push_str("...");
    }
    let width = width.min(end + 1 - (col - 1).min(end)).max(1);
    (shown, caret_col, width)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())?;
        write!(f, "{}: {}", self.path, self.summary())
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` as a help line, or None.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("kernal", ["kernel", "stride", "padding"]), Some("kernel"));
        assert_eq!(did_you_mean("resblok", ["resblock", "conv"]), Some("resblock"));
        assert_eq!(did_you_mean("zzzzzz", ["kernel", "stride"]), None);
    }

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let text = "x".repeat(300);
        let (shown, col, width) = window(&text, 200, 5);
        assert!(shown.starts_with("...") && shown.ends_with("..."));
        assert_eq!(shown.chars().count(), MAX_SHOWN + 6);
        assert_eq!((col, width), (200 - (200 - MAX_SHOWN / 2) + 3, 5));
        assert_eq!(window("short", 2, 3), ("short".to_string(), 2, 3));
    }

    #[test]
    fn locates_lines_and_columns() {
        let src = "a = 1\nbb = 2\n";
        let idx = LineIndex::new(src);
        assert_eq!(idx.locate(src, 0), (1, 1));
        assert_eq!(idx.locate(src, 6), (2, 1));
        assert_eq!(idx.locate(src, 11), (2, 6));
        assert_eq!(idx.line_text(src, 2), "bb = 2");
    }
}
