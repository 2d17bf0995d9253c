//! Training end to end on a tiny U-Net: the loss falls, an interrupted and resumed run
//! reproduces the uninterrupted one bit for bit, and a NaN stops the run keeping the last good
//! checkpoint.

use std::path::Path;

use mdc::data::{DataOrder, Dataset};
use mdc::graph::{blocks::mini_unet, Graph};
use mdc::train::{read_loss_log, train, Checkpoint, Diverged, TrainConfig, TrainJob};
use ndarray::{s, Array4};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn tiny() -> Graph {
    mini_unet(1, 8, [8, 16, 16, 16], 4, 8, 16).unwrap()
}

/// 16 images 1x8x8 in [-1, 1]: bright squares at different places on a dark background.
fn squares() -> Dataset {
    let mut images = Array4::from_elem([16, 1, 8, 8], -1.0f32);
    for i in 0..16 {
        let (y, x) = (i / 4, i % 4);
        images.slice_mut(s![i, 0, y..y + 4, x..x + 4]).fill(1.0);
    }
    Dataset { images, origin: "squares".into() }
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 8,
        lr: 2e-3,
        checkpoint_every: 3,
        samples: 0,
        seed: 5,
        timesteps: 100,
        ..TrainConfig::default()
    }
}

fn job<'a>(graph: &'a Graph, out: &Path, cfg: TrainConfig, data: Dataset) -> TrainJob<'a> {
    TrainJob {
        graph,
        model_name: "tiny".into(),
        model_hash: HASH.into(),
        config: cfg,
        dataset: data,
        out_dir: out.to_path_buf(),
        resume: None,
        stop_after: None,
        progress: false,
    }
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    read_loss_log(&out.join("loss.csv")).unwrap().iter().map(|r| (r.step, r.loss)).collect()
}

#[test]
fn loss_falls_and_outputs_are_written() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(60);
    cfg.samples = 4;
    cfg.sample_steps = 10;
    cfg.sample_every = 25;
    let out = train(job(&g, dir.path(), cfg, squares())).unwrap();
    assert_eq!((out.first_step, out.last_step), (1, 60));
    let l = losses(dir.path());
    assert_eq!(l.len(), 60);
    // Preview grids mid-run (the last step has the final grid instead).
    let previews: Vec<String> = std::fs::read_dir(dir.path().join("samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(previews, ["step-000025.png", "step-000050.png"]);
    assert!(image::open(dir.path().join("samples/step-000025.png")).unwrap().width() >= 4 * 8);
    // The loss per timestep quarter: every quarter is seen over 60 batches of 8, and the
    // cleanest quarter's noise is the hardest to predict.
    let rows = read_loss_log(&dir.path().join("loss.csv")).unwrap();
    let mean_q = |q: usize| {
        let v: Vec<f64> = rows[30..].iter().filter_map(|r| r.quarters[q]).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(rows.iter().all(|r| r.quarters.iter().any(Option::is_some)));
    assert!(mean_q(0) > mean_q(3), "q1 {} q4 {}", mean_q(0), mean_q(3));
    let first: f64 = l[..10].iter().map(|p| p.1).sum::<f64>() / 10.0;
    let last: f64 = l[50..].iter().map(|p| p.1).sum::<f64>() / 10.0;
    assert!(last < 0.7 * first, "loss should fall: first 10 steps {first}, last 10 {last}");
    let svg = std::fs::read_to_string(&out.plot).unwrap();
    assert!(svg.contains("<polyline"));
    let (samples, _) = out.samples.unwrap();
    let png = image::open(samples).unwrap();
    assert!(png.width() > 2 * 8 && png.height() > 2 * 8);
    let ck = Checkpoint::load(&out.checkpoint, &g, HASH, "tiny").unwrap();
    assert_eq!(ck.step, 60);
    assert_ne!(ck.ema, ck.model, "the EMA lags the weights");
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_one_bit_for_bit() {
    let g = tiny();
    let whole = tempfile::tempdir().unwrap();
    train(job(&g, whole.path(), config(10), squares())).unwrap();

    let parts = tempfile::tempdir().unwrap();
    let mut first = job(&g, parts.path(), config(10), squares());
    first.stop_after = Some(4);
    let out = train(first).unwrap();
    assert_eq!(out.last_step, 4);
    assert!(out.samples.is_none());
    // A row the interrupted run logged past its checkpoint is dropped on resume.
    let ck_path = parts.path().join("checkpoint.safetensors");
    let ck = Checkpoint::load(&ck_path, &g, HASH, "tiny").unwrap();
    assert_eq!(ck.step, 4);
    let mut second = job(&g, parts.path(), config(10), squares());
    second.resume = Some(ck);
    train(second).unwrap();

    let (a, b) = (losses(whole.path()), losses(parts.path()));
    assert_eq!(a.len(), 10);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert_eq!(x.1.to_bits(), y.1.to_bits(), "step {}: {} vs {}", x.0, x.1, y.1);
    }
    assert_eq!(a, b);
    let ca = Checkpoint::load(&whole.path().join("checkpoint.safetensors"), &g, HASH, "tiny").unwrap();
    let cb = Checkpoint::load(&ck_path, &g, HASH, "tiny").unwrap();
    assert_eq!(ca, cb, "weights, EMA, optimizer state, RNG and data order all agree");
}

#[test]
fn a_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let mut data = squares();
    // Poison one image; find when a batch of 1 first draws it.
    data.images.slice_mut(s![9, .., .., ..]).fill(f32::NAN);
    let mut cfg = config(40);
    cfg.batch = 1;
    cfg.checkpoint_every = 1;
    let mut order = DataOrder::new(16, cfg.seed);
    let bad_step = (1..=16u64).find(|_| order.next_batch(1)[0] == 9).unwrap();
    assert!(bad_step > 1, "the seed should put the poisoned image after step 1");

    let err = train(job(&g, dir.path(), cfg, data)).unwrap_err();
    let d = err.downcast_ref::<Diverged>().expect("a divergence error");
    assert_eq!(d.step, bad_step);
    let msg = err.to_string();
    assert!(msg.contains(&format!("diverged at step {bad_step}")) && msg.contains("NaN"), "{msg}");
    assert!(msg.contains(&format!("(step {})", bad_step - 1)), "{msg}");
    let ck = Checkpoint::load(&dir.path().join("checkpoint.safetensors"), &g, HASH, "tiny").unwrap();
    assert_eq!(ck.step, bad_step - 1);
    assert!(ck.model.tensors.iter().all(|t| t.iter().all(|v| v.is_finite())));
}

#[test]
fn a_huge_learning_rate_is_caught() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(200);
    cfg.lr = 1e6;
    cfg.warmup = Some(0);
    cfg.clip_grad = 0.0;
    cfg.checkpoint_every = 1;
    let err = train(job(&g, dir.path(), cfg, squares())).unwrap_err();
    let d = err.downcast_ref::<Diverged>().unwrap_or_else(|| panic!("expected divergence, got {err:#}"));
    assert!(d.step > 1 && d.step <= 200, "{d}");
    let ck = Checkpoint::load(&dir.path().join("checkpoint.safetensors"), &g, HASH, "tiny").unwrap();
    assert_eq!(ck.step, d.step - 1);
}
