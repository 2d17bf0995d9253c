//! Scoring generated images (`mdc eval`): how many a classifier recognises with confidence, which
//! classes they fall in, how far their classifier features lie from real images' (Fréchet
//! distance), and how many are near-copies of a training image; with what real held-out images
//! and uniform noise score at the same sample count, so the numbers can be read.

pub mod builtin;
pub mod classifier;
pub mod frechet;
pub mod near_copy;
pub mod samples;

use ndarray::{s, Array4, ArrayView4, Axis};
use serde::Serialize;

use crate::base::rng::Rng;
use crate::data::Dataset;
use classifier::{Classifier, Outputs};
use frechet::{frechet_distance, FeatureStats};
use near_copy::TrainingSet;

/// A sample counts as recognised when the classifier gives its top class at least this probability.
pub const CONFIDENCE: f32 = 0.9;

/// Real-image draws averaged for the calibration line (the Fréchet distance of n images varies
/// from draw to draw, and is biased upwards at small n).
pub const CALIBRATION_DRAWS: usize = 3;

/// Real images to compare against: feature statistics for the Fréchet distance and a pool of
/// held-out images for calibration.
pub struct Reference {
    pub stats: FeatureStats,
    /// Where the statistics come from, for the report.
    pub origin: String,
    /// Real images never trained on, for the calibration lines and the near-copy threshold.
    pub heldout: Dataset,
}

/// The scores of one set of images.
#[derive(Debug, Clone, Serialize)]
pub struct Scores {
    pub count: usize,
    /// Fraction whose top class has probability >= [`CONFIDENCE`].
    pub confident_fraction: f64,
    pub frechet_distance: f64,
    /// Fraction nearer a training image than the calibrated threshold (None: no training set).
    pub near_copy_fraction: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    pub class: String,
    pub count: usize,
    pub fraction: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NearCopyTest {
    pub training_set: String,
    pub training_count: usize,
    /// RMS pixel distance (in [-1, 1] units) below which a sample counts as a copy.
    pub threshold_rms: f64,
    /// Held-out real images the threshold was calibrated on, and the percentile used.
    pub calibrated_on: usize,
    pub percentile: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Real held-out images at the samples' count, averaged over `draws` random draws.
    pub real: Scores,
    pub draws: usize,
    pub real_origin: String,
    /// Uniform noise in [-1, 1] at the samples' count.
    pub noise: Scores,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub samples: String,
    pub classifier: String,
    pub confidence_threshold: f32,
    pub scores: Scores,
    pub classes: Vec<ClassCount>,
    pub reference: String,
    pub near_copies: Option<NearCopyTest>,
    pub calibration: Calibration,
    /// When the samples were all drawn from one class (`mdc eval --class K`): how many the
    /// classifier puts in it.
    pub expected_class: Option<ExpectedClass>,
}

/// How well samples drawn from one class are recognised as that class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedClass {
    pub class: String,
    /// Classified as the class with probability >= the confidence threshold.
    pub confident_fraction: f64,
    /// The class is the classifier's top choice, confident or not.
    pub top_fraction: f64,
}

/// Scores `images` (named `name` in the report) and the calibration sets beside them.
pub fn evaluate(
    images: ArrayView4<f32>,
    name: &str,
    classifier: &mut Classifier,
    reference: &Reference,
    training: Option<&Dataset>,
    seed: u64,
    expected_class: Option<usize>,
) -> anyhow::Result<Report> {
    let n = images.len_of(Axis(0));
    anyhow::ensure!(n >= 2, "{name}: {n} image; the Fréchet distance needs at least 2");
    let near = match training {
        Some(t) => Some(calibrate_near_copies(t, &reference.heldout)?),
        None => None,
    };
    let score = |classifier: &mut Classifier, imgs: ArrayView4<f32>| -> anyhow::Result<(Scores, Outputs)> {
        let out = classifier.run(imgs)?;
        let near_copy_fraction = near
            .as_ref()
            .map(|(set, test)| near_copy::fraction_below(&set.nearest_distances(imgs), test.threshold_rms));
        let scores = Scores {
            count: imgs.len_of(Axis(0)),
            confident_fraction: confident_fraction(&out),
            frechet_distance: frechet_distance(
                &FeatureStats::from_features(out.features.view()),
                &reference.stats,
            ),
            near_copy_fraction,
        };
        Ok((scores, out))
    };

    let (scores, out) = score(classifier, images)?;
    let classes = histogram(&out, classifier);
    let expected_class = match expected_class {
        Some(k) if k >= out.probabilities.ncols() => anyhow::bail!(
            "--class {k}: the classifier {} knows classes 0 to {}",
            classifier.name,
            out.probabilities.ncols() - 1
        ),
        Some(k) => Some(ExpectedClass {
            class: classifier.class_name(k),
            confident_fraction: class_fraction(&out, k, CONFIDENCE),
            top_fraction: class_fraction(&out, k, 0.0),
        }),
        None => None,
    };

    let mut rng = Rng::new(seed);
    let pool = reference.heldout.len();
    let (draw_n, draws) = if n <= pool { (n, CALIBRATION_DRAWS) } else { (pool, 1) };
    let mut real = Vec::new();
    for _ in 0..draws {
        let mut idx: Vec<usize> = (0..pool).collect();
        rng.shuffle(&mut idx);
        let pick = reference.heldout.gather(&idx[..draw_n]);
        real.push(score(classifier, pick.view())?.0);
    }
    let noise_images = Array4::from_shape_fn(images.raw_dim(), |_| rng.uniform_range(-1.0, 1.0) as f32);
    let (noise, _) = score(classifier, noise_images.view())?;

    Ok(Report {
        samples: name.to_string(),
        classifier: classifier.name.clone(),
        confidence_threshold: CONFIDENCE,
        scores,
        classes,
        reference: reference.origin.clone(),
        near_copies: near.map(|(_, t)| t),
        calibration: Calibration {
            real: mean_scores(&real),
            draws,
            real_origin: reference.heldout.origin.clone(),
            noise,
        },
        expected_class,
    })
}

