//! Class-conditional models end to end: classifier-free guidance in the shared sampler, the
//! interpreter against onnxruntime on batches mixing real and null labels, label dropout that
//! resumes bit for bit, `--class` parsing, and the model file's conditional diagnostics.

use std::path::Path;

use mdc::base::rng::Rng;
use mdc::data::{Dataset, Labels};
use mdc::diffusion::class_plan;
use mdc::diffusion::{
    AutoGuided, ClassGuidance, Denoiser, NoiseSchedule, Prediction, ScheduleKind, Steering,
};
use mdc::graph::Graph;
use mdc::interp::{Executor, InterpDenoiser};
use mdc::params::Params;
use mdc::train::{train, Checkpoint, TrainConfig, TrainJob};
use ndarray::{s, Array4};

use crate::onnx_common;

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A small conditional U-Net (8x8, 3 classes), written as a model file like models/unet-cond.toml.
const TINY_COND: &str = r#"
[model]
output = "out"
[vars]
groups = 4
[input]
channels = 1
height = 8
width = 8
[time]
dim = 8
hidden = 16
[condition]
classes = 3
drop = 0.25
[blocks]
label = { op = "embedding", in = "y", features = "time.hidden" }
cond  = { op = "add", in = ["time", "label"] }
init  = { op = "conv", in = "x", channels = 8, kernel = 3, padding = 1 }
enc   = { op = "resblock", in = "init", channels = 8, time = "cond" }
down  = { op = "downsample", in = "enc" }
mid   = { op = "resblock", in = "down", channels = 8, time = "cond" }
up    = { op = "upsample", in = "mid" }
cat   = { op = "concat", in = ["up", "enc"] }
dec   = { op = "resblock", in = "cat", channels = 8, time = "cond" }
out   = { op = "conv", in = "dec", channels = 1, kernel = 3, padding = 1 }
"#;

fn tiny_cond() -> (Graph, f64) {
    let m = mdc::model::from_bytes(Path::new("tiny-cond.toml"), TINY_COND.as_bytes()).expect("checks clean");
    (m.graph, m.label_drop.expect("a conditional model"))
}

/// A `[condition]` that leaves `drop` out trains with the rate measured for the shipped
/// conditional model (docs/conditional.md), so the two cannot drift apart unnoticed.
#[test]
fn an_omitted_drop_is_the_shipped_models_rate() {
    let source = TINY_COND.replace("drop = 0.25\n", "");
    let omitted =
        mdc::model::from_bytes(Path::new("tiny-cond.toml"), source.as_bytes()).expect("checks clean");
    let shipped = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet-cond.toml"));
    let shipped = mdc::model::from_bytes(shipped, &std::fs::read(shipped).unwrap()).expect("checks clean");
    assert_eq!(omitted.label_drop, Some(0.8));
    assert_eq!(shipped.label_drop, omitted.label_drop);
}

/// TINY_COND with the label hidden at timesteps below `below`.
fn tiny_cond_hiding(below: usize) -> Graph {
    let source = TINY_COND.replace("drop = 0.25\n", &format!("drop = 0.25\nhide_below = {below}\n"));
    mdc::model::from_bytes(Path::new("tiny-cond.toml"), source.as_bytes()).expect("checks clean").graph
}

