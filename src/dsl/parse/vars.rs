//! `[vars]`: named values, and the references to them (`"channels[1]"`, `"input.channels"`,
//! `"time.hidden"`) that block fields make. A name that blocks read but that is not defined is
//! reported once, after every block is read, naming all its readers.

use toml::de::DeValue;

use super::words::{describe, list};
use super::{help::keyword_help, Parser, Section};
use crate::dsl::diag::{self, Diagnostic};
use crate::dsl::schema::SectionSpec;
use crate::dsl::{InputDecl, Span, TimeDecl, Val};

#[derive(Debug, Clone)]
pub(super) enum VarValue {
    Int(usize),
    /// Each item with its span.
    List(Vec<(usize, Span)>),
}

/// A block's read of a `[vars]` name that is not defined (or was refused).
pub(super) struct VarMiss {
    var: String,
    block: String,
    field: String,
    /// The reference as written (`"chanels[1]"`), or None for a default (`groups`).
    text: Option<String>,
    span: Span,
    /// What the field takes, for the help.
    takes: String,
}

impl Parser<'_> {
    /// Notes a failed read of `[vars]` name `var` by the block `s` (reported once per name).
    pub(super) fn var_miss(
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
    pub(super) fn report_var_problems(&mut self) {
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

    pub(super) fn vars(&mut self, s: &Section<'_, '_>) {
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

    /// The value of field `f` of the section `spec` (`value`: None when the file lacks the
    /// section, else the field's value when the section parsed), or None when there is none.
    pub(super) fn section_field(
        &mut self,
        spec: SectionSpec,
        f: &str,
        value: Option<Option<Val<usize>>>,
        text: &str,
        err: impl Fn(String) -> Diagnostic,
    ) -> Option<(usize, Span)> {
        let name = spec.name;
        if !spec.has_field(f) {
            let fields: Vec<String> = spec.field_names().map(|n| format!("{name}.{n}")).collect();
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            self.error(err(format!("[{name}] has no field `{f}`")).expected(list(&fields)).maybe_help(
                diag::did_you_mean(f, spec.field_names()).map(|c| format!("did you mean `{name}.{c}`?")),
            ));
            return None;
        }
        // [input] is required: its absence, or a broken field, is reported already.
        if value.is_none() && name != "input" {
            let fields: Vec<String> = spec.field_names().map(|n| format!("`{n}`")).collect();
            self.error(
                err(format!("`{text}` names the [{name}] section, which the model does not have"))
                    .expected(format!("a [{name}] section with {}", fields.join(" and ")))
                    .found(format!("no [{name}] section")),
            );
        }
        value.flatten().map(|v| (v.value, v.span))
    }

    /// Resolves `"name"`, `"name[i]"` or `"input.<field>"` to a number and the span that defined it.
    pub(super) fn resolve(
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
        // `"input.channels"`, `"time.hidden"`: a field of a section read before the blocks.
        let section = match name.split_once('.') {
            Some(("input", f)) => Some((InputDecl::SPEC, f, self.input.as_ref().map(|i| i.int(f).cloned()))),
            Some(("time", f)) => Some((TimeDecl::SPEC, f, self.time.as_ref().map(|t| t.int(f).cloned()))),
            _ => None,
        };
        if let Some((spec, f, value)) = section {
            return self.section_field(spec, f, value, text, err).filter(|_| index.is_none());
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

/// `channels` of `channels[1]`.
pub(super) fn var_base(reference: &str) -> &str {
    reference.split('[').next().unwrap_or(reference).trim()
}

/// `` `a`, `b` and 7 more `` (each block once, in order).
pub(super) fn block_list<'a>(blocks: impl Iterator<Item = &'a str>) -> String {
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

pub(super) fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
