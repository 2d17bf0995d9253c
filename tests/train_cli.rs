//! `mdc train` and `mdc sample` as a user runs them: outputs, resume, and the error messages for
//! a rerun, a changed model file, a corrupt checkpoint, a data/model mismatch and divergence.

use std::path::{Path, PathBuf};
use std::process::Command;

const TINY: &str = "tests/train_fixtures/tiny.toml";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn mdc(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mdc")).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn losses(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("loss.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",")).collect()
}

/// The tiny model for 3x32x32 RGB input, written in `dir`.
fn rgb_model(dir: &Path) -> PathBuf {
    let p = dir.join("rgb.toml");
    let text = std::fs::read_to_string(TINY).unwrap();
    let rgb = text.replace("channels = 1", "channels = 3").replace("height = 28", "height = 32");
    std::fs::write(&p, rgb.replace("width = 28", "width = 32")).unwrap();
    p
}

/// A copy of the tiny model in `dir`, so a test can edit it.
fn model_copy(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.toml");
    std::fs::copy(TINY, &p).unwrap();
    p
}

#[test]
fn train_writes_every_output_and_prints_settings_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = mdc(&["train", TINY, "--out", s(&out), "--lr", "5e-4", "--set", "weight_decay=0.01", "-q"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("52,681 parameters"), "{}", r.stdout);
    assert!(
        r.stdout.contains("lr                5e-4") && r.stdout.contains("(command line)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("steps             6                      (model file [train])"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ema_decay         0.999                  (default)"), "{}", r.stdout);
    for f in ["checkpoint.safetensors", "loss.csv", "loss.svg", "samples.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(losses(&out).len(), 6);

    // Running again into the same folder must not silently replace the run.
    let r = mdc(&["train", TINY, "--out", s(&out), "-q"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already holds a run") && r.stderr.contains("--resume"), "{}", r.stderr);

    let grid = dir.path().join("grid.png");
    let each = dir.path().join("each");
    let r = mdc(&[
        "sample",
        s(&out.join("checkpoint.safetensors")),
        "--model",
        TINY,
        "-n",
        "3",
        "--steps",
        "4",
        "-o",
        s(&grid),
        "--individual",
        s(&each),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("EMA weights") && r.stdout.contains("cosine schedule T=1000"), "{}", r.stdout);
    assert!(grid.is_file());
    assert_eq!(image::open(each.join("sample-002.png")).unwrap().width(), 28);
    let r = mdc(&[
        "sample",
        s(&out.join("checkpoint.safetensors")),
        "--model",
        TINY,
        "--sampler",
        "ddpm",
        "--timesteps",
        "20",
        "-n",
        "2",
        "-o",
        s(&grid),
        "-q",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = mdc(&["sample", "model.onnx", "-o", s(&grid)]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("ONNX"), "{}", r.stderr);
}

#[test]
fn stop_and_resume_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    assert_eq!(mdc(&["train", TINY, "--out", s(&whole), "--samples", "0", "-q"]).code, 0);
    let r = mdc(&["train", TINY, "--out", s(&parts), "--stop-after", "3", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("stopped at step 3 of 6") && r.stdout.contains("--resume"), "{}", r.stdout);
    let r = mdc(&["train", TINY, "--out", s(&parts), "--resume", "--samples", "0", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("resuming from") && r.stdout.contains("at step 3"), "{}", r.stdout);
    assert_eq!(losses(&whole), losses(&parts));

    // A recipe change on resume is refused, naming the setting.
    let r = mdc(&["train", TINY, "--out", s(&parts), "--resume", "--lr", "0.1", "--steps", "9"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("lr: 0.002 -> 0.1"), "{}", r.stderr);
    let r = mdc(&["train", TINY, "--out", s(&parts), "--resume"]);
    assert!(r.stderr.contains("already completed 6 of 6 steps"), "{}", r.stderr);
}

/// Two runs of the same training, each in its own process (so its own hash seeds), write the
/// same checkpoint, byte for byte.
#[test]
fn the_same_run_twice_writes_the_same_checkpoint_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let r = mdc(&["train", TINY, "--out", s(out), "--steps", "2", "--samples", "0", "-q"]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let read = |d: &Path| std::fs::read(d.join("checkpoint.safetensors")).unwrap();
    assert!(read(&a) == read(&b), "the two runs' checkpoints differ");
}

#[test]
fn resume_refuses_another_model_file_and_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path());
    let out = dir.path().join("run");
    assert_eq!(mdc(&["train", s(&model), "--out", s(&out), "--stop-after", "2", "-q"]).code, 0);

    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, text.clone() + "\n# edited\n").unwrap();
    let r = mdc(&["train", s(&model), "--out", s(&out), "--resume"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("different model file") && r.stderr.contains("tiny.toml is now"),
        "{}",
        r.stderr
    );
    std::fs::write(&model, &text).unwrap();

    let ck = out.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
    let r = mdc(&["train", s(&model), "--out", s(&out), "--resume"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("is corrupt") && r.stderr.contains("checkpoint.safetensors"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let r = mdc(&["sample", s(&ck), "--model", s(&model)]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a valid safetensors file"), "{}", r.stderr);
}

#[test]
fn data_that_does_not_fit_the_model_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = rgb_model(dir.path());
    let r = mdc(&["train", s(&rgb), "--out", s(&dir.path().join("o"))]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("the data does not fit the model"), "{}", r.stderr);
    assert!(r.stderr.contains("1x28x28") && r.stderr.contains("expects 3x32x32"), "{}", r.stderr);
    assert!(!dir.path().join("o").join("checkpoint.safetensors").exists());

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(TINY).unwrap().replace("batch = 4", "bacth = 4")).unwrap();
    let r = mdc(&["train", s(&bad), "--out", s(&dir.path().join("o"))]);
    assert_ne!(r.code, 0);
    let text = std::fs::read_to_string(&bad).unwrap();
    let line = text.lines().position(|l| l.starts_with("bacth")).unwrap() + 1;
    // The model file is checked first: the setting is an error at its line, like any other.
    for want in [
        "error: [train], field `bacth`: unknown training setting `bacth`".to_string(),
        format!("bad.toml:{line}:1"),
        "= help: did you mean `batch`?".to_string(),
    ] {
        assert!(r.stderr.contains(&want), "{want:?} not in:\n{}", r.stderr);
    }
}

#[test]
fn divergence_exits_with_the_step_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = mdc(&[
        "train",
        TINY,
        "--out",
        s(&out),
        "--lr",
        "1e6",
        "--clip-grad",
        "0",
        "--warmup",
        "0",
        "--steps",
        "200",
        "--checkpoint-every",
        "1",
        "-q",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("training diverged at step") && r.stderr.contains("last good checkpoint"),
        "{}",
        r.stderr
    );
    assert!(out.join("checkpoint.safetensors").is_file());
}

#[test]
fn trains_on_a_folder_of_rgb_images_resized_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = rgb_model(dir.path());
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for i in 0..5u8 {
        image::RgbImage::from_fn(40, 36, |x, y| image::Rgb([x as u8 * 6, y as u8 * 7, i * 50]))
            .save(images.join(format!("img{i}.png")))
            .unwrap();
    }
    let out = dir.path().join("run");
    let r = mdc(&["train", s(&rgb), "--data", s(&images), "--out", s(&out), "--steps", "2", "-q"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("input 3x32x32") && r.stdout.contains("(5 images)"), "{}", r.stdout);
    let grid = image::open(out.join("samples.png")).unwrap();
    assert_eq!(grid.color(), image::ColorType::Rgb8);
}

#[test]
fn stop_after_at_or_before_the_current_step_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = mdc(&["train", TINY, "--out", s(&out), "--stop-after", "0", "-q"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--stop-after 0: expected a step of at least 1"), "{}", r.stderr);
    assert!(!out.join("checkpoint.safetensors").exists());

    assert_eq!(mdc(&["train", TINY, "--out", s(&out), "--stop-after", "2", "-q"]).code, 0);
    for stop in ["1", "2"] {
        let r = mdc(&["train", TINY, "--out", s(&out), "--resume", "--stop-after", stop, "-q"]);
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("the run is already at step 2; give a later step"), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn sizes_beyond_their_limits_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let huge = "100000000000000000";
    for (flag, want) in [
        ("--batch", "`batch`: expected an integer from 1 to 4096, found 100000000000000000"),
        ("--samples", "`samples`: expected an integer from 0 to 4096, found 100000000000000000"),
        ("--timesteps", "`timesteps`: expected an integer from 1 to 100000, found 100000000000000000"),
        ("--checkpoint-every", "`checkpoint_every`: expected a positive integer, found 0"),
    ] {
        let value = if flag == "--checkpoint-every" { "0" } else { huge };
        let r = mdc(&["train", TINY, "--out", s(&out), flag, value, "-q"]);
        assert_eq!(r.code, 2, "{flag}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(want), "{flag}: {}", r.stderr);
        assert!(!out.join("checkpoint.safetensors").exists());
    }
    for args in [
        &["sample", "ck.safetensors", "--model", TINY, "-n", huge][..],
        &["sample", "ck.safetensors", "--model", TINY, "-n", "0"],
        &["sample", "ck.safetensors", "--model", TINY, "--batch", huge],
        &["sample", "ck.safetensors", "--model", TINY, "--timesteps", huge],
        &["bench", TINY, "--batch", huge],
        &["bench", TINY, "--train-batch", huge],
    ] {
        let r = mdc(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("invalid value") && r.stderr.contains("in 1..="), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn a_fresh_run_does_not_read_the_old_loss_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    assert_eq!(mdc(&["train", TINY, "--out", s(&out), "--stop-after", "2", "-q"]).code, 0);
    std::fs::write(out.join("loss.csv"), "step,loss,lr,grad_norm,seconds\ndamaged\n").unwrap();
    let r = mdc(&["train", TINY, "--out", s(&out), "--overwrite", "--samples", "0", "-q"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(losses(&out).len(), 6);
}

#[test]
fn resume_with_more_steps_keeps_the_warmup_of_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 6 steps: the default warmup (5% of steps) is 0 steps; at 60 steps it would be 3.
    assert_eq!(mdc(&["train", TINY, "--out", s(&out), "--stop-after", "2", "-q"]).code, 0);
    let r = mdc(&["train", TINY, "--out", s(&out), "--resume", "--steps", "60", "--stop-after", "3", "-q"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("warmup            0 steps"), "{}", r.stdout);
}

/// `bytes` with one bit flipped at the `skip`th byte of the first `pattern`.
fn flip(bytes: &[u8], pattern: &str, skip: usize) -> Vec<u8> {
    let at = bytes.windows(pattern.len()).position(|w| w == pattern.as_bytes()).expect("pattern present");
    let mut out = bytes.to_vec();
    out[at + skip] ^= 0x01;
    out
}

/// A damaged checkpoint is refused by `mdc sample`, `mdc export` and `mdc train --resume`, with
/// exit 2 and a message naming the file: two flipped bits in the header (one in the key
/// `schedule`, one in the recipe's autoguidance weight, which older mdc sampled from with exit 0
/// and no autoguidance), one in the recipe alone, one in a tensor, a value edited, a truncated file.
#[test]
fn a_damaged_checkpoint_is_refused_with_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let r = mdc(&["train", TINY, "--out", s(&run), "--samples", "0", "--guide-at", "0.5", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ck = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    let (header_len, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let (start, _) = header.info("ema.out.weight").unwrap().data_offsets;
    let mut tensor = bytes.clone();
    tensor[8 + header_len + start] ^= 0x01;
    let header = flip(&flip(&bytes, "\"schedule\"", 1), "autoguidance\\\":3", 15);
    let damaged = dir.path().join("damaged.safetensors");
    let grid = dir.path().join("grid.png");
    let onnx = dir.path().join("m.onnx");
    for (what, file, why) in [
        ("key and recipe", header, "the metadata does not match its recorded SHA-256"),
        (
            "recipe",
            flip(&bytes, "autoguidance\\\":3", 15),
            "the metadata does not match its recorded SHA-256",
        ),
        ("timesteps", flip(&bytes, "\"timesteps\":\"1000\"", 13), "the metadata does not match"),
        ("tensor", tensor, "the tensor data does not match its recorded SHA-256"),
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "not a valid safetensors file"),
    ] {
        std::fs::write(&damaged, &file).unwrap();
        for args in [
            vec!["sample", s(&damaged), "--model", TINY, "-n", "1", "--steps", "2", "-o", s(&grid), "-q"],
            vec!["export", "onnx", TINY, "--weights", s(&damaged), "-o", s(&onnx)],
        ] {
            let r = mdc(&args);
            assert_eq!(r.code, 2, "{what}, {}: {}", args[0], r.stderr);
            assert!(
                r.stderr.contains("damaged.safetensors is corrupt") && r.stderr.contains(why),
                "{what}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
        }
        assert!(!grid.exists() && !onnx.exists(), "{what}: an output was written");
        std::fs::write(&ck, &file).unwrap();
        let r = mdc(&["train", TINY, "--out", s(&run), "--resume", "-q"]);
        assert_eq!(r.code, 2, "{what}, resume: {}", r.stderr);
        assert!(
            r.stderr.contains("checkpoint.safetensors is corrupt") && r.stderr.contains(why),
            "{what}: {}",
            r.stderr
        );
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let r = mdc(&["train", TINY, "--out", s(&out), "--set", "foo"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--set expects KEY=VALUE, found \"foo\""), "{}", r.stderr);
    let r = mdc(&["train", TINY, "--out", s(&out), "--set", "stpes=3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `steps`"), "{}", r.stderr);
    let r = mdc(&["train", TINY, "--out", s(&out), "--resume"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--resume:") && r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = mdc(&["sample", "ck.safetensors", "-n", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = mdc(&["sample", "ck.safetensors"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--model MODEL.toml is required"), "{}", r.stderr);
}

/// A run keeps its guide, and `mdc sample` uses it at the run's weight unless told otherwise;
/// a run without one refuses --autoguidance instead of quietly sampling the model alone.
#[test]
fn sampling_uses_the_runs_guide_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let (guided, plain) = (dir.path().join("guided"), dir.path().join("plain"));
    let r = mdc(&["train", TINY, "--out", s(&guided), "--samples", "0", "--guide-at", "0.5", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("guide_at          0.5 (step 3)"), "{}", r.stdout);
    let grid = |name: &str| dir.path().join(name);
    let sample = |run: &Path, out: &Path, extra: &[&str]| {
        let ck = run.join("checkpoint.safetensors");
        let mut args = vec!["sample", s(&ck), "--model", TINY, "-n", "2", "--steps", "4", "-o", s(out), "-q"];
        args.extend(extra);
        mdc(&args)
    };
    let r = sample(&guided, &grid("a.png"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("autoguidance 3: guided by the EMA weights of step 3"), "{}", r.stdout);
    let r = sample(&guided, &grid("b.png"), &["--autoguidance", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("autoguidance"), "{}", r.stdout);
    let read = |name: &str| std::fs::read(grid(name)).unwrap();
    assert_ne!(read("a.png"), read("b.png"), "the guide changes the samples");

    // A run stopped before its guide step samples without one, and says so.
    let early = dir.path().join("early");
    let r = mdc(&["train", TINY, "--out", s(&early), "--guide-at", "0.5", "--stop-after", "2", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sample(&early, &grid("e.png"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("holds no guide yet"), "{}", r.stderr);

    let r = mdc(&["train", TINY, "--out", s(&plain), "--samples", "0", "--guide-at", "0", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sample(&plain, &grid("c.png"), &["--autoguidance", "2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds no guide") && r.stderr.contains("guide_at"), "{}", r.stderr);
    // Export reads the same guide the same way.
    let ck = plain.join("checkpoint.safetensors");
    let onnx = dir.path().join("plain.onnx");
    let r = mdc(&["export", "onnx", TINY, "--weights", s(&ck), "--autoguidance", "2", "-o", s(&onnx)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("holds no guide") && !onnx.exists(), "{}", r.stderr);
    let r = sample(&plain, &grid("c.png"), &["--autoguidance", "0.5"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected a weight from 1"), "{}", r.stderr);
}

/// bf16 on a CPU without AVX512_BF16 is an error that names the way out; with
/// `MDC_BF16_KERNEL=portable` the run trains in bf16 on the portable kernel, saying so.
#[test]
fn bf16_runs_on_the_portable_kernel_when_asked_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = |portable: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mdc"));
        cmd.args([
            "train",
            TINY,
            "--out",
            s(&out),
            "--precision",
            "bf16",
            "--steps",
            "2",
            "-q",
            "--overwrite",
        ]);
        cmd.env_remove("MDC_BF16_KERNEL");
        if portable {
            cmd.env("MDC_BF16_KERNEL", "portable");
        }
        cmd.output().unwrap()
    };
    let o = run(true);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("portable reference kernel"), "{stdout}{stderr}");
    assert_eq!(losses(&out).len(), 2);
    std::fs::remove_dir_all(&out).unwrap();
    // a misspelt kernel is an error that lists the names, not a silent default
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mdc"));
    cmd.args(["train", TINY, "--out", s(&out), "--precision", "bf16", "--steps", "2", "-q"]);
    let o = cmd.env("MDC_BF16_KERNEL", "avx-512").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("MDC_BF16_KERNEL=\"avx-512\": expected one of"),
        "{stderr}"
    );
    if !mdc::kernels::bf16::available() {
        let o = run(false);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && !out.join("loss.csv").exists(), "{stderr}");
        assert!(stderr.contains("no AVX512_BF16") && stderr.contains("MDC_BF16_KERNEL=portable"), "{stderr}");
    }
}

/// fp32's 3x3 same-size convs run by Winograd's F(2x2, 3x3) unless `MDC_FP32_CONV=im2col`: both
/// train the same run to within fp32 rounding, not to the bit (they round differently, which
/// shows the switch took effect), and a misspelt value is an error that names the choices.
#[test]
fn fp32_convs_by_winograd_and_by_im2col_train_alike() {
    let dir = tempfile::tempdir().unwrap();
    let train = |conv: &str| {
        let out = dir.path().join(conv);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mdc"));
        cmd.args(["train", TINY, "--out", s(&out), "--precision", "fp32", "--steps", "3", "-q"]);
        (cmd.env("MDC_FP32_CONV", conv).output().unwrap(), out)
    };
    let loss_values = |out: &Path| -> Vec<f64> {
        losses(out).iter().map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
    };
    let (by_winograd, winograd_dir) = train("winograd");
    let (by_im2col, im2col_dir) = train("im2col");
    for o in [&by_winograd, &by_im2col] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (loss_values(&winograd_dir), loss_values(&im2col_dir));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4 * y.abs(), "losses {a:?} by Winograd, {b:?} by im2col");
    }
    assert_ne!(a, b, "the two paths gave the same bits: did MDC_FP32_CONV take effect?");
    let (misspelt, out) = train("fft");
    let stderr = String::from_utf8_lossy(&misspelt.stderr);
    assert!(!misspelt.status.success() && !out.join("loss.csv").exists(), "{stderr}");
    assert!(stderr.contains("MDC_FP32_CONV=\"fft\": expected winograd or im2col"), "{stderr}");
}
