//! Checkpoints: exact round trip, and a clear error for every way a file can be wrong.

use mdc::check::blocks::mini_unet;
use mdc::graph::Graph;
use std::collections::HashMap;

use mdc::params::{CheckpointInfo, FormatVersion, Params, WeightsFile};
use mdc::train::{Checkpoint, CheckpointError, Guide, TrainConfig};

fn tiny() -> Graph {
    mini_unet(1, 8, [8, 16, 16, 16], 4, 8, 16).unwrap()
}

fn checkpoint(graph: &Graph) -> Checkpoint {
    let info = CheckpointInfo {
        step: 42,
        rng: [1, u64::MAX, 3, 0xDEAD_BEEF],
        data_epoch: 7,
        data_position: 13,
        model_hash: "ab".repeat(32),
        config: TrainConfig { steps: 99, lr: 3e-4, ..TrainConfig::default() },
        class_names: vec!["cat".into(), "dog, \"big\"".into()],
        guide_step: Some(11),
        mdc_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Checkpoint {
        info,
        model: Params::init(graph, 1),
        ema: Params::init(graph, 2),
        adam_m: Params::init(graph, 3),
        adam_v: Params::init(graph, 4),
        guide: Some(Guide { step: 11, weights: Params::init(graph, 5) }),
    }
}

fn load(path: &std::path::Path, graph: &Graph) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::load(path, graph, &"ab".repeat(32), "models/unet.toml")
}

#[test]
fn round_trips_exactly_and_serves_ema_for_inference() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    let ck = checkpoint(&g);
    ck.save(&p).unwrap();
    assert_eq!(load(&p, &g).unwrap(), ck);
    let file = WeightsFile::open(&p).unwrap();
    assert_eq!(file.weights(&g, true).unwrap(), ck.ema);
    assert_eq!(file.weights(&g, false).unwrap(), ck.model);
    assert_eq!(file.format_version(), Some(FormatVersion::V2));
    assert_eq!(file.checkpoint(), Some(&ck.info));
    let meta = metadata(&std::fs::read(&p).unwrap());
    assert_eq!((meta["schedule"].as_str(), meta["timesteps"].as_str()), ("cosine", "1000"));
    assert_eq!(meta["format"], "mdc-checkpoint-v2");
    assert_eq!(meta["metadata_sha256"], mdc::params::metadata_digest(&meta));
}

/// The same checkpoint saved twice is the same bytes, whatever order its metadata map iterates
/// in, and those bytes are what its content, read back, gives again: keys sorted, tensors in a
/// fixed order.
#[test]
fn the_same_checkpoint_is_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    let g = tiny();
    let ck = checkpoint(&g);
    ck.save(&p).unwrap();
    ck.save(&q).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert!(bytes == std::fs::read(&q).unwrap(), "two saves differ");
    assert_eq!(load(&q, &g).unwrap(), ck);

    // The content read back and written with its metadata inserted in reverse order.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let meta = metadata(&bytes);
    let mut keys: Vec<&String> = meta.keys().collect();
    keys.sort();
    let mut reversed = HashMap::new();
    for k in keys.iter().rev() {
        reversed.insert(k.to_string(), meta[*k].clone());
    }
    let again = mdc::base::safetensors_out::safetensors_bytes(st.tensors(), Some(&reversed));
    assert!(again == bytes, "rewriting the content read back changes the bytes");

    let (n, _) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let at: Vec<usize> = keys.iter().map(|k| header.find(&format!("\"{k}\":")).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "metadata keys not sorted: {header}");
}

/// The metadata's guide step and the guide's own must agree: a checkpoint where they do not
/// (a step without a guide, a guide without one, or two different steps) is refused, not written.
#[test]
fn a_guide_step_that_disagrees_with_the_guide_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    let disagreements: [fn(&mut Checkpoint); 3] =
        [|ck| ck.info.guide_step = Some(12), |ck| ck.guide = None, |ck| ck.info.guide_step = None];
    for disagree in disagreements {
        let mut ck = checkpoint(&g);
        disagree(&mut ck);
        let e = ck.save(&p).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("guide step"), "{e}");
        assert!(!p.exists(), "nothing is written");
    }
}

