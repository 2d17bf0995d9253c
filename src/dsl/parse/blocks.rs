//! `[blocks]`: one block per key, its `op`, its `in` and the fields its op declares.

use toml::de::{DeTable, DeValue};

use super::words::{describe, list};
use super::{Parser, Section};
use crate::dsl::diag::{suggestion, Diagnostic};
use crate::dsl::schema::{FieldDefault, FieldKind, FieldReader, FieldSpec, OPS};
use crate::dsl::{syntax, BlockDecl, BlockOp, OpKind, Span, Val, RESERVED};

impl Parser<'_> {
    pub(super) fn blocks(&mut self, s: &Section<'_, '_>) -> Vec<BlockDecl> {
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
    pub(super) fn dotted_blocks(
        &mut self,
        head: &str,
        head_span: Span,
        t: &DeTable<'_>,
        out: &mut Vec<BlockDecl>,
    ) {
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

    pub(super) fn block(
        &mut self,
        s: &Section<'_, '_>,
        name: String,
        name_span: Span,
        span: Span,
    ) -> BlockDecl {
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

    pub(super) fn op_kind(&mut self, s: &Section<'_, '_>, name_span: &Span) -> Option<Val<OpKind>> {
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

    pub(super) fn inputs(
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
}

/// Reads a block's fields for [`BlockOp::read`].
pub(super) struct Fields<'p, 's, 'a, 'i> {
    pub(super) p: &'p mut Parser<'s>,
    pub(super) s: &'p Section<'a, 'i>,
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

pub(super) fn is_block_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
