//! The compiled training step ([`crate::train_step`]) in an onnxruntime session, its state kept
//! on the device: two state sets used in turn (ping-pong), each step reading one and writing the
//! other through IO binding, so per step only the batch goes up and three small values (loss,
//! gradient norm, per-image MSE) come down.

use anyhow::Context;
use ndarray::{Array2, Array4};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::IoBinding;
use ort::session::Session;
use ort::value::Tensor;

use super::session::{cuda_error, session_builder};
use super::{discover, Device};
use crate::train_step::names;

/// How to open the step.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOptions {
    pub device: Device,
    /// TensorFloat-32 in the CUDA provider's convolutions and matrix products (off: full fp32).
    pub tf32: bool,
    /// Threads inside each op on the CPU; None = one per available CPU.
    pub threads: Option<usize>,
}

/// One state set: params, adam_m, adam_v, ema, each a flat [P] tensor on the device.
type StateSet = Vec<Tensor<f32>>;

/// What one step measured (the state stays on the device).
#[derive(Debug, Clone)]
pub struct StepOutputs {
    pub loss: f32,
    pub grad_norm: f32,
    pub image_mse: Vec<f32>,
}

/// One batch, already drawn and prepared by the host.
pub struct StepBatch<'a> {
    pub x0: &'a Array4<f32>,
    pub noise: &'a Array4<f32>,
    pub t: &'a [f32],
    /// Labels after dropout, for a conditional model.
    pub labels: Option<&'a [i64]>,
    /// [5, N]: see [`crate::train_step::host::coefficients`].
    pub coefficients: &'a Array2<f32>,
    pub scalars: [f32; 5],
}

pub struct StepSession {
    session: Session,
    device: Device,
    len: usize,
    sets: [StateSet; 2],
    /// bindings[i] reads sets[i] and writes sets[1 - i].
    bindings: [IoBinding; 2],
    /// The set holding the latest state.
    current: usize,
}

