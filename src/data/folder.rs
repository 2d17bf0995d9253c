//! A folder of PNG/JPEG images, grey or RGB, centre-cropped to the model's aspect ratio and
//! resized to its input size. Files are read in name order so runs are reproducible.
//!
//! A folder whose images sit in sub-folders (and none loose beside them) is labelled: each
//! sub-folder, in name order, is a class named after it. Loose images are unlabelled.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, ColorType, DynamicImage};
use ndarray::Array4;

use super::{scale_pixel, DataError, Labels};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The images of `dir`, resized to `size`, and their labels when they sit in class sub-folders.
pub fn load(dir: &Path, size: (usize, usize)) -> Result<(Array4<f32>, Option<Labels>), DataError> {
    let dir_name = dir.display().to_string();
    let (loose, subdirs) = list(dir)?;
    let mut classes = Vec::new();
    for sub in subdirs {
        let (files, _) = list(&sub)?;
        classes.push((sub, files));
    }
    if !classes.iter().any(|(_, files)| !files.is_empty()) {
        if loose.is_empty() {
            return Err(DataError::invalid(
                &dir_name,
                "holds no .png, .jpg or .jpeg images (nor sub-folders of them, one per class)",
            ));
        }
        return Ok((decode(&loose, size)?, None));
    }
    let name = |p: &Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if let Some(first) = loose.first() {
        let with: Vec<String> =
            classes.iter().filter(|(_, f)| !f.is_empty()).map(|(d, _)| format!("{}/", name(d))).collect();
        return Err(DataError::invalid(
            &dir_name,
            format!(
                "holds both loose images ({} of them, e.g. {}) and sub-folders of images ({}); \
                 for labelled data put every image in its class's sub-folder, for unlabelled data move the sub-folders out",
                loose.len(),
                name(first),
                with.join(", ")
            ),
        ));
    }
    if let Some((empty, _)) = classes.iter().find(|(_, f)| f.is_empty()) {
        return Err(DataError::invalid(
            &empty.display().to_string(),
            format!(
                "holds no .png, .jpg or .jpeg images, but the other sub-folders of {dir_name} do, so each sub-folder is a class; \
                 add images to it or move it out"
            ),
        ));
    }
    let names = classes.iter().map(|(d, _)| name(d)).collect();
    let values =
        classes.iter().enumerate().flat_map(|(c, (_, f))| std::iter::repeat_n(c as u32, f.len())).collect();
    let files: Vec<PathBuf> = classes.into_iter().flat_map(|(_, f)| f).collect();
    Ok((decode(&files, size)?, Some(Labels { values, names, origin: dir_name })))
}

/// The images of `dir` and its sub-folders (hidden ones left out), each in name order.
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| DataError::Io { path: dir.display().to_string(), source })?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_dir() && !hidden {
            dirs.push(p);
        } else if p.is_file()
            && p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            files.push(p);
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// Decodes `files` into [N, C, H, W] at (height, width).
fn decode(files: &[PathBuf], (height, width): (usize, usize)) -> Result<Array4<f32>, DataError> {
    let images: Vec<DynamicImage> = files
        .iter()
        .map(|p| {
            image::open(p).map_err(|e| {
                DataError::invalid(&p.display().to_string(), format!("cannot decode image: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    // One colour image makes the whole set RGB; a model's channel count is checked afterwards.
    let rgb = images.iter().any(|im| !is_grey(im.color()));
    let channels = if rgb { 3 } else { 1 };
    let mut out = Array4::zeros([images.len(), channels, height, width]);
    for (i, im) in images.into_iter().enumerate() {
        let im = fit(im, width as u32, height as u32);
        if rgb {
            for (x, y, p) in im.to_rgb8().enumerate_pixels() {
                for c in 0..3 {
                    out[[i, c, y as usize, x as usize]] = scale_pixel(p.0[c]);
                }
            }
        } else {
            for (x, y, p) in im.to_luma8().enumerate_pixels() {
                out[[i, 0, y as usize, x as usize]] = scale_pixel(p.0[0]);
            }
        }
    }
    Ok(out)
}

fn is_grey(c: ColorType) -> bool {
    matches!(c, ColorType::L8 | ColorType::L16 | ColorType::La8 | ColorType::La16)
}

/// Centre-crops to the target aspect ratio, then resizes (no distortion).
fn fit(im: DynamicImage, width: u32, height: u32) -> DynamicImage {
    if im.width() == width && im.height() == height {
        return im;
    }
    let (w, h) = (im.width() as u64, im.height() as u64);
    // Largest crop with aspect width:height.
    let (cw, ch) = if w * height as u64 > h * width as u64 {
        ((h * width as u64 / height as u64).max(1), h)
    } else {
        (w, (w * height as u64 / width as u64).max(1))
    };
    let cropped = im.crop_imm(((w - cw) / 2) as u32, ((h - ch) / 2) as u32, cw as u32, ch as u32);
    cropped.resize_exact(width, height, FilterType::Triangle)
}