/// The largest absolute difference between image `i` of `a` and of `b`.
fn image_gap(a: &Array4<f32>, b: &Array4<f32>, i: usize) -> f32 {
    let d = &a.slice(s![i, .., .., ..]) - &b.slice(s![i, .., .., ..]);
    d.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

#[test]
fn a_hide_below_that_is_not_a_timestep_is_an_error_at_its_line() {
    for bad in ["-5", "2.5", "\"early\""] {
        let source = TINY_COND.replace("drop = 0.25\n", &format!("drop = 0.25\nhide_below = {bad}\n"));
        let checked = mdc::check::check(&source);
        assert!(checked.has_errors(), "hide_below = {bad} was accepted");
        let report =
            mdc::dsl::Report { path: "c.toml".into(), source, diagnostics: checked.diagnostics }.render();
        assert!(report.contains("hide_below") && report.contains("c.toml:16"), "{report}");
    }
}

#[test]
fn below_hide_below_every_label_reads_as_the_null_label() {
    let g = tiny_cond_hiding(500);
    assert_eq!(g.label_input().map(|l| (l.classes, l.hide_below)), Some((3, 500)));
    let mut den = denoiser(&g, 5);
    let (x, t) = inputs(8, 6);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1];
    let labelled = den.predict_noise(&x, &t, Some(&labels)).unwrap();
    let nulls = den.predict_noise(&x, &t, None).unwrap();
    for (i, &ti) in t.iter().enumerate() {
        let gap = image_gap(&labelled, &nulls, i);
        if ti < 500.0 {
            assert_eq!(gap, 0.0, "t = {ti} is below 500: the label must not matter");
        } else {
            assert!(gap > 1e-3, "t = {ti} is not below 500: the label must matter (gap {gap})");
        }
    }
    // So guidance changes nothing there, whatever its scale.
    let guided = guidance(&labels, 4.0).predict(&mut den, &x, &t, &labels).unwrap();
    for (i, &ti) in t.iter().enumerate() {
        assert_eq!(ti < 500.0, image_gap(&guided, &nulls, i) == 0.0, "t = {ti}");
    }
}

fn inputs(n: usize, seed: u64) -> (Array4<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array4::from_shape_simple_fn([n, 1, 8, 8], || rng.normal() as f32);
    let t = (0..n).map(|i| (i * 137 % 1000) as f32).collect();
    (x, t)
}

fn denoiser(graph: &Graph, seed: u64) -> InterpDenoiser {
    InterpDenoiser { executor: Executor::new(graph.clone()), params: onnx_common::random_params(graph, seed) }
}

fn guidance(labels: &[u32], scale: f32) -> ClassGuidance {
    ClassGuidance { labels: labels.to_vec(), null: 3, scale }
}

#[test]
fn the_model_file_declares_the_label_input_and_its_classes() {
    let (g, drop) = tiny_cond();
    assert_eq!((g.classes(), drop), (Some(3), 0.25));
    let table = mdc::check::check(TINY_COND).table;
    let y = table.iter().find(|r| r.block == "y").expect("the label input has a row");
    assert_eq!((y.op.as_str(), y.shape.len()), ("label", 0));
    let label = table.iter().find(|r| r.block == "label").unwrap();
    assert_eq!((label.params, label.shape.clone()), (4 * 16, vec![16]));
}

#[test]
fn guidance_one_is_exactly_the_conditional_forward() {
    let (g, _) = tiny_cond();
    let mut den = denoiser(&g, 1);
    let (x, t) = inputs(4, 2);
    let labels = [0, 2, 1, 3];
    let plain = den.predict_noise(&x, &t, Some(&labels)).unwrap();
    let guided = guidance(&labels, 1.0).predict(&mut den, &x, &t, &labels).unwrap();
    assert_eq!(guided, plain);
    // The labels matter: another class gives another prediction.
    let other = den.predict_noise(&x, &t, Some(&[1, 0, 2, 3])).unwrap();
    assert!((&other - &plain).iter().map(|v| v.abs()).fold(0.0, f32::max) > 1e-3);
}

#[test]
fn with_every_label_null_the_output_does_not_depend_on_the_scale() {
    let (g, _) = tiny_cond();
    let mut den = denoiser(&g, 3);
    let (x, t) = inputs(3, 4);
    let nulls = [3, 3, 3];
    let reference = den.predict_noise(&x, &t, None).unwrap();
    for scale in [0.0, 1.0, 3.0, 7.5] {
        let out = guidance(&nulls, scale).predict(&mut den, &x, &t, &nulls).unwrap();
        assert_eq!(out, reference, "scale {scale}");
    }
}