/// The class a row of probabilities ranks first.
fn top_class(probabilities: ndarray::ArrayView1<f32>) -> usize {
    probabilities.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// The fraction of images whose top class is `k` with probability at least `threshold`.
fn class_fraction(out: &Outputs, k: usize, threshold: f32) -> f64 {
    let hits = out
        .probabilities
        .rows()
        .into_iter()
        .filter(|r| top_class(r.view()) == k && r[k] >= threshold)
        .count();
    hits as f64 / out.probabilities.nrows().max(1) as f64
}

/// The near-copy threshold for `training`: the [`near_copy::CALIBRATION_PERCENTILE`] of the
/// distances from held-out real images to their nearest training image. The first half of the
/// held-out pool is used (at most 1500 images), so the other half stays an independent check.
fn calibrate_near_copies(
    training: &Dataset,
    heldout: &Dataset,
) -> anyhow::Result<(TrainingSet, NearCopyTest)> {
    anyhow::ensure!(
        training.image_shape() == heldout.image_shape(),
        "the training set {} holds {:?} images, the held-out images are {:?} (CxHxW)",
        training.origin,
        training.image_shape(),
        heldout.image_shape()
    );
    let set = TrainingSet::new(training.images.view());
    let half = (heldout.len() / 2).clamp(1, 1500);
    let distances = set.nearest_distances(heldout.images.slice(s![..half, .., .., ..]));
    let threshold_rms = near_copy::percentile(&distances, near_copy::CALIBRATION_PERCENTILE);
    if threshold_rms == 0.0 {
        anyhow::bail!(
            "the held-out images ({}) include images of the training set {}: the near-copy \
             threshold cannot be calibrated on them; pass real images the model was not trained on",
            heldout.origin,
            training.origin
        );
    }
    let test = NearCopyTest {
        training_set: training.origin.clone(),
        training_count: set.len(),
        threshold_rms,
        calibrated_on: half,
        percentile: near_copy::CALIBRATION_PERCENTILE,
    };
    Ok((set, test))
}

fn confident_fraction(out: &Outputs) -> f64 {
    let n = out.probabilities.nrows();
    let confident = out
        .probabilities
        .rows()
        .into_iter()
        .filter(|r| r.fold(0.0f32, |m, &p| m.max(p)) >= CONFIDENCE)
        .count();
    confident as f64 / n.max(1) as f64
}

/// How many images fall in each class (their top class, confident or not).
fn histogram(out: &Outputs, classifier: &Classifier) -> Vec<ClassCount> {
    let k = out.probabilities.ncols();
    let mut counts = vec![0usize; k];
    for row in out.probabilities.rows() {
        let top = top_class(row);
        counts[top] += 1;
    }
    let n = out.probabilities.nrows().max(1) as f64;
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| ClassCount { class: classifier.class_name(i), count, fraction: count as f64 / n })
        .collect()
}

fn mean_scores(all: &[Scores]) -> Scores {
    let m = all.len() as f64;
    let near: Option<Vec<f64>> = all.iter().map(|s| s.near_copy_fraction).collect();
    Scores {
        count: all[0].count,
        confident_fraction: all.iter().map(|s| s.confident_fraction).sum::<f64>() / m,
        frechet_distance: all.iter().map(|s| s.frechet_distance).sum::<f64>() / m,
        near_copy_fraction: near.map(|v| v.iter().sum::<f64>() / m),
    }
}
