//! `mdc sample CHECKPOINT --model MODEL.toml`: DDPM or DDIM sampling with the interpreter, to a
//! PNG grid (and optionally one PNG per image).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ndarray::Axis;

use crate::diffusion::{NoiseSchedule, SampleOptions, Sampler, ScheduleKind};
use crate::image_io::{image_png, write_grid, GridLayout};
use crate::params::{Params, CHECKPOINT_FORMAT};
use crate::train::sample_images;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling over all T timesteps (slow, the reference).
    Ddpm,
    /// DDIM over --steps evenly spaced timesteps; --eta 0 is deterministic.
    Ddim,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A checkpoint written by `mdc train` (EMA weights are used) or a plain weights file.
    pub checkpoint: PathBuf,
    /// The model file the weights belong to.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Number of images.
    #[arg(short = 'n', long, default_value_t = 16)]
    pub count: usize,
    #[arg(long, value_enum, default_value_t = SamplerArg::Ddim)]
    pub sampler: SamplerArg,
    /// DDIM steps.
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
    #[arg(long, default_value_t = 16)]
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
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.checkpoint.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        bail!(
            "{}: sampling an ONNX model needs the onnxruntime path, which is not wired into `mdc sample` in this build; sample the training checkpoint with --model MODEL.toml instead",
            args.checkpoint.display()
        );
    }
    let Some(model_path) = &args.model else {
        bail!(
            "--model MODEL.toml is required to sample {} (it holds weights, not the architecture)",
            args.checkpoint.display()
        );
    };
    if args.count == 0 {
        bail!("-n must be at least 1");
    }
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
        (None, Some(t)) => t.parse().with_context(|| {
            format!("{}: timesteps {t:?} in metadata is not a number", args.checkpoint.display())
        })?,
        (None, None) => 1000,
    };
    if timesteps == 0 {
        bail!("--timesteps must be at least 1");
    }
    let schedule = NoiseSchedule::new(schedule_kind, timesteps);
    let sampler = match args.sampler {
        SamplerArg::Ddpm => Sampler::Ddpm,
        SamplerArg::Ddim => Sampler::Ddim { steps: args.steps, eta: args.eta },
    };
    let (c, h, w) = model.graph.input_shape().as_image().context("the model's input is not an image")?;
    println!(
        "sampling {} images {c}x{h}x{w} from {} ({} weights) with {sampler}, {schedule_kind} schedule T={timesteps}, seed {}",
        args.count,
        args.checkpoint.display(),
        if is_checkpoint && !args.no_ema { "EMA" } else { "raw" },
        args.seed
    );
    let opts = SampleOptions {
        count: args.count,
        batch: args.batch,
        sampler,
        clip_x0: !args.no_clip,
        seed: args.seed,
    };
    let t0 = Instant::now();
    let images = sample_images(&model.graph, params, &schedule, [c, h, w], &opts, !args.quiet)?;
    write_grid(&args.output, &images, GridLayout::auto(h.max(w)))?;
    if let Some(dir) = &args.individual {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, img) in images.axis_iter(Axis(0)).enumerate() {
            let p = dir.join(format!("sample-{i:03}.png"));
            crate::fsutil::write_atomic(&p, &image_png(img)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    println!(
        "wrote {}{} in {:.1}s",
        args.output.display(),
        args.individual.as_ref().map_or(String::new(), |d| format!(
            " and {} images in {}",
            args.count,
            d.display()
        )),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
