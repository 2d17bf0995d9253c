//! The parser: TOML (with spans) to a [`ModelFile`], collecting every schema problem.

use std::collections::{HashMap, HashSet};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{self, suggestion, Diagnostic};
use super::schema::{FieldDefault, FieldKind, FieldReader, FieldSpec, OPS};
use super::syntax;
use super::{
    BlockDecl, BlockOp, ConditionDecl, InputDecl, ModelFile, OpKind, Span, TimeDecl, TrainEntry,
    TrainSection, Val, MAX_CHANNELS, MAX_CLASSES, MAX_SIZE, RESERVED,
};

/// `[condition] drop`, read like a block's float field.
const CONDITION_DROP: FieldSpec = FieldSpec {
    name: "drop",
    kind: FieldKind::Float { lo: 0.0, hi: 0.99 },
    default: FieldDefault::Float(0.8),
    doc: "probability that training replaces a label by the null label (what `--guidance 0` learns from; 0.8 by measurement on the built-in digits, docs/conditional.md)",
};
use crate::train::{check_setting, MAX_TIMESTEPS};

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

#[derive(Debug, Clone)]
enum VarValue {
    Int(usize),
    /// Each item with its span.
    List(Vec<(usize, Span)>),
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

/// A block's read of a `[vars]` name that is not defined (or was refused).
struct VarMiss {
    var: String,
    block: String,
    field: String,
    /// The reference as written (`"chanels[1]"`), or None for a default (`groups`).
    text: Option<String>,
    span: Span,
    /// What the field takes, for the help.
    takes: String,
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
            Some(s) => self.input_section(&s),
            None => {
                self.require(root, "input", "declare the image the model denoises: `[input]` with `channels = 1`, `height = 28`, `width = 28`");
                None
            }
        };
        self.time = section("time").and_then(|s| self.time_section(&s));
        let condition = section("condition").and_then(|s| self.condition_section(&s));
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

    /// Notes a failed read of `[vars]` name `var` by the block `s` (reported once per name).
    fn var_miss(
        &mut self,
        var: &str,
        s: &Section<'_, '_>,
        field: &str,
        text: Option<String>,
        span: Span,
        takes: String,
    ) {
        if let Some((_, users)) = self.var_errors.get_mut(var) {
            users.push(s.label.clone());
            return;
        }
        let (var, block, field) = (var.to_string(), s.label.clone(), field.to_string());
        self.var_misses.push(VarMiss { var, block, field, text, span, takes });
    }

