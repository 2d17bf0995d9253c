//! Data loading: the built-in set, IDX files (gz and raw) and their corruptions, image folders.

use std::io::{Read, Write};
use std::path::Path;

use mdc::data::{DataSource, Dataset};

const MNIST_GZ: &str = "src/data/builtin/mnist-digits-5000-idx3-ubyte.gz";

fn raw_mnist() -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(MNIST_GZ).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err(path: &Path) -> String {
    Dataset::load(&DataSource::Path(path.to_path_buf()), (28, 28)).unwrap_err().to_string()
}

#[test]
fn builtin_is_5000_mnist_digits_in_minus_one_to_one() {
    let d = Dataset::load(&DataSource::Builtin, (28, 28)).unwrap();
    assert_eq!(d.images.shape(), &[mdc::data::BUILTIN_DIGITS, 1, 28, 28]);
    assert_eq!(d.clone().first(1000).images.shape(), &[1000, 1, 28, 28]);
    let (min, max) = d.images.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((min, max), (-1.0, 1.0));
    // MNIST is mostly black background: the mean pixel is dark.
    let mean = d.images.mean().unwrap();
    assert!(mean < -0.6 && mean > -0.9, "mean {mean}");
    d.check_fits([1, 28, 28], "models/unet.toml").unwrap();
}

#[test]
fn raw_and_gzipped_idx_agree() {
    let dir = tempfile::tempdir().unwrap();
    let raw = write(dir.path(), "images-idx3-ubyte", &raw_mnist());
    let a = Dataset::load(&DataSource::Path(raw), (0, 0)).unwrap();
    let b = Dataset::load(&DataSource::Path(MNIST_GZ.into()), (0, 0)).unwrap();
    let c = Dataset::load(&DataSource::Builtin, (0, 0)).unwrap();
    assert_eq!(a.images, b.images);
    assert_eq!(a.images, c.images);
}

#[test]
fn corrupt_idx_files_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_mnist();

    let p = write(dir.path(), "truncated", &raw[..raw.len() - 100]);
    let e = err(&p);
    assert!(e.contains("truncated") && e.contains("5000 images of 28x28") && e.contains("truncated"), "{e}");
    assert!(e.starts_with(&p.display().to_string()), "{e}");

    let mut bad = raw.clone();
    bad[0] = 0x50;
    let e = err(&write(dir.path(), "badmagic", &bad));
    assert!(e.contains("not an IDX file") && e.contains("magic"), "{e}");

    let mut extra = raw.clone();
    extra.extend_from_slice(&[0; 7]);
    let e = err(&write(dir.path(), "extra", &extra));
    assert!(e.contains("7 unexpected bytes"), "{e}");

    let labels = write(dir.path(), "labels-idx1-ubyte", &[0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]);
    let e = err(&labels);
    assert!(e.contains("label file") && e.contains("found 1"), "{e}");

    let gz = std::fs::read(MNIST_GZ).unwrap();
    let e = err(&write(dir.path(), "cut.gz", &gz[..gz.len() / 2]));
    assert!(e.contains("gzip stream is damaged or truncated"), "{e}");

    let e = err(&write(dir.path(), "tiny", &[0, 0]));
    assert!(e.contains("too short"), "{e}");

    let e = err(&dir.path().join("missing.gz"));
    assert!(e.contains("cannot read") && e.contains("missing.gz"), "{e}");
}

#[test]
fn image_folders_grey_rgb_resized_and_scaled() {
    let dir = tempfile::tempdir().unwrap();
    let grey = dir.path().join("grey");
    std::fs::create_dir(&grey).unwrap();
    // A 40x30 white image with a black left half, and a 28x28 mid-grey one.
    let mut a = image::GrayImage::from_pixel(40, 30, image::Luma([255]));
    for y in 0..30 {
        for x in 0..20 {
            a.put_pixel(x, y, image::Luma([0]));
        }
    }
    a.save(grey.join("a.png")).unwrap();
    image::GrayImage::from_pixel(28, 28, image::Luma([51])).save(grey.join("b.PNG")).unwrap();
    std::fs::write(grey.join("notes.txt"), "ignored").unwrap();
    let d = Dataset::load(&DataSource::Path(grey.clone()), (28, 28)).unwrap();
    assert_eq!(d.images.shape(), &[2, 1, 28, 28]);
    assert_eq!(d.images[[0, 0, 14, 0]], -1.0);
    assert_eq!(d.images[[0, 0, 14, 27]], 1.0);
    assert!((d.images[[1, 0, 3, 3]] - (51.0 / 127.5 - 1.0)).abs() < 1e-6);
    let e = d.check_fits([3, 32, 32], "models/unet-rgb32.toml").unwrap_err().to_string();
    assert!(e.contains("grey (1 channel)") && e.contains("models/unet-rgb32.toml expects 3x32x32"), "{e}");

    let rgb = dir.path().join("rgb");
    std::fs::create_dir(&rgb).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([255, 0, 0])).save(rgb.join("red.png")).unwrap();
    image::RgbImage::from_pixel(16, 16, image::Rgb([0, 0, 255])).save(rgb.join("blue.jpg")).unwrap();
    image::GrayImage::from_pixel(32, 32, image::Luma([0])).save(rgb.join("black.png")).unwrap();
    let d = Dataset::load(&DataSource::Path(rgb), (32, 32)).unwrap();
    assert_eq!(d.images.shape(), &[3, 3, 32, 32]);
    // Name order: black.png, blue.jpg, red.png. Grey images become RGB in a colour set.
    assert_eq!(d.images[[0, 1, 5, 5]], -1.0);
    assert!(d.images[[1, 2, 5, 5]] > 0.9 && d.images[[1, 0, 5, 5]] < -0.9);
    assert_eq!(d.images[[2, 0, 31, 31]], 1.0);
    d.check_fits([3, 32, 32], "m").unwrap();
    let e = d.check_fits([1, 28, 28], "models/unet.toml").unwrap_err().to_string();
    assert!(e.contains("RGB (3 channels)") && e.contains("32x32 but the model takes 28x28"), "{e}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(err(&empty).contains("holds no .png, .jpg or .jpeg images"));

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::File::create(broken.join("x.png")).unwrap().write_all(b"not a png").unwrap();
    let e = err(&broken);
    assert!(e.contains("x.png") && e.contains("cannot decode"), "{e}");
}
