//! One small fixture per error class: the report must name the right line, block and problem.

use std::path::Path;

use mdc::dsl::{Diagnostic, Report, Severity};
use mdc::model::{self, ModelError};

/// Loads a fixture that must fail and returns its report.
fn report(name: &str) -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    match model::load(&path) {
        Err(ModelError::Invalid { report }) => *report,
        Err(e) => panic!("{name}: expected model errors, got {e}"),
        Ok(_) => panic!("{name}: expected model errors, but it checked clean"),
    }
}

/// Asserts that `report` has an error at `line` in `block` whose text contains `fragment`,
/// and that the rendered report points at that line.
fn assert_error(name: &str, line: usize, block: Option<&str>, fragment: &str) -> Report {
    let r = report(name);
    let located = r.located();
    let hit = located.iter().find(|d| {
        d.severity == Severity::Error
            && d.line == line
            && d.block == block
            && (d.message.contains(fragment) || d.rendered.contains(fragment))
    });
    assert!(
        hit.is_some(),
        "{name}: no error at line {line} in {block:?} mentioning {fragment:?}; got:\n{}",
        r.render()
    );
    let rendered = r.render();
    assert!(
        rendered.contains(&format!("{name}:{line}:")),
        "{name}: rendered report lacks the location:\n{rendered}"
    );
    if let Some(b) = block {
        assert!(rendered.contains(b), "{name}: rendered report does not name {b}:\n{rendered}");
    }
    r
}

fn errors(r: &Report) -> Vec<&Diagnostic> {
    r.diagnostics.iter().filter(|d| d.is_error()).collect()
}

#[test]
fn toml_syntax_error() {
    let r = assert_error("toml_syntax.toml", 6, None, "invalid TOML");
    assert_eq!(errors(&r).len(), 1);
}

#[test]
fn unknown_section_suggests_the_right_one() {
    let r = assert_error("unknown_section.toml", 4, None, "unknown section `varz`");
    assert_eq!(errors(&r).len(), 1, "a misspelt section must not cascade:\n{}", r.render());
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `vars`?"));
}

#[test]
fn unknown_op_kind() {
    let r = assert_error("unknown_op.toml", 21, Some("mid"), "unknown op kind `resblok`");
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `resblock`?"));
    assert_eq!(r.diagnostics[0].field.as_deref(), Some("op"));
}

#[test]
fn unknown_field_with_did_you_mean() {
    let r = assert_error("unknown_field.toml", 24, Some("dec1"), "unknown field `chanels`");
    assert_eq!(errors(&r).len(), 1, "the misspelt field must not also be reported missing:\n{}", r.render());
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `channels`?"));
    let r = assert_error("unknown_field2.toml", 22, Some("up"), "unknown field `scale`");
    assert!(r.diagnostics[0].help.as_deref().unwrap().contains("the fields here are"));
}

#[test]
fn missing_field() {
    let r = assert_error("missing_field.toml", 19, Some("enc1"), "missing field `channels`");
    assert_eq!(r.diagnostics[0].field.as_deref(), Some("channels"));
}

#[test]
fn wrong_value_type() {
    let r = assert_error("wrong_type.toml", 18, Some("init"), "wrong value type");
    assert_eq!(r.diagnostics[0].found.as_deref(), Some("the float 1.5"));
}

#[test]
fn reference_to_a_missing_block() {
    let r = assert_error("unknown_block.toml", 23, Some("cat"), "no block named `enc`");
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `enc1`?"));
}

#[test]
fn duplicate_block_names() {
    let r = assert_error("duplicate_block.toml", 24, None, "`cat` is defined twice");
    let labels = &r.located()[0].labels;
    assert_eq!((labels[0].line, labels[0].text), (23, "`cat` is first defined here"));
}

#[test]
fn cycle() {
    let r = assert_error("cycle.toml", 21, Some("mid"), "cycle: mid -> up -> cat -> dec1 -> mid");
    assert_eq!(errors(&r).len(), 1);
}