#[test]
fn guidance_runs_one_doubled_batch_and_extrapolates_from_the_null_prediction() {
    let (g, _) = tiny_cond();
    let mut den = denoiser(&g, 5);
    let (x, t) = inputs(4, 6);
    let labels = [0, 1, 2, 3];
    let cond = den.predict_noise(&x, &t, Some(&labels)).unwrap();
    let uncond = den.predict_noise(&x, &t, Some(&[3; 4])).unwrap();
    let mut counting = Counting(&mut den, Vec::new());
    let guided = guidance(&labels, 3.0).predict(&mut counting, &x, &t, &labels).unwrap();
    assert_eq!(counting.1, vec![8], "one call with the conditional and null halves");
    let want = &uncond + &((&cond - &uncond) * 3.0);
    let gap = (&guided - &want).iter().map(|v| v.abs()).fold(0.0, f32::max);
    assert!(gap < 1e-4, "guided differs from eps_null + 3 (eps_y - eps_null) by {gap}");
}

/// Counts the calls a denoiser gets and the batch of each.
struct Counting<'a>(&'a mut InterpDenoiser, Vec<usize>);

impl Denoiser for Counting<'_> {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        self.1.push(x.shape()[0]);
        self.0.predict_noise(x, t, y)
    }
}

fn max_gap(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    (a - b).iter().map(|v| v.abs()).fold(0.0, f32::max)
}

#[test]
fn with_autoguidance_class_guidance_adds_its_push_to_the_autoguided_prediction() {
    let (g, _) = tiny_cond();
    let (mut model, mut guide) = (denoiser(&g, 11), denoiser(&g, 12));
    let (x, t) = inputs(4, 13);
    let labels = [0, 1, 3, 2];
    let nulls = [3; 4];
    let (w, s) = (3.0, 2.5);
    let m_y = model.predict_noise(&x, &t, Some(&labels)).unwrap();
    let m_null = model.predict_noise(&x, &t, Some(&nulls)).unwrap();
    let g_y = guide.predict_noise(&x, &t, Some(&labels)).unwrap();
    let g_null = guide.predict_noise(&x, &t, Some(&nulls)).unwrap();
    let autoguided_y = &g_y + &((&m_y - &g_y) * w);
    let autoguided_null = &g_null + &((&m_null - &g_null) * w);

    let (mut counted_model, mut counted_guide) = (Counting(&mut model, vec![]), Counting(&mut guide, vec![]));
    let mut den = AutoGuided {
        model: &mut counted_model,
        guide: &mut counted_guide,
        steering: Steering::everywhere(w),
    };
    let guided = guidance(&labels, s).predict(&mut den, &x, &t, &labels).unwrap();
    // The sum of the two guidances, not class guidance of the autoguided model.
    let want = &autoguided_y + &((&m_y - &m_null) * (s - 1.0));
    assert!(
        max_gap(&guided, &want) < 1e-4,
        "differs from A(y) + (S - 1) (m(y) - m(null)) by {}",
        max_gap(&guided, &want)
    );
    let product = &autoguided_null + &((&autoguided_y - &autoguided_null) * s);
    assert!(max_gap(&guided, &product) > 1e-2, "the product form must differ for the test to mean anything");
    // The model runs the labelled and null halves as one batch; the guide only the labelled half.
    assert_eq!((counted_model.1.clone(), counted_guide.1.clone()), (vec![8], vec![4]));

    // S = 1 is the autoguided conditional model; S = 0 the autoguided unconditional one.
    let mut den = AutoGuided { model: &mut model, guide: &mut guide, steering: Steering::everywhere(w) };
    let one = guidance(&labels, 1.0).predict(&mut den, &x, &t, &labels).unwrap();
    assert!(max_gap(&one, &autoguided_y) < 1e-5);
    let zero = guidance(&labels, 0.0).predict(&mut den, &x, &t, &labels).unwrap();
    assert!(max_gap(&zero, &autoguided_null) < 1e-5);
    // An image asked for no class gets A(null) at any scale.
    let mixed = [0, 3, 1, 3];
    let out = guidance(&mixed, 4.0).predict(&mut den, &x, &t, &mixed).unwrap();
    for i in [1, 3] {
        assert!(image_gap(&out, &autoguided_null, i) < 1e-4, "image {i} has the null label");
    }

    // Steering unlabelled images up to t = 100 (t is 0, 137, 274, 411): an image with a label is
    // steered at every step; one with the null label (image 2) gets the model alone above it.
    den.steering.max_t = Some(100);
    let guided = guidance(&labels, s).predict(&mut den, &x, &t, &labels).unwrap();
    for i in [0, 1, 3] {
        assert!(image_gap(&guided, &want, i) < 1e-4, "image {i} has a label");
    }
    assert!(image_gap(&guided, &m_null, 2) < 1e-4, "image 2 has none and is above max_t");
    assert!(image_gap(&want, &m_null, 2) > 1e-2, "steering must show for the test to mean anything");
    let zero = guidance(&labels, 0.0).predict(&mut den, &x, &t, &labels).unwrap();
    assert!(image_gap(&zero, &autoguided_null, 0) < 1e-5, "t = 0 is steered");
    for i in 1..4 {
        assert!(image_gap(&zero, &m_null, i) < 1e-5, "S = 0: image {i} is above max_t");
    }
}

