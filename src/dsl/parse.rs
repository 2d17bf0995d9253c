//! The parser: TOML (with spans) to a [`ModelFile`], collecting every schema problem.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{self, suggestion, Diagnostic};
use super::schema::{FieldDefault, FieldKind, FieldReader, FieldSpec, OPS};
use super::{
    BlockDecl, BlockOp, InputDecl, ModelFile, OpKind, Span, TimeDecl, TrainEntry, TrainSection, Val,
    MAX_CHANNELS, MAX_SIZE, RESERVED,
};
use crate::train::check_setting;

const TOP_LEVEL: [&str; 6] = ["model", "vars", "input", "time", "blocks", "train"];

/// Parses `source`. Returns the file (when the TOML itself parsed) and every problem found.
pub fn parse(source: &str) -> (Option<ModelFile>, Vec<Diagnostic>) {
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        let diags = errors.iter().map(|e| syntax_error(source, e)).collect();
        return (None, diags);
    }
    let mut p = Parser { diags: Vec::new(), vars: HashMap::new(), input: None, suggested: Vec::new() };
    let file = p.file(root.get_ref());
    (Some(file), p.diags)
}

fn syntax_error(source: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let text = source.get(span.clone()).unwrap_or("").trim();
    if message.contains("duplicate key") {
        let mut d = Diagnostic::error(format!("`{text}` is defined twice"), span.clone())
            .help("every block, section and field name must be unique in its table: rename or remove one");
        if let Some(first) = first_definition(source, text, span.start) {
            d = d.note(format!("`{text}` is first defined at line {first}"));
        }
        d
    } else {
        Diagnostic::error(format!("invalid TOML: {message}"), span)
    }
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

/// The line of the first `name = ...` or `[...name]` before `before`, for duplicate keys.
fn first_definition(source: &str, name: &str, before: usize) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let head = source.get(..before)?;
    head.lines()
        .position(|line| {
            let l = line.trim_start();
            let key = l.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='));
            let table = l.starts_with('[') && l.trim_end().trim_end_matches(']').ends_with(name);
            key || table
        })
        .map(|i| i + 1)
}

#[derive(Debug, Clone)]
enum VarValue {
    Int(usize),
    List(Vec<usize>),
}

struct Parser {
    diags: Vec<Diagnostic>,
    vars: HashMap<String, (VarValue, Span)>,
    /// `[input]` values, for references like `"input.channels"`.
    input: Option<InputDecl>,
    /// Fields suggested for a misspelt field in the current table: not reported missing too.
    suggested: Vec<String>,
}

/// A table being read: its entries, where it is, and what to call it in messages.
struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    /// `enc1` for a block, `[input]` for a section.
    label: String,
}

impl<'a, 'i> Section<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }
}