#[test]
fn unused_block_is_a_warning_only() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unused_block.toml");
    let m = model::load(&path).expect("warnings do not fail the model");
    assert_eq!(m.warnings.len(), 1);
    let w = &m.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.block.as_deref(), Some("extra"));
    let rendered = m.warnings_report().render();
    assert!(rendered.contains("unused_block.toml:25:1"), "{rendered}");
}

#[test]
fn concat_of_different_spatial_sizes_names_both_shapes() {
    // The input size is the one error, at the line to edit; the mismatch it causes at `cat` is
    // a note on it that names both shapes, not a second error.
    let r =
        assert_error("concat_size.toml", 10, Some("[input]"), "cannot be halved twice evenly (6 -> 3 -> 2)");
    assert_eq!(errors(&r).len(), 1, "{}", r.render());
    let note = &errors(&r)[0].notes[0];
    assert!(
        note.contains("`cat`")
            && note.contains("`up` gives [N, 16, 8, 8]")
            && note.contains("`enc1` gives [N, 16, 6, 6]"),
        "{note}"
    );
}

#[test]
fn channels_not_divisible_by_groups() {
    let r =
        assert_error("group_divisible.toml", 19, Some("enc1"), "18 channels are not divisible into 4 groups");
    let d = &errors(&r)[0];
    assert!(d.help.as_deref().unwrap().contains("16 or 20"));
    // Both values are labelled where [vars] defines them, which is what to edit.
    let labels: Vec<_> = r.located().into_iter().flat_map(|d| d.labels).map(|l| (l.line, l.text)).collect();
    assert!(labels.contains(&(5, "`channels[1]` = 18 is defined here")), "{labels:?}");
    assert!(labels.contains(&(6, "`groups` = 4 is defined here")), "{labels:?}");
}

#[test]
fn heads_not_dividing_channels() {
    assert_error("heads_divide.toml", 21, Some("mid"), "3 heads do not divide 16 channels");
}

#[test]
fn kernel_giving_an_empty_output() {
    assert_error("empty_conv.toml", 18, Some("init"), "kernel 9 does not fit a 8x8 input");
}

#[test]
fn input_size_the_downsampling_cannot_take() {
    let r = assert_error("input_size.toml", 10, Some("[input]"), "cannot be halved once evenly (9 -> 5)");
    let d = r.diagnostics.iter().find(|d| d.block.as_deref() == Some("[input]")).unwrap();
    assert_eq!(d.help.as_deref(), Some("use 8 or 10 (or remove a downsample)"));
}

#[test]
fn strided_convs_and_transposed_convs_count_as_downsamples_and_upsamples() {
    // Two stride-2 convs halve 10 -> 5 -> 3 and the transposed convs double it back: the input
    // size is the one error, counted from the blocks' shapes, not from their kinds.
    let r = one_error_at(
        "resample_strided_convs.toml",
        11,
        &["an input size of 10x10 cannot be halved twice evenly (10 -> 5 -> 3)"],
    );
    let d = errors(&r)[0];
    assert_eq!(d.expected.as_deref(), Some("a multiple of 4 for 2 downsamples"));
    assert_eq!(d.help.as_deref(), Some("use 8 or 12 (or remove a downsample)"));
    assert_eq!(
        d.notes,
        ["so the sizes at `cat2` no longer line up: `up2` gives [N, 16, 6, 6], `enc2` gives [N, 16, 5, 5]"]
    );
}

#[test]
fn an_unpaired_transposed_conv_is_named_as_unpaired_levels() {
    // The strided model without its first transposed conv: one doubling for two halvings.
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resample_strided_convs.toml"),
    )
    .unwrap()
    .replace("height = 10\nwidth = 10", "height = 8\nwidth = 8")
    .replace("up2   = { op = \"conv_transpose\", in = \"mid\",   channels = \"channels[1]\", kernel = 4, stride = 2, padding = 1 }\n", "")
    .replace("in = [\"up2\", \"enc2\"]", "in = [\"mid\", \"enc2\"]");
    let r = match model::from_bytes(Path::new("strided.toml"), src.as_bytes()) {
        Err(ModelError::Invalid { report }) => *report,
        other => panic!("expected errors, got {other:?}"),
    };
    let help = only_error(&r, 25, "cat2");
    assert!(
        help.starts_with("`enc2` is at 4x4 and `mid` at 2x2: the model has 2 downsamples and 1 upsample"),
        "{help}"
    );
}

