//! `mdc eval` from the command line: the three kinds of SAMPLES (a grid PNG as mdc writes it, a
//! folder, an IDX file) read to the same images, JSON output, and clear errors for bad input.

use crate::onnx_common;

use std::path::Path;
use std::process::Command;

use mdc::base::image_io::{image_png, write_grid, GridLayout};
use mdc::data::Dataset;
use mdc::eval::{builtin, samples};
use ndarray::{s, Array4, Axis};

fn heldout(n: usize) -> Array4<f32> {
    let d = Dataset::from_idx_bytes(builtin::MNIST.heldout, "held-out").unwrap();
    d.images.slice(s![..n, .., .., ..]).to_owned()
}

fn mdc_eval(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mdc")).arg("eval").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Raw IDX bytes of grey images in [-1, 1].
fn idx_bytes(images: &Array4<f32>) -> Vec<u8> {
    let (n, _, h, w) = images.dim();
    let mut b = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        b.extend((d as u32).to_be_bytes());
    }
    b.extend(images.iter().map(|&v| mdc::base::image_io::to_u8(v)));
    b
}

#[test]
fn grid_folder_and_idx_read_the_same_images() {
    let images = heldout(23);
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.png");
    // The layout `mdc sample` and `mdc train` use, and one a user might choose.
    for layout in [GridLayout::auto(28), GridLayout { columns: 5, scale: 1, padding: 0 }] {
        write_grid(&grid, &images, layout).unwrap();
        assert_eq!(samples::load(&grid, [1, 28, 28]).unwrap(), images, "{layout:?}");
    }
    let folder = dir.path().join("each");
    std::fs::create_dir(&folder).unwrap();
    for (i, img) in images.axis_iter(Axis(0)).enumerate() {
        std::fs::write(folder.join(format!("s{i:03}.png")), image_png(img).unwrap()).unwrap();
    }
    assert_eq!(samples::load(&folder, [1, 28, 28]).unwrap(), images);
    let idx = dir.path().join("images.idx");
    std::fs::write(&idx, idx_bytes(&images)).unwrap();
    assert_eq!(samples::load(&idx, [1, 28, 28]).unwrap(), images);
}

#[test]
fn json_report_of_a_grid() {
    if !onnx_common::onnxruntime_available("json_report_of_a_grid") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("samples.png");
    write_grid(&grid, &heldout(40), GridLayout::auto(28)).unwrap();
    let (code, stdout, stderr) = mdc_eval(&[grid.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["scores"]["count"], 40);
    assert_eq!(v["calibration"]["real"]["count"], 40);
    assert_eq!(v["classes"].as_array().unwrap().len(), 10);
    assert!(v["scores"]["confident_fraction"].as_f64().unwrap() >= 0.9, "{stdout}");
    assert!(v["near_copies"]["threshold_rms"].as_f64().unwrap() > 0.0, "{stdout}");
    let (code, text, _) = mdc_eval(&[grid.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        text.contains("40 samples") && text.contains("Fréchet distance") && text.contains("near-copies"),
        "{text}"
    );
}

#[test]
fn bad_samples_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.png");
    let (code, _, stderr) = mdc_eval(&[missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nope.png") && stderr.contains("no such file"), "{stderr}");

    let corrupt = dir.path().join("broken.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = samples::load(&corrupt, [1, 28, 28]).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot decode") && format!("{err:#}").contains("broken.png"),
        "{err:#}"
    );

    let truncated = dir.path().join("short.idx");
    std::fs::write(&truncated, &idx_bytes(&heldout(3))[..100]).unwrap();
    let err = format!("{:#}", samples::load(&truncated, [1, 28, 28]).unwrap_err());
    assert!(err.contains("short.idx") && err.contains("truncated"), "{err}");

    let wrong_size = dir.path().join("wrong.png");
    image::GrayImage::new(50, 40).save(&wrong_size).unwrap();
    let err = format!("{:#}", samples::load(&wrong_size, [1, 28, 28]).unwrap_err());
    assert!(err.contains("wrong.png") && err.contains("not a grid of 28x28 images"), "{err}");

    let (code, _, stderr) = mdc_eval(&[truncated.to_str().unwrap(), "--classifier", "cifar"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expected mnist, fashion or a path to an .onnx file"), "{stderr}");
    let (code, _, stderr) = mdc_eval(&[truncated.to_str().unwrap(), "--classifier", "mine.onnx"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("needs --reference"), "{stderr}");
}

#[test]
fn a_classifier_file_needs_its_outputs() {
    if !onnx_common::onnxruntime_available("a_classifier_file_needs_its_outputs") {
        return;
    }
    // An mdc denoiser export is an ONNX model, but not a classifier.
    let dir = tempfile::tempdir().unwrap();
    let model =
        mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml"))).unwrap();
    let params = mdc::params::Params::init(&model.graph, 0);
    let onnx = onnx_common::export(&model.graph, &params, dir.path(), "denoiser");
    let err = format!("{:#}", mdc::eval::classifier::Classifier::open(&onnx).err().unwrap());
    assert!(err.contains("denoiser.onnx") && err.contains("outputs `logits` and `features`"), "{err}");
}
