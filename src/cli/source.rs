//! What `mdc sample` samples from, whichever file it is given: a checkpoint or weights file with
//! its model file (run by the interpreter), or an ONNX export (run by onnxruntime). Both become
//! one description, [`ModelInfo`] (image, schedule, prediction, classes, autoguidance), and an
//! engine that draws the images.

use std::path::PathBuf;

use anyhow::bail;
use ndarray::Array4;

use super::guide::{chosen_guide, SteeringRequest};
use super::UsageError;
use crate::diffusion::{sample_with_progress, NoiseSchedule, SampleOptions, Steering};
use crate::graph::Graph;
use crate::interp::sample_images;
use crate::onnx::{AutoguidanceInfo, ModelInfo};
use crate::params::{Params, WeightsFile};
use crate::runtime::{Device, OrtDenoiser, SessionConfig};

/// Which model file to sample and how, as the command line says.
pub struct SourceRequest {
    /// A checkpoint, a weights file or an ONNX export (`.onnx`).
    pub file: PathBuf,
    /// The model file the weights belong to (not used with an export).
    pub model: Option<PathBuf>,
    /// From a checkpoint, the raw weights instead of their EMA.
    pub no_ema: bool,
    pub device: Device,
    /// Run an export whose graph no longer matches its recorded digest.
    pub allow_modified: bool,
    pub steering: SteeringRequest,
}

/// A model to sample: what it is, and what runs it.
pub struct ModelSource {
    pub info: ModelInfo,
    /// The name messages give the model (its model file, or the export).
    pub name: String,
    /// Whether the file records the schedule it was trained with (plain weights do not).
    pub recorded_schedule: bool,
    engine: Engine,
}

enum Engine {
    /// The interpreter: the chosen weights (`ema`: the EMA of a checkpoint) and, when
    /// autoguided, the guide's.
    Interp { graph: Graph, weights: Params, guide: Option<Params>, ema: bool },
    /// onnxruntime: an export, with any autoguidance built into its graph.
    Onnx { denoiser: Box<OrtDenoiser>, device: Device },
}

impl ModelSource {
    /// The source `args` name: an ONNX export when the file ends in `.onnx`, else weights for
    /// `--model`. The autoguidance flags are checked against what the source can do.
    pub fn open(args: &SourceRequest) -> anyhow::Result<ModelSource> {
        let onnx = args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if onnx {
            Self::export(args)
        } else {
            Self::weights(args)
        }
    }

    /// Weights (a checkpoint or a plain weights file) and the model file they belong to.
    fn weights(args: &SourceRequest) -> anyhow::Result<ModelSource> {
        if args.device != Device::Cpu {
            bail!(UsageError(format!(
                "--device {} runs ONNX models through onnxruntime; export the model first \
                 (`mdc export onnx MODEL.toml --weights {} -o model.onnx`) and sample model.onnx",
                args.device,
                args.file.display()
            )));
        }
        let Some(model_path) = &args.model else {
            bail!(UsageError(format!(
                "--model MODEL.toml is required to sample {} (it holds weights, not the architecture)",
                args.file.display()
            )));
        };
        let model = crate::model::load(model_path)?;
        let file = WeightsFile::open(&args.file)?;
        let weights = file.weights(&model.graph, !args.no_ema)?;
        let mut info = ModelInfo::of_model(&model, Some(&file), file.origin().to_string())?;
        let guide = chosen_guide(Some(&file), &model.graph, args.steering)?.map(|g| {
            info.autoguidance = Some(AutoguidanceInfo { steering: g.steering, guide_step: g.step });
            g.weights
        });
        let ema = file.checkpoint().is_some() && !args.no_ema;
        Ok(ModelSource {
            info,
            name: model_path.display().to_string(),
            recorded_schedule: file.checkpoint().is_some(),
            engine: Engine::Interp { graph: model.graph, weights, guide, ema },
        })
    }

    /// An ONNX export: everything but the sampler is inside it.
    fn export(args: &SourceRequest) -> anyhow::Result<ModelSource> {
        let path = args.file.display();
        if args.model.is_some() {
            eprintln!("note: --model is not used with an ONNX model (its architecture is inside {path})");
        }
        if args.no_ema {
            eprintln!("note: --no-ema has no effect on an ONNX model (its weights were chosen at export)");
        }
        let config =
            SessionConfig { device: args.device, allow_modified: args.allow_modified, ..Default::default() };
        let denoiser = OrtDenoiser::open_with(&args.file, &config)?;
        if let Some(note) = denoiser.integrity_note() {
            eprintln!("{note}");
        }
        let info = denoiser.info().clone();
        check_built_in(info.autoguidance.as_ref().map(|a| a.steering), args.steering, &path.to_string())?;
        Ok(ModelSource {
            info,
            name: path.to_string(),
            recorded_schedule: true,
            engine: Engine::Onnx { denoiser: Box::new(denoiser), device: args.device },
        })
    }

    /// Which weights run, for the sampling line: "EMA weights", or the engine and the export's
    /// weights.
    pub fn weights_note(&self) -> String {
        match &self.engine {
            Engine::Interp { ema, .. } => format!("{} weights", if *ema { "EMA" } else { "raw" }),
            Engine::Onnx { device, .. } => format!("onnxruntime, {device}; weights: {}", self.info.weights),
        }
    }

    /// The autoguidance line, when the model is autoguided.
    pub fn autoguidance_note(&self) -> Option<String> {
        let a = self.info.autoguidance.as_ref()?;
        let built_in = if matches!(self.engine, Engine::Onnx { .. }) { " (built in)" } else { "" };
        Some(format!(
            "autoguidance {}{built_in}: guided by the EMA weights of step {}",
            a.steering, a.guide_step
        ))
    }

    /// Draws the images.
    pub fn sample(
        self,
        schedule: &NoiseSchedule,
        opts: &SampleOptions,
        progress: bool,
    ) -> anyhow::Result<Array4<f32>> {
        let image = self.info.image();
        match self.engine {
            Engine::Interp { graph, weights, guide, .. } => {
                let guide = guide.zip(self.info.autoguidance.map(|a| a.steering));
                sample_images(&graph, weights, guide, schedule, image, opts, progress)
            }
            Engine::Onnx { mut denoiser, .. } => {
                sample_with_progress(&mut *denoiser, schedule, image, opts, progress)
            }
        }
    }
}

/// An export's autoguidance is fixed in its graph: a flag can only restate it.
fn check_built_in(built_in: Option<Steering>, requested: SteeringRequest, path: &str) -> anyhow::Result<()> {
    let SteeringRequest { weight, max_t } = requested;
    match built_in {
        Some(built_in) => {
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
    Ok(())
}