#[test]
fn a_renamed_output_block_is_suggested_by_its_shape() {
    let r = one_error_at("output_renamed.toml", 3, &["no block named `out`"]);
    assert_eq!(
        errors(&r)[0].help.as_deref(),
        Some("did you mean `final`, which gives x's shape [N, 1, 8, 8] and which nothing reads?")
    );
    // The issue's edit of models/unet.toml: `out` renamed `final`, [model] unchanged.
    let r = unet_edited("\nout      =", "\nfinal    =");
    assert_eq!(
        errors(&r)[0].help.as_deref(),
        Some("did you mean `final`, which gives x's shape [N, 1, 28, 28] and which nothing reads?")
    );
}

#[test]
fn output_shape_differs_from_input() {
    let r =
        assert_error("output_shape.toml", 2, Some("[model]"), "output shape differs from the input shape");
    assert!(r.diagnostics[0].found.as_deref().unwrap().contains("[N, 2, 8, 8]"));
}

#[test]
fn missing_timestep_embedding_is_one_error() {
    let r = assert_error("missing_time.toml", 16, Some("enc1"), "no timestep embedding");
    assert_eq!(errors(&r).len(), 1, "{}", r.render());
    assert!(r.diagnostics[0].notes[0].contains("`mid`, `dec1` also read `time`"));
}

#[test]
fn mis_sized_timestep_embedding() {
    assert_error("time_dim.toml", 14, Some("[time]"), "even dimension");
}

#[test]
fn named_values_out_of_range_or_undefined() {
    assert_error("var_index.toml", 18, Some("init"), "index 2 is out of range: `channels` has 2 values");
    let r = assert_error("var_undefined.toml", 19, Some("enc1"), "`chanels` is not defined");
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `channels`?"));
}

#[test]
fn independent_errors_are_all_reported() {
    // Three unrelated mistakes in one file: each gets its own message, in file order (shape
    // errors downstream of a broken block are not reported: its output is unknown).
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet.toml")).unwrap();
    let src = src
        .replace("op = \"downsample\", in = \"enc1\"", "op = \"downsampel\", in = \"enc1\"")
        .replace("in = \"dec1\" }", "in = \"dec1\", groups = \"grups\" }")
        .replace("in = [\"up3\", \"enc2\"]", "in = [\"up3\", \"enc9\"]");
    let r = match model::from_bytes(Path::new("unet.toml"), src.as_bytes()) {
        Err(ModelError::Invalid { report }) => report,
        other => panic!("expected errors, got {other:?}"),
    };
    let blocks: Vec<_> = errors(&r).iter().map(|d| d.block.clone().unwrap_or_default()).collect();
    assert_eq!(blocks, ["down1", "cat2", "out_norm"], "{}", r.render());
}

#[test]
fn three_downsamples_on_28x28_as_in_the_issue() {
    // A new user adds a third level to models/unet.toml: 28 -> 14 -> 7 -> 4, then 8 vs 7.
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet.toml")).unwrap();
    let src = src
        .replace(
            "mid1     = { op = \"resblock\",   in = \"enc3\",",
            "down3    = { op = \"downsample\", in = \"enc3\" }\nmid1     = { op = \"resblock\",   in = \"down3\",",
        )
        .replace(
            "cat3     = { op = \"concat\",     in = [\"mid2\", \"enc3\"] }",
            "up4      = { op = \"upsample\",   in = \"mid2\" }\ncat3     = { op = \"concat\",     in = [\"up4\", \"enc3\"] }",
        );
    let r = match model::from_bytes(Path::new("models/unet.toml"), src.as_bytes()) {
        Err(ModelError::Invalid { report }) => report,
        other => panic!("expected errors, got {other:?}"),
    };
    let located = r.located();
    assert!(located.iter().all(|d| d.block != Some("cat3")), "cat3's mismatch is a note, not an error");
    let input = located.iter().find(|d| d.block == Some("[input]")).expect("an error at [input]");
    assert_eq!(input.line, 16);
    assert!(input.message.contains("28x28 cannot be halved 3 times evenly (28 -> 14 -> 7 -> 4)"));
    assert_eq!(input.help, Some("use 24 or 32 (or remove a downsample)"));
    assert_eq!(
        input.notes,
        ["so the sizes at `cat3` no longer line up: `up4` gives [N, 64, 8, 8], `enc3` gives [N, 64, 7, 7]"]
    );
    assert_eq!(errors(&r).len(), 1, "{}", r.render());
}