#[test]
fn interpreter_and_onnxruntime_agree_on_autoguided_class_guidance() {
    if !onnx_common::onnxruntime_available("interpreter_and_onnxruntime_agree_on_autoguided_class_guidance") {
        return;
    }
    let (g, _) = tiny_cond();
    let (params, guide_params) = (onnx_common::random_params(&g, 21), onnx_common::random_params(&g, 22));
    let (x, t) = inputs(5, 23);
    let labels = [2, 0, 3, 1, 3];
    // Steering at every step, and unlabelled images only up to t = 300: t is 0, 137, 274, 411 and
    // 548 here, so the last image (null label) gets the model alone, the one before it (label 1)
    // is steered.
    for steering in [Steering::everywhere(2.5), Steering { weight: 2.5, max_t: Some(300) }] {
        let mut info = onnx_common::info_for(&g);
        info.autoguidance = Some(mdc::onnx::AutoguidanceInfo { steering, guide_step: 5 });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guided.onnx");
        mdc::onnx::export_to_file(&g, &params, Some(&guide_params), &info, &path).unwrap();
        let mut ort = onnx_common::open(&path);
        let mut model = InterpDenoiser { executor: Executor::new(g.clone()), params: params.clone() };
        let mut guide = InterpDenoiser { executor: Executor::new(g.clone()), params: guide_params.clone() };
        let mut interp = AutoGuided { model: &mut model, guide: &mut guide, steering };
        for s in [0.0, 1.0, 3.0] {
            let a = guidance(&labels, s).predict(&mut interp, &x, &t, &labels).unwrap();
            let b = guidance(&labels, s).predict(&mut ort, &x, &t, &labels).unwrap();
            let scale = a.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1.0);
            assert!(
                max_gap(&a, &b) <= 5e-4 * scale,
                "{steering}, S = {s}: max difference {} (scale {scale})",
                max_gap(&a, &b)
            );
        }
    }
}

#[test]
fn an_autoguided_export_without_eps_model_refuses_class_guidance_by_name() {
    if !onnx_common::onnxruntime_available(
        "an_autoguided_export_without_eps_model_refuses_class_guidance_by_name",
    ) {
        return;
    }
    // What an earlier mdc wrote: the guided `eps` alone, no `eps_model`.
    let (g, _) = tiny_cond();
    let mut info = onnx_common::info_for(&g);
    info.autoguidance =
        Some(mdc::onnx::AutoguidanceInfo { steering: Steering::everywhere(2.0), guide_step: 5 });
    let (params, guide) = (onnx_common::random_params(&g, 31), onnx_common::random_params(&g, 32));
    let mut model = mdc::onnx::export_guided(&g, &params, Some(&guide), &info).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let eps_model = mdc::onnx::OUTPUT_EPS_MODEL;
    assert!(graph.output.iter().any(|o| o.name.as_deref() == Some(eps_model)), "today's export has it");
    graph.output.retain(|o| o.name.as_deref() != Some(eps_model));
    graph.node.retain(|n| !n.output.iter().any(|o| o == eps_model));
    model.metadata_props.retain(|e| e.key.as_deref() != Some(mdc::onnx::digest::KEY));
    mdc::onnx::digest::seal(&mut model);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("older.onnx");
    std::fs::write(&path, mdc::onnx::encode(&model)).unwrap();
    let mut ort = onnx_common::open(&path);
    let (x, t) = inputs(2, 33);
    let labels = [0, 2];
    let err = guidance(&labels, 3.0).predict(&mut ort, &x, &t, &labels).unwrap_err().to_string();
    assert!(
        err.contains("older.onnx") && err.contains("eps_model") && err.contains("export it again"),
        "{err}"
    );
    // Unguided by class (S = 0) and plainly conditional (S = 1) need only `eps`.
    for s in [0.0, 1.0] {
        assert!(guidance(&labels, s).predict(&mut ort, &x, &t, &labels).is_ok(), "S = {s}");
    }
}

