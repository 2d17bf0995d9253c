//! Checkpoints: exact round trip, and a clear error for every way a file can be wrong.

use mdc::check::blocks::mini_unet;
use mdc::graph::Graph;
use mdc::params::Params;
use mdc::train::{Checkpoint, CheckpointError, Guide, TrainConfig};

fn tiny() -> Graph {
    mini_unet(1, 8, [8, 16, 16, 16], 4, 8, 16).unwrap()
}

fn checkpoint(graph: &Graph) -> Checkpoint {
    Checkpoint {
        step: 42,
        model: Params::init(graph, 1),
        ema: Params::init(graph, 2),
        adam_m: Params::init(graph, 3),
        adam_v: Params::init(graph, 4),
        rng: [1, u64::MAX, 3, 0xDEAD_BEEF],
        data_epoch: 7,
        data_position: 13,
        model_hash: "ab".repeat(32),
        config: TrainConfig { steps: 99, lr: 3e-4, ..TrainConfig::default() },
        class_names: vec!["cat".into(), "dog, \"big\"".into()],
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
    let (ema, meta) = Params::load_for_inference(&p, &g, true).unwrap();
    assert_eq!(ema, ck.ema);
    assert_eq!(meta["schedule"], "cosine");
    assert_eq!(meta["timesteps"], "1000");
    assert_eq!(Params::load_for_inference(&p, &g, false).unwrap().0, ck.model);
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
    std::fs::write(&p, patched(&bytes, rng, &bad)).unwrap();
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
        edit(&mut ck.config);
        ck.save(&p).unwrap();
        let e = load(&p, &g).unwrap_err().to_string();
        assert!(e.contains("is corrupt") && e.contains("checkpoint.safetensors"), "{e}");
        assert!(e.contains(&format!("metadata `config`: {want}")), "{e}");
    }
}

/// What a file's metadata says the network predicts: checkpoints from before the setting predict
/// the noise; a plain weights file says nothing (its model file decides).
#[test]
fn recorded_prediction_reads_old_and_new_files() {
    use mdc::diffusion::{Prediction, Steering};
    use mdc::train::{recorded_autoguidance, recorded_prediction};
    let meta = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let old = meta(&[("format", mdc::params::CHECKPOINT_FORMAT), ("timesteps", "1000")]);
    assert_eq!(recorded_prediction(&old), Ok(Some(Prediction::Noise)));
    assert_eq!(recorded_prediction(&meta(&[("timesteps", "1000")])), Ok(None), "not a checkpoint");
    let v = meta(&[("timesteps", "1000"), ("prediction", "velocity")]);
    assert_eq!(recorded_prediction(&v), Ok(Some(Prediction::Velocity)));
    assert_eq!(recorded_prediction(&meta(&[])), Ok(None));
    let err = recorded_prediction(&meta(&[("prediction", "x0")])).unwrap_err();
    assert!(err.contains("\"x0\"") && err.contains("velocity"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("checkpoint.safetensors");
    let g = tiny();
    let mut ck = checkpoint(&g);
    ck.config.autoguidance = 2.5;
    ck.config.autoguidance_max_t = Some(850);
    ck.save(&p).unwrap();
    let (_, m) = Params::load_for_inference(&p, &g, true).unwrap();
    let steering = Steering { weight: 2.5, max_t: Some(850) };
    assert_eq!(
        (recorded_prediction(&m), recorded_autoguidance(&m)),
        (Ok(Some(ck.config.prediction)), steering)
    );
    assert_eq!(recorded_autoguidance(&meta(&[])), Steering::everywhere(1.0));
}
