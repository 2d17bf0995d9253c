//! TOML syntax slips, reported as rustc reports an unclosed delimiter: one error, at the cause.
//!
//! The `toml` parser recovers from a slip by guessing, and each guess fails again further on: an
//! unclosed `{` or `"` gives one error per following line, the first of them on the next line.
//! So before its errors are shown, the file is scanned for the usual cause (a string, `[` or
//! `{` that is never closed, or closed by the wrong delimiter) and that is the one error shown.
//! Without such a cause only the first error is shown; duplicate keys are independent of one
//! another and are all shown.

use super::diag::Diagnostic;
use super::Span;

/// The diagnostics for a file the TOML parser refused.
pub(super) fn syntax_errors(source: &str, errors: &[toml::de::Error]) -> Vec<Diagnostic> {
    let (duplicates, slips): (Vec<_>, Vec<_>) =
        errors.iter().partition(|e| e.message().contains("duplicate key"));
    if slips.is_empty() {
        return duplicates.iter().map(|e| duplicate_key(source, e)).collect();
    }
    if let Some(d) = unterminated_string(source).or_else(|| unclosed_delimiter(source)) {
        return vec![d];
    }
    let first = slips.iter().min_by_key(|e| e.span().map_or(0, |s| s.start)).expect("non-empty");
    vec![slip(source, first)]
}

fn duplicate_key(source: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let text = source.get(span.clone()).unwrap_or("").trim();
    if let Some(d) = dotted_key(source, &span).or_else(|| dotted_key_under(source, text, span.clone())) {
        return d;
    }
    let d = Diagnostic::error(format!("`{text}` is defined twice"), span.clone())
        .help("every block, section and field name must be unique in its table: rename or remove one");
    match first_definition(source, text, span.start) {
        Some(first) => d.label(first, format!("`{text}` is first defined here")),
        None => d,
    }
}

fn slip(source: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    if let Some(d) = dotted_key(source, &span).or_else(|| bare_word(source, span.start)) {
        return d;
    }
    Diagnostic::error(format!("invalid TOML: {}", e.message().trim()), span)
}

/// A value written without quotes (`in = init`, `channels = channels[1]`): TOML reads a bare
/// word as a malformed number or boolean; say that strings are quoted.
fn bare_word(source: &str, at: usize) -> Option<Diagnostic> {
    let rest = source.get(at..)?;
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "_-.[]".contains(c))).unwrap_or(rest.len());
    let word = &rest[..len];
    let before = source[..at].trim_end();
    let is_value = before.ends_with('=') || before.ends_with('[') || before.ends_with(',');
    let starts_like_a_name = word.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !is_value || !starts_like_a_name || ["true", "false", "inf", "nan"].contains(&word) {
        return None;
    }
    Some(
        Diagnostic::error(format!("`{word}` needs quotes: TOML strings are written in quotes"), at..at + len)
            .expected("a number, or a name in quotes")
            .found(format!("the bare word `{word}`"))
            .help(format!("write \"{word}\"")),
    )
}

/// A key with a dot on the error's line (`mid.attn = {...}`): TOML reads it as a table path.
pub(super) fn dotted_key(source: &str, span: &Span) -> Option<Diagnostic> {
    let line_start = source[..span.start.min(source.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next()?.trim();
    if !key.contains('.') || key.starts_with('[') || key.contains(['"', '\'']) {
        return None;
    }
    let at = line_start + line.find(key)?;
    let head = key.split_once('.').map_or(key, |(head, _)| head);
    Some(match key_definition(source, head) {
        Some(block) => dotted_key_clash(key, at..at + key.len(), block),
        None => dotted_key_error(key, at..at + key.len()),
    })
}

/// The span of the key of a line `name = ...` (a block, when it clashes with a dotted key).
fn key_definition(source: &str, name: &str) -> Option<Span> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let l = line.trim_start();
        if l.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            let at = offset + (line.len() - l.len());
            return Some(at..at + name.len());
        }
        offset += line.len();
    }
    None
}

/// `out = {...}` reported as defined twice because a dotted key `out.norm = {...}` (written
/// before it) made `out` a table: the clash, at the dotted key.
fn dotted_key_under(source: &str, name: &str, block: Span) -> Option<Diagnostic> {
    if name.is_empty() || name.contains(['.', '[', '"', '\'']) {
        return None;
    }
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let l = line.trim_start();
        let key = l.split('=').next().unwrap_or("").trim_end();
        let under = key.strip_prefix(name).is_some_and(|rest| rest.starts_with('.'));
        if under && l.contains('=') && !key.contains(['"', '\'', ' ']) {
            let at = offset + (line.len() - l.len());
            return Some(dotted_key_clash(key, at..at + key.len(), block));
        }
        offset += line.len();
    }
    None
}

/// `out.norm = {...}` in a file that also has the block `out`: TOML reads the dotted key as a
/// field of a table `out`, which the block `out` then collides with.
fn dotted_key_clash(key: &str, span: Span, block: Span) -> Diagnostic {
    let (head, rest) = key.split_once('.').unwrap_or((key, ""));
    Diagnostic::error(
        format!("TOML reads `{key}` as a field `{rest}` of a table `{head}`, not as a block name"),
        span,
    )
    .label(block, format!("the block `{head}`, which cannot also be a table"))
    .expected("a block name of letters, digits, `_` and `-`")
    .found(format!("`{key}`, a dotted key"))
    .help(format!("write `{}` instead", key.replace('.', "_")))
}

