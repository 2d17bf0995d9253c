//! `mdc eval SAMPLES`: scores generated images with a classifier (recognised with confidence,
//! class histogram, Fréchet distance to real images, near-copies of training images), printed
//! beside what real held-out images and noise score at the same count.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::check::Format;
use super::UsageError;
use crate::data::{DataSource, Dataset};
use crate::eval::classifier::Classifier;
use crate::eval::frechet::FeatureStats;
use crate::eval::{builtin, evaluate, samples, Reference, Report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The images to score: a PNG grid written by `mdc sample` or `mdc train`, a folder of
    /// PNG/JPEG images, or an IDX image file.
    pub samples: PathBuf,
    /// `mnist` or `fashion` (built in), or an ONNX file with outputs `logits` and `features`
    /// and `input_range` in its metadata (then --reference is required).
    #[arg(long, default_value = "mnist")]
    pub classifier: String,
    /// Real images (IDX file or folder) never trained on: the Fréchet distance's reference and
    /// the calibration set [default: the built-in classifier's training-set statistics and
    /// held-out test images].
    #[arg(long, value_name = "IDX|DIR")]
    pub reference: Option<PathBuf>,
    /// The images the model was trained on, for the near-copy test: `builtin` (mdc's 5000 built-in
    /// digits, a superset of what any `builtin_digits` trained on), an IDX file or a folder [default: builtin with the mnist classifier, else none].
    #[arg(long, value_name = "builtin|IDX|DIR")]
    pub train_set: Option<String>,
    /// The class every sample was drawn for (`mdc sample --class K`): also reports how many are
    /// classified as K, with confidence and at all.
    #[arg(long, value_name = "K")]
    pub class: Option<usize>,
    /// Seed of the calibration draws and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let builtin = builtin::find(&args.classifier);
    let is_onnx_file = args.classifier.to_ascii_lowercase().ends_with(".onnx");
    if builtin.is_none() && !is_onnx_file {
        bail!(UsageError(format!(
            "--classifier: expected mnist, fashion or a path to an .onnx file, found {:?}",
            args.classifier
        )));
    }
    if builtin.is_none() && args.reference.is_none() {
        bail!(UsageError(format!(
            "--classifier {}: a classifier file needs --reference IDX|DIR, real images it can be compared against",
            args.classifier
        )));
    }
    let mut classifier = match builtin {
        Some(b) => Classifier::from_bytes(b.onnx, b.name)?,
        None => Classifier::open(args.classifier.as_ref())?,
    };
    let [_, h, w] = classifier.image;
    let images = samples::load(&args.samples, classifier.image)?;

    let reference = match (&args.reference, builtin) {
        (Some(path), _) => {
            let heldout = Dataset::load(&DataSource::Path(path.clone()), (h, w))?;
            let stats = FeatureStats::from_features(classifier.run(heldout.images.view())?.features.view());
            Reference { stats, origin: format!("{} ({} images)", path.display(), heldout.len()), heldout }
        }
        (None, Some(b)) => {
            let stats = b.reference_stats()?;
            let origin = format!("{} training set ({} images, statistics built in)", b.name, stats.count);
            let heldout = Dataset::from_idx_bytes(b.heldout, &format!("held-out {} (built in)", b.what))?;
            Reference { stats, origin, heldout }
        }
        (None, None) => unreachable!("checked above"),
    };
    let train_source = match (&args.train_set, builtin) {
        (Some(s), _) => Some(DataSource::parse(s)),
        (None, Some(b)) if b.name == builtin::MNIST.name => Some(DataSource::Builtin),
        (None, _) => None,
    };
    let training = match &train_source {
        Some(src) => Some(Dataset::load(src, (h, w))?),
        None => None,
    };
    let name = args.samples.display().to_string();
    let report = evaluate(
        images.view(),
        &name,
        &mut classifier,
        &reference,
        training.as_ref(),
        args.seed,
        args.class,
    )?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn pct(f: f64) -> String {
    format!("{:.1} %", 100.0 * f)
}

/// The report as text: each score with the real and noise scores beside it.
pub fn render(r: &Report) -> String {
    let (s, real, noise) = (&r.scores, &r.calibration.real, &r.calibration.noise);
    let draws = if r.calibration.draws > 1 {
        format!(", mean of {} draws", r.calibration.draws)
    } else {
        String::new()
    };
    let mut out = format!("{}: {} samples, classifier {}\n", r.samples, s.count, r.classifier);
    out += &format!(
        "  {:<24}{:>9}    real: {:>7}   noise: {:>7}\n",
        format!("confident (p >= {}):", r.confidence_threshold),
        pct(s.confident_fraction),
        pct(real.confident_fraction),
        pct(noise.confident_fraction)
    );
    out += &format!(
        "  {:<24}{:>9.2}    real: {:>7.2}   noise: {:>7.1}\n",
        "Fréchet distance:", s.frechet_distance, real.frechet_distance, noise.frechet_distance
    );
    match (&r.near_copies, s.near_copy_fraction, real.near_copy_fraction) {
        (Some(t), Some(f), Some(rf)) => {
            out += &format!(
                "  {:<24}{:>9}    real: {:>7}   (nearer than RMS {:.3} to one of {} training images, {})\n",
                "near-copies:",
                pct(f),
                pct(rf),
                t.threshold_rms,
                t.training_count,
                t.training_set
            );
        }
        _ => out += "  near-copies:             not measured (pass --train-set, the images the model was trained on)\n",
    }
    out += &format!(
        "  real: {} {} drawn from {}{draws}; noise: uniform in [-1, 1]\n  Fréchet reference: {}\n",
        real.count, "images", r.calibration.real_origin, r.reference
    );
    if let Some(e) = &r.expected_class {
        out += &format!(
            "  {:<24}{:>9}    (top class {} for {})\n",
            format!("classified as {} (p >= {}):", e.class, r.confidence_threshold),
            pct(e.confident_fraction),
            e.class,
            pct(e.top_fraction)
        );
    }
    out += "  classes:\n";
    let width = r.classes.iter().map(|c| c.class.chars().count()).max().unwrap_or(1);
    for c in &r.classes {
        let bar = "#".repeat((c.fraction * 100.0).round() as usize);
        out += &format!("    {:<width$} {:>5} {:>7}  {bar}\n", c.class, c.count, pct(c.fraction));
    }
    out
}