#[test]
fn interpreter_and_onnxruntime_agree_on_mixed_real_and_null_labels() {
    if !onnx_common::onnxruntime_available("interpreter_and_onnxruntime_agree_on_mixed_real_and_null_labels")
    {
        return;
    }
    let (g, _) = tiny_cond();
    let params = onnx_common::random_params(&g, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = onnx_common::export(&g, &params, dir.path(), "cond");
    let mut ort = onnx_common::open(&path);
    assert_eq!(ort.info().classes.as_ref().map(|c| (c.count, c.null())), Some((3, 3)));
    let mut interp = InterpDenoiser { executor: Executor::new(g.clone()), params };
    let (x, t) = inputs(6, 8);
    let labels = [0, 3, 2, 3, 1, 0];
    let a = interp.predict_noise(&x, &t, Some(&labels)).unwrap();
    let b = ort.predict_noise(&x, &t, Some(&labels)).unwrap();
    let gap = (&a - &b).iter().map(|v| v.abs()).fold(0.0, f32::max);
    let scale = a.iter().map(|v| v.abs()).fold(0.0, f32::max);
    assert!(gap <= 1e-4 * scale.max(1.0), "max difference {gap} (output scale {scale})");
    // Guided through each backend: the same sampler code, the same answer.
    let ga = guidance(&labels, 2.5).predict(&mut interp, &x, &t, &labels).unwrap();
    let gb = guidance(&labels, 2.5).predict(&mut ort, &x, &t, &labels).unwrap();
    let gap = (&ga - &gb).iter().map(|v| v.abs()).fold(0.0, f32::max);
    assert!(gap <= 5e-4 * scale.max(1.0), "guided: max difference {gap}");
    // No labels means the null label on both sides; a label out of range is refused by name.
    let none = ort.predict_noise(&x, &t, None).unwrap();
    let nulls = interp.predict_noise(&x, &t, Some(&[3; 6])).unwrap();
    assert!((&none - &nulls).iter().all(|v| v.abs() <= 1e-4 * scale.max(1.0)));
    let err = ort.predict_noise(&x, &t, Some(&[0, 4, 0, 0, 0, 0])).unwrap_err().to_string();
    assert!(err.contains("label 4 is out of range") && err.contains("cond.onnx"), "{err}");
}

#[test]
fn interpreter_and_onnxruntime_hide_the_same_labels() {
    if !onnx_common::onnxruntime_available("interpreter_and_onnxruntime_hide_the_same_labels") {
        return;
    }
    let g = tiny_cond_hiding(411);
    let params = onnx_common::random_params(&g, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = onnx_common::export(&g, &params, dir.path(), "hiding");
    let mut ort = onnx_common::open(&path);
    let mut interp = InterpDenoiser { executor: Executor::new(g.clone()), params };
    // t = 0, 137, 274, 411 (the first one shown), 548, 685, 822, 959
    let (x, t) = inputs(8, 9);
    let labels = [0, 1, 2, 0, 3, 1, 2, 0];
    let a = interp.predict_noise(&x, &t, Some(&labels)).unwrap();
    let b = ort.predict_noise(&x, &t, Some(&labels)).unwrap();
    let scale = a.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1.0);
    let gap = onnx_common::max_abs_diff(&a, &b);
    assert!(gap <= 1e-4 * scale, "max difference {gap} (output scale {scale})");
    let nulls = ort.predict_noise(&x, &t, None).unwrap();
    for (i, &ti) in t.iter().enumerate() {
        let hidden = image_gap(&b, &nulls, i) <= 1e-6 * scale;
        assert_eq!(hidden, ti < 411.0 || labels[i] == 3, "onnxruntime at t = {ti}, label {}", labels[i]);
    }
}

/// 12 labelled 1x8x8 images: a bright square whose corner is its class.
fn labelled_squares() -> Dataset {
    let mut images = Array4::from_elem([12, 1, 8, 8], -1.0f32);
    let mut values = Vec::new();
    for i in 0..12 {
        let class = i % 3;
        let (y, x) = [(0, 0), (0, 4), (4, 2)][class];
        images.slice_mut(s![i, 0, y..y + 4, x..x + 4]).fill(1.0);
        values.push(class as u32);
    }
    let mut d = Dataset::new(images, "squares");
    d.labels = Some(Labels::numbered(values, "squares"));
    d
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 6,
        lr: 2e-3,
        checkpoint_every: 3,
        samples: 0,
        seed: 9,
        timesteps: 100,
        ..TrainConfig::default()
    }
}