/// `mid.attn = {...}` is the table `mid` with a key `attn`, not a block named `mid.attn`.
pub(super) fn dotted_key_error(key: &str, span: Span) -> Diagnostic {
    let (head, rest) = key.split_once('.').unwrap_or((key, ""));
    Diagnostic::error(format!("`{key}` is not a name: TOML reads a dotted key as nested tables"), span)
        .expected("a block name of letters, digits, `_` and `-`")
        .found(format!("`{key}`, which TOML reads as `{rest}` inside a table `{head}`"))
        .help(format!("write `{}` instead", key.replace('.', "_")))
}

/// The span of the first `name = ...` or `[...name]` before `before`, for duplicate keys.
fn first_definition(source: &str, name: &str, before: usize) -> Option<Span> {
    if name.is_empty() {
        return None;
    }
    let head = source.get(..before)?;
    let mut offset = 0;
    for line in head.split_inclusive('\n') {
        let l = line.trim_start();
        let indent = line.len() - l.len();
        let key = l.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='));
        let table = l.starts_with('[') && l.trim_end().trim_end_matches(']').ends_with(name);
        if key {
            return Some(offset + indent..offset + indent + name.len());
        }
        if table {
            let at = offset + line.find(name)?;
            return Some(at..at + name.len());
        }
        offset += line.len();
    }
    None
}

/// The first `[` or `{` that is never closed or is closed by the other delimiter (strings are
/// known to be terminated: [`unterminated_string`] looked first).
fn unclosed_delimiter(source: &str) -> Option<Diagnostic> {
    let bytes = source.as_bytes();
    // Open `[` and `{` with their offsets.
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                i = line_end(source, i);
                continue;
            }
            q @ (b'"' | b'\'') => {
                i = string_end(source, i, q)?;
                continue;
            }
            c @ (b'[' | b'{') => open.push((c, i)),
            c @ (b']' | b'}') => {
                let want = if c == b']' { b'[' } else { b'{' };
                match open.pop() {
                    Some((o, _)) if o == want => {}
                    Some((o, at)) => {
                        return Some(
                            unclosed(o, at)
                                .label(i..i + 1, format!("closed by `{}` here", c as char))
                                .help(format!("close it with `{}` first", closer(o))),
                        )
                    }
                    None => {
                        return Some(
                            Diagnostic::error(
                                format!("unexpected `{}`: nothing is open", c as char),
                                i..i + 1,
                            )
                            .help("remove it, or open what it closes"),
                        )
                    }
                }
            }
            b'\n' => {
                if let Some(&(o, at)) = open.last() {
                    // An inline table ends on its line; a list may go on, but not into a new key.
                    if o == b'{' || next_line_is_a_key(source, i + 1) {
                        return Some(
                            unclosed(o, at)
                                .label(i..i, "the line ends here")
                                .help(format!("add `{}` at the end of the line", closer(o))),
                        );
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    open.first().map(|&(o, at)| {
        unclosed(o, at)
            .label(source.len()..source.len(), "the file ends here")
            .help(format!("add the closing `{}`", closer(o)))
    })
}

fn unclosed(open: u8, at: usize) -> Diagnostic {
    let what = if open == b'{' { "this `{` (an inline table)" } else { "this `[`" };
    Diagnostic::error(format!("unclosed delimiter: {what} is never closed"), at..at + 1)
}

fn closer(open: u8) -> char {
    if open == b'{' {
        '}'
    } else {
        ']'
    }
}

fn line_end(source: &str, from: usize) -> usize {
    source[from..].find('\n').map_or(source.len(), |n| from + n)
}

/// Where the string opening at `at` ends (just past its closing quote), or None when a
/// one-line string reaches the end of its line (see [`unterminated_string`]).
fn string_end(source: &str, at: usize, quote: u8) -> Option<usize> {
    let bytes = source.as_bytes();
    let triple = [quote; 3];
    if bytes[at..].starts_with(&triple) {
        let body = at + 3;
        return source[body..]
            .find(std::str::from_utf8(&triple).expect("ascii"))
            .map(|n| body + n + 3)
            .or(Some(source.len()));
    }
    let mut j = at + 1;
    while j < bytes.len() && bytes[j] != b'\n' {
        if quote == b'"' && bytes[j] == b'\\' {
            j += 2;
            continue;
        }
        if bytes[j] == quote {
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

/// Whether the first line from `from` that is not blank or a comment looks like `key = ...` or
/// a `[section]` header.
fn next_line_is_a_key(source: &str, from: usize) -> bool {
    source[from.min(source.len())..]
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let key = l.split('=').next().unwrap_or("");
            let is_key = l.contains('=')
                && !key.trim().is_empty()
                && key.trim().chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            is_key || (l.starts_with('[') && l.ends_with(']') && !l.contains(','))
        })
}

/// The unterminated string that makes [`string_end`] give up, as the file's one error.
fn unterminated_string(source: &str) -> Option<Diagnostic> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = line_end(source, i),
            q @ (b'"' | b'\'') => match string_end(source, i, q) {
                Some(end) => i = end,
                None => {
                    let end = line_end(source, i);
                    let q = q as char;
                    return Some(
                        Diagnostic::error(
                            format!("unterminated string: this `{q}` is never closed"),
                            i..i + 1,
                        )
                        .label(end..end, "the line ends here")
                        .help(format!("close the string with `{q}` on the same line")),
                    );
                }
            },
            _ => i += 1,
        }
    }
    None
}