impl Parser {
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
                    Some(Section { table: t, span, label: format!("[{name}]") })
                }
                _ => None,
            }
        };

        if let Some(vars) = section("vars") {
            self.vars(&vars);
        }
        self.input = match section("input") {
            Some(s) => self.input_section(&s),
            None => {
                self.require(root, "input", "declare the image the model denoises: `[input]` with `channels = 1`, `height = 28`, `width = 28`");
                None
            }
        };
        let time = section("time").and_then(|s| self.time_section(&s));
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
        let time_declared = has_section(root, "time");
        ModelFile { name, output, model_span, input: self.input.clone(), time, time_declared, blocks, train }
    }

    /// Reports a missing required section (unless it is only misspelt, which is reported already).
    fn require(&mut self, root: &DeTable<'_>, name: &str, help: &str) {
        if !has_section(root, name) {
            self.error(Diagnostic::error(format!("missing section [{name}]"), 0..0).help(help));
        }
    }

    fn vars(&mut self, s: &Section<'_, '_>) {
        for (key, value) in s.table {
            let name = key.get_ref().to_string();
            if !is_identifier(&name) {
                self.error(
                    Diagnostic::error(format!("`{name}` is not a usable name"), key.span())
                        .block("[vars]")
                        .expected("letters, digits and `_`, starting with a letter")
                        .found(format!("`{name}`")),
                );
                continue;
            }
            let parsed = match value.get_ref() {
                DeValue::Integer(_) => self.literal(value, &s.label, &name, 0, usize::MAX).map(VarValue::Int),
                DeValue::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    let mut ok = true;
                    for item in items.iter() {
                        if matches!(item.get_ref(), DeValue::Integer(_)) {
                            match self.literal(item, &s.label, &name, 0, usize::MAX) {
                                Some(v) => out.push(v),
                                None => ok = false,
                            }
                        } else {
                            ok = false;
                            self.error(
                                Diagnostic::error("list values must be integers", item.span())
                                    .block("[vars]")
                                    .field(name.clone())
                                    .expected("an integer")
                                    .found(describe(item.get_ref())),
                            );
                        }
                    }
                    ok.then_some(VarValue::List(out))
                }
                other => {
                    self.error(
                        Diagnostic::error(
                            "a named value must be an integer or a list of integers",
                            value.span(),
                        )
                        .block("[vars]")
                        .field(name.clone())
                        .expected("an integer (`groups = 8`) or a list (`channels = [32, 64, 128]`)")
                        .found(describe(other)),
                    );
                    None
                }
            };
            if let Some(v) = parsed {
                self.vars.insert(name, (v, value.span()));
            }
        }
    }

    fn input_section(&mut self, s: &Section<'_, '_>) -> Option<InputDecl> {
        self.unknown_fields(s, &["channels", "height", "width"], &[]);
        let channels = self.int(s, "channels", FieldDefault::Required, 1, MAX_CHANNELS);
        let height = self.int(s, "height", FieldDefault::Required, 1, MAX_SIZE);
        let width = self.int(s, "width", FieldDefault::Required, 1, MAX_SIZE);
        Some(InputDecl { span: s.span.clone(), channels: channels?, height: height?, width: width? })
    }

    fn time_section(&mut self, s: &Section<'_, '_>) -> Option<TimeDecl> {
        self.unknown_fields(s, &["dim", "hidden"], &[]);
        let dim = self.int(s, "dim", FieldDefault::Required, 1, MAX_CHANNELS);
        let hidden = self.int(s, "hidden", FieldDefault::Required, 1, MAX_CHANNELS);
        Some(TimeDecl { span: s.span.clone(), dim: dim?, hidden: hidden? })
    }

    fn model_section(&mut self, s: &Section<'_, '_>) -> (Option<String>, Option<Val<String>>) {
        self.unknown_fields(s, &["name", "output"], &[]);
        let name = self.string(s, "name", false).map(|v| v.value);
        let output = self.string(s, "output", true);
        (name, output)
    }

    fn blocks(&mut self, s: &Section<'_, '_>) -> Vec<BlockDecl> {
        let mut entries: Vec<_> = s.table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let name = key.get_ref().to_string();
            if RESERVED.contains(&name.as_str()) {
                let what = match name.as_str() {
                    "x" => "the image input",
                    "t" => "the timestep input",
                    _ => "the time embedding of the [time] section",
                };
                self.error(
                    Diagnostic::error(format!("`{name}` is reserved for {what}"), key.span())
                        .block(name.clone())
                        .help("give the block another name"),
                );
                continue;
            }
            if !is_block_name(&name) {
                self.error(
                    Diagnostic::error(format!("`{name}` is not a usable block name"), key.span())
                        .block(name.clone())
                        .expected("letters, digits, `_` and `-`, starting with a letter")
                        .found(format!("`{name}`")),
                );
                continue;
            }
            match value.get_ref() {
                DeValue::Table(t) => {
                    // Missing fields and defaults point at the block's name.
                    let section = Section { table: t, span: key.span(), label: name.clone() };
                    let span = if value.span().is_empty() { key.span() } else { value.span() };
                    out.push(self.block(&section, name, key.span(), span));
                }
                other => self.error(
                    Diagnostic::error("a block must be a table of fields", value.span())
                        .block(name.clone())
                        .expected(format!("`{name} = {{ op = \"...\", in = \"...\", ... }}`"))
                        .found(describe(other)),
                ),
            }
        }
        out
    }

    fn block(&mut self, s: &Section<'_, '_>, name: String, name_span: Span, span: Span) -> BlockDecl {
        let field_spans: Vec<(String, Span)> = s
            .table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), k.span().start..v.span().end.max(k.span().end)))
            .collect();
        let kind = self.op_kind(s, &name_span);
        match &kind {
            Some(k) => {
                let fields: Vec<&str> = k.value.fields().collect();
                self.unknown_fields(s, &fields, &["op", "in"])
            }
            None => self.suggested.clear(),
        }
        let (inputs, inputs_span) = self.inputs(s, kind.as_ref().map(|k| k.value), &name_span);
        let mut decl = BlockDecl {
            name,
            name_span,
            span,
            kind: kind.clone(),
            inputs,
            inputs_span,
            time: None,
            op: None,
            field_spans,
        };
        let Some(kind) = kind else {
            return decl;
        };
        // A bad value leaves the block's output unknown (an unknown field alone does not).
        let n = self.diags.len();
        if let Some(time) = kind.value.field("time") {
            let FieldDefault::Block(default) = time.default else { unreachable!("`time` names a block") };
            decl.time = self
                .string(s, "time", false)
                .or_else(|| Some(Val::plain(default.into(), decl.name_span.clone())));
        }
        let op = BlockOp::read(kind.value, &mut Fields { p: self, s });
        // Inputs that are missing or of the wrong count (reported, or hidden behind a
        // misspelt `in`) leave the block unbuildable too.
        let (lo, hi) = kind.value.arity();
        if self.diags.len() == n && (lo..=hi).contains(&decl.inputs.len()) {
            decl.op = op;
        }
        decl
    }

    fn op_kind(&mut self, s: &Section<'_, '_>, name_span: &Span) -> Option<Val<OpKind>> {
        let names: Vec<&str> = OPS.iter().map(|o| o.name).collect();
        let Some(v) = s.get("op") else {
            self.error(
                Diagnostic::error("missing field `op`", name_span.clone())
                    .block(s.label.clone())
                    .field("op")
                    .help(format!("say what the block does: `op = \"...\"`, one of {}", list(&names))),
            );
            return None;
        };
        let DeValue::String(text) = v.get_ref() else {
            self.error(
                Diagnostic::error("`op` must be a string", v.span())
                    .block(s.label.clone())
                    .field("op")
                    .expected(format!("one of {}", list(&names)))
                    .found(describe(v.get_ref())),
            );
            return None;
        };
        match OpKind::from_name(text) {
            Some(k) => Some(Val::plain(k, v.span())),
            None => {
                self.error(
                    Diagnostic::error(format!("unknown op kind `{text}`"), v.span())
                        .block(s.label.clone())
                        .field("op")
                        .expected(format!("one of {}", list(&names)))
                        .found(format!("`{text}`"))
                        .maybe_help(suggestion(text, names.iter().copied())),
                );
                None
            }
        }
    }

    fn inputs(
        &mut self,
        s: &Section<'_, '_>,
        kind: Option<OpKind>,
        name_span: &Span,
    ) -> (Vec<Val<String>>, Span) {
        let what = |kind: Option<OpKind>| match kind.map(OpKind::arity) {
            Some((1, 1)) => "one input: `in = \"<block>\"`".to_string(),
            Some((2, 2)) => "two inputs: `in = [\"<block>\", \"<block>\"]`".to_string(),
            Some((lo, _)) => format!("{lo} or more inputs: `in = [\"<block>\", \"<block>\"]`"),
            None => "`in = \"<block>\"` or a list of block names".to_string(),
        };
        let Some(v) = s.get("in") else {
            if self.suggested.iter().any(|f| f == "in") {
                return (Vec::new(), name_span.clone());
            }
            self.error(
                Diagnostic::error("missing field `in`", name_span.clone())
                    .block(s.label.clone())
                    .field("in")
                    .help(format!("name the block(s) this one reads: {}", what(kind))),
            );
            return (Vec::new(), name_span.clone());
        };
        let mut out = Vec::new();
        match v.get_ref() {
            DeValue::String(name) => out.push(Val::plain(name.to_string(), v.span())),
            DeValue::Array(items) => {
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(name) => out.push(Val::plain(name.to_string(), item.span())),
                        other => self.error(
                            Diagnostic::error("inputs are block names", item.span())
                                .block(s.label.clone())
                                .field("in")
                                .expected("a string naming a block")
                                .found(describe(other)),
                        ),
                    }
                }
            }
            other => self.error(
                Diagnostic::error("`in` must name blocks", v.span())
                    .block(s.label.clone())
                    .field("in")
                    .expected(what(kind))
                    .found(describe(other)),
            ),
        }
        if let Some(kind) = kind {
            let (lo, hi) = kind.arity();
            let written = matches!(v.get_ref(), DeValue::String(_) | DeValue::Array(_));
            if written && (out.len() < lo || out.len() > hi) {
                self.error(
                    Diagnostic::error(format!("wrong number of inputs for `{}`", kind.name()), v.span())
                        .block(s.label.clone())
                        .field("in")
                        .expected(what(Some(kind)))
                        .found(format!("{} input{}", out.len(), if out.len() == 1 { "" } else { "s" })),
                );
            }
        }
        (out, v.span())
    }

    /// Reports fields of `s` that are neither in `fields` nor in `common`.
    fn unknown_fields(&mut self, s: &Section<'_, '_>, fields: &[&str], common: &[&str]) {
        self.suggested.clear();
        for key in s.table.keys() {
            let k = key.get_ref().as_ref();
            if fields.contains(&k) || common.contains(&k) {
                continue;
            }
            let all: Vec<&str> = common.iter().chain(fields).copied().collect();
            if let Some(near) = diag::did_you_mean(k, all.iter().copied()) {
                self.suggested.push(near.to_string());
            }
            let help = suggestion(k, all.iter().copied())
                .unwrap_or_else(|| format!("the fields here are {}", list(&all)));
            self.error(
                Diagnostic::error(format!("unknown field `{k}`"), key.span())
                    .block(s.label.clone())
                    .field(k)
                    .expected(format!("one of {}", list(&all)))
                    .found(format!("`{k}`"))
                    .help(help),
            );
        }
    }

    fn string(&mut self, s: &Section<'_, '_>, field: &str, required: bool) -> Option<Val<String>> {
        let Some(v) = s.get(field) else {
            if required && !self.suggested.iter().any(|f| f == field) {
                let span = s.span.clone();
                self.error(
                    Diagnostic::error(format!("missing field `{field}`"), span)
                        .block(s.label.clone())
                        .field(field)
                        .expected("a block name, e.g. `output = \"out\"`"),
                );
            }
            return None;
        };
        match v.get_ref() {
            DeValue::String(text) => Some(Val::plain(text.to_string(), v.span())),
            other => {
                self.error(
                    Diagnostic::error("wrong value type", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("a string")
                        .found(describe(other)),
                );
                None
            }
        }
    }

    /// An integer field in `lo..=hi`: a literal or a reference to a named value.
    fn int(
        &mut self,
        s: &Section<'_, '_>,
        field: &str,
        default: FieldDefault,
        lo: usize,
        hi: usize,
    ) -> Option<Val<usize>> {
        let Some(v) = s.get(field) else {
            return match default {
                FieldDefault::Int(d) => Some(Val::plain(d, s.span.clone())),
                FieldDefault::Float(_) | FieldDefault::Block(_) => unreachable!("not an integer default"),
                FieldDefault::Var(var) => match self.vars.get(var) {
                    Some((VarValue::Int(d), def)) => {
                        // Out of range: point at the definition in [vars], which is what to edit.
                        let v = Val { value: *d, span: def.clone(), origin: Some((var.into(), def.clone())) };
                        let label = s.label.clone();
                        self.check_range(&v, &label, field, lo, hi).then_some(v)
                    }
                    _ => {
                        self.error(
                            Diagnostic::error(format!("missing field `{field}`"), s.span.clone())
                                .block(s.label.clone())
                                .field(field)
                                .expected("an integer")
                                .help(format!(
                                    "add `{field} = 8` to this block, or define `{var} = 8` in [vars] to set it for every block"
                                )),
                        );
                        None
                    }
                },
                FieldDefault::Required if self.suggested.iter().any(|f| f == field) => None,
                FieldDefault::Required => {
                    self.error(
                        Diagnostic::error(format!("missing field `{field}`"), s.span.clone())
                            .block(s.label.clone())
                            .field(field)
                            .expected(format!("`{field} = <integer>` or `{field} = \"<name from [vars]>\"`")),
                    );
                    None
                }
            };
        };
        let value = match v.get_ref() {
            DeValue::Integer(_) => Val::plain(self.literal(v, &s.label, field, lo, hi)?, v.span()),
            DeValue::String(text) if text.trim().parse::<i64>().is_ok() => {
                self.error(
                    Diagnostic::error("wrong value type: numbers are written without quotes", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("an integer")
                        .found(describe(v.get_ref()))
                        .help(format!("write `{field} = {}`", text.trim())),
                );
                return None;
            }
            DeValue::String(text) => {
                let (value, origin) = self.resolve(text, v.span(), &s.label, field)?;
                Val { value, span: v.span(), origin: Some((text.to_string(), origin)) }
            }
            other => {
                self.error(
                    Diagnostic::error("wrong value type", v.span())
                        .block(s.label.clone())
                        .field(field)
                        .expected("an integer, or the name of a value from [vars] such as \"channels[1]\"")
                        .found(describe(other)),
                );
                return None;
            }
        };
        self.check_range(&value, &s.label, field, lo, hi).then_some(value)
    }

    /// A number field in `lo..=hi` (an integer is taken as a number too).
    fn float(&mut self, s: &Section<'_, '_>, spec: &FieldSpec, lo: f64, hi: f64) -> Option<Val<f64>> {
        let field = spec.name;
        let Some(v) = s.get(field) else {
            return match spec.default {
                FieldDefault::Float(d) => Some(Val::plain(d, s.span.clone())),
                _ if self.suggested.iter().any(|f| f == field) => None,
                _ => {
                    self.error(
                        Diagnostic::error(format!("missing field `{field}`"), s.span.clone())
                            .block(s.label.clone())
                            .field(field)
                            .expected(format!("`{field} = <number>`")),
                    );
                    None
                }
            };
        };
        let value = match v.get_ref() {
            DeValue::Float(_) | DeValue::Integer(_) => plain_value(v.get_ref()).and_then(|p| match p {
                toml::Value::Float(f) => Some(f),
                toml::Value::Integer(i) => Some(i as f64),
                _ => None,
            }),
            _ => None,
        };
        let Some(value) = value else {
            self.error(
                Diagnostic::error("wrong value type", v.span())
                    .block(s.label.clone())
                    .field(field)
                    .expected("a number")
                    .found(describe(v.get_ref())),
            );
            return None;
        };
        if !(lo..=hi).contains(&value) {
            self.error(
                Diagnostic::error("the value is out of range", v.span())
                    .block(s.label.clone())
                    .field(field)
                    .expected(format!("a number from {lo} to {hi}"))
                    .found(value.to_string()),
            );
            return None;
        }
        Some(Val::plain(value, v.span()))
    }

    /// `[train]`: every setting is checked against the training settings' table here, so
    /// `mdc check` reports a misspelt or out-of-range setting at its line.
    fn train_section(&mut self, s: &Section<'_, '_>) -> TrainSection {
        let mut entries = Vec::new();
        for (key, value) in s.table {
            let name = key.get_ref().to_string();
            let Some(plain) = plain_value(value.get_ref()) else { continue };
            if let Err(problem) = check_setting(&name, &plain) {
                let d = Diagnostic::error(
                    problem.message,
                    if problem.unknown { key.span() } else { value.span() },
                )
                .block("[train]")
                .field(name.clone())
                .maybe_help(problem.help);
                self.error(d);
                continue;
            }
            entries.push(TrainEntry {
                key: Val::plain(name, key.span()),
                value: plain,
                value_span: value.span(),
            });
        }
        entries.sort_by_key(|e| e.key.span.start);
        TrainSection { span: s.span.clone(), entries }
    }

    fn literal(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        label: &str,
        field: &str,
        lo: usize,
        hi: usize,
    ) -> Option<usize> {
        let DeValue::Integer(i) = v.get_ref() else { return None };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= 0 && (n as u64) <= usize::MAX as u64 => Some(n as usize),
            _ => {
                self.error(
                    Diagnostic::error("the value is out of range", v.span())
                        .block(label.to_string())
                        .field(field.to_string())
                        .expected(format!("an integer from {lo} to {hi}"))
                        .found(i.as_str().to_string()),
                );
                None
            }
        }
    }

    fn check_range(&mut self, v: &Val<usize>, label: &str, field: &str, lo: usize, hi: usize) -> bool {
        if (lo..=hi).contains(&v.value) {
            return true;
        }
        let mut d = Diagnostic::error("the value is out of range", v.span.clone())
            .block(label.to_string())
            .field(field.to_string())
            .expected(if lo == 1 {
                format!("a positive integer up to {hi}")
            } else {
                format!("an integer from {lo} to {hi}")
            })
            .found(v.value.to_string());
        if let Some((name, _)) = &v.origin {
            d = d.note(format!("`{name}` is {}", v.value));
        }
        self.error(d);
        false
    }

    /// Resolves `"name"`, `"name[i]"` or `"input.<field>"` to a number and the span that defined it.
    fn resolve(&mut self, text: &str, span: Span, label: &str, field: &str) -> Option<(usize, Span)> {
        let err = |msg: String| {
            Diagnostic::error(msg, span.clone()).block(label.to_string()).field(field.to_string())
        };
        let (name, index) = match text.split_once('[') {
            Some((name, rest)) => match rest.strip_suffix(']').map(|i| i.trim().parse::<usize>()) {
                Some(Ok(i)) => (name.trim(), Some(i)),
                _ => {
                    self.error(
                        err(format!("`{text}` is not a valid reference"))
                            .expected("`name` or `name[index]`, e.g. \"channels[1]\"")
                            .found(format!("\"{text}\"")),
                    );
                    return None;
                }
            },
            None => (text.trim(), None),
        };
        if let Some(f) = name.strip_prefix("input.") {
            let input = self.input.as_ref();
            let v = match f {
                "channels" => input.map(|i| &i.channels),
                "height" => input.map(|i| &i.height),
                "width" => input.map(|i| &i.width),
                _ => {
                    self.error(
                        err(format!("[input] has no field `{f}`"))
                            .expected("`input.channels`, `input.height` or `input.width`")
                            .maybe_help(
                                suggestion(f, ["channels", "height", "width"])
                                    .map(|s| s.replace('`', "`input.")),
                            ),
                    );
                    return None;
                }
            };
            // When [input] itself is broken that is already reported.
            return v.filter(|_| index.is_none()).map(|v| (v.value, v.span.clone()));
        }
        let Some((value, def)) = self.vars.get(name).cloned() else {
            let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
            names.sort_unstable();
            let help = suggestion(name, names.iter().copied()).unwrap_or_else(|| {
                if names.is_empty() {
                    "there is no [vars] section; define the value there, e.g. `[vars]` `groups = 8`".into()
                } else {
                    format!("the values defined in [vars] are {}", list(&names))
                }
            });
            self.error(
                err(format!("`{name}` is not defined"))
                    .expected("an integer or a name defined in [vars]")
                    .found(format!("\"{text}\""))
                    .help(help),
            );
            return None;
        };
        match (value, index) {
            (VarValue::Int(v), None) => Some((v, def)),
            (VarValue::List(items), Some(i)) => match items.get(i) {
                Some(&v) => Some((v, def)),
                None => {
                    self.error(
                        err(format!("index {i} is out of range: `{name}` has {} values", items.len()))
                            .expected(if items.is_empty() {
                                format!("a non-empty `{name}`")
                            } else {
                                format!("an index from 0 to {}", items.len() - 1)
                            })
                            .found(i.to_string()),
                    );
                    None
                }
            },
            (VarValue::List(items), None) => {
                self.error(
                    err(format!("`{name}` is a list of {} values; pick one", items.len()))
                        .expected(format!("\"{name}[0]\" .. \"{name}[{}]\"", items.len().saturating_sub(1)))
                        .found(format!("\"{text}\"")),
                );
                None
            }
            (VarValue::Int(v), Some(_)) => {
                self.error(
                    err(format!("`{name}` is a single value ({v}), it has no index"))
                        .expected(format!("\"{name}\""))
                        .found(format!("\"{text}\"")),
                );
                None
            }
        }
    }
}