fn job<'a>(graph: &'a Graph, drop: f64, out: &Path, steps: u64) -> TrainJob<'a> {
    TrainJob {
        graph,
        model_name: "tiny-cond".into(),
        model_hash: HASH.into(),
        config: config(steps),
        dataset: labelled_squares(),
        label_drop: Some(drop),
        out_dir: out.to_path_buf(),
        resume: None,
        stop_after: None,
        progress: false,
    }
}

#[test]
fn a_conditional_run_with_label_dropout_resumes_bit_for_bit() {
    let (g, drop) = tiny_cond();
    let whole = tempfile::tempdir().unwrap();
    train(job(&g, drop, whole.path(), 8)).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let mut first = job(&g, drop, parts.path(), 8);
    first.stop_after = Some(5);
    train(first).unwrap();
    let ck_path = parts.path().join("checkpoint.safetensors");
    let mut second = job(&g, drop, parts.path(), 8);
    second.resume = Some(Checkpoint::load(&ck_path, &g, HASH, "tiny-cond").unwrap());
    train(second).unwrap();
    let a = Checkpoint::load(&whole.path().join("checkpoint.safetensors"), &g, HASH, "tiny-cond").unwrap();
    let b = Checkpoint::load(&ck_path, &g, HASH, "tiny-cond").unwrap();
    assert_eq!(a, b, "weights, EMA, optimizer state, RNG and data order all agree");
    // Dropout is part of that stream: without it the run differs.
    let other = tempfile::tempdir().unwrap();
    train(job(&g, 0.0, other.path(), 8)).unwrap();
    let c = Checkpoint::load(&other.path().join("checkpoint.safetensors"), &g, HASH, "tiny-cond").unwrap();
    assert_ne!(a.model, c.model);
    // The label table learnt: the rows of the three classes moved, by different amounts.
    let init = Params::init(&g, 9);
    let row_moves: Vec<f32> = {
        let (w0, w1) = (&init.by_name()["label.weight"].clone(), &a.model.by_name()["label.weight"].clone());
        (0..4).map(|r| (0..16).map(|j| (w1[[r, j]] - w0[[r, j]]).abs()).sum()).collect()
    };
    assert!(row_moves.iter().all(|&m| m > 0.0), "every row, the null one too, was trained: {row_moves:?}");
}

