//! `mdc train MODEL`: DDPM training with the interpreter, resumable, with a sample grid at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::UsageError;
use crate::check::table::group_digits;
use crate::data::{DataSource, Dataset};
use crate::train::{
    checkpoint_path, stop_after_problem, train, train_key_line, Checkpoint, Diverged, Origin, Recipe,
    TrainConfig, TrainJob,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (e.g. models/unet.toml); its `[train]` section may set any training setting.
    pub model: PathBuf,
    /// Training images: `builtin` (MNIST digits, see --builtin-digits), an IDX file (.gz or raw) or a folder of PNG/JPEG.
    #[arg(long)]
    pub data: Option<String>,
    /// Output folder for the checkpoint, loss log, loss plot and samples [default: runs/<model name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Optimizer steps in the whole run.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images per step.
    #[arg(long)]
    pub batch: Option<u64>,
    /// Peak learning rate (AdamW), reached after warmup, then cosine-decayed.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed for the initial weights, the data order and the noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Warmup steps [default: 5% of steps].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Noise schedule: linear or cosine.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Diffusion timesteps T.
    #[arg(long)]
    pub timesteps: Option<u64>,
    /// Gradient-norm clipping threshold (0 turns clipping off).
    #[arg(long)]
    pub clip_grad: Option<f64>,
    /// Maximum EMA decay of the sampling weights.
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// Steps between checkpoints (one is always written at the end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Images in the final sample grid (0: no sampling).
    #[arg(long)]
    pub samples: Option<u64>,
    /// DDIM steps for the final sample grid (0: DDPM over all timesteps).
    #[arg(long)]
    pub sample_steps: Option<u64>,
    /// DDIM eta for the final sample grid (1: stochastic, 0: deterministic).
    #[arg(long)]
    pub sample_eta: Option<f64>,
    /// Sampler for the final grid: ddpm, ddim or dpmpp2m.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Steps between preview grids from the EMA weights, in <out>/samples/ (0: none).
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// Min-SNR-gamma loss weighting (0: off, plain MSE).
    #[arg(long)]
    pub min_snr_gamma: Option<f64>,
    /// How many of the 5000 built-in digits `--data builtin` trains on.
    #[arg(long)]
    pub builtin_digits: Option<u64>,
    /// Any training setting as KEY=VALUE in TOML syntax (e.g. --set weight_decay=0.01); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start afresh even if --out already holds a checkpoint (it is replaced).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Stop after this step, as if interrupted (a checkpoint is written; continue with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<u64>,
    /// No progress bar or progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Args {
    /// The command-line settings as (key, TOML value) pairs, in [`crate::train::KEYS`] terms.
    fn overrides(&self) -> anyhow::Result<Vec<(String, toml::Value)>> {
        let mut out: Vec<(String, toml::Value)> = Vec::new();
        let mut int = |k: &str, v: Option<u64>| {
            if let Some(v) = v {
                out.push((k.into(), toml::Value::Integer(v.min(i64::MAX as u64) as i64)));
            }
        };
        int("steps", self.steps);
        int("batch", self.batch);
        int("seed", self.seed);
        int("warmup", self.warmup);
        int("timesteps", self.timesteps);
        int("checkpoint_every", self.checkpoint_every);
        int("samples", self.samples);
        int("sample_steps", self.sample_steps);
        int("sample_every", self.sample_every);
        int("builtin_digits", self.builtin_digits);
        let floats = [
            ("lr", self.lr),
            ("clip_grad", self.clip_grad),
            ("ema_decay", self.ema_decay),
            ("sample_eta", self.sample_eta),
            ("min_snr_gamma", self.min_snr_gamma),
        ];
        out.extend(floats.into_iter().filter_map(|(k, v)| v.map(|v| (k.into(), toml::Value::Float(v)))));
        let strings = [("schedule", &self.schedule), ("data", &self.data), ("sampler", &self.sampler)];
        out.extend(
            strings
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.into(), toml::Value::String(v.clone())))),
        );
        for kv in &self.set {
            let Some((k, v)) = kv.split_once('=') else {
                bail!(UsageError(format!("--set expects KEY=VALUE, found {kv:?}")));
            };
            let (k, v) = (k.trim(), v.trim());
            let table: toml::Table = format!("v = {v}")
                .parse()
                .or_else(|_| format!("v = {}", toml::Value::String(v.into())).parse())
                .map_err(|e| UsageError(format!("--set {kv}: {v:?} is not a TOML value ({e})")))?;
            out.push((k.to_string(), table["v"].clone()));
        }
        Ok(out)
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let model = crate::model::load(&args.model)?;
    let model_name = args.model.display().to_string();
    let out_dir = args.out.clone().unwrap_or_else(|| default_out_dir(&args.model));
    let ckpt_path = checkpoint_path(&out_dir);

    let (recipe, resume) = if args.resume {
        if !ckpt_path.exists() {
            bail!(UsageError(format!(
                "--resume: {} does not exist; start the run without --resume (or point --out at the run's folder)",
                ckpt_path.display()
            )));
        }
        let ck = Checkpoint::load(&ckpt_path, &model.graph, &model.hash, &model_name)?;
        let mut recipe = Recipe::new(ck.config.clone(), Origin::Checkpoint);
        apply_overrides(&mut recipe, args)?;
        let changed = ck.config.recipe_differences(&recipe.config);
        if !changed.is_empty() {
            bail!(UsageError(format!(
                "--resume keeps the run's recipe, but these settings differ from the checkpoint's:\n  {}\n  drop them, or start a new run in another --out",
                changed.join("\n  ")
            )));
        }
        if recipe.config.steps <= ck.step {
            bail!(UsageError(format!(
                "the run in {} already completed {} of {} steps; pass --steps N (more than {}) to train longer",
                out_dir.display(),
                ck.step,
                recipe.config.steps,
                ck.step
            )));
        }
        if recipe.config.steps != ck.config.steps {
            eprintln!(
                "note: steps changed from {} to {}; the learning-rate decay is stretched from here on",
                ck.config.steps, recipe.config.steps
            );
        }
        (recipe, Some(ck))
    } else {
        if ckpt_path.exists() && !args.overwrite {
            bail!(UsageError(format!(
                "{} already holds a run ({}); continue it with --resume, replace it with --overwrite, or choose another --out",
                out_dir.display(),
                ckpt_path.display()
            )));
        }
        let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
        if let Some(table) = &model.train {
            recipe.apply_table(table, Origin::ModelFile).map_err(|problems| {
                let mut located: Vec<(Option<usize>, &String)> =
                    problems.iter().map(|(key, msg)| (train_key_line(&model.source, key), msg)).collect();
                located.sort_by_key(|(line, _)| *line);
                let lines: Vec<String> = located
                    .into_iter()
                    .map(|(line, msg)| match line {
                        Some(line) => format!("{model_name}:{line}: [train] {msg}"),
                        None => format!("{model_name}: [train] {msg}"),
                    })
                    .collect();
                anyhow::anyhow!("invalid training settings in the model file:\n  {}", lines.join("\n  "))
            })?;
            resolve_data_path(&mut recipe, &args.model);
        }
        apply_overrides(&mut recipe, args)?;
        (recipe, None)
    };
    recipe.validate().map_err(|e| anyhow::anyhow!("training settings: {e}"))?;
    let cfg = recipe.config.clone();
    let start = resume.as_ref().map_or(0, |ck| ck.step);
    if let Some(stop) = args.stop_after.filter(|&s| s <= start) {
        bail!(UsageError(stop_after_problem(stop, start)));
    }

    let (c, h, w) = model.graph.input_shape().as_image().context("the model's input is not an image")?;
    let source = DataSource::parse(&cfg.data);
    let mut dataset = Dataset::load(&source, (h, w))?;
    if source == DataSource::Builtin {
        dataset = dataset.first(cfg.builtin_digits);
    }
    dataset.check_fits([c, h, w], &model_name)?;

    println!(
        "mdc train {model_name}: {} parameters, input {c}x{h}x{w}; data: {} ({} images)",
        group_digits(model.graph.param_count() as u64),
        dataset.origin,
        dataset.len()
    );
    match &resume {
        Some(ck) => println!("resuming from {} at step {}", ckpt_path.display(), ck.step),
        None => println!("output: {}", out_dir.display()),
    }
    println!("settings:\n{}", recipe.describe());

    let job = TrainJob {
        graph: &model.graph,
        model_name: model_name.clone(),
        model_hash: model.hash.clone(),
        config: cfg.clone(),
        dataset,
        out_dir: out_dir.clone(),
        resume,
        stop_after: args.stop_after,
        progress: !args.quiet,
    };
    let outcome = match train(job) {
        Ok(o) => o,
        Err(e) => {
            if let Some(d) = e.downcast_ref::<Diverged>() {
                eprintln!("error: {d}");
                return Ok(ExitCode::from(super::EXIT_MODEL_ERRORS));
            }
            return Err(e);
        }
    };

    let trained = (outcome.last_step + 1).saturating_sub(outcome.first_step);
    println!(
        "trained steps {}..{} ({trained} steps) in {} ({:.1} images/s); final loss {}",
        outcome.first_step,
        outcome.last_step,
        duration(outcome.train_seconds),
        outcome.images_per_second,
        outcome.final_loss.map_or("-".into(), |l| format!("{l:.4} (smoothed)")),
    );
    println!("  checkpoint  {}", outcome.checkpoint.display());
    println!("  loss log    {}", outcome.log.display());
    println!("  loss plot   {}", outcome.plot.display());
    match &outcome.samples {
        Some((p, secs)) => {
            println!("  samples     {} ({} images, {})", p.display(), cfg.samples, duration(*secs))
        }
        None if outcome.last_step < cfg.steps => println!(
            "stopped at step {} of {}; continue with: mdc train {model_name} --out {} --resume",
            outcome.last_step,
            cfg.steps,
            out_dir.display()
        ),
        None => {}
    }
    if outcome.last_step == cfg.steps {
        println!(
            "more samples: mdc sample {} --model {model_name} -n 64 -o grid.png",
            outcome.checkpoint.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn apply_overrides(recipe: &mut Recipe, args: &Args) -> anyhow::Result<()> {
    let problems: Vec<String> =
        args.overrides()?.iter().filter_map(|(k, v)| recipe.set(k, v, Origin::CommandLine).err()).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(UsageError(format!("command line:\n  {}", problems.join("\n  "))))
    }
}

/// A relative `data` path in the model file is relative to the model file's folder.
fn resolve_data_path(recipe: &mut Recipe, model_path: &Path) {
    let data = &recipe.config.data;
    if recipe.origins.get("data") == Some(&Origin::ModelFile)
        && data != "builtin"
        && Path::new(data).is_relative()
    {
        if let Some(dir) = model_path.parent() {
            recipe.config.data = dir.join(data).display().to_string();
        }
    }
}

/// `runs/<model file stem>`.
pub fn default_out_dir(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    PathBuf::from("runs").join(stem)
}

fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    }
}
