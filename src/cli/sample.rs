//! `mdc sample CHECKPOINT --model MODEL.toml`: DDPM, DDIM or DPM-Solver++(2M) sampling with the interpreter, to a
//! PNG grid (and optionally one PNG per image). `mdc sample model.onnx [--device cpu|cuda]`: the
//! same with each denoising step an onnxruntime call; the .onnx file carries everything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ndarray::{Array4, Axis};

use super::guide::SteeringRequest;
use super::UsageError;
use crate::base::image_io::{image_png, write_grid, GridLayout};
use crate::diffusion::{
    ClassGuidance, NoiseSchedule, Prediction, SampleOptions, Sampler, ScheduleKind, DEFAULT_GUIDANCE,
};
use crate::params::{Params, CHECKPOINT_FORMAT};
use crate::runtime::{Device, OrtDenoiser, SessionConfig};
use crate::train::{sample_images, sample_with_progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T timesteps (slow, the reference).
    Ddpm,
    /// DDIM over --steps evenly spaced timesteps; --eta 0 is deterministic.
    Ddim,
    /// DPM-Solver++(2M) over --steps evenly spaced timesteps: deterministic, second order, good
    /// in 10-25 steps (--eta does not apply).
    Dpmpp2m,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A checkpoint written by `mdc train` (EMA weights are used), a plain weights file, or a
    /// model exported by `mdc export onnx` (run through onnxruntime).
    pub checkpoint: PathBuf,
    /// The model file the weights belong to.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 16, value_parser = sizes(MAX_IMAGES))]
    pub count: usize,
    #[arg(long, value_enum, default_value_t = SamplerArg::Ddim)]
    pub sampler: SamplerArg,
    /// DDIM or DPM-Solver++ steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// DDIM noise: 1 as noisy as DDPM (clean backgrounds from short-trained models), 0 deterministic.
    #[arg(long, default_value_t = 1.0)]
    pub eta: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG grid.
    #[arg(short = 'o', long, default_value = "samples.png")]
    pub output: PathBuf,
    /// Also write each image as DIR/sample-NNN.png.
    #[arg(long, value_name = "DIR")]
    pub individual: Option<PathBuf>,
    /// Images per forward pass (results do not depend on it).
    #[arg(long, default_value_t = 16, value_parser = sizes(MAX_IMAGES))]
    pub batch: usize,
    /// Use the raw trained weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    /// Do not clamp predicted clean images to [-1, 1] during sampling.
    #[arg(long)]
    pub no_clip: bool,
    /// Noise schedule, for weights files without one recorded [default: the checkpoint's, else linear].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Timesteps T, for weights files without one recorded [default: the checkpoint's, else 1000].
    #[arg(long, value_parser = sizes(MAX_TIMESTEPS))]
    pub timesteps: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where onnxruntime runs an ONNX model; cuda needs onnxruntime-gpu and never falls back to
    /// the CPU.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Run an ONNX model whose graph no longer matches the digest mdc recorded at export (a file
    /// changed on purpose by another tool, e.g. an fp16 conversion).
    #[arg(long)]
    pub allow_modified: bool,
    /// Class-conditional models: which classes to draw, `7`, `0,3,7` (numbers or the class names
    /// recorded in training) or `all`; with several, -n is split evenly (rounded up) and the grid
    /// has one row per class [default: all].
    #[arg(long, value_name = "CLASSES")]
    pub class: Option<String>,
    /// Classifier-free guidance scale S: 1 the plain conditional model, 0 unconditional (labels
    /// ignored), larger follows the class more strictly; with autoguidance it adds
    /// (S - 1) (model(label) - model(null)) to the autoguided prediction [default: 6, chosen by
    /// measurement: docs/experiments/conditional.md].
    #[arg(long, value_name = "S", value_parser = guidance_scale)]
    pub guidance: Option<f32>,
    /// Autoguidance weight w: guide + w (model - guide), the guide being the same run's early EMA
    /// weights that the checkpoint keeps (`guide_at`); 1 the model alone [default: the run's
    /// `autoguidance`; an ONNX export has its weight built in].
    #[arg(long, value_name = "W", value_parser = autoguidance_weight)]
    pub autoguidance: Option<f32>,
    /// The noisiest timestep at which autoguidance steers images without a class label; above it
    /// they get the model alone (T - 1 steers at every step; images with a label always are)
    /// [default: the run's `autoguidance_max_t`; an ONNX export has it built in].
    #[arg(long, value_name = "T")]
    pub autoguidance_max_t: Option<u64>,
}

