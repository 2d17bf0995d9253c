//! What `mdc export onnx` writes (structure, names, metadata, dynamic dims) and what it refuses.
//! These read the file with mdc's own ONNX types; they need no onnxruntime.

use crate::onnx_common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use mdc::onnx_ir::proto::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
use mdc::params::Params;
use onnx_common::*;
use prost::Message;

fn mdc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mdc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so") // export must not need it
        .output()
        .unwrap()
}

/// `mdc export onnx MODEL --weights WEIGHTS -o OUT`.
fn export_with_weights(model: &str, weights: &Path, out: &Path) -> std::process::Output {
    mdc(&["export", "onnx", model, "--weights", weights.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

fn read(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

fn dims(m: &ModelProto, input: usize) -> Vec<String> {
    let g = m.graph.as_ref().unwrap();
    let Some(type_proto::Value::TensorType(t)) = &g.input[input].r#type.as_ref().unwrap().value else {
        panic!()
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Dim::DimValue(v) => v.to_string(),
            Dim::DimParam(p) => p.clone(),
        })
        .collect()
}

#[test]
fn export_cli_writes_a_self_contained_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("unet.onnx");
    let o = mdc(&["export", "onnx", "models/unet-attn.toml", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read(&out);
    assert_eq!(m.ir_version, Some(10));
    assert!(m.opset_import.iter().all(|o| o.version.unwrap() <= 26));
    let g = m.graph.as_ref().unwrap();

    // Signature: x [N, 1, H, W], t [N]; eps; weights are initializers, never inputs.
    let inputs: Vec<&str> = g.input.iter().map(|i| i.name()).collect();
    assert_eq!(inputs, ["x", "t"]);
    assert_eq!(g.output.iter().map(|o| o.name()).collect::<Vec<_>>(), ["eps"]);
    assert_eq!(dims(&m, 0), ["N", "1", "H", "W"]);
    assert_eq!(dims(&m, 1), ["N"]);

    // Every parameter is an initializer named like the model's parameter.
    let model =
        mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet-attn.toml"))).unwrap();
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    for (name, _) in model.graph.params() {
        assert!(inits.contains(name.as_str()), "parameter {name} is not an initializer");
    }
    let weights: usize = g
        .initializer
        .iter()
        .filter(|t| !t.name().starts_with("const."))
        .map(|t| t.dims.iter().product::<i64>() as usize)
        .sum();
    assert_eq!(weights, model.graph.param_count());

    // Node names follow the primitive nodes (and so the TOML blocks): each ONNX node is a
    // primitive node or one of its `<node>/<step>` helpers, and every op node is there.
    let primitive: HashSet<&str> = model.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    let onnx_names: HashSet<&str> = g.node.iter().map(|n| n.name()).collect();
    for n in &g.node {
        let base = n.name().split('/').next().unwrap();
        assert!(primitive.contains(base), "ONNX node {} does not name a model node", n.name());
    }
    for n in &model.graph.nodes {
        if !matches!(n.op, mdc::graph::Op::Input(_) | mdc::graph::Op::Timestep(_)) {
            assert!(onnx_names.contains(n.name.as_str()), "model node {} has no ONNX node", n.name);
        }
    }
    assert!(onnx_names.contains("mid_attn.attn") && onnx_names.contains("down1.conv"));

    // Metadata: everything sampling needs.
    let props: HashMap<String, String> =
        m.metadata_props.iter().map(|p| (p.key().to_string(), p.value().to_string())).collect();
    let info = mdc::onnx::ModelInfo::from_props(&props, "unet.onnx").unwrap();
    assert_eq!((info.channels, info.height, info.width), (1, 28, 28));
    assert_eq!(info.model_hash, model.hash);
    assert_eq!(info.mdc_version, env!("CARGO_PKG_VERSION"));
    assert_eq!((info.schedule.name.as_str(), info.schedule.timesteps), ("cosine", 1000));
}

#[test]
fn export_takes_trained_weights_and_refuses_ones_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let grey = mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml"))).unwrap();
    let weights = dir.path().join("grey.safetensors");
    let params = random_params(&grey.graph, 5);
    params.save(&weights).unwrap();

    // Fitting weights are exported bit for bit.
    let out = dir.path().join("grey.onnx");
    let o = export_with_weights("models/unet.toml", &weights, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = read(&out);
    let init =
        m.graph.as_ref().unwrap().initializer.iter().find(|t| t.name() == "enc2.conv1.weight").unwrap();
    let expected: Vec<u8> =
        params.get("enc2.conv1.weight").unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(init.raw_data.as_deref(), Some(expected.as_slice()));

    // The 1-channel weights do not fit the RGB model: a clear message, exit 1, no file.
    let bad_out = dir.path().join("rgb.onnx");
    let o = export_with_weights("models/unet-rgb32.toml", &weights, &bad_out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("does not fit this model") && err.contains("init.weight"), "{err}");
    assert!(err.contains("expected shape [32, 3, 3, 3], found [16, 1, 3, 3]"), "{err}");
    assert!(!bad_out.exists());
}

#[test]
fn export_refuses_a_model_that_does_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml")).unwrap();
    std::fs::write(&broken, text.replace("in = \"enc1\"", "in = \"enc9\"")).unwrap();
    let out = dir.path().join("broken.onnx");
    let o = mdc(&["export", "onnx", broken.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("enc9"), "{err}");
    assert!(!out.exists());
}

/// Library-level check: weights that do not match the graph are refused, not panicked on.
#[test]
fn export_api_checks_params() {
    let grey = mdc::check::blocks::mini_unet(1, 28, [32, 64, 128, 128], 8, 32, 128).unwrap();
    let rgb = mdc::check::blocks::mini_unet(3, 28, [32, 64, 128, 128], 8, 32, 128).unwrap();
    let err = mdc::onnx::export(&rgb, &Params::init(&grey, 0), &info_for(&rgb)).unwrap_err().to_string();
    assert!(err.contains("`init.weight`: expected shape [32, 3, 3, 3], found [32, 1, 3, 3]"), "{err}");
}

/// A training checkpoint: EMA weights by default, raw ones with --no-ema; the schedule it
/// records wins over the model file's defaults.
#[test]
fn export_from_a_training_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let grey = mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml"))).unwrap();
    let config = mdc::train::TrainConfig {
        schedule: mdc::diffusion::ScheduleKind::Cosine,
        timesteps: 500,
        ..Default::default()
    };
    let ck = random_checkpoint(&grey.graph, &grey.hash, 1234, config, None);
    let ckpt = dir.path().join("checkpoint.safetensors");
    ck.save(&ckpt).unwrap();

    for (flag, expected) in [(None, &ck.ema), (Some("--no-ema"), &ck.model)] {
        let out = dir.path().join("m.onnx");
        let mut args = vec!["export", "onnx", "models/unet.toml", "--weights", ckpt.to_str().unwrap()];
        args.extend(flag);
        args.extend(["-o", out.to_str().unwrap()]);
        let o = mdc(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m = read(&out);
        let g = m.graph.as_ref().unwrap();
        let init = g.initializer.iter().find(|t| t.name() == "out.weight").unwrap();
        let want: Vec<u8> =
            expected.get("out.weight").unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(init.raw_data.as_deref(), Some(want.as_slice()), "{flag:?}");
        let props: HashMap<String, String> =
            m.metadata_props.iter().map(|p| (p.key().to_string(), p.value().to_string())).collect();
        let info = mdc::onnx::ModelInfo::from_props(&props, "m.onnx").unwrap();
        assert_eq!((info.schedule.name.as_str(), info.schedule.timesteps), ("cosine", 500));
        assert!(info.weights.contains("step 1234"), "{}", info.weights);
        assert_eq!(props["betas"].split(',').count(), 500);
    }
}

/// A weights file's `model_hash` is any text: a different one with multi-byte characters is
/// warned about without a panic.
#[test]
fn export_warns_about_a_non_ascii_model_hash() {
    let dir = tempfile::tempdir().unwrap();
    let grey = mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml"))).unwrap();
    let params = random_params(&grey.graph, 1);
    let meta: HashMap<String, String> =
        [("model_hash".to_string(), format!("a{}", "é".repeat(20)))].into_iter().collect();
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&weights, params.to_safetensors(Some(&meta))).unwrap();
    let out = dir.path().join("m.onnx");
    let o = export_with_weights("models/unet.toml", &weights, &out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("model hash a{},", "é".repeat(11))), "{stderr}");
}

/// A training checkpoint with a flipped byte in its tensor data is refused, not exported.
#[test]
fn export_refuses_a_damaged_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let grey = mdc::model::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/unet.toml"))).unwrap();
    let ck = random_checkpoint(&grey.graph, &grey.hash, 3, mdc::train::TrainConfig::default(), None);
    let path = dir.path().join("checkpoint.safetensors");
    ck.save(&path).unwrap();
    let out = dir.path().join("m.onnx");
    let export = || export_with_weights("models/unet.toml", &path, &out);
    let o = export();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Flip one bit of the EMA weights' first value (the ones export uses).
    let mut bytes = std::fs::read(&path).unwrap();
    let (header_len, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let (start, _) = header.info("ema.out.weight").unwrap().data_offsets;
    bytes[8 + header_len + start] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(&out).unwrap();
    let o = export();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !out.exists(), "{stderr}");
    assert!(
        stderr.contains("checkpoint.safetensors is corrupt")
            && stderr.contains("does not match its recorded SHA-256"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
