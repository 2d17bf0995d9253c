//! Training end to end on a tiny U-Net: the loss falls, an interrupted and resumed run
//! reproduces the uninterrupted one bit for bit, and a NaN stops the run keeping the last good
//! checkpoint. In bf16 the loss tracks the fp32 run's, and checkpoints resume in the other
//! precision.

use std::path::Path;

use mdc::check::blocks::mini_unet;
use mdc::data::{DataOrder, Dataset};
use mdc::diffusion::Prediction;
use mdc::graph::Graph;
use mdc::kernels::bf16::Precision;
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
    Dataset::new(images, "squares")
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
        label_drop: None,
        out_dir: out.to_path_buf(),
        resume: None,
        stop_after: None,
        progress: false,
        engine: Default::default(),
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
    let (samples, count, _) = out.samples.unwrap();
    assert_eq!(count, 4);
    let png = image::open(samples).unwrap();
    assert!(png.width() > 2 * 8 && png.height() > 2 * 8);
    let ck = Checkpoint::load(&out.checkpoint, &g, HASH, "tiny").unwrap();
    assert_eq!(ck.info.step, 60);
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
    assert_eq!(ck.info.step, 4);
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
    assert_eq!(ck.info.step, bad_step - 1);
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
    assert_eq!(ck.info.step, d.step - 1);
}

/// Trains the tiny model at `precision`; returns the loss of every step logged so far.
fn run_at(out: &Path, steps: u64, precision: Precision, stop_after: Option<u64>, resume: bool) -> Vec<f64> {
    let g = tiny();
    let config = TrainConfig {
        steps,
        batch: 8,
        lr: 2e-3,
        checkpoint_every: 5,
        samples: 0,
        seed: 5,
        timesteps: 100,
        precision,
        ..TrainConfig::default()
    };
    let resume =
        resume.then(|| Checkpoint::load(&out.join("checkpoint.safetensors"), &g, HASH, "tiny").unwrap());
    let job = TrainJob {
        graph: &g,
        model_name: "tiny".into(),
        model_hash: HASH.into(),
        config,
        dataset: squares(),
        label_drop: None,
        out_dir: out.to_path_buf(),
        resume,
        stop_after,
        progress: false,
        engine: Default::default(),
    };
    train(job).unwrap();
    read_loss_log(&out.join("loss.csv")).unwrap().iter().map(|r| r.loss).collect()
}

/// Mean over steps of |a - b| / b.
fn mean_relative_gap(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y).sum::<f64>() / a.len() as f64
}

#[test]
fn bf16_training_loss_tracks_fp32() {
    // without AVX512_BF16 the products run on the portable reference kernel
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fp32 = run_at(a.path(), 60, Precision::Fp32, None, false);
    let bf16 = run_at(b.path(), 60, Precision::Bf16, None, false);
    // Both runs draw the same images, timesteps and noise, so each step's loss differs only
    // through the weights; bf16 products must not change what is learned.
    let gap = mean_relative_gap(&bf16, &fp32);
    eprintln!("bf16 vs fp32: mean per-step loss gap {:.3}%", 100.0 * gap);
    assert!(gap > 0.0, "the bf16 run computed exactly what fp32 did: bf16 was not used");
    assert!(gap < 0.01, "bf16 loss strays from fp32's by {:.1}% per step on average", 100.0 * gap);
    let tail = |l: &[f64]| l[50..].iter().sum::<f64>() / 10.0;
    let first = fp32[..10].iter().sum::<f64>() / 10.0;
    assert!(
        tail(&bf16) < 0.7 * first,
        "bf16 loss should fall: first 10 steps {first}, last 10 {}",
        tail(&bf16)
    );
    assert!(
        (tail(&bf16) - tail(&fp32)).abs() < 0.1 * tail(&fp32),
        "last 10 steps: bf16 {} fp32 {}",
        tail(&bf16),
        tail(&fp32)
    );
}

#[test]
fn checkpoints_resume_in_the_other_precision() {
    let whole = tempfile::tempdir().unwrap();
    let reference = run_at(whole.path(), 10, Precision::Fp32, None, false);
    for (first, second) in [(Precision::Bf16, Precision::Fp32), (Precision::Fp32, Precision::Bf16)] {
        let dir = tempfile::tempdir().unwrap();
        run_at(dir.path(), 10, first, Some(5), false);
        let losses = run_at(dir.path(), 10, second, None, true);
        assert_eq!(losses.len(), 10, "{first} then {second}: steps 1..=10 logged");
        let ck = Checkpoint::load(&dir.path().join("checkpoint.safetensors"), &tiny(), HASH, "tiny").unwrap();
        assert_eq!(ck.info.step, 10);
        assert_eq!(
            ck.info.config.precision, second,
            "the checkpoint records the precision it was last trained in"
        );
        let gap = mean_relative_gap(&losses, &reference);
        assert!(gap < 0.01, "{first} then {second}: loss strays from fp32's by {:.1}%", 100.0 * gap);
    }
}