#[test]
fn damaged_files_are_reported_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    checkpoint(&g).save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();

    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("is corrupt") && e.contains("not a valid safetensors file"), "{e}");

    std::fs::write(&p, &bytes[..5]).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("is corrupt"), "{e}");

    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 10] ^= 0x40;
    std::fs::write(&p, &flipped).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("does not match its recorded SHA-256"), "{e}");

    // A flipped byte in the guide is caught by the guide's own digest.
    let (header_len, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let name = g.params()[0].0.clone();
    let (start, _) = header.info(&format!("guide.{name}")).expect("the guide is stored").data_offsets;
    let mut flipped = bytes.clone();
    flipped[8 + header_len + start] ^= 0x40;
    std::fs::write(&p, &flipped).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("the guide's tensor data does not match"), "{e}");

    std::fs::write(&p, b"").unwrap();
    assert!(load(&p, &g).unwrap_err().to_string().contains("is corrupt"));

    let e = load(&dir.path().join("nope.safetensors"), &g).unwrap_err().to_string();
    assert!(e.contains("cannot read checkpoint") && e.contains("nope.safetensors"), "{e}");
}

#[test]
fn wrong_kind_of_file_other_model_file_and_other_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let g = tiny();
    let weights = dir.path().join("weights.safetensors");
    Params::init(&g, 0).save(&weights).unwrap();
    let e = load(&weights, &g).unwrap_err();
    assert!(matches!(e, CheckpointError::NotACheckpoint { .. }), "{e}");
    assert!(e.to_string().contains("not a training checkpoint"));

    let p = dir.path().join("checkpoint.safetensors");
    checkpoint(&g).save(&p).unwrap();
    let e = Checkpoint::load(&p, &g, &"cd".repeat(32), "models/unet.toml").unwrap_err().to_string();
    assert!(e.contains("different model file") && e.contains("models/unet.toml is now cdcdcd"), "{e}");

    let other = mini_unet(1, 8, [8, 16, 32, 32], 4, 8, 16).unwrap();
    let e = load(&p, &other).unwrap_err().to_string();
    assert!(e.contains("does not fit this model") && e.contains("expected shape"), "{e}");
}

/// `bytes` with `from` replaced by `to` (same length, so the safetensors header stays valid).
fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from.as_bytes()).expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

#[test]
fn rng_state_must_be_exactly_four_hex_words() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    checkpoint(&g).save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let rng = "0000000000000001,ffffffffffffffff,0000000000000003,00000000deadbeef";
    // Five entries, one of them not hex: dropping the bad one would leave four valid words.
    let bad = format!("1,zz,2,3,{:0>58}", "4");
    // In a version 1 file (no metadata digest), so that the value itself is read.
    std::fs::write(&p, patched(&as_v1(&bytes), rng, &bad)).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("is corrupt") && e.contains("metadata `rng`") && e.contains("1,zz,2,3"), "{e}");
}

#[test]
fn a_recipe_out_of_range_in_the_metadata_is_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    for (edit, want) in [
        (
            &(|c: &mut TrainConfig| c.checkpoint_every = 0) as &dyn Fn(&mut TrainConfig),
            "`checkpoint_every`: expected a positive integer, found 0",
        ),
        (
            &|c: &mut TrainConfig| c.timesteps = 0,
            "`timesteps`: expected an integer from 1 to 100000, found 0",
        ),
        (&|c: &mut TrainConfig| c.batch = 0, "`batch`: expected an integer from 1 to 4096, found 0"),
    ] {
        let mut ck = checkpoint(&g);
        edit(&mut ck.info.config);
        ck.save(&p).unwrap();
        let e = load(&p, &g).unwrap_err().to_string();
        assert!(e.contains("is corrupt") && e.contains("checkpoint.safetensors"), "{e}");
        assert!(e.contains(&format!("metadata `config`: {want}")), "{e}");
    }
}

/// The string metadata of a safetensors file.
fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    safetensors::SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap_or_default()
}

/// A checkpoint's bytes rewritten with the same tensors and `edit`ed metadata.
fn with_metadata(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, String>)) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut meta = metadata(bytes);
    edit(&mut meta);
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

/// A checkpoint as mdc wrote it before format version 2: the same keys, no metadata digest.
fn as_v1(bytes: &[u8]) -> Vec<u8> {
    with_metadata(bytes, |m| {
        m.remove("metadata_sha256").unwrap();
        m.insert("format".into(), "mdc-checkpoint-v1".into());
    })
}

/// `bytes` with one bit flipped in the first `pattern` after its `skip`th byte.
fn flip(bytes: &[u8], pattern: &str, skip: usize) -> Vec<u8> {
    let at = bytes.windows(pattern.len()).position(|w| w == pattern.as_bytes()).expect("pattern present");
    let mut out = bytes.to_vec();
    out[at + skip] ^= 0x01;
    out
}

