//! An exported model opened in onnxruntime: [`OrtDenoiser`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ndarray::{Array4, ArrayView1, ArrayView4, Ix4};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::discover;
use crate::diffusion::{halves, labelled_and_null_batch, plain_guidance_parts, Denoiser, GuidanceParts};
use crate::onnx::digest::{self, Integrity};
use crate::onnx::{ModelInfo, INPUT_T, INPUT_X, INPUT_Y, LEGACY_OUTPUT, OUTPUT_EPS, OUTPUT_EPS_MODEL};

/// Where onnxruntime runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    #[default]
    Cpu,
    /// onnxruntime's CUDA execution provider (needs the onnxruntime-gpu build); never falls back to CPU.
    Cuda,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// How to open a session.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    pub device: Device,
    /// Threads inside each op; None = one per available CPU.
    pub threads: Option<usize>,
    /// Run a model whose graph no longer matches the digest recorded at export (a file changed
    /// on purpose by another tool, e.g. an fp16 conversion). Off: such a file is refused.
    pub allow_modified: bool,
}

/// An mdc-exported ONNX model in an onnxruntime session, with the metadata it carries.
pub struct OrtDenoiser {
    session: Session,
    info: ModelInfo,
    path: PathBuf,
    device: Device,
    integrity: Integrity,
    /// The output's name: `eps`, or `y` in files exported before conditional models.
    output: String,
    /// `eps_model`, the model's own prediction, where an autoguided conditional export has it.
    model_output: Option<String>,
}

impl OrtDenoiser {
    /// Opens `path` on `device` with default settings.
    pub fn open(path: &Path, device: Device) -> anyhow::Result<OrtDenoiser> {
        Self::open_with(path, &SessionConfig { device, ..SessionConfig::default() })
    }

    pub fn open_with(path: &Path, config: &SessionConfig) -> anyhow::Result<OrtDenoiser> {
        if !path.is_file() {
            anyhow::bail!("cannot open the ONNX model {}: no such file", path.display());
        }
        // Without onnxruntime nothing can run: say how to install it before judging the file.
        let env = discover::environment()?;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read the ONNX model {}", path.display()))?;
        let integrity = verify_integrity(&bytes, path, config.allow_modified)?;
        let mut builder = session_builder(env, config.threads)?;
        if config.device == Device::Cuda {
            let cuda = ort::ep::CUDA::default().build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| cuda_error(&e.to_string()))?;
        }
        // The bytes just verified are the bytes run.
        let session = builder.commit_from_memory(&bytes).map_err(|e| match config.device {
            // The provider registered but could not start (no driver or device, a library
            // missing at first use): still a CUDA problem, never a reason to run on the CPU.
            Device::Cuda => cuda_error(&e.to_string()),
            Device::Cpu => anyhow::anyhow!("onnxruntime cannot load {}: {e}", path.display()),
        })?;
        let info = read_info(&session, path)?;
        let (output, model_output) = check_signature(&session, path, info.classes.is_some())?;
        Ok(OrtDenoiser {
            session,
            info,
            path: path.to_path_buf(),
            device: config.device,
            integrity,
            output,
            model_output,
        })
    }

    /// The metadata the exporter wrote: image size, noise schedule, provenance.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the graph matched the digest recorded at export.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    /// A one-line note for the user when the model could not be verified, or ran changed.
    pub fn integrity_note(&self) -> Option<String> {
        let file = self.path.display();
        match &self.integrity {
            Integrity::Intact => None,
            Integrity::Unrecorded => Some(format!(
                "note: {file} records no graph digest (exported by mdc {} before digests were stored): its weights cannot be verified",
                self.info.mdc_version
            )),
            Integrity::Changed { .. } => {
                Some(format!("note: {file} differs from what mdc exported; running it as --allow-modified asks"))
            }
        }
    }

    /// Predicted noise for `x` [N, C, H, W] at timesteps `t` [N] (a conditional model gets the
    /// null label: see [`Self::forward_labeled`]).
    pub fn forward(&mut self, x: ArrayView4<f32>, t: ArrayView1<f32>) -> anyhow::Result<Array4<f32>> {
        self.forward_labeled(x, t, None)
    }

    /// [`Self::forward`] with class labels `y` [N] for a conditional model (0..classes-1, or
    /// the null label `classes`); None gives every image the null label.
    pub fn forward_labeled(
        &mut self,
        x: ArrayView4<f32>,
        t: ArrayView1<f32>,
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        Ok(self.run(x, t, y, false)?.0)
    }

    /// Runs the session: `eps`, and `eps_model` too when `with_model` (the caller checked that the
    /// file has it).
    fn run(
        &mut self,
        x: ArrayView4<f32>,
        t: ArrayView1<f32>,
        y: Option<&[u32]>,
        with_model: bool,
    ) -> anyhow::Result<(Array4<f32>, Option<Array4<f32>>)> {
        let (n, c, _, _) = x.dim();
        let labels: Option<ndarray::Array1<i64>> = match (&self.info.classes, y) {
            (None, None) => None,
            (None, Some(_)) => anyhow::bail!(
                "{}: class labels were given, but this model is not class-conditional (it has no input `y`)",
                self.path.display()
            ),
            (Some(classes), y) => {
                let null = classes.null() as u32;
                let y: Vec<u32> = y.map_or_else(|| vec![null; n], <[u32]>::to_vec);
                if y.len() != n {
                    anyhow::bail!(
                        "{}: expected one label per image ({n}), found {}",
                        self.path.display(),
                        y.len()
                    );
                }
                if let Some(bad) = y.iter().find(|&&v| v > null) {
                    anyhow::bail!(
                        "{}: label {bad} is out of range: classes 0 to {}, {null} for no class",
                        self.path.display(),
                        null - 1
                    );
                }
                Some(y.iter().map(|&v| v as i64).collect())
            }
        };
        if c != self.info.channels {
            anyhow::bail!(
                "{}: expected images with {} channels, found x of shape {:?}",
                self.path.display(),
                self.info.channels,
                x.shape()
            );
        }
        if t.len() != n {
            anyhow::bail!(
                "{}: expected one timestep per image ({n}), found {}",
                self.path.display(),
                t.len()
            );
        }
        let x = x.as_standard_layout();
        let t = t.as_standard_layout();
        let mut inputs = ort::inputs![
            INPUT_X => TensorRef::from_array_view(&x)?,
            INPUT_T => TensorRef::from_array_view(&t)?,
        ];
        if let Some(labels) = &labels {
            inputs.push((INPUT_Y.into(), TensorRef::from_array_view(labels)?.into()));
        }
        let outputs = self
            .session
            .run(inputs)
            .with_context(|| format!("onnxruntime failed running {}", self.path.display()))?;
        let image = |name: &str| -> anyhow::Result<Array4<f32>> {
            let v = outputs[name].try_extract_array::<f32>()?;
            let v = v
                .into_dimensionality::<Ix4>()
                .with_context(|| format!("{}: output `{name}` is not 4-D", self.path.display()))?;
            Ok(v.to_owned())
        };
        let eps = image(&self.output)?;
        let model = match (&self.model_output, with_model) {
            (Some(name), true) => Some(image(name)?),
            _ => None,
        };
        Ok((eps, model))
    }
}

