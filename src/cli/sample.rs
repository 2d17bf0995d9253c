//! `mdc sample CHECKPOINT --model MODEL.toml`: DDPM, DDIM or DPM-Solver++(2M) sampling with the interpreter, to a
//! PNG grid (and optionally one PNG per image). `mdc sample model.onnx [--device cpu|cuda]`: the
//! same with each denoising step an onnxruntime call; the .onnx file carries everything else.
//! Either file becomes one [`ModelSource`] (what the model is, and what runs it), so the schedule,
//! the class plan and the output are decided one way for both.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ndarray::Axis;

use super::guide::SteeringRequest;
use super::source::{ModelSource, SourceRequest};
use super::UsageError;
use crate::base::image_io::{image_png, write_grid, GridLayout};
use crate::diffusion::{
    class_plan, describe_plan, parse_autoguidance_weight, parse_guidance_scale, NoiseSchedule, Prediction,
    SampleOptions, SamplerKind, ScheduleKind,
};
use crate::runtime::Device;

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
    /// Noise schedule, for weights files without one recorded [default: the checkpoint's, else the
    /// model file's `[train]`, else linear].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Timesteps T, for weights files without one recorded [default: the checkpoint's, else the
    /// model file's `[train]`, else 1000].
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
    /// measurement: docs/conditional.md].
    #[arg(long, value_name = "S", value_parser = parse_guidance_scale)]
    pub guidance: Option<f32>,
    /// Autoguidance weight w: guide + w (model - guide), the guide being the same run's early EMA
    /// weights that the checkpoint keeps (`guide_at`); 1 the model alone [default: the run's
    /// `autoguidance`; an ONNX export has its weight built in].
    #[arg(long, value_name = "W", value_parser = parse_autoguidance_weight)]
    pub autoguidance: Option<f32>,
    /// The noisiest timestep at which autoguidance steers images without a class label; above it
    /// they get the model alone (T - 1 steers at every step; images with a label always are)
    /// [default: the run's `autoguidance_max_t`; an ONNX export has it built in].
    #[arg(long, value_name = "T")]
    pub autoguidance_max_t: Option<u64>,
}

impl Args {
    /// The model source the command line names.
    pub fn source_request(&self) -> SourceRequest {
        SourceRequest {
            file: self.checkpoint.clone(),
            model: self.model.clone(),
            no_ema: self.no_ema,
            device: self.device,
            allow_modified: self.allow_modified,
            steering: SteeringRequest { weight: self.autoguidance, max_t: self.autoguidance_max_t },
        }
    }
}

/// The training recipe's limits: most images per run or batch, most timesteps T.
pub use crate::base::limits::{MAX_IMAGES, MAX_TIMESTEPS};

/// A clap parser for a size from 1 to `max`.
pub fn sizes(max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=max)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let sampler = match args.sampler {
        SamplerArg::Ddpm => SamplerKind::Ddpm,
        SamplerArg::Ddim => SamplerKind::Ddim,
        SamplerArg::Dpmpp2m => SamplerKind::Dpmpp2m,
    }
    .with_steps(args.steps, args.eta);
    let t0 = Instant::now();
    let source = ModelSource::open(&args.source_request())?;
    let info = &source.info;
    let path = args.checkpoint.display();
    let kind = match &args.schedule {
        Some(s) => ScheduleKind::parse(s)
            .with_context(|| format!("--schedule: expected linear or cosine, found {s:?}"))?,
        None => ScheduleKind::parse(&info.schedule.name)
            .with_context(|| format!("{path}: unknown schedule {:?}", info.schedule.name))?,
    };
    let timesteps = args.timesteps.unwrap_or(info.schedule.timesteps);
    if source.recorded_schedule
        && (kind.name(), timesteps) != (info.schedule.name.as_str(), info.schedule.timesteps)
    {
        eprintln!(
            "warning: sampling with the {kind} schedule, T={timesteps}, but {path} was trained with {} T={}",
            info.schedule.name, info.schedule.timesteps
        );
    }
    let schedule = NoiseSchedule::new(kind, timesteps);
    let names = info.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
    let (guidance, columns) = class_plan(
        args.class.as_deref(),
        args.guidance,
        args.count,
        info.classes.as_ref().map(|c| c.count),
        &names,
        &source.name,
    )
    .map_err(|e| UsageError(e.0))?;
    let opts = SampleOptions {
        count: guidance.as_ref().map_or(args.count, |g| g.labels.len()),
        batch: args.batch,
        sampler,
        clip_x0: !args.no_clip,
        prediction: info.schedule.prediction,
        seed: args.seed,
        guidance,
    };
    let plan = opts.guidance.as_ref().map_or(String::new(), |g| format!(", {}", describe_plan(g, &names)));
    let [c, h, w] = info.image();
    println!(
        "sampling {} images {c}x{h}x{w} from {path} ({}) with {}, {kind} schedule T={timesteps}{}, seed {}{plan}",
        opts.count,
        source.weights_note(),
        opts.sampler,
        prediction_note(opts.prediction),
        args.seed
    );
    if let Some(note) = source.autoguidance_note() {
        println!("{note}");
    }
    let images = source.sample(&schedule, &opts, !args.quiet)?;
    let (h, w) = (images.shape()[2], images.shape()[3]);
    write_grid(&args.output, &images, GridLayout { columns, ..GridLayout::auto(h.max(w)) })?;
    if let Some(dir) = &args.individual {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, img) in images.axis_iter(Axis(0)).enumerate() {
            let p = dir.join(format!("sample-{i:03}.png"));
            crate::base::fsutil::write_file(&p, &image_png(img)?)?;
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

/// What the sampling line says about the model's output: nothing for the noise (the classic
/// case), else what it predicts.
fn prediction_note(prediction: Prediction) -> String {
    match prediction {
        Prediction::Noise => String::new(),
        other => format!(", {other} prediction"),
    }
}