/// A velocity model trains, records what it predicts, and resumes bit for bit like a noise model.
#[test]
fn a_velocity_run_learns_records_its_target_and_resumes_exactly() {
    let g = tiny();
    let cfg = |steps| TrainConfig { prediction: Prediction::Velocity, ..config(steps) };
    let dir = tempfile::tempdir().unwrap();
    let out = train(job(&g, dir.path(), cfg(60), squares())).unwrap();
    let l = losses(dir.path());
    let first: f64 = l[..10].iter().map(|p| p.1).sum::<f64>() / 10.0;
    let last: f64 = l[50..].iter().map(|p| p.1).sum::<f64>() / 10.0;
    assert!(last < 0.7 * first, "loss should fall: first 10 steps {first}, last 10 {last}");
    let ck = Checkpoint::load(&out.checkpoint, &g, HASH, "tiny").unwrap();
    assert_eq!(ck.info.config.prediction, Prediction::Velocity);
    let file = mdc::params::WeightsFile::open(&out.checkpoint).unwrap();
    assert_eq!(file.checkpoint().unwrap().config.prediction, Prediction::Velocity);
    // The same seed with the noise as target gives another run.
    let noise = tempfile::tempdir().unwrap();
    train(job(&g, noise.path(), TrainConfig { prediction: Prediction::Noise, ..config(10) }, squares()))
        .unwrap();
    assert_ne!(losses(noise.path())[0], l[0], "the target changes the loss from step 1 on");

    let whole = tempfile::tempdir().unwrap();
    train(job(&g, whole.path(), cfg(10), squares())).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let mut first = job(&g, parts.path(), cfg(10), squares());
    first.stop_after = Some(4);
    train(first).unwrap();
    let ck = Checkpoint::load(&parts.path().join("checkpoint.safetensors"), &g, HASH, "tiny").unwrap();
    let mut second = job(&g, parts.path(), cfg(10), squares());
    second.resume = Some(ck);
    train(second).unwrap();
    assert_eq!(losses(whole.path()), losses(parts.path()));
}

/// The guide is the EMA weights as they were after `guide_at` of the run: the same as a run
/// stopped there holds, kept unchanged to the end, and resumed runs take the same one whether
/// they resume before or after that step.
#[test]
fn the_guide_is_the_ema_at_guide_at_and_survives_resume() {
    let g = tiny();
    let cfg = |steps| TrainConfig { guide_at: 0.5, ..config(steps) };
    assert_eq!(cfg(10).guide_step(), Some(5));
    let whole = tempfile::tempdir().unwrap();
    let out = train(job(&g, whole.path(), cfg(10), squares())).unwrap();
    let end = Checkpoint::load(&out.checkpoint, &g, HASH, "tiny").unwrap();
    let guide = end.guide.clone().expect("a run past guide_at keeps a guide");
    assert_eq!(guide.step, 5);
    assert_ne!(guide.weights, end.ema, "the guide stays at step 5 while the EMA moves on");

    let at5 = tempfile::tempdir().unwrap();
    let mut stopped = job(&g, at5.path(), cfg(10), squares());
    stopped.stop_after = Some(5);
    let five = Checkpoint::load(&train(stopped).unwrap().checkpoint, &g, HASH, "tiny").unwrap();
    assert_eq!(five.guide.as_ref().map(|g| &g.weights), Some(&five.ema));
    assert_eq!(five.guide.unwrap().weights, guide.weights);

    for stop in [3, 7] {
        let parts = tempfile::tempdir().unwrap();
        let mut first = job(&g, parts.path(), cfg(10), squares());
        first.stop_after = Some(stop);
        let ck = Checkpoint::load(&train(first).unwrap().checkpoint, &g, HASH, "tiny").unwrap();
        assert_eq!(ck.guide.is_some(), stop >= 5, "stopped at {stop}");
        let mut second = job(&g, parts.path(), cfg(10), squares());
        second.resume = Some(ck);
        let resumed = Checkpoint::load(&train(second).unwrap().checkpoint, &g, HASH, "tiny").unwrap();
        assert_eq!(resumed, end, "resumed from step {stop}");
    }

    let off = tempfile::tempdir().unwrap();
    let out = train(job(&g, off.path(), TrainConfig { guide_at: 0.0, ..config(10) }, squares())).unwrap();
    assert_eq!(Checkpoint::load(&out.checkpoint, &g, HASH, "tiny").unwrap().guide, None);
}
