//! `mdc export torch MODEL.toml -o model.py [--train]`: the checked model as a standalone PyTorch
//! module and, with `--train`, its recipe as `train.py` beside it, with the training images it
//! needs written out where they are not files PyTorch can read (the built-in digits as IDX, an
//! image folder decoded and resized as `mdc train` does it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::base::fsutil::write_file;
use crate::base::safetensors_out::safetensors_bytes;
use crate::data::{DataSource, Dataset};
use crate::model;
use crate::torch::{module_source, train_script, DataFile, TrainScript};
use crate::train::{Origin, Recipe, TrainConfig};

/// The files `--train` writes for the built-in digits, beside the module.
pub const BUILTIN_IMAGES: &str = "builtin-digits-idx3-ubyte";
pub const BUILTIN_LABELS: &str = "builtin-labels-idx1-ubyte";

pub fn run(model_path: &Path, output: &Path, with_train: bool) -> anyhow::Result<ExitCode> {
    let model = model::load(model_path)?;
    let source = module_source(&model)?;
    write(output, source.as_bytes())?;
    println!(
        "wrote {}: class {} ({} parameters, state_dict keys as mdc names them); forward(x, t{}) returns the network's output",
        output.display(),
        crate::torch::class_name(&model),
        model.graph.param_count(),
        if model.graph.label.is_some() { ", y" } else { "" }
    );
    if !with_train {
        return Ok(ExitCode::SUCCESS);
    }
    let dir = output.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut recipe = Recipe::new(TrainConfig::default(), Origin::Default);
    if let Some(table) = &model.train {
        recipe.apply_table(table, Origin::ModelFile).map_err(|problems| {
            let lines: Vec<&str> = problems.iter().map(|(_, msg)| msg.as_str()).collect();
            anyhow::anyhow!("{}: [train]: {}", model_path.display(), lines.join("; "))
        })?;
        super::train::resolve_data_paths(&mut recipe, model_path);
    }
    recipe.validate().map_err(|e| anyhow::anyhow!("{}: training settings: {e}", model_path.display()))?;
    let config = recipe.config;
    let (data, class_names) = data_files(&config, &model, &dir)?;
    let module_file =
        output.file_name().map_or_else(|| "model.py".into(), |n| n.to_string_lossy().into_owned());
    let script = train_script(&TrainScript { model: &model, module_file, config, data, class_names });
    let script_path = dir.join("train.py");
    write(&script_path, script.as_bytes())?;
    println!(
        "wrote {}: the recipe of {} for PyTorch (`torchrun --nproc_per_node N {}` --out DIR); it writes mdc checkpoints",
        script_path.display(),
        model_path.display(),
        script_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The script's data: an IDX file is read where it is; the built-in digits and an image folder
/// are written beside the script as the images `mdc train` would train on.
fn data_files(
    config: &TrainConfig,
    model: &model::Model,
    dir: &Path,
) -> anyhow::Result<(DataFile, Vec<String>)> {
    let source = DataSource::parse(&config.data);
    let (_, h, w) = model.graph.input_shape().as_image().context("the model's input is not an image")?;
    let labels_file = config.labels.as_deref().map(Path::new);
    let mut dataset = Dataset::load_labelled(&source, (h, w), labels_file)?;
    match &source {
        DataSource::Builtin => {
            dataset = dataset.first(config.builtin_digits);
            let (images, labels) = (dir.join(BUILTIN_IMAGES), dir.join(BUILTIN_LABELS));
            write(&images, &idx_images(&dataset))?;
            let values = dataset.labels.as_ref().map(|l| l.values.clone()).unwrap_or_default();
            write(&labels, &idx_labels(&values))?;
            println!(
                "wrote {} and {}: the {} built-in digits and their labels (IDX)",
                images.display(),
                labels.display(),
                dataset.len()
            );
            let data = DataFile::Idx { images: BUILTIN_IMAGES.into(), labels: Some(BUILTIN_LABELS.into()) };
            Ok((data, Vec::new()))
        }
        DataSource::Path(p) if p.is_dir() => {
            let file = format!(
                "{}-data.safetensors",
                model.path.file_stem().map_or("data".into(), |s| s.to_string_lossy())
            );
            let path = dir.join(&file);
            write(&path, &tensors_file(&dataset))?;
            println!(
                "wrote {}: {} images of {} as mdc trains on them",
                path.display(),
                dataset.len(),
                p.display()
            );
            let names = dataset.labels.as_ref().map(|l| l.names.clone()).unwrap_or_default();
            Ok((DataFile::Tensors { file }, names))
        }
        DataSource::Path(p) => {
            let images = absolute(p);
            let labels = dataset.labels.as_ref().map(|l| absolute(Path::new(&l.origin)));
            Ok((DataFile::Idx { images, labels }, Vec::new()))
        }
    }
}

/// Writes `bytes` to `path` atomically; the error names the file.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes)
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p)).display().to_string()
}

/// IDX3 bytes of one-channel images (their [-1, 1] values back to the bytes they came from).
fn idx_images(d: &Dataset) -> Vec<u8> {
    let [_, h, w] = d.image_shape();
    let mut out = vec![0, 0, 8, 3];
    for dim in [d.len(), h, w] {
        out.extend((dim as u32).to_be_bytes());
    }
    out.extend(d.images.iter().map(|&v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8));
    out
}

fn idx_labels(values: &[u32]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend((values.len() as u32).to_be_bytes());
    out.extend(values.iter().map(|&v| v as u8));
    out
}

/// safetensors with `images` f32 [N, C, H, W] in [-1, 1] and, when the folder has classes,
/// `labels` i64 [N].
fn tensors_file(d: &Dataset) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let images: Vec<u8> = d.images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let labels: Option<Vec<u8>> =
        d.labels.as_ref().map(|l| l.values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect());
    let mut views = vec![(
        "images".to_string(),
        TensorView::new(safetensors::Dtype::F32, d.images.shape().to_vec(), &images)
            .expect("shape matches data"),
    )];
    if let Some(l) = &labels {
        views.push((
            "labels".to_string(),
            TensorView::new(safetensors::Dtype::I64, vec![d.len()], l).expect("shape matches data"),
        ));
    }
    safetensors_bytes(views, None)
}
