//! Images out: tensors in [-1, 1] written as PNG, one image or a grid of many, grey or RGB.

use std::path::Path;

use anyhow::bail;
use image::{ImageBuffer, ImageFormat, Luma, Rgb};
use ndarray::{Array4, ArrayView3, Axis};

/// Grey pixels between tiles of a grid.
pub const BORDER: u8 = 64;

/// How to lay images out in a grid.
#[derive(Debug, Clone, Copy)]
pub struct GridLayout {
    /// Images per row; 0 chooses a near-square grid.
    pub columns: usize,
    /// Each pixel drawn as scale x scale (small 28x28 digits are hard to see at 1x).
    pub scale: usize,
    /// Border between tiles, in output pixels.
    pub padding: usize,
}

impl GridLayout {
    /// Near-square, scaled up so tiles are at least 56 pixels, 2-pixel borders.
    pub fn auto(image_size: usize) -> GridLayout {
        GridLayout { columns: 0, scale: 56usize.div_ceil(image_size.max(1)).max(1), padding: 2 }
    }
}

/// [-1, 1] to a byte, clamping what falls outside.
pub fn to_u8(v: f32) -> u8 {
    (((v + 1.0) * 127.5).round()).clamp(0.0, 255.0) as u8
}

/// PNG bytes of a grid of `images` [N, C, H, W] (C = 1 grey or 3 RGB) in [-1, 1].
pub fn grid_png(images: &Array4<f32>, layout: GridLayout) -> anyhow::Result<Vec<u8>> {
    let [n, c, h, w] = [images.shape()[0], images.shape()[1], images.shape()[2], images.shape()[3]];
    if n == 0 {
        bail!("no images to write");
    }
    if c != 1 && c != 3 {
        bail!("images must have 1 (grey) or 3 (RGB) channels to be written as PNG, found {c}");
    }
    let cols = if layout.columns == 0 { (n as f64).sqrt().ceil() as usize } else { layout.columns.min(n) };
    let rows = n.div_ceil(cols);
    let (s, p) = (layout.scale.max(1), layout.padding);
    let (tw, th) = (w * s, h * s);
    let (gw, gh) = (cols * tw + (cols + 1) * p, rows * th + (rows + 1) * p);
    let mut rgb = vec![BORDER; gw * gh * c];
    for (i, img) in images.axis_iter(Axis(0)).enumerate() {
        let (x0, y0) = (p + (i % cols) * (tw + p), p + (i / cols) * (th + p));
        for y in 0..th {
            for x in 0..tw {
                for ch in 0..c {
                    rgb[((y0 + y) * gw + x0 + x) * c + ch] = to_u8(img[[ch, y / s, x / s]]);
                }
            }
        }
    }
    encode(rgb, gw, gh, c)
}

/// PNG bytes of one image [C, H, W] in [-1, 1].
pub fn image_png(image: ArrayView3<f32>) -> anyhow::Result<Vec<u8>> {
    let single = image.to_owned().insert_axis(Axis(0));
    grid_png(&single, GridLayout { columns: 1, scale: 1, padding: 0 })
}

/// Writes a grid PNG atomically.
pub fn write_grid(path: &Path, images: &Array4<f32>, layout: GridLayout) -> anyhow::Result<()> {
    let bytes = grid_png(images, layout)?;
    crate::base::fsutil::write_file(path, &bytes)
}

fn encode(pixels: Vec<u8>, w: usize, h: usize, channels: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let (w, h) = (w as u32, h as u32);
    if channels == 1 {
        let buf: ImageBuffer<Luma<u8>, _> = ImageBuffer::from_raw(w, h, pixels).expect("sized above");
        buf.write_to(&mut out, ImageFormat::Png)?;
    } else {
        let buf: ImageBuffer<Rgb<u8>, _> = ImageBuffer::from_raw(w, h, pixels).expect("sized above");
        buf.write_to(&mut out, ImageFormat::Png)?;
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_tiles_and_maps_range() {
        let mut imgs = Array4::from_elem([3, 1, 2, 2], -1.0f32);
        imgs[[1, 0, 0, 0]] = 1.0;
        let png = grid_png(&imgs, GridLayout { columns: 0, scale: 2, padding: 1 }).unwrap();
        let im = image::load_from_memory(&png).unwrap().to_luma8();
        // 2 columns x 2 rows of 4x4 tiles with 1-pixel borders.
        assert_eq!((im.width(), im.height()), (11, 11));
        assert_eq!(im.get_pixel(0, 0).0[0], BORDER);
        assert_eq!(im.get_pixel(1, 1).0[0], 0);
        // Image 1 sits at x = 1 + 4 + 1 = 6; its top-left pixel is white, scaled 2x.
        assert_eq!(im.get_pixel(6, 1).0[0], 255);
        assert_eq!(im.get_pixel(7, 2).0[0], 255);
        assert_eq!(im.get_pixel(8, 1).0[0], 0);
        let rgb = grid_png(&Array4::zeros([1, 3, 2, 2]), GridLayout::auto(2)).unwrap();
        assert_eq!(image::load_from_memory(&rgb).unwrap().color(), image::ColorType::Rgb8);
        assert!(grid_png(&Array4::zeros([1, 2, 2, 2]), GridLayout::auto(2)).is_err());
        assert_eq!(to_u8(0.0), 128);
        assert_eq!(to_u8(5.0), 255);
    }
}
