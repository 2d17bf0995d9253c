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
    assert!(r.diagnostics[0].notes[0].contains("first defined at line 23"));
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
    let r = assert_error("concat_size.toml", 25, Some("cat"), "concat inputs differ in spatial size");
    let d = r.diagnostics.iter().find(|d| d.block.as_deref() == Some("cat")).unwrap();
    let found = d.found.as_deref().unwrap();
    assert!(
        found.contains("`up` gives [N, 16, 8, 8]") && found.contains("`enc1` gives [N, 16, 6, 6]"),
        "{found}"
    );
    // The input size is named as the cause, with sizes that work.
    assert_error("concat_size.toml", 10, Some("[input]"), "cannot be halved twice evenly (6 -> 3 -> 2)");
}

#[test]
fn channels_not_divisible_by_groups() {
    let r =
        assert_error("group_divisible.toml", 19, Some("enc1"), "18 channels are not divisible into 4 groups");
    let d = &errors(&r)[0];
    assert!(d.help.as_deref().unwrap().contains("16 or 20"));
    assert!(d.notes.iter().any(|n| n.contains("`channels[1]` = 18 is defined at line 5")), "{:?}", d.notes);
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
    let cat = located.iter().find(|d| d.block == Some("cat3")).expect("an error at cat3");
    assert_eq!(cat.line, 34);
    assert_eq!(cat.found, Some("`up4` gives [N, 64, 8, 8], `enc3` gives [N, 64, 7, 7]"));
    let input = located.iter().find(|d| d.block == Some("[input]")).expect("an error at [input]");
    assert_eq!(input.line, 16);
    assert!(input.message.contains("28x28 cannot be halved 3 times evenly (28 -> 14 -> 7 -> 4)"));
    assert_eq!(input.help, Some("use 24 or 32 (or remove a downsample)"));
    assert_eq!(errors(&r).len(), 2, "{}", r.render());
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