impl Args {
    /// What the command line asks of autoguidance.
    pub fn steering_request(&self) -> SteeringRequest {
        SteeringRequest { weight: self.autoguidance, max_t: self.autoguidance_max_t }
    }
}

pub fn autoguidance_weight(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (1.0..=20.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("expected a weight from 1 (the model alone) to 20, found {v}")),
        Err(_) => Err(format!("expected a number (e.g. 3), found {s:?}")),
    }
}

fn guidance_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("expected a scale from 0 to 100, found {v}")),
        Err(_) => Err(format!("expected a number (e.g. 3), found {s:?}")),
    }
}

/// Which classes to draw and at what guidance, for a model with `classes` (None: unconditional)
/// whose classes are called `names` (may be empty). Returns the guidance and the grid's columns
/// (one row per class when several are drawn; 0: a near-square grid).
pub fn class_plan(
    class: Option<&str>,
    guidance: Option<f32>,
    count: usize,
    classes: Option<usize>,
    names: &[String],
    model: &str,
) -> anyhow::Result<(Option<ClassGuidance>, usize)> {
    let Some(classes) = classes else {
        if let Some(c) = class {
            bail!(UsageError(format!(
                "--class {c}: {model} is not class-conditional (its model file has no [condition]); sample it without --class"
            )));
        }
        if guidance.is_some() {
            bail!(UsageError(format!(
                "--guidance: {model} is not class-conditional (its model file has no [condition]); guidance needs a model trained with labels"
            )));
        }
        return Ok((None, 0));
    };
    // Names that are just the numbers (MNIST's "0".."9") add nothing to a message.
    let numbered = names.iter().enumerate().all(|(k, n)| *n == k.to_string());
    let names: &[String] = if numbered { &[] } else { names };
    let name_of = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
    let wanted: Vec<u32> = match class.unwrap_or("all").trim() {
        "all" => (0..classes as u32).collect(),
        list => list
            .split(',')
            .map(|item| {
                let item = item.trim();
                let by_name = names.iter().position(|n| n == item);
                let by_number = item.parse::<usize>().ok().filter(|&k| k < classes);
                by_name.or(by_number).map(|k| k as u32).ok_or_else(|| {
                    let known = if names.is_empty() {
                        format!("0 to {}", classes - 1)
                    } else {
                        format!(
                            "0 to {} or one of {}",
                            classes - 1,
                            (0..classes).map(name_of).collect::<Vec<_>>().join(", ")
                        )
                    };
                    anyhow::Error::new(UsageError(format!(
                        "--class {list}: `{item}` is not a class of {model}: expected {known}, or `all`"
                    )))
                })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let scale = guidance.unwrap_or(DEFAULT_GUIDANCE);
    let null = classes as u32;
    if scale == 0.0 {
        // Unconditional: the labels are not read, so -n is exactly what is drawn.
        return Ok((Some(ClassGuidance { labels: vec![null; count], null, scale }), 0));
    }
    let per_class = count.div_ceil(wanted.len());
    let columns = if wanted.len() > 1 { per_class } else { 0 };
    Ok((Some(ClassGuidance::rows(&wanted, per_class, null, scale)), columns))
}

/// Tells the user what a conditional run draws.
fn describe_plan(g: &ClassGuidance, names: &[String]) -> String {
    if g.scale == 0.0 {
        return "unconditional (guidance 0)".to_string();
    }
    let mut classes: Vec<u32> = g.labels.clone();
    classes.dedup();
    let name = |k: u32| names.get(k as usize).cloned().unwrap_or_else(|| k.to_string());
    let shown: Vec<String> = classes.iter().take(12).map(|&k| name(k)).collect();
    let more = if classes.len() > 12 { ", ..." } else { "" };
    format!("class {}{more}, guidance {}", shown.join(", "), g.scale)
}

/// The training recipe's limits: most images per run or batch, most timesteps T.
pub use crate::train::{MAX_IMAGES, MAX_TIMESTEPS};

/// A clap parser for a size from 1 to `max`.
pub fn sizes(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let onnx = args.checkpoint.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if !onnx && args.device != Device::Cpu {
        bail!(UsageError(format!(
            "--device {} runs ONNX models through onnxruntime; export the model first \
             (`mdc export onnx MODEL.toml --weights {} -o model.onnx`) and sample model.onnx",
            args.device,
            args.checkpoint.display()
        )));
    }
    let sampler = match args.sampler {
        SamplerArg::Ddpm => Sampler::Ddpm,
        SamplerArg::Ddim => Sampler::Ddim { steps: args.steps, eta: args.eta },
        SamplerArg::Dpmpp2m => Sampler::DpmSolver2M { steps: args.steps },
    };
    let mut opts = SampleOptions {
        count: args.count,
        batch: args.batch,
        sampler,
        clip_x0: !args.no_clip,
        prediction: Prediction::Noise,
        seed: args.seed,
        guidance: None,
    };
    let t0 = Instant::now();
    let (images, columns) =
        if onnx { sample_onnx(args, &mut opts)? } else { sample_checkpoint(args, &mut opts)? };
    let (h, w) = (images.shape()[2], images.shape()[3]);
    write_grid(&args.output, &images, GridLayout { columns, ..GridLayout::auto(h.max(w)) })?;
    if let Some(dir) = &args.individual {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, img) in images.axis_iter(Axis(0)).enumerate() {
            let p = dir.join(format!("sample-{i:03}.png"));
            crate::base::fsutil::write_atomic(&p, &image_png(img)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    println!(
        "wrote {}{} in {:.1}s",
        args.output.display(),
        args.individual.as_ref().map_or(String::new(), |d| format!(
            " and {} images in {}",
            images.shape()[0],
            d.display()
        )),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The interpreter path: weights plus the model file they belong to.
fn sample_checkpoint(args: &Args, opts: &mut SampleOptions) -> anyhow::Result<(Array4<f32>, usize)> {
    let Some(model_path) = &args.model else {
        bail!(UsageError(format!(
            "--model MODEL.toml is required to sample {} (it holds weights, not the architecture)",
            args.checkpoint.display()
        )));
    };
    let model = crate::model::load(model_path)?;
    let (params, meta) = Params::load_for_inference(&args.checkpoint, &model.graph, !args.no_ema)?;
    let is_checkpoint = meta.get("format").map(String::as_str) == Some(CHECKPOINT_FORMAT);

    let schedule_kind = match (&args.schedule, meta.get("schedule")) {
        (Some(s), _) => ScheduleKind::parse(s)
            .with_context(|| format!("--schedule: expected linear or cosine, found {s:?}"))?,
        (None, Some(s)) => ScheduleKind::parse(s)
            .with_context(|| format!("{}: unknown schedule {s:?} in metadata", args.checkpoint.display()))?,
        (None, None) => ScheduleKind::Linear,
    };
    let timesteps = match (args.timesteps, meta.get("timesteps")) {
        (Some(t), _) => t,
        (None, Some(t)) => {
            let path = args.checkpoint.display();
            let t: usize =
                t.parse().with_context(|| format!("{path}: timesteps {t:?} in metadata is not a number"))?;
            metadata_timesteps(t, &path.to_string())?
        }
        (None, None) => 1000,
    };
    let schedule = NoiseSchedule::new(schedule_kind, timesteps);
    // Checkpoints record it (those from before the setting predict the noise); for plain weights
    // the model file's [train] says.
    opts.prediction = match crate::train::recorded_prediction(&meta)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.checkpoint.display()))?
    {
        Some(p) => p,
        None => {
            crate::onnx::ScheduleInfo::from_train_table(model.train.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?
                .prediction
        }
    };
    let (c, h, w) = model.graph.input_shape().as_image().context("the model's input is not an image")?;
    let names = crate::params::class_names_from_meta(&meta).unwrap_or_default();
    let model_name = model_path.display().to_string();
    let (guidance, columns) = class_plan(
        args.class.as_deref(),
        args.guidance,
        args.count,
        model.graph.classes(),
        &names,
        &model_name,
    )?;
    opts.count = guidance.as_ref().map_or(args.count, |g| g.labels.len());
    let plan = guidance.as_ref().map_or(String::new(), |g| format!(", {}", describe_plan(g, &names)));
    opts.guidance = guidance;
    println!(
        "sampling {} images {c}x{h}x{w} from {} ({} weights) with {}, {schedule_kind} schedule T={timesteps}{}, seed {}{plan}",
        opts.count,
        args.checkpoint.display(),
        if is_checkpoint && !args.no_ema { "EMA" } else { "raw" },
        opts.sampler,
        prediction_note(opts.prediction),
        args.seed
    );
    let guide =
        super::guide::chosen_guide(Some(&args.checkpoint), &model.graph, &meta, args.steering_request())?;
    if let Some(g) = &guide {
        println!("autoguidance {}: guided by the EMA weights of step {}", g.steering, g.step);
    }
    let guide = guide.map(|g| (g.weights, g.steering));
    Ok((sample_images(&model.graph, params, guide, &schedule, [c, h, w], opts, !args.quiet)?, columns))
}

/// What the sampling line says about the model's output: nothing for the noise (the classic
/// case), else what it predicts.
fn prediction_note(prediction: Prediction) -> String {
    match prediction {
        Prediction::Noise => String::new(),
        other => format!(", {other} prediction"),
    }
}

/// The onnxruntime path: image size and noise schedule come from the model's metadata.
fn sample_onnx(args: &Args, opts: &mut SampleOptions) -> anyhow::Result<(Array4<f32>, usize)> {
    let path = args.checkpoint.display();
    if args.model.is_some() {
        eprintln!("note: --model is not used with an ONNX model (its architecture is inside {path})");
    }
    if args.no_ema {
        eprintln!("note: --no-ema has no effect on an ONNX model (its weights were chosen at export)");
    }
    let config =
        SessionConfig { device: args.device, allow_modified: args.allow_modified, ..Default::default() };
    let mut den = OrtDenoiser::open_with(&args.checkpoint, &config)?;
    if let Some(note) = den.integrity_note() {
        eprintln!("{note}");
    }
    let info = den.info().clone();
    let name = args.schedule.as_deref().unwrap_or(&info.schedule.name);
    let kind = ScheduleKind::parse(name)
        .with_context(|| format!("schedule: expected linear or cosine, found {name:?}"))?;
    let timesteps = match args.timesteps {
        Some(t) => t,
        None => metadata_timesteps(info.schedule.timesteps, &path.to_string())?,
    };
    if (kind.name(), timesteps) != (info.schedule.name.as_str(), info.schedule.timesteps) {
        eprintln!(
            "warning: sampling with the {kind} schedule, T={timesteps}, but {path} was trained with {} T={}",
            info.schedule.name, info.schedule.timesteps
        );
    }
    let schedule = NoiseSchedule::new(kind, timesteps);
    opts.prediction = info.schedule.prediction;
    // The export's autoguidance is fixed in its graph: a flag can only restate it.
    let SteeringRequest { weight, max_t } = args.steering_request();
    match &info.autoguidance {
        Some(a) => {
            let built_in = a.steering;
            if let Some(w) = weight.filter(|&w| w != built_in.weight) {
                bail!(UsageError(format!(
                    "--autoguidance {w}: {path} has autoguidance {built_in} built in (export it again with \
                     --autoguidance {w})"
                )));
            }
            if let Some(t) = max_t.filter(|&t| Some(t) != built_in.max_t) {
                bail!(UsageError(format!(
                    "--autoguidance-max-t {t}: {path} has autoguidance {built_in} built in (export it again \
                     with --autoguidance-max-t {t})"
                )));
            }
            println!("autoguidance {built_in} (built in): guided by the EMA weights of step {}", a.guide_step)
        }
        None => {
            if let Some(w) = weight.filter(|&w| w != 1.0) {
                bail!(UsageError(format!(
                    "--autoguidance {w}: {path} was exported without a guide (export a checkpoint that keeps \
                     one, with --autoguidance {w})"
                )));
            }
            if let Some(t) = max_t {
                bail!(UsageError(format!(
                    "--autoguidance-max-t {t}: {path} was exported without a guide (export a checkpoint that \
                     keeps one)"
                )));
            }
        }
    }
    let [c, h, w] = info.image();
    let names = info.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
    let (guidance, columns) = class_plan(
        args.class.as_deref(),
        args.guidance,
        args.count,
        info.classes.as_ref().map(|c| c.count),
        &names,
        &path.to_string(),
    )?;
    opts.count = guidance.as_ref().map_or(args.count, |g| g.labels.len());
    let plan = guidance.as_ref().map_or(String::new(), |g| format!(", {}", describe_plan(g, &names)));
    opts.guidance = guidance;
    println!(
        "sampling {} images {c}x{h}x{w} from {path} (onnxruntime, {}; weights: {}) with {}, {kind} schedule T={timesteps}{}, seed {}{plan}",
        opts.count, args.device, info.weights, opts.sampler, prediction_note(opts.prediction), args.seed
    );
    Ok((sample_with_progress(&mut den, &schedule, info.image(), opts, !args.quiet)?, columns))
}

/// Timesteps T recorded in a file's metadata, checked like `--timesteps` but blamed on the file.
fn metadata_timesteps(t: usize, path: &str) -> anyhow::Result<usize> {
    if !(1..=MAX_TIMESTEPS).contains(&(t as u64)) {
        bail!(
            "{path}: timesteps {t} in metadata is not from 1 to {MAX_TIMESTEPS}; the file may be damaged \
             (pass --timesteps T to sample with another schedule length)"
        );
    }
    Ok(t)
}
