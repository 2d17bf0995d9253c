//! Reading the images to score: a PNG grid as `mdc sample` and `mdc train` write it
//! ([`crate::base::image_io::grid_png`]), a folder of single images, or an IDX file. All come back as
//! [N, C, H, W] in [-1, 1], the range mdc's images live in.

use std::path::Path;

use anyhow::{bail, Context};
use image::GrayImage;
use ndarray::Array4;

use crate::base::image_io::{GridLayout, BORDER};
use crate::data::{DataSource, Dataset};

/// Loads `path` as images of `image` = [C, H, W] (only grey, C = 1, for grids).
pub fn load(path: &Path, image: [usize; 3]) -> anyhow::Result<Array4<f32>> {
    let [c, h, w] = image;
    if !path.exists() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder");
        return Err(anyhow::Error::new(missing).context(format!("cannot read {}", path.display())));
    }
    let is_picture = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()));
    let images = if path.is_dir() {
        Dataset::load(&DataSource::Path(path.to_path_buf()), (h, w))?.images
    } else if is_picture {
        if c != 1 {
            bail!("{}: grids are read as grey images; this classifier takes {c} channels", path.display());
        }
        let picture =
            image::open(path).with_context(|| format!("cannot decode {} as an image", path.display()))?;
        read_grid(&picture.to_luma8(), [h, w]).with_context(|| path.display().to_string())?
    } else {
        Dataset::load_idx(path)?.images
    };
    let found = [images.shape()[1], images.shape()[2], images.shape()[3]];
    if found != image {
        bail!(
            "{}: holds {}x{}x{} images (CxHxW), the classifier takes {c}x{h}x{w}",
            path.display(),
            found[0],
            found[1],
            found[2]
        );
    }
    Ok(images)
}

/// The tiles of a grid of `[h, w]` images: tries mdc's own layout first, then other scales and
/// borders, and takes the first under which every border pixel is border grey and every
/// scaled-up pixel is a uniform block. Trailing tiles that are all border grey are empty slots.
pub fn read_grid(picture: &GrayImage, [h, w]: [usize; 2]) -> anyhow::Result<Array4<f32>> {
    let (gw, gh) = (picture.width() as usize, picture.height() as usize);
    let auto = GridLayout::auto(h.max(w));
    let mut candidates = vec![(auto.scale, auto.padding)];
    for scale in 1..=8 {
        for padding in 0..=8 {
            if (scale, padding) != (auto.scale, auto.padding) {
                candidates.push((scale, padding));
            }
        }
    }
    for (scale, padding) in candidates {
        let Some(cols) = tiles_across(gw, w * scale, padding) else { continue };
        let Some(rows) = tiles_across(gh, h * scale, padding) else { continue };
        let grid = Grid { scale, padding, cols, rows, tile: [h, w] };
        if grid.fits(picture) {
            return Ok(grid.images(picture));
        }
    }
    bail!(
        "a {gw}x{gh} picture is not a grid of {h}x{w} images as mdc writes them (tiles of {h}x{w} pixels \
         scaled up 1-8 times, separated by 0-8 pixel borders of grey {BORDER}); pass a folder of single \
         images or an IDX file instead"
    )
}

/// How many tiles of `tile` pixels with `padding` borders on both sides fill `total` exactly.
fn tiles_across(total: usize, tile: usize, padding: usize) -> Option<usize> {
    let inner = total.checked_sub(padding)?;
    (inner % (tile + padding) == 0 && inner > 0).then_some(inner / (tile + padding))
}

struct Grid {
    scale: usize,
    padding: usize,
    cols: usize,
    rows: usize,
    tile: [usize; 2],
}

impl Grid {
    fn origin(&self, i: usize) -> (usize, usize) {
        let [h, w] = self.tile;
        let p = self.padding;
        (p + (i % self.cols) * (w * self.scale + p), p + (i / self.cols) * (h * self.scale + p))
    }

    fn in_tile(&self, x: usize, y: usize) -> bool {
        let [h, w] = self.tile;
        let (p, s) = (self.padding, self.scale);
        (x % (w * s + p)) >= p && (y % (h * s + p)) >= p
    }

    fn fits(&self, picture: &GrayImage) -> bool {
        let [h, w] = self.tile;
        let s = self.scale;
        let border_ok = picture
            .enumerate_pixels()
            .all(|(x, y, px)| self.in_tile(x as usize, y as usize) || px.0[0] == BORDER);
        border_ok
            && (0..self.cols * self.rows).all(|i| {
                let (x0, y0) = self.origin(i);
                (0..h * s).all(|y| {
                    (0..w * s).all(|x| {
                        let block = picture.get_pixel((x0 + x - x % s) as u32, (y0 + y - y % s) as u32);
                        picture.get_pixel((x0 + x) as u32, (y0 + y) as u32) == block
                    })
                })
            })
    }

    /// The tiles as images, without the empty slots that end the last row.
    fn images(&self, picture: &GrayImage) -> Array4<f32> {
        let [h, w] = self.tile;
        let s = self.scale;
        let tile = |i: usize| {
            let (x0, y0) = self.origin(i);
            Array4::from_shape_fn([1, 1, h, w], |(_, _, y, x)| {
                picture.get_pixel((x0 + x * s) as u32, (y0 + y * s) as u32).0[0]
            })
        };
        let mut n = self.cols * self.rows;
        while n > 1 && tile(n - 1).iter().all(|&v| v == BORDER) {
            n -= 1;
        }
        let mut out = Array4::zeros([n, 1, h, w]);
        for i in 0..n {
            out.slice_mut(ndarray::s![i..i + 1, .., .., ..])
                .assign(&tile(i).mapv(|v| v as f32 / 127.5 - 1.0));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::image_io::grid_png;

    fn decode(png: &[u8]) -> GrayImage {
        image::load_from_memory(png).unwrap().to_luma8()
    }

    #[test]
    fn any_layout_round_trips() {
        let images =
            Array4::from_shape_fn([5, 1, 3, 4], |(n, _, y, x)| ((n * 12 + y * 4 + x) as f32 / 30.0) - 1.0);
        let bytes = |v: &Array4<f32>| v.mapv(crate::base::image_io::to_u8);
        for layout in [
            GridLayout::auto(4),
            GridLayout { columns: 2, scale: 1, padding: 0 },
            GridLayout { columns: 5, scale: 3, padding: 1 },
        ] {
            let back = read_grid(&decode(&grid_png(&images, layout).unwrap()), [3, 4]).unwrap();
            assert_eq!(bytes(&back), bytes(&images), "{layout:?}");
        }
    }

    #[test]
    fn a_picture_that_is_no_grid_is_refused() {
        let err = read_grid(&GrayImage::new(30, 31), [28, 28]).unwrap_err().to_string();
        assert!(err.contains("30x31 picture is not a grid of 28x28 images"), "{err}");
    }
}
