//! `mdc eval`'s scores on images whose answer is known: real held-out digits score like the
//! calibration says real digits score, noise scores like noise, training images are copies of
//! themselves; and the Fashion-MNIST classifier the same way.

use crate::onnx_common;

use mdc::data::{DataSource, Dataset};
use mdc::eval::builtin::{self, BuiltinClassifier};
use mdc::eval::classifier::Classifier;
use mdc::eval::{evaluate, Reference, Report};
use ndarray::{s, Array4, ArrayView4};

fn reference(b: &BuiltinClassifier) -> Reference {
    let heldout = Dataset::from_idx_bytes(b.heldout, b.what).unwrap();
    Reference { stats: b.reference_stats().unwrap(), origin: b.name.into(), heldout }
}

/// The second half of the shipped held-out images: never used for the near-copy threshold.
fn unseen(r: &Reference, n: usize) -> Array4<f32> {
    let half = r.heldout.len() / 2;
    r.heldout.images.slice(s![half..half + n, .., .., ..]).to_owned()
}

fn score(b: &BuiltinClassifier, images: ArrayView4<f32>, training: Option<&Dataset>) -> Report {
    let mut classifier = Classifier::from_bytes(b.onnx, b.name).unwrap();
    evaluate(images, "test images", &mut classifier, &reference(b), training, 1, None).unwrap()
}

fn builtin_digits() -> Dataset {
    Dataset::load(&DataSource::Builtin, (28, 28)).unwrap()
}

#[test]
fn real_held_out_digits_score_as_real() {
    if !onnx_common::onnxruntime_available("real_held_out_digits_score_as_real") {
        return;
    }
    let r = reference(&builtin::MNIST);
    let train = builtin_digits();
    let report = score(&builtin::MNIST, unseen(&r, 500).view(), Some(&train));
    let (s, real, noise) = (&report.scores, &report.calibration.real, &report.calibration.noise);
    assert!(s.confident_fraction >= 0.9, "{report:#?}");
    // Unseen real digits are one more draw of real digits: within the draws' spread of the
    // calibration mean, and far from noise.
    assert!(s.frechet_distance < 2.0 * real.frechet_distance, "{report:#?}");
    assert!(noise.frechet_distance > 20.0 * s.frechet_distance, "{report:#?}");
    assert!(s.near_copy_fraction.unwrap() <= 0.05, "{report:#?}");
    // Every digit is present in about its share.
    assert!(report.classes.iter().all(|c| (0.05..=0.16).contains(&c.fraction)), "{:#?}", report.classes);
    assert_eq!(report.classes.iter().map(|c| c.count).sum::<usize>(), 500);
}

#[test]
fn uniform_noise_scores_as_noise() {
    if !onnx_common::onnxruntime_available("uniform_noise_scores_as_noise") {
        return;
    }
    let mut rng = mdc::base::rng::Rng::new(7);
    let noise = Array4::from_shape_fn([256, 1, 28, 28], |_| rng.uniform_range(-1.0, 1.0) as f32);
    let report = score(&builtin::MNIST, noise.view(), None);
    let (s, real) = (&report.scores, &report.calibration.real);
    assert!(real.confident_fraction >= 0.9, "{report:#?}");
    assert!(s.frechet_distance > 20.0 * real.frechet_distance, "{report:#?}");
    assert!(s.near_copy_fraction.is_none() && report.near_copies.is_none());
}

#[test]
fn training_images_are_near_copies_of_themselves() {
    if !onnx_common::onnxruntime_available("training_images_are_near_copies_of_themselves") {
        return;
    }
    let train = builtin_digits();
    let report = score(&builtin::MNIST, train.images.slice(s![..300, .., .., ..]), Some(&train));
    assert_eq!(report.scores.near_copy_fraction, Some(1.0), "{report:#?}");
    let test = report.near_copies.as_ref().unwrap();
    assert!(test.threshold_rms > 0.0 && test.training_count == mdc::data::BUILTIN_DIGITS, "{test:#?}");
    // Real held-out digits fall below the threshold about as often as the percentile says.
    assert!(report.calibration.real.near_copy_fraction.unwrap() <= 0.05, "{report:#?}");
}

/// The shipped classifier reads the shipped held-out digits as their labels say.
#[test]
fn mnist_classifier_agrees_with_the_labels() {
    if !onnx_common::onnxruntime_available("mnist_classifier_agrees_with_the_labels") {
        return;
    }
    let labels = read_labels(include_bytes!("../assets/classifiers/mnist-heldout-labels-idx1-ubyte.gz"));
    let r = reference(&builtin::MNIST);
    assert_eq!(labels.len(), r.heldout.len());
    let mut classifier = Classifier::from_bytes(builtin::MNIST.onnx, "mnist").unwrap();
    let p = classifier.run(r.heldout.images.view()).unwrap().probabilities;
    let top = |k: usize| p.row(k).iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let right = (0..labels.len()).filter(|&k| top(k) == labels[k] as usize).count();
    assert!(right as f64 >= 0.98 * labels.len() as f64, "{right} of {} right", labels.len());
}

/// Labels from a gzipped IDX label file (magic 00 00 08 01, count, bytes).
fn read_labels(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    assert_eq!(raw[..4], [0, 0, 8, 1]);
    raw[8..].to_vec()
}

#[test]
fn fashion_classifier_tells_clothes_from_noise() {
    if !onnx_common::onnxruntime_available("fashion_classifier_tells_clothes_from_noise") {
        return;
    }
    let r = reference(&builtin::FASHION);
    let report = score(&builtin::FASHION, unseen(&r, 500).view(), None);
    let (s, real, noise) = (&report.scores, &report.calibration.real, &report.calibration.noise);
    // Fashion-MNIST is harder (shirts, pullovers and coats look alike): fewer confident calls than
    // digits, but unseen real images score like the calibration's real draws, and noise like noise.
    assert!((s.confident_fraction - real.confident_fraction).abs() < 0.1, "{report:#?}");
    assert!(s.confident_fraction > 0.6 && noise.confident_fraction < 0.1, "{report:#?}");
    assert!(s.frechet_distance < 2.0 * real.frechet_distance, "{report:#?}");
    assert!(noise.frechet_distance > 20.0 * s.frechet_distance, "{report:#?}");
    assert_eq!(report.classes[9].class, "Ankle boot");
    // The digit classifier sees clothes as far from digits.
    let as_digits = score(&builtin::MNIST, unseen(&r, 500).view(), None);
    assert!(as_digits.scores.frechet_distance > 10.0 * as_digits.calibration.real.frechet_distance);
}
