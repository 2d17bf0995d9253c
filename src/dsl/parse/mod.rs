//! The parser: TOML (with spans) to a [`ModelFile`], collecting every schema problem.
//!
//! One [`Parser`] walks the file; its readers live beside this file by what they read:
//! `sections` (`[input]`, `[time]`, `[condition]`, `[model]`, `[train]`), `vars` (`[vars]` and
//! references to named values), `blocks` (`[blocks]`), `values` (one field's value: integers,
//! numbers, strings, their ranges) and `help` (unknown fields and the hints for them).

mod blocks;
mod help;
mod sections;
mod values;
mod vars;
mod words;

use std::collections::{HashMap, HashSet};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{self, Diagnostic};
use super::syntax;
use super::{ConditionDecl, InputDecl, ModelFile, OpKind, Span, TimeDecl};
use help::home_section;
use vars::{VarMiss, VarValue};
use words::list;

const TOP_LEVEL: [&str; 7] = ["model", "vars", "input", "time", "condition", "blocks", "train"];

/// Parses `source`. Returns the file (when the TOML itself parsed) and every problem found.
pub fn parse(source: &str) -> (Option<ModelFile>, Vec<Diagnostic>) {
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        return (None, syntax::syntax_errors(source, &errors));
    }
    let mut p = Parser::new(source);
    let file = p.file(root.get_ref());
    (Some(file), p.diags)
}

/// Whether the file has section `name`, or a misspelling of it (reported on its own).
fn has_section(root: &DeTable<'_>, name: &str) -> bool {
    root.iter().any(|(k, v)| k.get_ref() == name || misspelt_section(k.get_ref(), v.get_ref()) == Some(name))
}

/// The section an unknown top-level table most likely meant (`[varz]` -> `vars`).
fn misspelt_section(key: &str, value: &DeValue<'_>) -> Option<&'static str> {
    let unknown_table = !TOP_LEVEL.contains(&key) && matches!(value, DeValue::Table(_));
    if unknown_table && home_section(key).is_none() {
        diag::did_you_mean(key, TOP_LEVEL)
    } else {
        None
    }
}

struct Parser<'s> {
    source: &'s str,
    diags: Vec<Diagnostic>,
    vars: HashMap<String, (VarValue, Span)>,
    /// `[input]` values, for references like `"input.channels"`.
    input: Option<InputDecl>,
    /// `[time]` values, for references like `"time.hidden"`.
    time: Option<TimeDecl>,
    /// Fields suggested for a misspelt field in the current table: not reported missing too.
    suggested: Vec<String>,
    /// Where each `[vars]` name is written (its key), including ones whose value was refused.
    var_keys: HashMap<String, Span>,
    /// `[vars]` names some block read successfully.
    used_vars: HashSet<String>,
    /// Reads of `[vars]` names that failed, reported once per name after all blocks are read.
    var_misses: Vec<VarMiss>,
    /// Errors about a `[vars]` value (index into `diags`), with the blocks that read it.
    var_errors: HashMap<String, (usize, Vec<String>)>,
}

/// A table being read: its entries, where it is, and what to call it in messages.
struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    /// The op of a block (once known), for messages that depend on it.
    kind: Option<OpKind>,
    /// `enc1` for a block, `[input]` for a section.
    label: String,
}

impl<'a, 'i> Section<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }
}