impl Denoiser for OrtDenoiser {
    fn predict_noise(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        y: Option<&[u32]>,
    ) -> anyhow::Result<Array4<f32>> {
        self.forward_labeled(x.view(), ArrayView1::from(t), y)
    }

    fn null_label(&self) -> Option<u32> {
        self.info.classes.as_ref().map(|c| c.null() as u32)
    }

    /// An autoguided export computes guide + w (model - guide) inside the graph; class guidance
    /// pushes along the model's own class direction, read from its second output `eps_model`
    /// in the same run of 2N.
    fn guidance_parts(
        &mut self,
        x: &Array4<f32>,
        t: &[f32],
        labels: &[u32],
        null: u32,
    ) -> anyhow::Result<GuidanceParts> {
        if self.info.autoguidance.is_none() {
            return plain_guidance_parts(self, x, t, labels, null);
        }
        if self.model_output.is_none() {
            anyhow::bail!(
                "{}: class guidance on this autoguided model needs its output `{OUTPUT_EPS_MODEL}` (the model \
                 without its guide), which mdc {} did not export; export it again, or sample with \
                 --guidance 0 or 1",
                self.path.display(),
                self.info.mdc_version
            );
        }
        let (xx, tt, yy) = labelled_and_null_batch(x, t, labels, null);
        let (eps, model) = self.run(xx.view(), ArrayView1::from(&tt), Some(&yy), true)?;
        let (labelled, _) = halves(eps, labels.len())?;
        let model = model.with_context(|| {
            format!("{}: onnxruntime returned no `{OUTPUT_EPS_MODEL}`", self.path.display())
        })?;
        let (model_labelled, model_null) = halves(model, labels.len())?;
        Ok(GuidanceParts { labelled, model_labelled, model_null })
    }
}

