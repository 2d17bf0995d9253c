//! One DDPM denoising step on a model exported by `mdc export onnx`, using the `ort` crate
//! directly (what any Rust onnxruntime client would do).
//!
//!     mdc export onnx models/unet.toml --weights run/checkpoint.safetensors -o unet.onnx
//!     cargo run --release --example ort_denoise_step -- unet.onnx [TIMESTEP]
//!
//! onnxruntime is found through ORT_DYLIB_PATH or the Python `onnxruntime` package
//! (`pip install onnxruntime==1.31.1`).

use ndarray::{Array1, Array4};
use ort::session::Session;
use ort::value::TensorRef;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or_else(|| anyhow::anyhow!("usage: ort_denoise_step MODEL.onnx [TIMESTEP]"))?;

    // Load onnxruntime only after finding it: ort panics if used without a library.
    let library = mdc::runtime::discover::library_path().map_err(anyhow::Error::msg)?;
    let env = ort::init_from(&library)?.with_name("ort_denoise_step").build()?;
    let mut session = Session::builder(&env)?.commit_from_file(&path)?;

    // Everything needed to sample is in the model's metadata.
    let meta = session.metadata()?;
    let get = |k: &str| meta.custom(k).ok_or_else(|| anyhow::anyhow!("{path}: metadata `{k}` missing"));
    let (c, h, w): (usize, usize, usize) =
        (get("image_channels")?.parse()?, get("image_height")?.parse()?, get("image_width")?.parse()?);
    // Every beta_t of the training noise schedule, whatever its kind.
    let betas: Vec<f64> = get("betas")?.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let steps = betas.len();
    let alpha_bar: Vec<f64> = betas
        .iter()
        .scan(1.0, |ab, b| {
            *ab *= 1.0 - b;
            Some(*ab)
        })
        .collect();
    // The output is the noise, or the velocity v = sqrt(ab) eps - sqrt(1 - ab) x0 (older exports
    // have no key and predict the noise).
    let velocity = meta.custom("prediction").as_deref() == Some("velocity");
    drop(meta);
    let t: usize = match args.next() {
        Some(s) => s.parse()?,
        None => steps - 1,
    };
    anyhow::ensure!(t < steps, "timestep {t} is outside 0..{steps}");

    // x_t: pure noise (a fixed seed), one image.
    let mut rng = mdc::base::rng::Rng::new(7);
    let x = Array4::from_shape_simple_fn((1, c, h, w), || rng.normal() as f32);
    let tt = Array1::from_elem(1, t as f32);
    let outputs = session.run(ort::inputs![
        "x" => TensorRef::from_array_view(&x)?,
        "t" => TensorRef::from_array_view(&tt)?,
    ])?;
    let output = outputs["eps"].try_extract_array::<f32>()?;
    let ab: f64 = alpha_bar[t];
    // As noise: eps = sqrt(1 - ab) x + sqrt(ab) v for a velocity model.
    let eps: Vec<f32> = if velocity {
        let (sqrt_1m_ab, sqrt_ab) = ((1.0 - ab).sqrt(), ab.sqrt());
        output
            .iter()
            .zip(x.iter())
            .map(|(&v, &xv)| (sqrt_1m_ab * xv as f64 + sqrt_ab * v as f64) as f32)
            .collect()
    } else {
        output.iter().copied().collect()
    };

    // DDPM posterior mean + sigma_t z, sigma_t^2 = beta_t.
    let ab_prev = if t > 0 { alpha_bar[t - 1] } else { 1.0 };
    let alpha = ab / ab_prev;
    let beta = 1.0 - alpha;
    let mut x_prev = x.clone();
    for (xp, e) in x_prev.iter_mut().zip(eps.iter()) {
        let mean = (*xp as f64 - beta / (1.0 - ab).sqrt() * *e as f64) / alpha.sqrt();
        let noise = if t > 0 { beta.sqrt() * rng.normal() } else { 0.0 };
        *xp = (mean + noise) as f32;
    }
    let stats = |v: &mut dyn Iterator<Item = f32>| {
        let v: Vec<f64> = v.map(f64::from).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt())
    };
    println!("{path}: x [1, {c}, {h}, {w}] at t = {t} of {steps} (alpha_bar {ab:.5})");
    let (m, s) = stats(&mut eps.iter().copied());
    println!("  predicted noise:  mean {m:+.4}, std {s:.4}");
    let (m, s) = stats(&mut x_prev.iter().copied());
    println!("  x_(t-1):          mean {m:+.4}, std {s:.4}");
    Ok(())
}