#[test]
fn class_lists_parse_names_and_numbers_and_refuse_the_rest() {
    let names: Vec<String> = ["cat", "dog", "bird"].map(String::from).to_vec();
    let (g, cols) = class_plan(Some("all"), None, 7, Some(3), &names, "m.toml").unwrap();
    let g = g.unwrap();
    assert_eq!((g.labels.len(), cols, g.null, g.scale), (9, 3, 3, mdc::diffusion::DEFAULT_GUIDANCE));
    let (g, cols) = class_plan(Some("dog, 0"), Some(2.0), 4, Some(3), &names, "m.toml").unwrap();
    assert_eq!((g.unwrap().labels, cols), (vec![1, 1, 0, 0], 2));
    let (g, cols) = class_plan(Some("2"), Some(1.5), 3, Some(3), &[], "m.toml").unwrap();
    assert_eq!((g.unwrap().labels, cols), (vec![2, 2, 2], 0));
    // Guidance 0 is unconditional: exactly -n images, all with the null label.
    let (g, cols) = class_plan(None, Some(0.0), 7, Some(3), &names, "m.toml").unwrap();
    assert_eq!((g.unwrap().labels, cols), (vec![3; 7], 0));
    let err = class_plan(Some("3"), None, 4, Some(3), &names, "m.toml").unwrap_err().to_string();
    assert!(err.contains("`3` is not a class of m.toml") && err.contains("cat, dog, bird"), "{err}");
    let err = class_plan(Some("7"), None, 4, None, &[], "u.toml").unwrap_err().to_string();
    assert!(err.contains("u.toml is not class-conditional"), "{err}");
    let err = class_plan(None, Some(3.0), 4, None, &[], "u.toml").unwrap_err().to_string();
    assert!(err.contains("--guidance"), "{err}");
    assert_eq!(class_plan(None, None, 4, None, &[], "u.toml").unwrap(), (None, 0));
}

#[test]
fn guided_sampling_with_a_class_plan_runs_every_sampler() {
    let (g, _) = tiny_cond();
    let schedule = NoiseSchedule::new(ScheduleKind::Linear, 100);
    let params = onnx_common::random_params(&g, 11);
    for sampler in [
        mdc::diffusion::Sampler::Ddim { steps: 5, eta: 1.0 },
        mdc::diffusion::Sampler::DpmSolver2M { steps: 5 },
        mdc::diffusion::Sampler::Ddpm,
    ] {
        let opts = mdc::diffusion::SampleOptions {
            count: 6,
            batch: 4,
            sampler,
            clip_x0: true,
            prediction: Prediction::Noise,
            seed: 1,
            guidance: Some(guidance(&[0, 0, 1, 1, 2, 3], 3.0)),
        };
        let images =
            mdc::interp::sample_images(&g, params.clone(), None, &schedule, [1, 8, 8], &opts, false).unwrap();
        assert_eq!(images.shape(), &[6, 1, 8, 8]);
        assert!(images.iter().all(|v| v.is_finite()), "{sampler}");
    }
    let bad = mdc::diffusion::SampleOptions {
        count: 2,
        batch: 2,
        sampler: mdc::diffusion::Sampler::Ddim { steps: 2, eta: 0.0 },
        clip_x0: true,
        prediction: Prediction::Noise,
        seed: 1,
        guidance: Some(guidance(&[0, 5], 3.0)),
    };
    let err = mdc::interp::sample_images(&g, params, None, &schedule, [1, 8, 8], &bad, false).unwrap_err();
    assert!(err.to_string().contains("class 5 does not exist"), "{err}");
}