impl<'s> Parser<'s> {
    fn new(source: &'s str) -> Self {
        Parser {
            source,
            diags: Vec::new(),
            vars: HashMap::new(),
            input: None,
            time: None,
            suggested: Vec::new(),
            var_keys: HashMap::new(),
            used_vars: HashSet::new(),
            var_misses: Vec::new(),
            var_errors: HashMap::new(),
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn file(&mut self, root: &DeTable<'_>) -> ModelFile {
        for (key, value) in root {
            let k = key.get_ref().as_ref();
            if !TOP_LEVEL.contains(&k) {
                let what =
                    if matches!(value.get_ref(), DeValue::Table(_)) { "section" } else { "top-level key" };
                let help = home_section(k)
                    .or_else(|| misspelt_section(k, value.get_ref()).map(|s| format!("did you mean `{s}`?")));
                self.error(
                    Diagnostic::error(format!("unknown {what} `{k}`"), key.span())
                        .expected(format!("one of the sections {}", list(&TOP_LEVEL)))
                        .found(format!("`{k}`"))
                        .maybe_help(help),
                );
            } else if !matches!(value.get_ref(), DeValue::Table(_)) {
                self.error(
                    Diagnostic::error(format!("`{k}` must be a table"), value.span())
                        .block(format!("[{k}]"))
                        .expected(format!("a table, written `[{k}]` on its own line"))
                        .found(format!("a {}", value.get_ref().type_str())),
                );
            }
        }
        // A misspelt section (reported above) is read as the one it resembles, so its
        // contents do not cascade into "not defined" errors.
        let section = |name: &str| -> Option<Section<'_, '_>> {
            let exact = root.iter().find(|(k, _)| k.get_ref() == name);
            let (k, v) = exact.or_else(|| {
                root.iter().find(|(k, v)| misspelt_section(k.get_ref(), v.get_ref()) == Some(name))
            })?;
            match v.get_ref() {
                DeValue::Table(t) => {
                    let span = if v.span().is_empty() { k.span() } else { v.span() };
                    Some(Section { table: t, span, kind: None, label: format!("[{name}]") })
                }
                _ => None,
            }
        };

        if let Some(vars) = section("vars") {
            self.vars(&vars);
        }
        self.input = match section("input") {
            Some(s) => self.plain_section(&s, InputDecl::SPEC, InputDecl::read),
            None => {
                self.require(root, "input", "declare the image the model denoises: `[input]` with `channels = 1`, `height = 28`, `width = 28`");
                None
            }
        };
        self.time = section("time").and_then(|s| self.plain_section(&s, TimeDecl::SPEC, TimeDecl::read));
        let condition = section("condition")
            .and_then(|s| self.plain_section(&s, ConditionDecl::SPEC, ConditionDecl::read));
        let (name, output, model_span) = match section("model") {
            Some(s) => {
                let (name, output) = self.model_section(&s);
                (name, output, s.span.clone())
            }
            None => {
                self.require(
                    root,
                    "model",
                    "add `[model]` with `output = \"<the block that predicts the noise>\"`",
                );
                (None, None, 0..0)
            }
        };
        let blocks = match section("blocks") {
            Some(s) => self.blocks(&s),
            None => {
                self.require(root, "blocks", "add `[blocks]` with one line per block, e.g. `init = { op = \"conv\", in = \"x\", channels = 32, kernel = 3, padding = 1 }`");
                Vec::new()
            }
        };
        let train = section("train").map(|s| self.train_section(&s));
        self.report_var_problems();
        let time_declared = has_section(root, "time");
        let condition_declared = has_section(root, "condition");
        ModelFile {
            name,
            output,
            model_span,
            input: self.input.clone(),
            time: self.time.clone(),
            time_declared,
            condition,
            condition_declared,
            blocks,
            train,
        }
    }

    /// Reports a missing required section (unless it is only misspelt, which is reported already).
    fn require(&mut self, root: &DeTable<'_>, name: &str, help: &str) {
        if !has_section(root, name) {
            self.error(Diagnostic::error(format!("missing section [{name}]"), 0..0).help(help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::blocks::Fields;
    use super::*;
    use crate::dsl::schema::{FieldDefault, FieldKind, FieldReader, FieldSpec};
    use crate::dsl::Val;

    /// Reads field `spec` of the block `b` written in `block` through the parser's block reader.
    fn read_float(block: &str, spec: &FieldSpec) -> (Option<Val<f64>>, Vec<Diagnostic>) {
        let source = format!("[blocks]\nb = {block}\n");
        let (root, errors) = DeTable::parse_recoverable(&source);
        assert!(errors.is_empty());
        let mut p = Parser::new(&source);
        let root = root.get_ref();
        let DeValue::Table(blocks) = root.get("blocks").unwrap().get_ref() else { panic!() };
        let DeValue::Table(b) = blocks.get("b").unwrap().get_ref() else { panic!() };
        let s = Section { table: b, span: 0..0, kind: None, label: "b".into() };
        let v = Fields { p: &mut p, s: &s }.float(spec);
        (v, p.diags)
    }

    #[test]
    fn float_fields_take_numbers_in_range_with_a_default() {
        // A future `dropout = 0.1`: the block table would declare it as `dropout: float(0.0, 1.0)`.
        let spec = FieldSpec {
            name: "dropout",
            kind: FieldKind::Float { lo: 0.0, hi: 1.0 },
            default: FieldDefault::Float(0.0),
            doc: "dropout probability",
        };
        assert_eq!(read_float("{ dropout = 0.1 }", &spec).0.unwrap().value, 0.1);
        assert_eq!(read_float("{ dropout = 1 }", &spec).0.unwrap().value, 1.0);
        assert_eq!(read_float("{ }", &spec).0.unwrap().value, 0.0);
        let (v, diags) = read_float("{ dropout = 1.5 }", &spec);
        assert!(v.is_none());
        assert_eq!(diags[0].expected.as_deref(), Some("a number from 0 to 1"));
        let (v, diags) = read_float("{ dropout = \"high\" }", &spec);
        assert!(v.is_none());
        assert_eq!(diags[0].found.as_deref(), Some("the string \"high\""));
    }
}