impl StepSession {
    /// Opens the serialised step `model` whose state vectors hold `len` values.
    pub fn open(model: &[u8], len: usize, opts: StepOptions) -> anyhow::Result<StepSession> {
        let env = discover::environment()?;
        let mut builder = session_builder(env, opts.threads)?;
        if opts.device == Device::Cuda {
            // No node may quietly run on the CPU; TF32 is stated either way, never left to the default.
            builder = builder
                .with_config_entry("session.disable_cpu_ep_fallback", "1")
                .map_err(|e| anyhow::anyhow!("cannot configure an onnxruntime session: {e}"))?;
            let cuda = ort::ep::CUDA::default()
                .with_tf32(opts.tf32)
                .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Exhaustive)
                .build()
                .error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| cuda_error(&e.to_string()))?;
        }
        let session = builder.commit_from_memory(model).map_err(|e| match opts.device {
            Device::Cuda => cuda_error(&e.to_string()),
            Device::Cpu => anyhow::anyhow!("onnxruntime cannot load the training step: {e}"),
        })?;
        let allocator = match opts.device {
            Device::Cpu => Allocator::default(),
            Device::Cuda => Allocator::new(&session, device_memory(Device::Cuda)?)
                .map_err(|e| anyhow::anyhow!("cannot allocate CUDA memory for the training state: {e}"))?,
        };
        let set = || -> anyhow::Result<StateSet> {
            (0..names::STATE.len())
                .map(|_| Tensor::<f32>::new(&allocator, [len]).context("cannot allocate the training state"))
                .collect()
        };
        let mut sets = [set()?, set()?];
        let bindings = [bind(&session, &mut sets, 0)?, bind(&session, &mut sets, 1)?];
        Ok(StepSession { session, device: opts.device, len, sets, bindings, current: 0 })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Puts the state (params, adam_m, adam_v, ema: flat vectors of the layout's length) on the device.
    pub fn upload(&mut self, state: [&[f32]; 4]) -> anyhow::Result<()> {
        for (k, data) in state.into_iter().enumerate() {
            anyhow::ensure!(
                data.len() == self.len,
                "a state vector of {} values, expected {}",
                data.len(),
                self.len
            );
            let target = &mut self.sets[self.current][k];
            match self.device {
                Device::Cpu => target.extract_tensor_mut().1.copy_from_slice(data),
                Device::Cuda => {
                    let host = Tensor::from_array(([self.len], data.to_vec()))?;
                    host.copy_into(target).context("cannot copy the training state to the device")?;
                }
            }
        }
        Ok(())
    }

    /// The state vector `k` ([`names::STATE`] order) brought back to the host.
    pub fn download(&self, k: usize) -> anyhow::Result<Vec<f32>> {
        let t = &self.sets[self.current][k];
        Ok(match self.device {
            Device::Cpu => t.extract_tensor().1.to_vec(),
            Device::Cuda => {
                let host =
                    t.to(AllocationDevice::CPU, 0).context("cannot copy the training state to the host")?;
                host.extract_tensor().1.to_vec()
            }
        })
    }

    /// Runs one step on `batch`; the new state replaces the current one.
    pub fn step(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<StepOutputs> {
        let b = &mut self.bindings[self.current];
        b.bind_input(names::X0, &Tensor::from_array(batch.x0.clone())?)?;
        b.bind_input(names::NOISE, &Tensor::from_array(batch.noise.clone())?)?;
        b.bind_input(crate::onnx::INPUT_T, &Tensor::from_array(([batch.t.len()], batch.t.to_vec()))?)?;
        if let Some(y) = batch.labels {
            b.bind_input(crate::onnx::INPUT_Y, &Tensor::from_array(([y.len()], y.to_vec()))?)?;
        }
        b.bind_input(names::COEFFICIENTS, &Tensor::from_array(batch.coefficients.clone())?)?;
        b.bind_input(names::STEP_SCALARS, &Tensor::from_array(([5usize], batch.scalars.to_vec()))?)?;
        let outputs = self.session.run_binding(b).context("the training step failed in onnxruntime")?;
        let scalar = |name: &str| -> anyhow::Result<Vec<f32>> {
            let v = outputs.get(name).with_context(|| format!("the step gave no `{name}`"))?;
            Ok(v.try_extract_tensor::<f32>()?.1.to_vec())
        };
        let out = StepOutputs {
            loss: scalar(names::LOSS)?[0],
            grad_norm: scalar(names::GRAD_NORM)?[0],
            image_mse: scalar(names::IMAGE_MSE)?,
        };
        drop(outputs);
        self.current = 1 - self.current;
        Ok(out)
    }
}

fn device_memory(device: Device) -> anyhow::Result<MemoryInfo<'static>> {
    let d = match device {
        Device::Cpu => AllocationDevice::CPU,
        Device::Cuda => AllocationDevice::CUDA,
    };
    MemoryInfo::new(d, 0, AllocatorType::Device, MemoryType::Default).context("cannot describe device memory")
}

/// The binding that reads state set `from` and writes the other; the small outputs come to the host.
fn bind(session: &Session, sets: &mut [StateSet; 2], from: usize) -> anyhow::Result<IoBinding> {
    let mut b = session.create_binding().context("cannot create an onnxruntime IO binding")?;
    let (a, rest) = sets.split_at_mut(1);
    let (read, write) = if from == 0 { (&a[0], &mut rest[0]) } else { (&rest[0], &mut a[0]) };
    for (k, (input, output)) in names::STATE.iter().enumerate() {
        b.bind_input(*input, &read[k])?;
        b.bind_output(*output, &mut write[k])?;
    }
    let host = device_memory(Device::Cpu)?;
    for name in [names::LOSS, names::GRAD_NORM, names::IMAGE_MSE] {
        b.bind_output_to_device(name, &host)?;
    }
    Ok(b)
}