/// `mdc` as a user runs it.
fn mdc(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdc")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// TINY_COND for `classes` classes, written to `dir`.
fn cond_model(dir: &Path, classes: usize) -> std::path::PathBuf {
    let p = dir.join(format!("cond{classes}.toml"));
    std::fs::write(&p, TINY_COND.replace("classes = 3", &format!("classes = {classes}"))).unwrap();
    p
}

/// A folder whose sub-folders are classes: `cat/` dark squares, `dog/` bright ones, 8x8 grey.
fn class_folders(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("pets");
    for (class, level) in [("cat", 40u8), ("dog", 220)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..4u32 {
            let img = image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([if (x + y + i) % 3 == 0 { level } else { 0 }])
            });
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    root
}

#[test]
fn class_folders_train_a_conditional_model_whose_names_reach_sampling_and_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (cond_model(dir.path(), 2), class_folders(dir.path()));
    let out = dir.path().join("run");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (code, stdout, stderr) = mdc(&[
        "train",
        &p(&model),
        "--data",
        &p(&data),
        "--steps",
        "3",
        "--batch",
        "4",
        "--samples",
        "6",
        "--sample-steps",
        "2",
        "--sample-every",
        "0",
        "--out",
        &p(&out),
        "-q",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("2 classes: cat, dog"), "the data line names the classes:\n{stdout}");
    // The final grid has one row per class: 2 rows of 3 tiles.
    let grid = image::open(out.join("samples.png")).unwrap();
    assert!(grid.height() * 3 < grid.width() * 2 + 20, "{}x{}", grid.width(), grid.height());
    assert!(grid.height() < grid.width(), "{}x{}", grid.width(), grid.height());

    let ckpt = out.join("checkpoint.safetensors");
    let (code, stdout, stderr) = mdc(&[
        "sample",
        &p(&ckpt),
        "--model",
        &p(&model),
        "--class",
        "dog",
        "-n",
        "2",
        "--steps",
        "2",
        "-o",
        &p(&dir.path().join("d.png")),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("class dog, guidance 6"), "{stdout}");
    let (code, _, stderr) = mdc(&[
        "sample",
        &p(&ckpt),
        "--model",
        &p(&model),
        "--class",
        "fox",
        "-n",
        "2",
        "-o",
        &p(&dir.path().join("f.png")),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`fox` is not a class") && stderr.contains("cat, dog"), "{stderr}");

    let onnx = dir.path().join("cond.onnx");
    let (code, stdout, stderr) =
        mdc(&["export", "onnx", &p(&model), "--weights", &p(&ckpt), "-o", &p(&onnx)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("y [N] (int64 class labels: 2 classes, 2 = no class), output eps"), "{stdout}");
    let bytes = std::fs::read(&onnx).unwrap();
    let needle = br#"["cat","dog"]"#;
    assert!(bytes.windows(needle.len()).any(|w| w == needle), "class names in the export's metadata");
    if onnx_common::onnxruntime_available("class_folders_..._export") {
        let (code, stdout, stderr) = mdc(&[
            "sample",
            &p(&onnx),
            "--class",
            "cat,dog",
            "--guidance",
            "2",
            "-n",
            "2",
            "--steps",
            "2",
            "-o",
            &p(&dir.path().join("o.png")),
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("class cat, dog, guidance 2"), "{stdout}");
    }
}

#[test]
fn a_conditional_model_refuses_unlabelled_data_and_too_few_classes_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for i in 0..3 {
        image::GrayImage::new(8, 8).save(flat.join(format!("{i}.png"))).unwrap();
    }
    let out = dir.path().join("run");
    // Trains `classes` classes on `data` for 2 steps; must fail: returns stderr.
    let refused = |classes: usize, data: &Path| {
        let model = cond_model(dir.path(), classes);
        let args = ["train", &p(&model), "--data", &p(data), "--steps", "2", "--out", &p(&out), "-q"];
        let (code, stdout, stderr) = mdc(&args);
        assert_ne!(code, 0, "{stdout}");
        assert!(!out.join("checkpoint.safetensors").exists(), "nothing was trained");
        stderr
    };
    // A label hidden at every timestep would never be learnt.
    let hiding = dir.path().join("hiding.toml");
    let source =
        TINY_COND.replace("classes = 3", "classes = 2").replace("drop = 0.25\n", "hide_below = 100\n");
    std::fs::write(&hiding, source).unwrap();
    let pets = p(&class_folders(dir.path()));
    let args = [
        "train",
        &p(&hiding),
        "--data",
        &pets,
        "--timesteps",
        "100",
        "--steps",
        "2",
        "--out",
        &p(&out),
        "-q",
    ];
    let (code, stdout, stderr) = mdc(&args);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        stderr.contains("hide_below = 100") && stderr.contains("every one of the 100 timesteps"),
        "{stderr}"
    );
    assert!(!out.join("checkpoint.safetensors").exists(), "nothing was trained");
    let e = refused(2, &flat);
    assert!(e.contains("classes = 2") && e.contains("flat"), "{e}");
    let e = refused(1, &class_folders(dir.path()));
    assert!(e.contains("pets") && e.contains('2') && e.contains("classes = 1"), "{e}");
}
