//! Diagnostics: what the checker tells a person, pointing at a line of their model file.
//!
//! Rendered like rustc/cargo by `annotate-snippets`, the renderer rustc itself uses: a
//! headline, `--> file:line:col`, the source with a caret under the offending text and labelled
//! secondary spans (where a `[vars]` value was defined, the other input of a concat), then
//! `= expected ..., found ...`, notes and a `= help:`. We chose it over codespan-reporting,
//! ariadne and miette because its output is rustc's own (users of Rust tools read it without
//! thinking), it is maintained by the rust-lang organisation, it renders plain text (what our
//! snapshot tests and `--format json` need) as well as colour, and it pulls in no dependency
//! we do not already have (anstyle, unicode-width).

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

pub use crate::base::suggest::{did_you_mean, suggestion};

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
    /// Secondary spans with what they show ("`groups` is defined here").
    pub labels: Vec<(Range<usize>, String)>,
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
            labels: Vec::new(),
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
    /// A labelled secondary span: another place in the file that explains this finding.
    pub fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
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
    /// The secondary spans, located.
    pub labels: Vec<LocatedLabel<'a>>,
    /// The whole rendered text, as `mdc check` prints it.
    pub rendered: String,
}

/// A secondary span of a diagnostic, located, for JSON output.
#[derive(Debug, Serialize)]
pub struct LocatedLabel<'a> {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub text: &'a str,
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
        let at = |offset: usize| index.locate(&self.source, offset);
        self.diagnostics
            .iter()
            .map(|d| {
                let (line, column) = at(d.span.start);
                let (end_line, end_column) = at(d.span.end);
                let labels = d
                    .labels
                    .iter()
                    .map(|(span, text)| {
                        let ((line, column), (end_line, end_column)) = (at(span.start), at(span.end));
                        LocatedLabel { line, column, end_line, end_column, text }
                    })
                    .collect();
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
                    labels,
                    rendered: self.render_one(d, &Renderer::plain()),
                }
            })
            .collect()
    }

    /// Every diagnostic, rendered as plain text, separated by blank lines.
    pub fn render(&self) -> String {
        self.render_with(&Renderer::plain())
    }

    /// Every diagnostic, in rustc's colours (for a terminal).
    pub fn render_styled(&self) -> String {
        self.render_with(&Renderer::styled())
    }

    fn render_with(&self, renderer: &Renderer) -> String {
        let parts: Vec<String> = self.diagnostics.iter().map(|d| self.render_one(d, renderer)).collect();
        parts.join("\n")
    }

    /// The one-line summary cargo prints last, e.g. `3 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        format!("{}, {}", plural(self.errors(), "error"), plural(self.warnings(), "warning"))
    }

    fn render_one(&self, d: &Diagnostic, renderer: &Renderer) -> String {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let headline = d.headline();
        let clamp = |r: &Range<usize>| {
            let end = r.end.min(self.source.len());
            r.start.min(end)..end
        };
        let mut snippet = Snippet::source(self.source.as_str())
            .path(self.path.as_str())
            .annotation(AnnotationKind::Primary.span(clamp(&d.span)));
        for (span, text) in &d.labels {
            snippet = snippet.annotation(AnnotationKind::Context.span(clamp(span)).label(text.as_str()));
        }
        let found_line = match (&d.expected, &d.found) {
            (Some(e), Some(f)) => Some(format!("expected {e}, found {f}")),
            (Some(e), None) => Some(format!("expected {e}")),
            (None, Some(f)) => Some(format!("found {f}")),
            (None, None) => None,
        };
        let mut group: Group<'_> = level.primary_title(headline).element(snippet);
        if let Some(line) = &found_line {
            group = group.element(Level::NOTE.no_name().message(line.as_str()));
        }
        for n in &d.notes {
            group = group.element(Level::NOTE.message(n.as_str()));
        }
        if let Some(h) = &d.help {
            group = group.element(Level::HELP.message(h.as_str()));
        }
        let mut out = renderer.render(&[group]);
        out.push('\n');
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())?;
        write!(f, "{}: {}", self.path, self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_footers_like_rustc() {
        let source = "[vars]\ngroups = 6\n[blocks]\nb = { op = \"group_norm\", in = \"x\" }\n";
        let d = Diagnostic::error("32 channels are not divisible into 6 groups", 36..48)
            .block("b")
            .field("groups")
            .expected("a divisor of 32")
            .found("6")
            .label(16..17, "`groups` is defined here")
            .note("a note")
            .help("use 8");
        let r = Report { path: "m.toml".into(), source: source.into(), diagnostics: vec![d] };
        let text = r.render();
        assert!(text.starts_with("error: block `b`, field `groups`: 32 channels"), "{text}");
        assert!(text.contains("--> m.toml:4:"), "{text}");
        assert!(text.contains("`groups` is defined here"), "{text}");
        assert!(text.contains("= expected a divisor of 32, found 6"), "{text}");
        assert!(text.contains("= note: a note") && text.contains("= help: use 8"), "{text}");
        let located = r.located();
        assert_eq!((located[0].labels[0].line, located[0].labels[0].column), (2, 10));
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
