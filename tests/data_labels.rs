//! Labels of the training data: the built-in digits', IDX1 files (found by MNIST's naming or given),
//! class sub-folders, and the checks a class-conditional model makes before training.

use std::io::Write;
use std::path::{Path, PathBuf};

use mdc::data::{DataSource, Dataset, BUILTIN_DIGITS};

const MODEL: &str = "models/cond.toml";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `n` 4x4 images, image i filled with the grey level i.
fn idx3(n: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n as u32, 4, 4] {
        b.extend(d.to_be_bytes());
    }
    (0..n).for_each(|i| b.extend([i as u8; 16]));
    b
}

fn idx1(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn load(path: &Path) -> Dataset {
    Dataset::load(&DataSource::Path(path.to_path_buf()), (4, 4)).unwrap()
}

fn load_err(path: &Path, labels: Option<&Path>) -> String {
    Dataset::load_labelled(&DataSource::Path(path.to_path_buf()), (4, 4), labels).unwrap_err().to_string()
}

fn values(d: &Dataset) -> Vec<u32> {
    d.labels.as_ref().expect("labelled").values.clone()
}

#[test]
fn builtin_digits_have_their_mnist_labels() {
    let d = Dataset::load(&DataSource::Builtin, (28, 28)).unwrap();
    let l = d.labels.as_ref().unwrap();
    assert_eq!(l.len(), BUILTIN_DIGITS);
    assert_eq!(l.names, (0..10).map(|c| c.to_string()).collect::<Vec<_>>());
    let mut counts = [0usize; 10];
    for &v in &l.values {
        counts[v as usize] += 1;
    }
    assert!(counts.iter().all(|&c| (400..=600).contains(&c)), "{counts:?}");
    // The first digits of the MNIST test set, then the first of its training set (image 1000 on).
    assert_eq!(l.values[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(l.values[1000..1005], [5, 0, 4, 1, 9]);
    d.check_labels(10, MODEL).unwrap();
    assert_eq!(d.describe(), "built-in MNIST digits (5000 images, labels 0-9)");

    // first(n) keeps images and labels in step; gather_labels follows gather's order.
    let d = d.first(1000);
    assert_eq!((d.len(), d.labels.as_ref().unwrap().len()), (1000, 1000));
    assert_eq!(d.gather_labels(&[9, 0, 2]), Some(vec![9, 7, 1]));

    let e = d.check_labels(5, MODEL).unwrap_err().to_string();
    assert!(
        e.contains("built-in MNIST digits: image 0 has label 7, outside the model's classes 0-4")
            && e.contains("models/cond.toml declares `classes = 5` in [condition]"),
        "{e}"
    );
    let e = Dataset::load_labelled(&DataSource::Builtin, (28, 28), Some(Path::new("x-labels-idx1-ubyte")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels x-labels-idx1-ubyte given for builtin") && e.contains("their own labels"),
        "{e}"
    );
}

#[test]
fn idx_labels_are_found_by_mnist_naming_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let labels = [3u8, 1, 4, 1, 5];
    let raw = write(dir.path(), "train-images-idx3-ubyte", &idx3(5));
    write(dir.path(), "train-labels-idx1-ubyte", &idx1(&labels));
    let d = load(&raw);
    assert_eq!(values(&d), [3, 1, 4, 1, 5]);
    assert_eq!(d.labels.as_ref().unwrap().names, ["0", "1", "2", "3", "4", "5"]);
    let lf = dir.path().join("train-labels-idx1-ubyte").display().to_string();
    assert_eq!(d.describe(), format!("{} (5 images, labels 0-5 from {lf})", raw.display()));
    d.check_labels(6, MODEL).unwrap();
    assert_eq!(values(&d.clone().first(2)), [3, 1]);

    // gzipped images, labels in the other compression and the t10k-images.idx3-ubyte spelling.
    let gz = write(dir.path(), "t10k-images.idx3-ubyte.gz", &gzip(&idx3(3)));
    write(dir.path(), "t10k-labels.idx1-ubyte", &idx1(&[2, 0, 2]));
    assert_eq!(values(&load(&gz)), [2, 0, 2]);
    write(dir.path(), "t10k-labels.idx1-ubyte.gz", &gzip(&idx1(&[1, 1, 1])));
    assert_eq!(values(&load(&gz)), [1, 1, 1], "the images' own compression first");

    // Given explicitly, under any name, instead of the one found.
    let explicit = write(dir.path(), "my-classes.bin", &gzip(&idx1(&[0, 0, 0, 0, 9])));
    let d = Dataset::load_labelled(&DataSource::Path(raw), (4, 4), Some(&explicit)).unwrap();
    assert_eq!(values(&d), [0, 0, 0, 0, 9]);
}

#[test]
fn broken_idx_labels_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(dir.path(), "images-idx3-ubyte", &idx3(5));
    let images_name = images.display().to_string();

    // Images given as labels.
    let wrong = write(dir.path(), "wrong", &idx3(5));
    let e = load_err(&images, Some(&wrong));
    assert!(e.starts_with(&wrong.display().to_string()), "{e}");
    assert!(
        e.contains("is an IDX3 image file") && e.contains("not labels") && e.contains("00 00 08 01"),
        "{e}"
    );

    let bad = write(dir.path(), "badmagic", &[0x50, 0x4b, 3, 4, 0, 0, 0, 1, 0]);
    let e = load_err(&images, Some(&bad));
    assert!(e.contains("badmagic") && e.contains("magic starts 50 4b, expected 00 00"), "{e}");
    assert!(e.contains("an IDX label file starts 00 00 08 01"), "{e}");

    let mut cut = idx1(&[1, 2, 3, 4, 5]);
    cut.truncate(cut.len() - 2);
    let cut = write(dir.path(), "cut", &cut);
    let e = load_err(&images, Some(&cut));
    assert!(e.starts_with(&cut.display().to_string()), "{e}");
    assert!(e.contains("truncated: the header promises 5 labels (5 bytes) but only 3 bytes follow"), "{e}");

    let short = write(dir.path(), "short", &idx1(&[1, 2, 3, 4]));
    let e = load_err(&images, Some(&short));
    assert!(
        e.contains(&format!("{} holds 4 labels but {images_name} holds 5 images", short.display())),
        "{e}"
    );

    let missing = dir.path().join("missing");
    let e = load_err(&images, Some(&missing));
    assert!(e.contains("cannot read") && e.contains(&missing.display().to_string()), "{e}");
}

#[test]
fn labels_found_by_naming_but_broken_only_fail_a_conditional_model() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(dir.path(), "train-images-idx3-ubyte", &idx3(5));
    let labels = write(dir.path(), "train-labels-idx1-ubyte", &idx1(&[1, 2, 3]));
    // An unconditional model trains on the images as before.
    let d = load(&images);
    assert!(d.labels.is_none() && d.len() == 5);
    let e = d.check_labels(10, MODEL).unwrap_err().to_string();
    assert!(e.contains("models/cond.toml declares `classes = 10` in [condition]"), "{e}");
    assert!(
        e.contains(&format!("{} holds 3 labels but {} holds 5 images", labels.display(), images.display())),
        "{e}"
    );

    write(dir.path(), "train-labels-idx1-ubyte", &idx3(5));
    let e = load(&images).check_labels(10, MODEL).unwrap_err().to_string();
    assert!(
        e.contains("cannot be used") && e.contains("is an IDX3 image file") && e.contains("not labels"),
        "{e}"
    );
    assert!(e.contains(&labels.display().to_string()), "{e}");
}

#[test]
fn out_of_range_labels_name_the_image_the_label_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(dir.path(), "train-images-idx3-ubyte", &idx3(5));
    let labels = write(dir.path(), "train-labels-idx1-ubyte", &idx1(&[0, 9, 3, 12, 10]));
    let d = load(&images);
    d.check_labels(13, MODEL).unwrap();
    let e = d.check_labels(10, MODEL).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: image 3 has label 12, outside the model's classes 0-9: models/cond.toml declares `classes = 10` in [condition]",
            labels.display()
        )
    );
}

