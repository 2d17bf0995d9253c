//! OrtDenoiser behaviour around the model: metadata, input checks, CUDA refusal.

mod onnx_common;

use mdc::runtime::{Device, OrtDenoiser};
use ndarray::Array1;
use onnx_common::*;

#[test]
fn reads_metadata_and_checks_inputs() {
    if !onnxruntime_available("reads_metadata_and_checks_inputs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path());
    let mut m = OrtDenoiser::open(&path, Device::Cpu).unwrap();
    let info = m.info().clone();
    assert_eq!((info.channels, info.height, info.width), (3, 16, 16));
    assert_eq!(info.schedule, mdc::onnx::ScheduleInfo::default());

    let wrong_channels = random_images(1, 1, 16, 16, 0);
    let err = m.forward(wrong_channels.view(), Array1::zeros(1).view()).unwrap_err().to_string();
    assert!(err.contains("expected images with 3 channels"), "{err}");
    let x = random_images(2, 3, 16, 16, 0);
    let err = m.forward(x.view(), Array1::zeros(3).view()).unwrap_err().to_string();
    assert!(err.contains("one timestep per image (2), found 3"), "{err}");
}

#[test]
fn a_model_without_mdc_metadata_is_refused() {
    if !onnxruntime_available("a_model_without_mdc_metadata_is_refused") {
        return;
    }
    let (_, g) = test_models().pop().unwrap();
    let mut model = mdc::onnx::export(&g, &random_params(&g, 2), &info_for(&g)).unwrap();
    model.metadata_props.clear();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.onnx");
    std::fs::write(&path, mdc::onnx::encode(&model)).unwrap();
    let err = OrtDenoiser::open(&path, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("metadata key `mdc_version` is missing"), "{err}");
}

/// Asking for CUDA either works (a GPU onnxruntime with its libraries) or is an error naming
/// what is missing; it never quietly runs on the CPU.
#[test]
fn cuda_is_used_or_refused_never_a_silent_cpu_fallback() {
    if !onnxruntime_available("cuda_is_used_or_refused_never_a_silent_cpu_fallback") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path());
    match OrtDenoiser::open(&path, Device::Cuda) {
        Ok(m) => assert_eq!(m.device(), Device::Cuda),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("--device cuda: onnxruntime's CUDA execution provider cannot be used"),
                "{msg}"
            );
            // With a CPU-only onnxruntime (no provider library beside it) the message names it.
            let lib = mdc::runtime::discover::loaded_library().unwrap();
            if !lib.with_file_name("libonnxruntime_providers_cuda.so").exists() {
                assert!(msg.contains("missing library: libonnxruntime_providers_cuda.so"), "{msg}");
                assert!(msg.contains("pip install onnxruntime-gpu"), "{msg}");
            }
        }
    }
}

#[test]
fn forward_timing_reports_consistent_numbers() {
    if !onnxruntime_available("forward_timing_reports_consistent_numbers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut m = OrtDenoiser::open(&small_model(dir.path()), Device::Cpu).unwrap();
    let t = mdc::runtime::bench::time_forward(&mut m, 3, 1, 5).unwrap();
    assert_eq!(t.batch, 3);
    assert!(0.0 < t.wall.min_ms && t.wall.min_ms <= t.wall.median_ms && t.wall.median_ms <= t.wall.max_ms);
    assert!((t.images_per_second() - 3000.0 / t.wall.median_ms).abs() < 1e-9);
    assert!(mdc::runtime::bench::time_forward(&mut m, 0, 0, 1).is_err());
}

/// A foreign or edited .onnx file whose metadata asks for absurd sizes, or names no known
/// schedule, is refused with the file and key named (not a panic or an allocation abort).
#[test]
fn edited_metadata_out_of_range_is_refused() {
    if !onnxruntime_available("edited_metadata_out_of_range_is_refused") {
        return;
    }
    let (_, g) = test_models().pop().unwrap();
    let model = mdc::onnx::export(&g, &random_params(&g, 2), &info_for(&g)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (key, value, expected) in [
        ("image_width", "1000000000000", "metadata `image_width` = \"1000000000000\" is out of range"),
        ("image_channels", "0", "metadata `image_channels` = \"0\" is out of range"),
        (
            "timesteps",
            "100000000000",
            "metadata `timesteps` = \"100000000000\" is out of range: expected 1 to 100000",
        ),
        ("schedule", "quadratic", "metadata `schedule` = \"quadratic\" is not a noise schedule"),
    ] {
        let mut edited = model.clone();
        let prop = edited.metadata_props.iter_mut().find(|p| p.key() == key).unwrap();
        prop.value = Some(value.to_string());
        let path = dir.path().join("edited.onnx");
        std::fs::write(&path, mdc::onnx::encode(&edited)).unwrap();
        let err = OrtDenoiser::open(&path, Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("edited.onnx") && err.contains(expected), "{key}: {err}");
    }
}
