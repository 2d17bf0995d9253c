//! `mdc check` and `mdc graph` end to end: exit codes, what goes to stdout and stderr, JSON.

use std::path::Path;
use std::process::{Command, Output};

fn mdc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("mdc runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_prints_the_table_and_exits_0() {
    let out = mdc(&["check", "models/unet.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("input [N, 1, 28, 28] -> output [N, 1, 28, 28]"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("enc1")
            && l.contains("resblock")
            && l.contains("[N, 32, 28, 28]")
            && l.contains("18,688")),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("total") && l.contains("642,001")), "{stdout}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn check_takes_several_files() {
    let out = mdc(&["check", "models/unet.toml", "models/unet-rgb32.toml", "models/unet-attn.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for total in ["642,001", "2,397,475", "2,595,233"] {
        assert!(
            stdout.lines().any(|l| l.starts_with("total") && l.contains(total)),
            "{total} missing:\n{stdout}"
        );
    }
}

#[test]
fn check_json_has_table_totals_and_no_findings() {
    let out = mdc(&["check", "--format", "json", "models/unet-rgb32.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["totals"]["params"], 2_397_475);
    assert_eq!(v["blocks"].as_array().unwrap().len(), 22);
    assert_eq!(v["blocks"][4]["block"], "enc1");
    assert_eq!(v["blocks"][4]["shape"], serde_json::json!([64, 32, 32]));
    assert_eq!(v["diagnostics"].as_array().unwrap().len(), 0);
    assert_eq!(v["input_shape"], serde_json::json!([3, 32, 32]));
}

#[test]
fn model_errors_exit_1_with_located_messages() {
    let out = mdc(&["check", "tests/fixtures/unknown_op.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: block `mid`, field `op`: unknown op kind `resblok`"), "{stderr}");
    assert!(stderr.contains("--> tests/fixtures/unknown_op.toml:21:14"), "{stderr}");
    assert!(stderr.contains("= help: did you mean `resblock`?"), "{stderr}");
    assert!(out.stdout.is_empty(), "no table for a broken model");

    let out = mdc(&["check", "--format", "json", "tests/fixtures/unknown_op.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(21), Some(14)));
    assert_eq!(d["block"], "mid");
    assert_eq!(d["field"], "op");
    assert_eq!(d["severity"], "error");

    // Secondary spans come with their position and text.
    let out = mdc(&["check", "--format", "json", "tests/fixtures/group_divisible.toml"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = &v["diagnostics"][0]["labels"];
    let groups = labels.as_array().unwrap().iter().find(|l| l["line"] == 6).expect("a label at line 6");
    assert_eq!((groups["column"].as_u64(), groups["end_column"].as_u64()), (Some(10), Some(11)));
    assert_eq!(groups["text"], "`groups` = 4 is defined here");
}

#[test]
fn every_error_fixture_exits_1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // train_tiny.toml is the training tests' (valid) model.
        let valid = ["small.toml", "unused_block.toml", "train_tiny.toml"];
        let expected = if valid.contains(&name.as_str()) { 0 } else { 1 };
        let out = mdc(&["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(expected), "{name}:\n{}", text(&out.stderr));
    }
}

#[test]
fn warnings_do_not_change_the_exit_code() {
    let out = mdc(&["check", "tests/fixtures/unused_block.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: block `extra`: the output of `extra` is never used"), "{stderr}");
    assert!(text(&out.stdout).contains("1 warning"));
}

#[test]
fn unreadable_files_and_bad_usage_exit_2() {
    let out = mdc(&["check", "models/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read model file models/does-not-exist.toml"));
    let out = mdc(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let out = mdc(&["check", "--format", "yaml", "models/unet.toml"]);
    assert_eq!(out.status.code(), Some(2));
    // The worst outcome wins when several files are given.
    let out = mdc(&["check", "models/unet.toml", "tests/fixtures/cycle.toml", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn graph_writes_dot_with_shapes_on_edges() {
    let out = mdc(&["graph", "models/unet.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"mini-unet\" {"), "{dot}");
    assert!(dot.contains("\"enc1\" -> \"down1\" [label=\"[N, 32, 28, 28]\"];"), "{dot}");
    assert!(dot.contains("\"enc3\" -> \"cat3\" [label=\"[N, 64, 7, 7]\"];"), "{dot}");
    assert!(dot.contains("\"time\" -> \"enc1\" [label=\"[N, 128]\"];"), "{dot}");
    assert!(dot.trim_end().ends_with('}'));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unet.dot");
    let out = mdc(&["graph", "models/unet-attn.toml", "-o", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"attn3\""));
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    let stderr = text(&out.stderr);
    if has_dot {
        assert!(std::fs::read_to_string(file.with_extension("svg")).unwrap().contains("<svg"));
    } else {
        assert!(stderr.contains("`dot` is not installed"), "{stderr}");
    }
}

#[test]
fn graph_of_a_broken_model_exits_1_with_the_report() {
    let out = mdc(&["graph", "tests/fixtures/cycle.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--> tests/fixtures/cycle.toml:21:"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}