fn unet_edited(from: &str, to: &str) -> Report {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet.toml")).unwrap();
    assert!(src.contains(from), "{from:?} not in unet.toml");
    match model::from_bytes(Path::new("models/unet.toml"), src.replacen(from, to, 1).as_bytes()) {
        Err(ModelError::Invalid { report }) => *report,
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn a_renamed_block_is_pointed_out_where_it_is_still_referenced() {
    let r = unet_edited("\nenc2 ", "\nencoder2 ");
    let located = r.located();
    let refs: Vec<_> = located.iter().filter(|d| d.message == "no block named `enc2`").collect();
    assert_eq!(
        refs.iter().map(|d| (d.line, d.block.unwrap())).collect::<Vec<_>>(),
        [(28, "down2"), (35, "cat2")]
    );
    assert!(refs.iter().all(|d| d.notes.iter().any(|n| n.contains("nothing reads yet: `encoder2`"))));
}

#[test]
fn a_conv_that_resizes_is_named_when_sizes_do_not_line_up() {
    let r = unet_edited("kernel = 3, padding = 1 }", "kernel = 4, padding = 1 }");
    let d = errors(&r)[0];
    assert_eq!(d.block.as_deref(), Some("cat1"));
    assert!(
        d.help.as_deref().unwrap().starts_with("`init` turns 28x28 into 27x27 (kernel 4, padding 1)"),
        "{:?}",
        d.help
    );
}

/// The one error of an edited unet.toml: at `line`, in `block`, with its help.
fn only_error(r: &Report, line: usize, block: &str) -> String {
    let located = r.located();
    let errs: Vec<_> = located.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errs.len(), 1, "{}", r.render());
    assert_eq!((errs[0].line, errs[0].block), (line, Some(block)), "{}", r.render());
    errs[0].help.expect("a help").to_string()
}

#[test]
fn a_skip_from_the_wrong_level_names_the_block_at_the_right_size() {
    let r = unet_edited("in = [\"up3\", \"enc2\"]", "in = [\"up3\", \"enc1\"]");
    let help = only_error(&r, 35, "cat2");
    assert_eq!(
        help,
        "`enc1` is at 28x28 and `up3` at 14x14: did you mean the skip from `enc2`, which is 14x14?"
    );
}

#[test]
fn a_deleted_downsample_is_named_as_unpaired_levels() {
    // The user removes `down2` and feeds `enc2` straight into `enc3`.
    let r = unet_edited(
        "down2    = { op = \"downsample\", in = \"enc2\" }\nenc3     = { op = \"resblock\",   in = \"down2\",",
        "enc3     = { op = \"resblock\",   in = \"enc2\",",
    );
    let help = only_error(&r, 34, "cat2");
    assert!(
        help.starts_with("`enc2` is at 14x14 and `up3` at 28x28: the model has 1 downsample and 2 upsamples"),
        "{help}"
    );
    assert!(help.contains("a downsample is missing"), "{help}");
    assert!(!help.contains("rounds an odd size"), "{help}");
}

#[test]
fn an_output_block_without_channels_is_not_told_to_set_them() {
    let r = unet_edited("output = \"out\"", "output = \"out_silu\"");
    let help = only_error(&r, 8, "[model]");
    assert!(
        help.contains(
            "a `silu` keeps its input's channel count: did you mean `out`, which gives [N, 1, 28, 28]?"
        ),
        "{help}"
    );
    assert!(!help.contains("channels = "), "{help}");
    // With no block of x's shape, the fix is a conv.
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/unet.toml")).unwrap();
    let src = src.replace("output = \"out\"", "output = \"out_silu\"");
    let src = &src[..src.find("\nout      =").expect("the out block")];
    let r = match model::from_bytes(Path::new("models/unet.toml"), src.as_bytes()) {
        Err(ModelError::Invalid { report }) => *report,
        other => panic!("expected errors, got {other:?}"),
    };
    let help = only_error(&r, 8, "[model]");
    assert!(
        help.ends_with(
            "add a conv after `out_silu` with `channels = \"input.channels\"` and make it the output"
        ),
        "{help}"
    );
}

#[test]
fn a_time_reference_that_is_not_an_embedding_is_blamed_on_time_even_when_in_reads_it_too() {
    let r = unet_edited(
        "in = \"init\",           channels = \"channels[1]\" }",
        "in = \"init\",           channels = \"channels[1]\", time = \"init\" }",
    );
    let located = r.located();
    let errs: Vec<_> = located.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errs.len(), 1, "{}", r.render());
    assert_eq!(
        (errs[0].line, errs[0].block, errs[0].field),
        (25, Some("enc1"), Some("time")),
        "{}",
        r.render()
    );
    assert_eq!(errs[0].expected, Some("a vector [N, D]"));
}