    /// One error per `[vars]` name that blocks read but that is not defined, and the blocks
    /// reading a refused value named in its error.
    fn report_var_problems(&mut self) {
        let misses = std::mem::take(&mut self.var_misses);
        let mut names: Vec<&str> = Vec::new();
        for m in &misses {
            if !names.contains(&m.var.as_str()) {
                names.push(&m.var);
            }
        }
        let mut defined: Vec<&str> = self.var_keys.keys().map(String::as_str).collect();
        defined.sort_unstable();
        let mut found = Vec::new();
        for var in names {
            let group: Vec<&VarMiss> = misses.iter().filter(|m| m.var == var).collect();
            let first = group[0];
            let readers = block_list(group.iter().map(|m| m.block.as_str()));
            let near = diag::did_you_mean(var, defined.iter().copied());
            // A definition that nothing reads, close to the name blocks read: it is the typo.
            let d = match near.filter(|n| !self.used_vars.contains(*n)) {
                Some(def) => Diagnostic::error(
                    format!("`{var}` is not defined: [vars] defines `{def}`, which nothing reads"),
                    self.var_keys[def].clone(),
                )
                .block("[vars]")
                .field(def)
                .label(first.span.clone(), format!("`{var}` is read here"))
                .note(format!("`{var}` is read by {readers}"))
                .help(format!("rename `{def}` to `{var}` (or the references to `{def}`)")),
                None => {
                    let others = block_list(group.iter().skip(1).map(|m| m.block.as_str()));
                    let help = near.map(|n| format!("did you mean `{n}`?")).unwrap_or_else(|| {
                        if defined.is_empty() {
                            format!("define it in a [vars] section: `{var} = 8`")
                        } else {
                            format!("the values defined in [vars] are {}", list(&defined))
                        }
                    });
                    let d = match &first.text {
                        Some(text) => Diagnostic::error(format!("`{var}` is not defined"), first.span.clone())
                            .expected(format!("{}, or a name defined in [vars]", first.takes))
                            .found(format!("\"{text}\""))
                            .help(help),
                        None => Diagnostic::error(format!("missing field `{}`", first.field), first.span.clone())
                            .expected(first.takes.clone())
                            .help(format!(
                                "add `{0} = 8` to this block, or define `{var} = 8` in [vars] to set it for every block",
                                first.field
                            )),
                    };
                    let d = d.block(first.block.clone()).field(first.field.clone());
                    if group.len() > 1 {
                        d.note(format!("`{var}` is also read by {others}"))
                    } else {
                        d
                    }
                }
            };
            found.push(d);
        }
        for d in found {
            self.error(d);
        }
        for (var, (index, users)) in &self.var_errors {
            if !users.is_empty() {
                let note = format!("`{var}` is read by {}", block_list(users.iter().map(String::as_str)));
                self.diags[*index].notes.push(note);
            }
        }
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
            self.var_keys.insert(name.clone(), key.span());
            let errors_before = self.diags.len();
            let parsed = match value.get_ref() {
                DeValue::Integer(_) => self.literal(value, &s.label, &name, 0, usize::MAX).map(VarValue::Int),
                DeValue::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    let mut ok = true;
                    for item in items.iter() {
                        if matches!(item.get_ref(), DeValue::Integer(_)) {
                            match self.literal(item, &s.label, &name, 0, usize::MAX) {
                                Some(v) => out.push((v, item.span())),
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
            match parsed {
                Some(v) => {
                    self.vars.insert(name, (v, value.span()));
                }
                // Refused (and reported): blocks reading it are named in that error, not
                // reported again.
                None if self.diags.len() > errors_before => {
                    self.var_errors.insert(name, (errors_before, Vec::new()));
                }
                None => {}
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

    fn condition_section(&mut self, s: &Section<'_, '_>) -> Option<ConditionDecl> {
        self.unknown_fields(s, &["classes", "drop", "hide_below"], &[]);
        let classes = self.int(s, "classes", FieldDefault::Required, 1, MAX_CLASSES);
        let drop = self.float(s, &CONDITION_DROP, 0.0, 0.99);
        let hide_below = self.int(s, "hide_below", FieldDefault::Int(0), 0, MAX_TIMESTEPS as usize);
        Some(ConditionDecl { span: s.span.clone(), classes: classes?, drop: drop?, hide_below: hide_below? })
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
                    "y" => "the class label input of a conditional model",
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
                DeValue::Table(t) if self.source[key.span().end..].trim_start().starts_with('.') => {
                    self.dotted_blocks(&name, key.span(), t, &mut out);
                }
                DeValue::Table(t) => {
                    // Missing fields and defaults point at the block's name.
                    let section = Section { table: t, span: key.span(), kind: None, label: name.clone() };
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

    /// `mid.attn = {...}`: TOML makes it the table `mid` holding `attn`. Each such block is
    /// reported once and kept, broken, under its dotted name, so blocks reading it do not
    /// report it missing.
    fn dotted_blocks(&mut self, head: &str, head_span: Span, t: &DeTable<'_>, out: &mut Vec<BlockDecl>) {
        for (key, value) in t {
            let name = format!("{head}.{}", key.get_ref());
            let span = head_span.start..key.span().end;
            self.error(syntax::dotted_key_error(&name, span.clone()));
            if let DeValue::Table(fields) = value.get_ref() {
                let section = Section { table: fields, span: span.clone(), kind: None, label: name.clone() };
                let mut decl = self.block(&section, name, span.clone(), span.start..value.span().end);
                decl.op = None;
                out.push(decl);
            }
        }
    }

    fn block(&mut self, s: &Section<'_, '_>, name: String, name_span: Span, span: Span) -> BlockDecl {
        let field_spans: Vec<(String, Span)> = s
            .table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), k.span().start..v.span().end.max(k.span().end)))
            .collect();
        let kind = self.op_kind(s, &name_span);
        let s = &Section {
            table: s.table,
            span: s.span.clone(),
            kind: kind.as_ref().map(|k| k.value),
            label: s.label.clone(),
        };
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
        // A misspelt field (`kernel_size`) stands for a value we do not have: the block's
        // output is unknown, so nothing downstream reports a consequence of it.
        let guessed = !self.suggested.is_empty();
        if self.diags.len() == n && !guessed && (lo..=hi).contains(&decl.inputs.len()) {
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
        for (key, value) in s.table {
            let k = key.get_ref().as_ref();
            if fields.contains(&k) || common.contains(&k) {
                continue;
            }
            let written = self.source.get(value.span()).unwrap_or("...");
            let all: Vec<&str> = common.iter().chain(fields).copied().collect();
            let near = other_spelling(k)
                .filter(|f| fields.contains(f))
                .or_else(|| diag::did_you_mean(k, all.iter().copied()));
            if let Some(near) = near {
                self.suggested.push(near.to_string());
            }
            let help = match near {
                Some(near) if s.get(near).is_some() => {
                    format!(
                        "`{near}` is mdc's name for it, and this block sets `{near}` already: remove `{k}`"
                    )
                }
                Some(near) if other_spelling(k).is_some() => {
                    format!("mdc calls it `{near}`: write `{near} = {written}`")
                }
                Some(near) => format!("did you mean `{near}`?"),
                None => match (k, s.kind) {
                    ("channels", Some(kind)) => format!(
                        "`{}` keeps the channels of its input ({}); to change them, follow it with \
                         a `conv` with `kernel = 1`",
                        kind.name(),
                        kind.spec().doc
                    ),
                    (_, Some(kind)) => match OPS.iter().find(|o| o.kind.field(k).is_some()) {
                        // `stride` on a downsample: a field of another op.
                        Some(owner) => format!(
                            "`{k}` is a field of `{}`; a `{}` is {}, and its fields are {}",
                            owner.name,
                            kind.name(),
                            kind.spec().doc,
                            list(&all)
                        ),
                        None => format!("the fields here are {}", list(&all)),
                    },
                    _ => format!("the fields here are {}", list(&all)),
                },
            };
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
                        self.used_vars.insert(var.to_string());
                        // Out of range: point at the definition in [vars], which is what to edit.
                        let v = Val { value: *d, span: def.clone(), origin: Some((var.into(), def.clone())) };
                        let label = s.label.clone();
                        self.check_range(&v, &label, field, lo, hi).then_some(v)
                    }
                    _ => {
                        let takes = format!("`{field}` (defaults to `{var}` of [vars])");
                        self.var_miss(var, s, field, None, s.span.clone(), takes);
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
                let takes = takes_text(s, field, lo, hi);
                let (value, origin) = self.resolve(text, v.span(), s, field, &takes)?;
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
        // A [vars] value out of range is one error at its definition, naming the blocks.
        if let Some((name, def)) = v.origin.as_ref().filter(|(n, _)| !n.starts_with("input.")) {
            let var = var_base(name).to_string();
            if let Some((_, users)) = self.var_errors.get_mut(&var) {
                users.push(label.to_string());
                return false;
            }
            let expected = if lo == 1 {
                format!("a positive integer up to {hi}")
            } else {
                format!("an integer from {lo} to {hi}")
            };
            let message = match field == var {
                true => format!("`{name}` = {} is out of range", v.value),
                false => format!("`{name}` = {} is out of range for `{field}`", v.value),
            };
            let d = Diagnostic::error(message, def.clone())
                .block("[vars]")
                .field(var.clone())
                .expected(expected)
                .found(v.value.to_string());
            self.var_errors.insert(var, (self.diags.len(), vec![label.to_string()]));
            self.error(d);
            return false;
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
    fn resolve(
        &mut self,
        text: &str,
        span: Span,
        s: &Section<'_, '_>,
        field: &str,
        takes: &str,
    ) -> Option<(usize, Span)> {
        let label = s.label.as_str();
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
                                diag::did_you_mean(f, ["channels", "height", "width"])
                                    .map(|c| format!("did you mean `input.{c}`?")),
                            ),
                    );
                    return None;
                }
            };
            // When [input] itself is broken that is already reported.
            return v.filter(|_| index.is_none()).map(|v| (v.value, v.span.clone()));
        }
        if let Some(f) = name.strip_prefix("time.") {
            let time = self.time.clone();
            let v = match f {
                "dim" => time.as_ref().map(|t| t.dim.clone()),
                "hidden" => time.as_ref().map(|t| t.hidden.clone()),
                _ => {
                    self.error(
                        err(format!("[time] has no field `{f}`"))
                            .expected("`time.dim` or `time.hidden`")
                            .maybe_help(
                                diag::did_you_mean(f, ["dim", "hidden"])
                                    .map(|c| format!("did you mean `time.{c}`?")),
                            ),
                    );
                    return None;
                }
            };
            if v.is_none() && time.is_none() {
                self.error(
                    err(format!("`{text}` names the [time] section, which the model does not have"))
                        .expected("a [time] section with `dim` and `hidden`")
                        .found("no [time] section"),
                );
            }
            return v.filter(|_| index.is_none()).map(|v| (v.value, v.span.clone()));
        }
        let Some((value, def)) = self.vars.get(name).cloned() else {
            if !is_identifier(name) || keyword_help(field, name, s).is_some() {
                // `padding = "same"`: not meant as a name at all.
                self.error(
                    err(format!("`{field}` takes a number, not \"{text}\""))
                        .expected(takes.to_string())
                        .found(format!("the string \"{text}\""))
                        .maybe_help(keyword_help(field, name, s)),
                );
                return None;
            }
            self.var_miss(name, s, field, Some(text.to_string()), span.clone(), takes.to_string());
            return None;
        };
        self.used_vars.insert(name.to_string());
        match (value, index) {
            (VarValue::Int(v), None) => Some((v, def)),
            (VarValue::List(items), Some(i)) => match items.get(i) {
                Some((v, item)) => Some((*v, item.clone())),
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
struct Fields<'p, 's, 'a, 'i> {
    p: &'p mut Parser<'s>,
    s: &'p Section<'a, 'i>,
}

impl FieldReader for Fields<'_, '_, '_, '_> {
    fn int(&mut self, spec: &FieldSpec) -> Option<Val<usize>> {
        let FieldKind::Int { lo, hi } = spec.kind else { unreachable!("an integer field") };
        self.p.int(self.s, spec.name, spec.default, lo, hi)
    }

    fn float(&mut self, spec: &FieldSpec) -> Option<Val<f64>> {
        let FieldKind::Float { lo, hi } = spec.kind else { unreachable!("a number field") };
        self.p.float(self.s, spec, lo, hi)
    }
}

/// `channels` of `channels[1]`.
fn var_base(reference: &str) -> &str {
    reference.split('[').next().unwrap_or(reference).trim()
}

/// `` `a`, `b` and 7 more `` (each block once, in order).
fn block_list<'a>(blocks: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for b in blocks {
        if !seen.contains(&b) {
            seen.push(b);
        }
    }
    let shown: Vec<String> = seen.iter().take(6).map(|b| format!("`{b}`")).collect();
    match seen.len() {
        n if n > 6 => format!("{} and {} more ({n} blocks)", shown.join(", "), n - 6),
        _ => shown.join(", "),
    }
}

/// What an integer field takes, for messages: "an integer from 0 to 63 (zeros added on each side)".
fn takes_text(s: &Section<'_, '_>, field: &str, lo: usize, hi: usize) -> String {
    let range = if lo == 1 {
        format!("a positive integer up to {hi}")
    } else {
        format!("an integer from {lo} to {hi}")
    };
    match s.kind.and_then(|k| k.field(field)) {
        Some(spec) => format!("{range} ({})", spec.doc),
        None => range,
    }
}

/// Help for a keyword another framework takes where mdc wants a number (`padding = "same"`).
fn keyword_help(field: &str, word: &str, s: &Section<'_, '_>) -> Option<String> {
    let kernel = s.get("kernel").and_then(|k| match k.get_ref() {
        DeValue::Integer(i) => i.as_str().parse::<usize>().ok(),
        _ => None,
    });
    match (field, word.to_ascii_lowercase().as_str()) {
        ("padding", "same") => Some(match kernel {
            Some(k) if k % 2 == 1 => format!(
                "\"same\" padding for kernel k is (k - 1) / 2: write `padding = {}` for kernel {k}",
                (k - 1) / 2
            ),
            _ => {
                "\"same\" padding for an odd kernel k is (k - 1) / 2 (e.g. `padding = 1` for kernel 3)".into()
            }
        }),
        ("padding", "valid") => Some("\"valid\" is no padding: write `padding = 0`, or leave it out".into()),
        (_, "auto" | "none" | "default") => Some(format!("leave `{field}` out to get its default")),
        _ => None,
    }
}

/// The field mdc has for a name other frameworks use (PyTorch's `kernel_size`, `num_groups`).
fn other_spelling(field: &str) -> Option<&'static str> {
    Some(match field {
        "kernel_size" | "ksize" | "k" => "kernel",
        "out_channels" | "out_ch" | "filters" | "dim_out" | "ch" | "channel" => "channels",
        "num_groups" | "groups_norm" | "norm_groups" => "groups",
        "num_heads" | "n_heads" | "nheads" | "head" => "heads",
        "pad" | "pads" | "pad_size" => "padding",
        "strides" | "step" => "stride",
        "out_features" | "out_dim" | "units" | "dim" | "hidden" => "features",
        "input" | "inputs" | "from" | "src" => "in",
        "type" | "kind" | "layer" => "op",
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
