//! Exported models pass the reference checker, `onnx.checker.check_model(full_check=True)`,
//! through scripts/onnx_check.py. Needs python3 with the `onnx` package: without it the test
//! fails when CI is set and is skipped with a notice otherwise.

use crate::onnx_common;

use std::process::Command;

use onnx_common::*;

#[test]
fn exported_models_pass_onnx_checker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_check.py");
    let dir = tempfile::tempdir().unwrap();
    let models =
        shipped_models().into_iter().chain(test_models().into_iter().map(|(n, g)| (n.to_string(), g)));
    let mut paths: Vec<_> =
        models.map(|(name, g)| export(&g, &random_params(&g, 1), dir.path(), &name)).collect();
    // An autoguided export holds two copies of the network.
    for (name, g) in shipped_models().into_iter().filter(|(n, _)| n == "unet.toml" || n == "unet-cond.toml") {
        let mut info = info_for(&g);
        info.autoguidance = Some(mdc::onnx::AutoguidanceInfo {
            steering: mdc::diffusion::Steering::everywhere(3.0),
            guide_step: 7,
        });
        let path = dir.path().join(format!("guided-{name}.onnx"));
        let guide = random_params(&g, 2);
        mdc::onnx::export_to_file(&g, &random_params(&g, 1), Some(&guide), &info, &path).unwrap();
        paths.push(path);
    }
    let out = Command::new("python3").arg(script).args(&paths).output();
    let out = match out {
        Ok(o) => o,
        Err(e) if !in_ci() => {
            return eprintln!("NOTICE: skipping the ONNX checker test: cannot run python3: {e}")
        }
        Err(e) => panic!("python3 is required in CI: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        assert!(!in_ci(), "CI must install the Python onnx package: {stderr}");
        return eprintln!("NOTICE: skipping the ONNX checker test: {stderr}");
    }
    assert!(
        out.status.success(),
        "onnx.checker rejected an export:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches(": ok").count(), paths.len());
}