/// Compares the graph with the digest its metadata records; a changed graph is an error unless
/// `allow_modified`.
fn verify_integrity(bytes: &[u8], path: &Path, allow_modified: bool) -> anyhow::Result<Integrity> {
    let integrity = digest::check(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not an ONNX model (cannot decode it: {e})", path.display()))?;
    if let Integrity::Changed { recorded, computed } = &integrity {
        if !allow_modified {
            anyhow::bail!(
                "{}: the model's graph, weights or metadata do not match the digest recorded at export \
                 (recorded sha256 {}..., computed {}...): the file was damaged or changed after `mdc export onnx`.\n  \
                 export it again; if another tool changed it on purpose (e.g. an fp16 conversion), pass --allow-modified",
                path.display(),
                &recorded[..recorded.len().min(16)],
                &computed[..16]
            );
        }
    }
    Ok(integrity)
}

fn read_info(session: &Session, path: &Path) -> anyhow::Result<ModelInfo> {
    let meta = session.metadata().with_context(|| format!("{}: cannot read metadata", path.display()))?;
    let mut props = HashMap::new();
    for key in meta.custom_keys().with_context(|| format!("{}: cannot read metadata", path.display()))? {
        if let Some(v) = meta.custom(&key) {
            props.insert(key, v);
        }
    }
    ModelInfo::from_props(&props, &path.display().to_string()).map_err(anyhow::Error::msg)
}

/// The model must take `x`, `t` (and `y` when its metadata declares classes) and give `eps`
/// (`y` in files exported before conditional models), as mdc exports it. Returns the output's name.
fn check_signature(
    session: &Session,
    path: &Path,
    conditional: bool,
) -> anyhow::Result<(String, Option<String>)> {
    let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let expected: &[&str] = if conditional { &[INPUT_X, INPUT_T, INPUT_Y] } else { &[INPUT_X, INPUT_T] };
    let output = if conditional && outputs == [OUTPUT_EPS, OUTPUT_EPS_MODEL] {
        Some((OUTPUT_EPS, Some(OUTPUT_EPS_MODEL.to_string())))
    } else {
        [OUTPUT_EPS, LEGACY_OUTPUT]
            .into_iter()
            .find(|o| outputs == [*o] && !inputs.contains(o))
            .map(|o| (o, None))
    };
    match output {
        Some((o, model)) if inputs.len() == expected.len() && expected.iter().all(|e| inputs.contains(e)) => {
            Ok((o.into(), model))
        }
        _ => anyhow::bail!(
            "{}: expected inputs {} and output `eps` (an mdc export{}), found inputs {inputs:?}, outputs {outputs:?}",
            path.display(),
            expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", "),
            if conditional { " whose metadata declares classes" } else { "" }
        ),
    }
}

/// A session builder with every graph optimisation and `threads` threads inside each op (None:
/// one per available CPU).
pub(crate) fn session_builder(
    env: &ort::environment::Environment,
    threads: Option<usize>,
) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    Session::builder(env)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .context("cannot configure an onnxruntime session")
}

/// Turns a failed CUDA provider registration into a message naming what is missing.
pub(crate) fn cuda_error(ort_message: &str) -> anyhow::Error {
    let library = discover::loaded_library().map(Path::to_path_buf).unwrap_or_default();
    let dir = library.parent().unwrap_or(Path::new("."));
    let provider = dir.join(CUDA_PROVIDER_LIBRARY);
    let mut msg =
        format!("--device cuda: onnxruntime's CUDA execution provider cannot be used ({ort_message}).\n");
    if !provider.is_file() {
        msg += &format!(
            "  missing library: {CUDA_PROVIDER_LIBRARY} is not next to {} - this onnxruntime is the CPU-only build.\n  \
             install the GPU build: pip uninstall onnxruntime && pip install onnxruntime-gpu=={}, \
             or point ORT_DYLIB_PATH at a GPU build's libonnxruntime.so",
            library.display(),
            discover::ONNXRUNTIME_VERSION
        );
    } else {
        // The provider exists: find which of its CUDA/cuDNN dependencies the loader cannot find.
        let missing: Vec<String> = ort::ep::cuda::CUDA_DYLIBS
            .iter()
            .chain(ort::ep::cuda::CUDNN_DYLIBS)
            .filter(|lib| ort::util::preload_dylib(**lib).is_err())
            .map(|s| s.to_string())
            .collect();
        let provider_error = ort::util::preload_dylib(&provider).err();
        if let Some(e) = &provider_error {
            msg += &format!("  loading {} fails: {e}\n", provider.display());
        }
        if !missing.is_empty() {
            msg += &format!("  missing libraries: {}\n", missing.join(", "));
        }
        if provider_error.is_some() || !missing.is_empty() {
            msg += "  install the CUDA and cuDNN 9 runtime libraries named above (the versions this \
                    onnxruntime-gpu build was made for) and put their directory on LD_LIBRARY_PATH";
        } else {
            msg += "  the CUDA provider and its libraries load; the onnxruntime error above is the cause \
                    (no GPU or driver visible?)";
        }
    }
    anyhow::anyhow!(msg)
}

#[cfg(target_os = "windows")]
const CUDA_PROVIDER_LIBRARY: &str = "onnxruntime_providers_cuda.dll";
#[cfg(not(target_os = "windows"))]
const CUDA_PROVIDER_LIBRARY: &str = "libonnxruntime_providers_cuda.so";
