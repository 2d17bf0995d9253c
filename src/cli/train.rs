//! `mdc train MODEL`: DDPM training with the interpreter, resumable, with a sample grid at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::UsageError;
use crate::check::table::group_digits;
use crate::data::{DataSource, Dataset};
use crate::recipe::{Origin, Recipe, Setting, TrainConfig, SETTINGS};
use crate::runtime::step_session::StepOptions;
use crate::runtime::Device;
use crate::train::{checkpoint_path, stop_after_problem, train, Checkpoint, Diverged, TrainEngine, TrainJob};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (e.g. models/unet.toml); its `[train]` section may set any training setting.
    pub model: PathBuf,
    /// Output folder for the checkpoint, loss log, loss plot and samples [default: runs/<model name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A flag for each training setting that has one (`--steps`, `--lr`, ...; see SETTINGS).
    #[command(flatten)]
    pub settings: SettingFlags,
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
    /// Which engine runs the steps: mdc's interpreter, or the whole step compiled to one ONNX
    /// graph run by onnxruntime (fp32; see docs/train-step.md).
    #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
    pub engine: EngineArg,
    /// Where onnxruntime runs the step (--engine ort); cuda needs the onnxruntime-gpu build and
    /// never falls back to the CPU.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// Let CUDA use TensorFloat-32 in convolutions and matrix products (--device cuda; off: fp32).
    #[arg(long)]
    pub tf32: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// mdc's own interpreter (CPU).
    Interp,
    /// The compiled training step in onnxruntime.
    Ort,
}

impl Args {
    /// The engine asked for, or what is wrong with the combination of flags.
    fn engine(&self) -> anyhow::Result<TrainEngine> {
        match self.engine {
            EngineArg::Interp if self.device != Device::Cpu || self.tf32 => bail!(UsageError(
                "--device and --tf32 choose where onnxruntime runs the step: add --engine ort".into()
            )),
            EngineArg::Interp => Ok(TrainEngine::Interp),
            EngineArg::Ort if self.tf32 && self.device != Device::Cuda => {
                bail!(UsageError("--tf32 applies to --device cuda only".into()))
            }
            EngineArg::Ort => {
                Ok(TrainEngine::Ort(StepOptions { device: self.device, tf32: self.tf32, threads: None }))
            }
        }
    }
}