#[test]
fn unlabelled_data_says_how_to_give_labels() {
    let dir = tempfile::tempdir().unwrap();
    let images = write(dir.path(), "train-images-idx3-ubyte.gz", &gzip(&idx3(2)));
    let d = load(&images);
    assert_eq!(d.describe(), format!("{} (2 images)", images.display()));
    let e = d.check_labels(10, MODEL).unwrap_err().to_string();
    assert!(e.contains("models/cond.toml declares `classes = 10` in [condition]"), "{e}");
    assert!(e.contains(&format!("but {} has no labels", images.display())), "{e}");
    assert!(e.contains("train-labels-idx1-ubyte.gz") && e.contains("--labels PATH"), "{e}");
    assert!(e.contains("--data builtin"), "{e}");

    let odd = write(dir.path(), "digits.bin", &idx3(2));
    let e = load(&odd).check_labels(10, MODEL).unwrap_err().to_string();
    assert!(e.contains("does not follow MNIST's") && e.contains("--labels PATH"), "{e}");

    let flat = dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    image::GrayImage::new(4, 4).save(flat.join("a.png")).unwrap();
    let d = load(&flat);
    assert!(d.labels.is_none());
    let e = d.check_labels(2, MODEL).unwrap_err().to_string();
    assert!(e.contains("loose in the folder") && e.contains("one sub-folder per class"), "{e}");
    let e = load_err(&flat, Some(&images));
    assert!(e.contains("given for") && e.contains("class sub-folders"), "{e}");
}

