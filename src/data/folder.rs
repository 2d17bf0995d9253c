//! A folder of PNG/JPEG images, grey or RGB, centre-cropped to the model's aspect ratio and
//! resized to its input size. Files are read in name order so runs are reproducible.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, ColorType, DynamicImage};
use ndarray::Array4;

use super::{scale_pixel, DataError};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

pub fn load(dir: &Path, (height, width): (usize, usize)) -> Result<Array4<f32>, DataError> {
    let dir_name = dir.display().to_string();
    let entries =
        std::fs::read_dir(dir).map_err(|source| DataError::Io { path: dir_name.clone(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::invalid(&dir_name, "holds no .png, .jpg or .jpeg images"));
    }
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