/// Files of format version 1 (every checkpoint mdc wrote before the metadata digest) load as
/// before; those from before `prediction` was recorded predict the noise. Version 2 files get
/// no such default.
#[test]
fn version_1_files_load_and_only_they_get_legacy_defaults() {
    use mdc::diffusion::{Prediction, Steering};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    let mut ck = checkpoint(&g);
    ck.info.config.autoguidance = 2.5;
    ck.info.config.autoguidance_max_t = Some(850);
    ck.info.config.prediction = Prediction::Velocity;
    ck.save(&p).unwrap();
    let v2 = std::fs::read(&p).unwrap();
    std::fs::write(&p, as_v1(&v2)).unwrap();
    assert_eq!(load(&p, &g).unwrap(), ck);
    let file = WeightsFile::open(&p).unwrap();
    assert_eq!(file.format_version(), Some(FormatVersion::V1));
    assert_eq!(file.checkpoint().unwrap().config.steering(), Steering { weight: 2.5, max_t: Some(850) });

    // Before `prediction` existed: neither the key nor the recipe's setting.
    let old = |bytes: &[u8]| {
        with_metadata(bytes, |m| {
            m.remove("prediction");
            let mut config: serde_json::Value = serde_json::from_str(&m["config"]).unwrap();
            config.as_object_mut().unwrap().remove("prediction");
            m.insert("config".into(), config.to_string());
        })
    };
    ck.info.config.prediction = Prediction::Noise;
    ck.save(&p).unwrap();
    let v2 = std::fs::read(&p).unwrap();
    std::fs::write(&p, old(&as_v1(&v2))).unwrap();
    let file = WeightsFile::open(&p).unwrap();
    assert_eq!(file.checkpoint().unwrap().config.prediction, Prediction::Noise);
    assert_eq!(load(&p, &g).unwrap(), ck);

    // The same absence in a version 2 file is damage (its digest made to match, as an editor would).
    let refreshed = |bytes: &[u8]| {
        with_metadata(bytes, |m| {
            let d = mdc::params::metadata_digest(m);
            m.insert("metadata_sha256".into(), d);
        })
    };
    std::fs::write(&p, refreshed(&with_metadata(&v2, |m| drop(m.remove("prediction"))))).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("is corrupt") && e.contains("metadata `prediction` is missing"), "{e}");
    let no_key = with_metadata(&v2, |m| {
        let mut config: serde_json::Value = serde_json::from_str(&m["config"]).unwrap();
        config.as_object_mut().unwrap().remove("guide_at");
        m.insert("config".into(), config.to_string());
    });
    std::fs::write(&p, refreshed(&no_key)).unwrap();
    let e = load(&p, &g).unwrap_err().to_string();
    assert!(e.contains("metadata `config` is not a valid training recipe (`guide_at` is missing)"), "{e}");
}

/// Damage to the header is an error that names the file, in either format version: a flipped
/// bit in a key, in the recipe's text, in a value the recipe repeats.
#[test]
fn damaged_metadata_is_an_error_not_an_older_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    let mut ck = checkpoint(&g);
    ck.info.config.autoguidance = 3.0;
    ck.save(&p).unwrap();
    let v2 = std::fs::read(&p).unwrap();
    let v1 = as_v1(&v2);
    let open = |bytes: &[u8]| {
        std::fs::write(&p, bytes).unwrap();
        let e = WeightsFile::open(&p).err().expect("damage is an error").to_string();
        assert!(e.contains("checkpoint.safetensors is corrupt"), "{e}");
        e
    };
    // Version 2: the digest catches all of them.
    let digest = "does not match its recorded SHA-256 (`metadata_sha256`)";
    for damaged in [
        flip(&v2, "\"schedule\"", 1),
        flip(&v2, "autoguidance\\\":3", 15),
        flip(&flip(&v2, "\"schedule\"", 1), "autoguidance\\\":3", 15),
        flip(&v2, "\"step\":\"42\"", 9),
    ] {
        let e = open(&damaged);
        assert!(e.contains(digest), "{e}");
    }
    // Version 1: the key set, the recipe's syntax and the keys that repeat it.
    let e = open(&flip(&v1, "\"schedule\"", 1));
    assert!(e.contains("metadata key `rchedule` is not one a checkpoint has"), "{e}");
    let e = open(&flip(&v1, "autoguidance\\\":3", 1));
    assert!(
        e.contains("metadata `config` is not a valid training recipe (unknown field `attoguidance`"),
        "{e}"
    );
    let e = open(&flip(&v1, "\"timesteps\":\"1000\"", 16));
    assert!(e.contains("metadata `timesteps` = \"1001\" disagrees with the recipe (`config`: 1000)"), "{e}");
    let e = open(&flip(&v1, "\"format\"", 1));
    assert!(e.contains("holds a training checkpoint's tensors") && e.contains("`format` is missing"), "{e}");
    let e = open(&flip(&v2, "mdc-checkpoint-v2", 16));
    assert!(e.contains("\"mdc-checkpoint-v3\""), "{e}");
}
