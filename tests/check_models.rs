//! The shipped models build exactly the graphs the rest of mdc expects.

use std::path::{Path, PathBuf};

use mdc::check::blocks::mini_unet;
use mdc::model::{self, ModelError};
use sha2::{Digest, Sha256};

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn unet_toml_is_the_mini_unet() {
    let m = model::load(&path("models/unet.toml")).unwrap();
    let expected = mini_unet(1, 28, [16, 32, 64, 64], 8, 32, 128).unwrap();
    assert_eq!(m.graph, expected);
    assert_eq!(m.graph.param_count(), 642_001);
    assert!(m.warnings.is_empty());
    let blocks: Vec<&str> = m.table.iter().map(|r| r.block.as_str()).collect();
    assert_eq!(
        blocks,
        [
            "x", "t", "time", "init", "enc1", "down1", "enc2", "down2", "enc3", "mid1", "mid2", "cat3",
            "dec3", "up3", "cat2", "dec2", "up2", "cat1", "dec1", "out_norm", "out_silu", "out"
        ]
    );
}

#[test]
fn unet_rgb32_toml_is_the_rgb_mini_unet() {
    let m = model::load(&path("models/unet-rgb32.toml")).unwrap();
    assert_eq!(m.graph, mini_unet(3, 32, [32, 64, 128, 128], 8, 32, 128).unwrap());
    assert_eq!(m.graph.param_count(), 2_397_475);
}

#[test]
fn unet_attn_adds_three_attention_blocks() {
    let m = model::load(&path("models/unet-attn.toml")).unwrap();
    // GroupNorm(128) + qkv 1x1 conv 128->384 + proj 1x1 conv 128->128, each with bias.
    let attention = 2 * 128 + (128 * 384 + 384) + (128 * 128 + 128);
    let wide = mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128).unwrap();
    assert_eq!(wide.param_count(), 2_396_321);
    assert_eq!(m.graph.param_count(), wide.param_count() + 3 * attention);
    assert_eq!(m.graph.output_shape(), m.graph.input_shape());
    let attn: Vec<_> =
        m.table.iter().filter(|r| r.op == "attention").map(|r| (r.block.as_str(), r.shape.clone())).collect();
    assert_eq!(attn.len(), 3);
    assert!(attn.iter().all(|(_, s)| s == &[128, 7, 7]), "{attn:?}");
}

#[test]
fn table_totals_match_the_graph() {
    let m = model::load(&path("models/unet.toml")).unwrap();
    let t = mdc::check::table::totals(&m.table);
    assert_eq!(t.params, m.graph.param_count());
    assert_eq!(t.flops, m.graph.flops_per_image());
    let act: u64 = m.graph.nodes.iter().map(|n| 4 * n.shape.numel() as u64).sum();
    assert_eq!(t.activation_bytes, act);
    let enc1 = m.table.iter().find(|r| r.block == "enc1").unwrap();
    assert_eq!(enc1.shape, [32, 28, 28]);
    assert_eq!(enc1.op, "resblock");
}

#[test]
fn load_reports_hash_train_section_and_io_errors() {
    let src = std::fs::read(path("models/unet.toml")).unwrap();
    let mut with_train = src.clone();
    with_train.extend_from_slice(b"\n[train]\nlr = 0.0002\nsteps = 100\nschedule = \"cosine\"\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(&file, &with_train).unwrap();
    let m = model::load(&file).unwrap();
    let hex: String = Sha256::digest(&with_train).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(m.hash, hex);
    let train = m.train.expect("[train] is passed through");
    assert_eq!(train["steps"].as_integer(), Some(100));
    assert_eq!(train["schedule"].as_str(), Some("cosine"));
    assert_eq!(m.source.as_bytes(), &with_train[..]);

    let missing = model::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ModelError::Io { .. }));
    assert_eq!(missing.exit_code(), 2);
    assert!(missing.to_string().contains("nope.toml"));
}

/// `film = 1` on the conditional model's 7x7 resblocks adds one Linear(time -> channels) each,
/// scaling the normalised features; `film = 2` is refused with the field's range.
#[test]
fn film_resblocks_add_a_time_scale() {
    let src = std::fs::read_to_string(path("models/unet-cond.toml")).unwrap();
    let base = model::load(&path("models/unet-cond.toml")).unwrap();
    let film = src.replace(r#"time = "cond" }"#, r#"time = "cond", film = 1 }"#);
    let m = model::from_bytes(Path::new("film.toml"), film.as_bytes()).unwrap();
    // enc3, mid1, mid2 and dec3 (64 channels each): a 128 -> 64 Linear each.
    let added = 4 * (128 * 64 + 64);
    assert_eq!(m.graph.param_count(), base.graph.param_count() + added);
    let scaled: Vec<&str> =
        m.graph.nodes.iter().filter(|n| n.op.kind() == "scale_channels").map(|n| n.name.as_str()).collect();
    assert_eq!(scaled, ["enc3.scale_time", "mid1.scale_time", "mid2.scale_time", "dec3.scale_time"]);
    let bad = src.replacen(r#"time = "cond" }"#, r#"time = "cond", film = 2 }"#, 1);
    let err = model::from_bytes(Path::new("bad.toml"), bad.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("film") && err.contains("enc3") && err.contains('2'), "{err}");
}

#[test]
fn block_order_in_the_file_does_not_matter() {
    let src = std::fs::read_to_string(path("models/unet.toml")).unwrap();
    let (head, blocks) = src.split_at(src.find("[blocks]\n").unwrap() + "[blocks]\n".len());
    let reversed: Vec<&str> = blocks.lines().rev().collect();
    let shuffled = format!("{head}{}\n", reversed.join("\n"));
    let m = model::from_bytes(Path::new("reversed.toml"), shuffled.as_bytes()).unwrap();
    let base = mini_unet(1, 28, [16, 32, 64, 64], 8, 32, 128).unwrap();
    assert_eq!(m.graph.param_count(), base.param_count());
    let mut a: Vec<_> = m.graph.nodes.iter().map(|n| (&n.name, &n.shape.0)).collect();
    let mut b: Vec<_> = base.nodes.iter().map(|n| (&n.name, &n.shape.0)).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for (i, n) in m.graph.nodes.iter().enumerate() {
        assert!(n.inputs.iter().all(|&j| j < i), "node {} is not in topological order", n.name);
    }
}

#[test]
fn a_model_error_displays_the_full_report() {
    let src = std::fs::read_to_string(path("models/unet.toml")).unwrap().replace("groups = 8", "groups = 7");
    let e = model::from_bytes(Path::new("models/unet.toml"), src.as_bytes()).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let text = format!("{:#}", anyhow::Error::from(e));
    assert!(
        text.contains("error: block `enc1`, field `channels`: 32 channels are not divisible into 7 groups"),
        "{text}"
    );
    assert!(text.contains("--> models/unet.toml:25:"), "{text}");
    assert!(text.contains("12 | groups = 7") && text.contains("`groups` = 7 is defined here"), "{text}");
    assert!(text.ends_with("models/unet.toml: 1 error, 0 warnings"), "{text}");
}

#[test]
fn not_utf8_is_a_located_error() {
    let mut bytes = std::fs::read(path("models/unet.toml")).unwrap();
    let at = bytes.iter().position(|&b| b == b'[').unwrap() + 40;
    bytes[at] = 0xff;
    let e = model::from_bytes(Path::new("bad.toml"), &bytes).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("not valid UTF-8") && text.contains("bad.toml:"), "{text}");
}