#[test]
fn folders_of_class_sub_folders_are_labelled_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pets");
    // Made out of order: classes and images are taken in name order.
    for (class, files, level) in
        [("dog", ["b.png", "a.png"], 200u8), ("cat", ["z.png", "y.png"], 0), ("emu", ["x.png", "w.png"], 100)]
    {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for f in files {
            image::GrayImage::from_pixel(4, 4, image::Luma([level])).save(root.join(class).join(f)).unwrap();
        }
    }
    std::fs::create_dir(root.join(".cache")).unwrap();
    std::fs::write(root.join("README.txt"), "ignored").unwrap();
    let d = load(&root);
    let l = d.labels.as_ref().unwrap();
    assert_eq!(l.names, ["cat", "dog", "emu"]);
    assert_eq!(l.values, [0, 0, 1, 1, 2, 2]);
    assert_eq!(d.images[[0, 0, 0, 0]], -1.0);
    assert_eq!(d.images[[3, 0, 0, 0]], 200.0 / 127.5 - 1.0);
    assert_eq!(d.describe(), format!("{} (6 images, 3 classes: cat, dog, emu)", root.display()));
    d.check_labels(3, MODEL).unwrap();
    let e = d.check_labels(2, MODEL).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{}: image 4 has label 2 (class \"emu\"), outside the model's classes 0-1",
            root.display()
        )) && e.contains("declares `classes = 2`")
            && e.contains("the data has 3 classes (cat, dog, emu)"),
        "{e}"
    );

    // A class sub-folder with no images.
    std::fs::create_dir(root.join("fox")).unwrap();
    let e = load_err(&root, None);
    assert!(e.starts_with(&root.join("fox").display().to_string()) && e.contains("holds no .png"), "{e}");
    std::fs::remove_dir(root.join("fox")).unwrap();

    // Loose images beside the class sub-folders.
    image::GrayImage::new(4, 4).save(root.join("stray.png")).unwrap();
    let e = load_err(&root, None);
    assert!(e.starts_with(&root.display().to_string()), "{e}");
    assert!(
        e.contains(
            "both loose images (1 of them, e.g. stray.png) and sub-folders of images (cat/, dog/, emu/)"
        ),
        "{e}"
    );
}
