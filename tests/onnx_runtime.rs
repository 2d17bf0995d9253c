//! OrtDenoiser behaviour around the model: metadata, input checks, CUDA refusal.

use crate::onnx_common;

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
        // Edited consistently (the digest recomputed), as a crafted file would be: the range
        // checks, not the digest, must catch it.
        let mut edited = model.clone();
        edited.metadata_props.retain(|p| p.key() != mdc::onnx::digest::KEY);
        let prop = edited.metadata_props.iter_mut().find(|p| p.key() == key).unwrap();
        prop.value = Some(value.to_string());
        mdc::onnx::digest::seal(&mut edited);
        let path = dir.path().join("edited.onnx");
        std::fs::write(&path, mdc::onnx::encode(&edited)).unwrap();
        let err = OrtDenoiser::open(&path, Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("edited.onnx") && err.contains(expected), "{key}: {err}");
    }
}

/// A careless copy that changes a few bytes of an export (the experiment: 3 random bytes
/// of the file) must never run silently with damaged weights: the file is refused, or, when the
/// change does not alter the decoded model at all, it computes exactly what the original does.
#[test]
fn a_damaged_export_is_refused_or_unchanged() {
    if !onnxruntime_available("a_damaged_export_is_refused_or_unchanged") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = small_model(dir.path());
    let original = std::fs::read(&path).unwrap();
    let x = random_images(2, 3, 16, 16, 1);
    let t = Array1::from(vec![3.0f32, 700.0]);
    let reference = OrtDenoiser::open(&path, Device::Cpu).unwrap().forward(x.view(), t.view()).unwrap();
    let mut rng = mdc::base::rng::Rng::new(7);
    let (mut refused, mut same) = (0, 0);
    for _ in 0..12 {
        let mut bytes = original.clone();
        for _ in 0..3 {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 + rng.below(255) as u8;
        }
        let damaged = dir.path().join("damaged.onnx");
        std::fs::write(&damaged, &bytes).unwrap();
        match OrtDenoiser::open(&damaged, Device::Cpu) {
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("damaged.onnx"), "the error names the file: {msg}");
                refused += 1;
            }
            Ok(mut m) => {
                assert_eq!(m.forward(x.view(), t.view()).unwrap(), reference, "a damaged model ran silently");
                same += 1;
            }
        }
    }
    assert!(refused >= 10, "refused {refused}, unchanged {same}");
}

/// Weights changed on purpose by another tool: refused by default with a message that names the
/// file and the flag; accepted with `allow_modified`, and reported as changed.
#[test]
fn a_deliberately_changed_export_needs_allow_modified() {
    if !onnxruntime_available("a_deliberately_changed_export_needs_allow_modified") {
        return;
    }
    let (_, g) = test_models().pop().unwrap();
    let mut model = mdc::onnx::export(&g, &random_params(&g, 2), &info_for(&g)).unwrap();
    let weight = &mut model.graph.as_mut().unwrap().initializer[0];
    weight.raw_data.as_mut().unwrap()[0] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("converted.onnx");
    std::fs::write(&path, mdc::onnx::encode(&model)).unwrap();

    let err = format!("{:#}", OrtDenoiser::open(&path, Device::Cpu).err().unwrap());
    assert!(
        err.contains("converted.onnx") && err.contains("digest") && err.contains("--allow-modified"),
        "{err}"
    );

    let config = mdc::runtime::SessionConfig { allow_modified: true, ..Default::default() };
    let m = OrtDenoiser::open_with(&path, &config).unwrap();
    assert!(matches!(m.integrity(), mdc::onnx::digest::Integrity::Changed { .. }));
    assert!(m.integrity_note().unwrap().contains("converted.onnx"));

    // A fresh export verifies.
    let fresh = small_model(dir.path());
    assert_eq!(
        OrtDenoiser::open(&fresh, Device::Cpu).unwrap().integrity(),
        &mdc::onnx::digest::Integrity::Intact
    );
}