/// Reads a block's fields for [`BlockOp::read`].
struct Fields<'p, 'a, 'i> {
    p: &'p mut Parser,
    s: &'p Section<'a, 'i>,
}

impl FieldReader for Fields<'_, '_, '_> {
    fn int(&mut self, spec: &FieldSpec) -> Option<Val<usize>> {
        let FieldKind::Int { lo, hi } = spec.kind else { unreachable!("an integer field") };
        self.p.int(self.s, spec.name, spec.default, lo, hi)
    }

    fn float(&mut self, spec: &FieldSpec) -> Option<Val<f64>> {
        let FieldKind::Float { lo, hi } = spec.kind else { unreachable!("a number field") };
        self.p.float(self.s, spec, lo, hi)
    }
}

/// For a field written at the top level, the section it belongs in.
fn home_section(field: &str) -> Option<String> {
    let section = match field {
        "output" | "name" => "model",
        "channels" | "height" | "width" => "input",
        "dim" | "hidden" => "time",
        _ if OpKind::from_name(field).is_some() => "blocks",
        _ => return None,
    };
    Some(format!("`{field}` belongs in [{section}]: move it below the `[{section}]` line"))
}

/// A TOML value as the `toml` crate's plain [`toml::Value`] (for `[train]` settings).
fn plain_value(v: &DeValue<'_>) -> Option<toml::Value> {
    Some(match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => toml::Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
        DeValue::Float(f) => toml::Value::Float(f.as_str().replace('_', "").parse().ok()?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(items) => {
            toml::Value::Array(items.iter().map(|i| plain_value(i.get_ref())).collect::<Option<_>>()?)
        }
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| Some((k.get_ref().to_string(), plain_value(v.get_ref())?)))
                .collect::<Option<_>>()?,
        ),
    })
}

fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {}", i.as_str()),
        DeValue::Float(f) => format!("the float {}", f.as_str()),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// `` `a`, `b` or `c` ``
fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|i| format!("`{i}`")).collect();
            format!("{} or `{last}`", init.join(", "))
        }
    }
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_block_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