/// The full text `mdc check` prints for a fixture: every diagnostic and the summary line.
fn rendered_fixture(name: &str) -> String {
    let shown = format!("tests/fixtures/{name}");
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&shown)).unwrap();
    let report = match model::from_bytes(Path::new(&shown), &bytes) {
        Err(ModelError::Invalid { report }) => *report,
        Err(e) => panic!("{name}: {e}"),
        Ok(m) => m.warnings_report(),
    };
    format!("{}\n{}: {}", report.render(), report.path, report.summary())
}

/// Every fixture's whole rendered report is a reviewed snapshot (tests/snapshots/): a change in
/// wording, a caret that moves or a new cascade shows up as a diff to accept or fix.
#[test]
fn every_fixture_renders_as_reviewed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        let text = rendered_fixture(&name);
        insta::assert_snapshot!(name.trim_end_matches(".toml"), text);
    }
}

/// A realistic edit of models/unet.toml (a fixture): exactly one error, at the edited line,
/// whose text and help contain `fragments`; returns it.
fn one_error_at(name: &str, line: usize, fragments: &[&str]) -> Report {
    let r = report(name);
    let located = r.located();
    let errs: Vec<_> = located.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errs.len(), 1, "{name}: expected one error, got:\n{}", r.render());
    assert_eq!(errs[0].line, line, "{name}: the error is not at the edited line:\n{}", r.render());
    for f in fragments {
        assert!(errs[0].rendered.contains(f), "{name}: {f:?} not in:\n{}", errs[0].rendered);
    }
    assert_eq!(r.warnings(), 0, "{name}: a warning repeats the error:\n{}", r.render());
    r
}

#[test]
fn a_toml_slip_is_one_error_at_the_unclosed_delimiter() {
    one_error_at("syntax_unclosed_string.toml", 8, &["unterminated string", "8:8"]);
    one_error_at(
        "syntax_unclosed_bracket.toml",
        33,
        &["this `[` is never closed", "33:38", "closed by `}` here"],
    );
    one_error_at("syntax_unclosed_brace.toml", 25, &["this `{` (an inline table) is never closed", "25:12"]);
    one_error_at("syntax_bare_word.toml", 26, &["`init` needs quotes", "26:38", "help: write \"init\""]);
}

