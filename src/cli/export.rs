//! `mdc export onnx MODEL.toml [--weights CKPT] [--no-ema] -o model.onnx`: check the model file,
//! load weights that fit it (a weights file or a training checkpoint, EMA by default) and write
//! one self-contained ONNX model with the metadata sampling needs. Needs no onnxruntime.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::guide::SteeringRequest;
use crate::diffusion::parse_autoguidance_weight;
use crate::model;
use crate::onnx::{self, file_name, AutoguidanceInfo, ModelInfo};
use crate::params::{Params, WeightsFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ONNX (IR 10, opset 17), runs in onnxruntime 1.18 and newer.
    Onnx,
    /// The whole training step (forward, backward, loss, clipping, AdamW, EMA) as one ONNX
    /// graph, under the model file's [train] recipe (docs/train-step.md).
    TrainStep,
    /// A standalone PyTorch module (weights not included); `--train` adds the training script.
    Torch,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(value_enum)]
    pub format: Format,
    /// The model file (TOML) to export.
    #[arg(value_name = "MODEL.toml")]
    pub model: PathBuf,
    /// Trained weights: a weights file or a training checkpoint (`mdc train` output). Without
    /// it the model is exported with freshly initialised weights (for benchmarks and tests).
    #[arg(long, value_name = "CKPT")]
    pub weights: Option<PathBuf>,
    /// From a training checkpoint, export the raw weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    /// Seed of the initialisation when no --weights are given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Autoguidance weight w built into the export, from a checkpoint that keeps a guide
    /// (`guide_at`): the output is guide + w (model - guide) and the file holds both networks;
    /// 1 exports the model alone [default: the run's `autoguidance`].
    #[arg(long, value_name = "W", value_parser = parse_autoguidance_weight)]
    pub autoguidance: Option<f32>,
    /// The noisiest timestep at which the built-in autoguidance steers images without a class
    /// label; above it their output is the model alone [default: the run's `autoguidance_max_t`].
    #[arg(long, value_name = "T")]
    pub autoguidance_max_t: Option<u64>,
    /// Where to write the .onnx file, or the .py file of `torch` (written atomically).
    #[arg(short, long, value_name = "model.onnx")]
    pub output: PathBuf,
    /// torch: also write the recipe as `train.py` beside the module (torchrun + DDP, mdc
    /// checkpoints), and the built-in digits or an image folder as files it reads.
    #[arg(long)]
    pub train: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.format == Format::Torch {
        if args.weights.is_some()
            || args.no_ema
            || args.autoguidance.is_some()
            || args.autoguidance_max_t.is_some()
        {
            anyhow::bail!(super::UsageError(
                "export torch writes the network without weights: load a checkpoint with the training script's --resume, \
                 or its tensors with load_state_dict (drop --weights, --no-ema and --autoguidance*)"
                    .into()
            ));
        }
        return super::export_torch::run(&args.model, &args.output, args.train);
    }
    if args.train {
        anyhow::bail!(super::UsageError("--train is for `mdc export torch`".into()));
    }
    let model = model::load(&args.model)?;
    let cannot = || format!("cannot export {}", args.model.display());
    let file = args.weights.as_deref().map(WeightsFile::open).transpose().with_context(cannot)?;
    let (params, weights_desc) = match &file {
        Some(f) => {
            (f.weights(&model.graph, !args.no_ema).with_context(cannot)?, describe_weights(f, args.no_ema))
        }
        None => {
            eprintln!(
                "warning: no --weights given: exporting freshly initialised weights (seed {}); \
                 pass --weights run/checkpoint.safetensors to export a trained model",
                args.seed
            );
            (Params::init(&model.graph, args.seed), format!("random init (seed {})", args.seed))
        }
    };
    if let Some(found) = file.as_ref().and_then(WeightsFile::model_hash).filter(|h| *h != model.hash) {
        eprintln!(
            "warning: the weights were trained on a different version of {} (model hash {}, the file now has {}); \
             their shapes fit, so exporting anyway",
            args.model.display(),
            short(found),
            short(&model.hash)
        );
    }
    let mut info = ModelInfo::of_model(&model, file.as_ref(), weights_desc)?;
    let steering_request = SteeringRequest { weight: args.autoguidance, max_t: args.autoguidance_max_t };
    let guide = super::guide::chosen_guide(file.as_ref(), &model.graph, steering_request)?.map(|g| {
        info.autoguidance = Some(AutoguidanceInfo { steering: g.steering, guide_step: g.step });
        g.weights
    });
    let bytes = onnx::export_to_file(&model.graph, &params, guide.as_ref(), &info, &args.output)?;
    println!(
        "wrote {} ({:.1} MB): inputs x [N, {}, {}, {}] and t [N] (float32){}, output eps; {} parameters; \
         schedule {} over {} steps; weights: {}",
        args.output.display(),
        bytes as f64 / 1e6,
        info.channels,
        info.height,
        info.width,
        info.classes.as_ref().map_or(String::new(), |c| format!(
            ", y [N] (int64 class labels: {} classes, {} = no class)",
            c.count,
            c.null()
        )),
        params.numel(),
        info.schedule.name,
        info.schedule.timesteps,
        info.weights
    );
    if let Some(a) = &info.autoguidance {
        println!(
            "  autoguidance {} built in: the output is guide + {} (model - guide), the guide being the EMA weights of step {} (both networks are in the file)",
            a.steering, a.steering.weight, a.guide_step
        );
        if let Some(max_t) = a.steering.max_t {
            println!("  above t = {max_t} the output for an image without a class label is the model alone (w = 1)");
        }
        if info.classes.is_some() {
            println!(
                "  second output eps_model: the model without its guide, whose class direction class guidance follows"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The weights in words: the file, and from a checkpoint which set and step.
fn describe_weights(file: &WeightsFile, no_ema: bool) -> String {
    let name = file_name(file.path());
    match file.checkpoint() {
        Some(c) => format!("{name} ({} weights, step {})", if no_ema { "raw" } else { "EMA" }, c.step),
        None => name,
    }
}

/// The first 12 characters of a hash (it comes from a user's file: any text, so cut at a char).
fn short(hash: &str) -> &str {
    hash.char_indices().nth(12).map_or(hash, |(i, _)| &hash[..i])
}