/// `--<setting>` flags, made from [`SETTINGS`] so a new setting gets its flag from its table entry.
#[derive(Debug, Clone, Default)]
pub struct SettingFlags {
    /// (setting, value as written), in the table's order.
    pub values: Vec<(&'static str, String)>,
}

fn flagged() -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().filter(|s| s.flag)
}

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let values =
            flagged().filter_map(|s| m.get_one::<String>(s.name).map(|v| (s.name, v.clone()))).collect();
        Ok(SettingFlags { values })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for SettingFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        flagged().fold(cmd, |cmd, s| {
            let help = format!("{}{}", s.doc[..1].to_uppercase(), &s.doc[1..]);
            cmd.arg(
                clap::Arg::new(s.name)
                    .long(s.name.replace('_', "-"))
                    .value_name(value_name(s.type_name))
                    .help(help),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// `INTEGER`, `NUMBER`, `STRING`, or the choices: `linear|cosine`.
fn value_name(type_name: &str) -> String {
    if type_name.starts_with('"') {
        type_name.replace('"', "").replace(" or ", "|").replace(", ", "|")
    } else {
        type_name.to_uppercase()
    }
}

/// A value from the command line as TOML: `5`, `1e-3`, `true`, else a string (`cosine`, a path).
fn toml_value(text: &str) -> Option<toml::Value> {
    let table: toml::Table = format!("v = {text}")
        .parse()
        .or_else(|_| format!("v = {}", toml::Value::String(text.into())).parse())
        .ok()?;
    table.get("v").cloned()
}

impl Args {
    /// The command-line settings as (key, TOML value) pairs, in [`SETTINGS`] terms.
    fn overrides(&self) -> anyhow::Result<Vec<(String, toml::Value)>> {
        let mut out: Vec<(String, toml::Value)> = Vec::new();
        for (k, v) in &self.settings.values {
            let value = toml_value(v).ok_or_else(|| UsageError(format!("--{k} {v:?} is not a value")))?;
            out.push((k.to_string(), value));
        }
        for kv in &self.set {
            let Some((k, v)) = kv.split_once('=') else {
                bail!(UsageError(format!("--set expects KEY=VALUE, found {kv:?}")));
            };
            let (k, v) = (k.trim(), v.trim());
            let value =
                toml_value(v).ok_or_else(|| UsageError(format!("--set {kv}: {v:?} is not a TOML value")))?;
            out.push((k.to_string(), value));
        }
        Ok(out)
    }
}

/// The defaults with the model file's `[train]` settings applied.
pub(super) fn model_recipe(model: &crate::model::Model, model_name: &str) -> anyhow::Result<Recipe> {
    let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
    if let Some(table) = &model.train {
        // `mdc check` (in model::load) has already refused any bad setting, at its line.
        recipe.apply_table(table, Origin::ModelFile).map_err(|problems| {
            let lines: Vec<&str> = problems.iter().map(|(_, msg)| msg.as_str()).collect();
            anyhow::anyhow!("{model_name}: [train]: {}", lines.join("; "))
        })?;
    }
    Ok(recipe)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let engine = args.engine()?;
    let model = crate::model::load(&args.model)?;
    let model_name = args.model.display().to_string();
    let out_dir = args.out.clone().unwrap_or_else(|| default_out_dir(&args.model));
    let ckpt_path = checkpoint_path(&out_dir);

    let (mut recipe, resume) = if args.resume {
        if !ckpt_path.exists() {
            bail!(UsageError(format!(
                "--resume: {} does not exist; start the run without --resume (or point --out at the run's folder)",
                ckpt_path.display()
            )));
        }
        let ck = Checkpoint::load(&ckpt_path, &model.graph, &model.hash, &model_name)?;
        let mut recipe = Recipe::new(ck.info.config.clone(), Origin::Checkpoint);
        apply_overrides(&mut recipe, args)?;
        let changed = ck.info.config.recipe_differences(&recipe.config);
        if !changed.is_empty() {
            bail!(UsageError(format!(
                "--resume keeps the run's recipe, but these settings differ from the checkpoint's:\n  {}\n  drop them, or start a new run in another --out",
                changed.join("\n  ")
            )));
        }
        if recipe.config.steps <= ck.info.step {
            bail!(UsageError(format!(
                "the run in {} already completed {} of {} steps; pass --steps N (more than {}) to train longer",
                out_dir.display(),
                ck.info.step,
                recipe.config.steps,
                ck.info.step
            )));
        }
        if recipe.config.steps != ck.info.config.steps {
            eprintln!(
                "note: steps changed from {} to {}; the learning-rate decay is stretched from here on",
                ck.info.config.steps, recipe.config.steps
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
        let mut recipe = model_recipe(&model, &model_name)?;
        if model.train.is_some() {
            resolve_data_paths(&mut recipe, &args.model);
        }
        apply_overrides(&mut recipe, args)?;
        (recipe, None)
    };
    recipe.validate().map_err(|e| anyhow::anyhow!("training settings: {e}"))?;
    // bf16 where the CPU has AVX512_BF16; asked for explicitly on a CPU without, an error.
    let explicit = matches!(recipe.origins.get("precision"), Some(Origin::ModelFile | Origin::CommandLine));
    let (precision, note) = crate::kernels::bf16::resolve(recipe.config.precision, explicit)
        .map_err(|e| anyhow::anyhow!("training settings: {e}"))?;
    recipe.config.precision = precision;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let cfg = recipe.config.clone();
    let start = resume.as_ref().map_or(0, |ck| ck.info.step);
    if let Some(stop) = args.stop_after.filter(|&s| s <= start) {
        bail!(UsageError(stop_after_problem(stop, start)));
    }

    let (c, h, w) = model.graph.input_shape().as_image().context("the model's input is not an image")?;
    let source = DataSource::parse(&cfg.data);
    // Labels ride along; a class-conditional model checks them with `dataset.check_labels`.
    let mut dataset = Dataset::load_labelled(&source, (h, w), cfg.labels.as_deref().map(Path::new))?;
    if source == DataSource::Builtin {
        dataset = dataset.first(cfg.builtin_digits);
    }
    dataset.check_fits([c, h, w], &model_name)?;
    if let Some(label) = model.graph.label_input() {
        dataset.check_labels(label.classes, &model_name)?;
        if label.hide_below >= cfg.timesteps {
            bail!(
                "{model_name}: [condition] hide_below = {} hides the label at every one of the {} timesteps, so the \
                 model would never learn the classes\n  hint: a value below `timesteps`, e.g. 400 of 1000, which keeps \
                 the label for the noisiest 60 % of the steps",
                label.hide_below,
                cfg.timesteps
            );
        }
    }

    println!(
        "mdc train {model_name}: {} parameters, input {c}x{h}x{w}; data: {}",
        group_digits(model.graph.param_count() as u64),
        dataset.describe()
    );
    match &resume {
        Some(ck) => println!("resuming from {} at step {}", ckpt_path.display(), ck.info.step),
        None => println!("output: {}", out_dir.display()),
    }
    println!("settings:\n{}", recipe.describe());
    if let TrainEngine::Ort(opts) = engine {
        println!(
            "engine: the compiled training step in onnxruntime on {} (fp32{}; the `precision` setting applies to the interpreter)",
            opts.device,
            if opts.tf32 { ", TF32 allowed" } else { "" }
        );
    }

    let job = TrainJob {
        graph: &model.graph,
        model_name: model_name.clone(),
        model_hash: model.hash.clone(),
        config: cfg.clone(),
        dataset,
        label_drop: model.label_drop,
        out_dir: out_dir.clone(),
        resume,
        stop_after: args.stop_after,
        progress: !args.quiet,
        engine,
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
        Some((p, count, secs)) => {
            println!("  samples     {} ({count} images, {})", p.display(), duration(*secs))
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
        let classes = if model.graph.classes().is_some() { " --class 7" } else { "" };
        println!(
            "more samples: mdc sample {} --model {model_name} -n 64{classes} -o grid.png",
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

/// Relative `data` and `labels` paths in the model file are relative to the model file's folder.
pub(super) fn resolve_data_paths(recipe: &mut Recipe, model_path: &Path) {
    let Some(dir) = model_path.parent() else { return };
    let from_model_file = |key| recipe.origins.get(key) == Some(&Origin::ModelFile);
    let resolve = |path: &str| {
        if Path::new(path).is_relative() {
            dir.join(path).display().to_string()
        } else {
            path.to_string()
        }
    };
    let (data_there, labels_there) = (from_model_file("data"), from_model_file("labels"));
    let c = &mut recipe.config;
    if data_there && c.data != "builtin" {
        c.data = resolve(&c.data);
    }
    if labels_there {
        c.labels = c.labels.as_deref().map(resolve);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_data_and_labels_paths_are_relative_to_it() {
        let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
        let table: toml::Table =
            "data = \"d/train-images-idx3-ubyte\"\nlabels = \"d/l-idx1-ubyte\"".parse().unwrap();
        recipe.apply_table(&table, Origin::ModelFile).unwrap();
        resolve_data_paths(&mut recipe, Path::new("models/m.toml"));
        assert_eq!(recipe.config.data, Path::new("models/d/train-images-idx3-ubyte").display().to_string());
        assert_eq!(
            recipe.config.labels.as_deref(),
            Some(Path::new("models/d/l-idx1-ubyte").to_str().unwrap())
        );

        // From the command line, and `builtin`, they stay as given.
        let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
        recipe.set("labels", &toml::Value::String("l".into()), Origin::CommandLine).unwrap();
        resolve_data_paths(&mut recipe, Path::new("models/m.toml"));
        assert_eq!((recipe.config.data.as_str(), recipe.config.labels.as_deref()), ("builtin", Some("l")));
    }
}