#[test]
fn a_problem_in_vars_is_reported_once_at_its_definition() {
    let r = one_error_at(
        "vars_renamed.toml",
        12,
        &["`channels` is not defined: [vars] defines `chanels`", "rename `chanels` to `channels`"],
    );
    assert!(r.diagnostics[0].notes[0].contains("9 blocks"), "{:?}", r.diagnostics[0].notes);
    let r = one_error_at("vars_groups_zero.toml", 13, &["`groups` = 0 is out of range", "positive integer"]);
    assert!(r.diagnostics[0].notes[0].contains("`enc1`, `enc2`"), "{:?}", r.diagnostics[0].notes);
}

#[test]
fn did_you_mean_knows_other_names_and_never_cascades() {
    one_error_at("input_alias.toml", 25, &["no block named `input`", "the noisy image input is called `x`"]);
    one_error_at("input_channel_typo.toml", 43, &["help: did you mean `input.channels`?"]);
    one_error_at("pytorch_kernel_size.toml", 25, &["unknown field `kernel_size`", "mdc calls it `kernel`"]);
    one_error_at("pytorch_pad.toml", 25, &["unknown field `pad`", "mdc calls it `padding`"]);
    let r =
        one_error_at("typo_with_unused_block.toml", 41, &["no block named `dex1`", "did you mean `dec1`?"]);
    assert!(r.diagnostics[0].notes[0].contains("nothing reads yet: `dec1`"), "{:?}", r.diagnostics[0].notes);
}

#[test]
fn helps_say_what_a_field_takes() {
    one_error_at("padding_same.toml", 25, &["`padding` takes a number", "write `padding = 1` for kernel 3"]);
    one_error_at(
        "upsample_channels.toml",
        35,
        &["unknown field `channels`", "`upsample` keeps the channels"],
    );
    one_error_at("downsample_stride.toml", 27, &["unknown field `stride`", "`stride` is a field of `conv`"]);
}

#[test]
fn a_dotted_block_name_is_explained_as_toml_tables() {
    one_error_at("dotted_block.toml", 32, &["TOML reads a dotted key as nested tables", "write `mid_attn`"]);
}

#[test]
fn a_dotted_block_under_an_existing_block_is_reported_at_the_dotted_line() {
    // `out.norm` before `out`: TOML reports `out` as the duplicate; after it, the dotted key.
    for (name, line, block_line) in [("dotted_block_clash.toml", 41, 43), ("dotted_block_after.toml", 42, 41)]
    {
        let r = one_error_at(
            name,
            line,
            &["TOML reads `out.norm` as a field `norm` of a table `out`", "write `out_norm`"],
        );
        let labels = &r.located()[0].labels;
        assert_eq!(labels.len(), 1, "{name}");
        assert_eq!(labels[0].line, block_line, "{name}: the label is not at the block `out`");
        assert!(!r.render().contains("defined twice"), "{name}:\n{}", r.render());
    }
}

#[test]
fn a_train_setting_is_checked_at_its_line() {
    let r = one_error_at("train_setting_typo.toml", 47, &["unknown training setting `sampel_eta`"]);
    assert_eq!(r.diagnostics[0].help.as_deref(), Some("did you mean `sample_eta`?"));
    assert_eq!(r.diagnostics[0].block.as_deref(), Some("[train]"));
}

/// Edits of models/unet-cond.toml: each misuse of a class condition is one error at its line.
#[test]
fn a_misused_class_condition_is_one_error_where_it_happens() {
    one_error_at(
        "cond_embedding_width.toml",
        31,
        &[
            "add needs inputs of the same shape",
            "[N, 64]",
            "set `features = 128` (`\"time.hidden\"`) in `label`",
        ],
    );
    one_error_at(
        "cond_never_read.toml",
        25,
        &["declares 10 classes, but no block reads the label `y`", "op = \"embedding\", in = \"y\""],
    );
    one_error_at(
        "cond_not_reaching_output.toml",
        25,
        &["does not reach the output: it stops at `cond`, which nothing reads", "time = \"cond\""],
    );
    one_error_at(
        "cond_label_in_unconditional.toml",
        27,
        &["`y` is the class label, and this model has no [condition]", "`[condition]` with `classes = 10`"],
    );
    one_error_at("cond_embedding_of_t.toml", 30, &["an embedding looks up the class label `y`, not `t`"]);
}
